"""The NPU's pattern table (Relax DPL) and, for each op it does not take, the reason.

The cube unit runs conv2d and matmul with constant weights; the vector unit runs depthwise
conv, pooling, global average pooling (mean over H, W), softmax over the last axis of a 2-D /
3-D tensor, and elementwise ops whose second operand is the same shape, a scalar constant, a
per-channel constant, or an N x C x 1 x 1 tensor. Everything is float32 at the graph level and
fp16 on the NPU. `support(call)` is the one place these rules live: the pattern checks accept
what it accepts, and the partition report quotes what it says.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax.dpl import is_const, is_op, wildcard
from tvm.relax.transform import FusionPattern

NAME = "tilecc_npu"
ANCHORS = ("nn.conv2d", "matmul", "nn.max_pool2d", "nn.avg_pool2d", "mean", "nn.softmax")
BINARY = ("add", "subtract", "multiply", "divide", "maximum", "minimum")
UNARY = ("nn.relu", "sigmoid", "tanh", "exp")
SUPPORTED = ANCHORS + BINARY + UNARY


def static_shape(expr) -> tuple[int, ...] | None:
    ty = getattr(expr, "ty", None)
    shape = getattr(ty, "shape", None)
    if shape is None:
        return None
    try:
        return tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        return None


def constant(expr) -> np.ndarray | None:
    return expr.value.numpy() if isinstance(expr, tvm.ir.Constant) else None


def operand_kind(expr, out_shape: tuple[int, ...]) -> str | None:
    """How the vector unit reads an elementwise operand: `tensor` (same shape), `imm`
    (scalar constant), `chan` (per-channel constant), `bcast` (N x C x 1 x 1 tensor)."""
    shape = static_shape(expr)
    value = constant(expr)
    if value is not None:
        if value.size == 1:
            return "imm"
        return "chan" if per_channel(value.shape, out_shape) else None
    if shape == out_shape:
        return "tensor"
    rank = len(out_shape)
    if rank == 4 and shape == (out_shape[0], out_shape[1], 1, 1):
        return "bcast"
    return None


def per_channel(shape: tuple[int, ...], out_shape: tuple[int, ...]) -> bool:
    """A constant that varies only along the NPU's channel axis (C of NCHW, the last axis of
    a 2-D / 3-D tensor)."""
    rank = len(out_shape)
    full = (1,) * (rank - len(shape)) + tuple(shape)
    if len(full) != rank:
        return False
    axis = 1 if rank == 4 else rank - 1
    return all(d == 1 for i, d in enumerate(full) if i != axis) and full[axis] == out_shape[axis]


def support(call: relax.Call) -> str | None:
    """None if the NPU runs `call`, else why it stays on the host CPU."""
    name = call.op.name.removeprefix("relax.")
    if name not in SUPPORTED:
        return "not in the NPU's pattern table"
    out = static_shape(call)
    if out is None or any(static_shape(a) is None for a in call.args):
        return "dynamic or non-tensor shape"
    if call.ty.dtype != "float32" or any(a.ty.dtype != "float32" for a in call.args):
        return f"dtype {call.ty.dtype} (the NPU takes float32 graphs, computed in fp16)"
    if len(out) not in (2, 3, 4):
        return f"rank-{len(out)} tensor (the NPU maps 2-D, 3-D and 4-D tensors)"
    check = _CHECKS.get(name)
    return check(call, out) if check else None


def _conv2d(call, out):
    a = call.attrs
    if (a.data_layout, a.kernel_layout, a.out_layout or "NCHW") != ("NCHW", "OIHW", "NCHW"):
        return f"layout {a.data_layout}/{a.kernel_layout} (the NPU takes NCHW/OIHW)"
    if constant(call.args[1]) is None:
        return "weights computed at run time"
    channels = static_shape(call.args[0])[1]
    if a.groups != 1 and not (a.groups == channels == out[1]):
        return f"grouped conv (groups={a.groups}); the NPU runs groups=1 and depthwise"
    return None


def _matmul(call, out):
    weight = constant(call.args[1])
    if weight is None or weight.ndim != 2:
        return "the right operand is not a constant 2-D weight"
    if len(static_shape(call.args[0])) not in (2, 3):
        return "the left operand is not 2-D or 3-D"
    return None


def _pool(call, out):
    a = call.attrs
    if a.layout != "NCHW" or (a.out_layout or "NCHW") != "NCHW":
        return f"layout {a.layout}"
    if call.op.name == "relax.nn.avg_pool2d" and a.ceil_mode:
        return "average pooling with ceil_mode"
    return None


def _mean(call, out):
    shape = static_shape(call.args[0])
    axes = sorted(int(x) % len(shape) for x in call.attrs.axis) if call.attrs.axis else None
    if len(shape) != 4 or axes != [2, 3] or not call.attrs.keepdims:
        return "mean other than over H and W with keepdims (global average pooling)"
    return None


def _softmax(call, out):
    if len(out) not in (2, 3) or int(call.attrs.axis) % len(out) != len(out) - 1:
        return "softmax other than over the last axis of a 2-D / 3-D tensor"
    return None


def _binary(call, out):
    kinds = [operand_kind(a, out) for a in call.args]
    if None in kinds:
        shapes = " and ".join(str(list(static_shape(a))) for a in call.args)
        return f"broadcast of {shapes} to {list(out)}"
    if "tensor" not in kinds:
        return "no operand of the output's shape"
    return None


_CHECKS = {
    "nn.conv2d": _conv2d,
    "matmul": _matmul,
    "nn.max_pool2d": _pool,
    "nn.avg_pool2d": _pool,
    "mean": _mean,
    "nn.softmax": _softmax,
    **{op: _binary for op in BINARY},
}


def _accepts(context) -> bool:
    """A match is taken when every op in it is supported."""
    return all(
        support(e) is None
        for e in context.annotated_expr.values()
        if isinstance(e, relax.Call) and isinstance(e.op, tvm.ir.Op)
    )


def _pattern(name: str, root, **annotated) -> FusionPattern:
    return FusionPattern(f"{NAME}.{name}", root, {"root": root, **annotated}, _accepts)


def pattern_table() -> list[FusionPattern]:
    """Most specific first: conv2d / matmul with bias and activation, then single ops."""
    table = []
    for anchor in ("nn.conv2d", "matmul"):
        base = is_op(f"relax.{anchor}")(wildcard(), is_const())
        bias = is_op("relax.add")(base, is_const())
        relu = is_op("relax.nn.relu")(bias)
        relu6 = is_op("relax.minimum")(is_op("relax.maximum")(bias, is_const()), is_const())
        short = anchor.removeprefix("nn.")
        table += [
            _pattern(f"{short}_bias_relu6", relu6, anchor=base, bias=bias),
            _pattern(f"{short}_bias_relu", relu, anchor=base, bias=bias),
            _pattern(f"{short}_bias", bias, anchor=base),
            _pattern(short, base),
        ]
    for op in ANCHORS[2:] + UNARY:
        table.append(_pattern(op.removeprefix("nn."), is_op(f"relax.{op}")(wildcard())))
    for op in BINARY:
        table.append(_pattern(op, is_op(f"relax.{op}")(wildcard(), wildcard())))
    return table
