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


def dataflow_module(body, x_shape, dtype: str = "float32") -> tvm.IRModule:
    """main(x) whose dataflow block `body(bb, x)` fills; body returns the output expression."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(x_shape, dtype))
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(body(bb, x))
        bb.emit_func_output(out)
    return bb.get()
