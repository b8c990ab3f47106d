"""fold-batchnorm: fold an inference BatchNorm into the constant weights of the conv2d before it."""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax.dpl import PatternContext, is_op, is_tuple_get_item, rewrite_bindings, wildcard

from .registry import register_pass

_RESHAPE = tvm.ir.Op.get("relax.reshape")


def _constant(expr, bindings) -> np.ndarray | None:
    """The value of `expr` if it is a constant or a reshape of one (the ONNX importer reshapes a
    Conv bias to (1, C, 1, 1) before fold-constant runs), else None."""
    while isinstance(expr, relax.Var) and expr in bindings:
        expr = bindings[expr]
    if isinstance(expr, tvm.ir.Constant):  # relax.const builds tvm.ir.GenericConst in TVM 0.27
        return expr.value.numpy()
    if isinstance(expr, relax.Call) and expr.op == _RESHAPE:
        inner = _constant(expr.args[0], bindings)
        shape = expr.ty.shape
        if inner is not None and shape is not None:
            return inner.reshape([int(d) for d in shape])
    return None


def _stat(value: np.ndarray | None, channels: int) -> np.ndarray | None:
    """A batch_norm statistic as a (channels,) vector (batch_norm requires shape (C,))."""
    return value if value is not None and value.shape == (channels,) else None


def _channel_bias(value: np.ndarray | None, channels: int) -> np.ndarray | None:
    """A bias added to the NCHW conv output as a (channels,) vector, if it is constant along
    N, H and W: shapes (), (1,), (C, 1, 1), (1, C, 1, 1). A (C,) vector would broadcast along W."""
    if value is None or value.ndim > 4:
        return None
    shape = (1,) * (4 - value.ndim) + value.shape
    if shape[0] != 1 or shape[2:] != (1, 1) or shape[1] not in (1, channels):
        return None
    return np.broadcast_to(value.reshape(shape[1]), (channels,))


@register_pass("fold-batchnorm", scope="function")
class FoldBatchnorm:
    """Fold an inference-mode batch_norm into the constant weights and bias of the conv2d before it.

    With s = gamma / sqrt(var + eps) per output channel: W' = W * s, b' = (b - mean) * s + beta,
    computed in NumPy at compile time; the conv2d keeps its attributes and gets `add(conv, b')`
    with b' of shape (1, C, 1, 1). Matches, inside a dataflow block, the forms TVM's ONNX
    importer emits for Conv (+ bias) + BatchNormalization:
        bn = R.nn.batch_norm(conv2d(x, W), gamma, beta, mean, var, axis=1, training=False)
        bn = R.nn.batch_norm(R.add(conv2d(x, W), b), ...)     b: constant, or reshape of one
        y = bn[0]
    Options: none.
    Example (Relax TVMScript):
        before:  c = R.nn.conv2d(x, W)                     after:  c = R.nn.conv2d(x, W')
                 bn = R.nn.batch_norm(c, g, b, m, v,               y = R.add(c, b')
                        axis=1, epsilon=1e-3, training=False)
                 y = bn[0]
    Leaves alone: a conv2d (or its bias add) that has another user, or is a dataflow output; a
    non-constant weight, bias or statistic; batch_norm in training mode or not on axis 1; conv2d
    not in NCHW/OIHW layout or with integer weights; batch_norm over dense/matmul (not handled yet).
    """

    def transform_function(self, func, mod, ctx):
        for with_bias in (True, False):
            func = self._rewrite(func, with_bias)
        return func

    def _rewrite(self, func, with_bias: bool):
        # Only the bound calls appear in the matches: leaves are read from their args in _fold.
        conv = is_op("relax.nn.conv2d")(wildcard(), wildcard())
        add = is_op("relax.add")(conv, wildcard()) if with_bias else None
        bn = is_op("relax.nn.batch_norm")(
            add if with_bias else conv, *(wildcard() for _ in range(4))
        )
        out = is_tuple_get_item(bn, 0)
        with PatternContext() as pctx:
            if with_bias:
                conv.only_used_by(add)  # "the conv output has no other user"
                add.only_used_by(bn)
            else:
                conv.only_used_by(bn)
            bn.used_by(out)

        def rewriter(matches, bindings):
            folded = self._fold(matches, bindings, conv, add, bn)
            return {matches[out]: folded} if folded is not None else {}

        return rewrite_bindings(pctx, rewriter, func)

    def _fold(self, matches, bindings, conv, add, bn):
        kept = [matches[conv]] + ([matches[add]] if add is not None else [])
        if not all(isinstance(v, relax.DataflowVar) for v in kept):
            return None  # a dataflow output is used after the block
        conv_call, bn_call = bindings[matches[conv]], bindings[matches[bn]]
        a, b = conv_call.attrs, bn_call.attrs
        if bool(b.training) or int(b.axis) != 1 or not (b.center and b.scale):
            return None
        if (a.data_layout, a.kernel_layout, a.out_layout) != ("NCHW", "OIHW", "NCHW"):
            return None
        w = _constant(conv_call.args[1], bindings)
        if w is None or not np.issubdtype(w.dtype, np.floating):
            return None
        channels = w.shape[0]
        per = [_stat(_constant(s, bindings), channels) for s in bn_call.args[1:]]
        b0 = np.zeros(channels, w.dtype)
        if add is not None:
            b0 = _channel_bias(_constant(bindings[matches[add]].args[1], bindings), channels)
        if b0 is None or any(v is None for v in per):
            return None
        gamma, beta, mean, var = (v.astype("float64") for v in per)
        scale = gamma / np.sqrt(var + float(b.epsilon))
        new_w = (w.astype("float64") * scale.reshape(-1, 1, 1, 1)).astype(w.dtype)
        out_dtype = str(matches[conv].ty.dtype)  # differs from W's when conv2d has an out_dtype
        new_b = ((b0.astype("float64") - mean) * scale + beta).astype(out_dtype)
        new_conv = relax.Call(conv_call.op, [conv_call.args[0], relax.const(new_w)], a)
        return relax.op.add(new_conv, relax.const(new_b.reshape(1, channels, 1, 1)))
