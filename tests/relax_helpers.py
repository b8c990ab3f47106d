"""Helpers shared by the graph-pass tests (tests/passes/)."""

from __future__ import annotations

import tvm
from tvm import relax


def op_names(mod: tvm.IRModule, func: str = "main") -> list[str]:
    """The operator name of every call in `func`, in post order."""
    names = []
    relax.analysis.post_order_visit(
        mod[func].body,
        lambda e: (
            names.append(e.op.name)
            if isinstance(e, relax.Call) and isinstance(e.op, tvm.ir.Op)
            else None
        ),
    )
    return names
