"""`tilecc setup`: fetch the models and every target's runtime into the cache (idempotent)."""

from __future__ import annotations

from tilecc.compiler.assets import cache_dir, ensure_models
from tilecc.targets import all_targets

from .common import progress


def add_parser(sub) -> None:
    parser = sub.add_parser("setup", help="fetch models and target runtimes into the cache")
    parser.set_defaults(drive=drive_setup)


def drive_setup(args) -> int:
    progress(f"[setup] cache {cache_dir()}")
    ensure_models(progress=lambda m: progress(f"[setup] {m}"))
    for spec in all_targets().values():
        if spec.setup is not None:
            progress(f"[setup] target {spec.name}")
            spec.setup(progress=lambda m: progress(f"[setup]   {m}"))
    progress("[setup] done")
    return 0
