"""Template lookup by name; templates are imported on first use.

A name is one of TEMPLATE_MODULES, or "package.module:ATTR" for a template defined elsewhere
(tests define deliberately crashing ones this way, so measuring workers can import them).
"""

from __future__ import annotations

import importlib

from .template import Template

TEMPLATE_MODULES = {
    "conv2d_direct": "tilecc.schedules.conv2d_direct",
    "conv2d_int8": "tilecc.schedules.conv2d_int8",
    "conv2d_winograd": "tilecc.schedules.conv2d_winograd",
    "depthwise": "tilecc.schedules.depthwise",
    "dense": "tilecc.schedules.dense",
    "dense_int8": "tilecc.schedules.dense_int8",
}


def get_template(name: str) -> Template:
    if ":" in name:
        module, attr = name.split(":", 1)
        return getattr(importlib.import_module(module), attr)
    if name not in TEMPLATE_MODULES:
        raise KeyError(f"unknown template {name!r}; known: {sorted(TEMPLATE_MODULES)}")
    return importlib.import_module(TEMPLATE_MODULES[name]).TEMPLATE


def templates_for(workload) -> list[Template]:
    """Every registered template that can compute `workload`."""
    out = []
    for name in TEMPLATE_MODULES:
        template = get_template(name)
        if template.op == workload.op and template.applies(workload):
            out.append(template)
    return out
