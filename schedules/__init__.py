"""Kernel templates: a TE compute + s_tir schedule per file, knobs in one `SPACE` (STYLE.md §3)."""
