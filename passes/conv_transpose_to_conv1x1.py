"""conv-transpose-to-conv1x1: a conv2d_transpose whose stride equals its kernel is a 1x1 conv
followed by a depth-to-space shuffle."""

from __future__ import annotations

import tvm
from tvm import relax

from .registry import register_pass

_CONV_TRANSPOSE = tvm.ir.Op.get("relax.nn.conv2d_transpose")


def _static(shape):
    try:
        return [int(d) for d in shape]
    except TypeError:
        return None


def _rewritable(call) -> bool:
    a = call.attrs
    if (a.data_layout, a.kernel_layout, a.out_layout) != ("NCHW", "IOHW", "NCHW"):
        return False
    data, weight = _static(call.args[0].ty.shape), _static(call.args[1].ty.shape)
    if data is None or weight is None or int(a.groups) != 1:
        return False
    kernel = weight[2:]
    return (
        [int(s) for s in a.strides] == kernel
        and all(int(p) == 0 for p in a.padding)
        and all(int(p) == 0 for p in a.output_padding)
        and all(int(d) == 1 for d in a.dilation)
    )


# (n, kh, kw, o, h, w) -> (n, o, h, kh, w, kw): the depth-to-space shuffle after the 1x1 conv;
# convert-layout-nchwc recognizes it by these axes
SHUFFLE_AXES = [0, 3, 4, 1, 5, 2]


@register_pass("conv-transpose-to-conv1x1", scope="function")
class ConvTransposeToConv1x1:
    """Rewrite conv2d_transpose with stride == kernel size (no padding, dilation or groups) as
    a 1x1 conv2d followed by a depth-to-space shuffle: the kernel windows do not overlap, so
    each input pixel writes its own kh x kw output patch, out[n, o, h*kh+a, w*kw+b] = sum_c
    x[n, c, h, w] * W[c, o, a, b], the 1x1 conv's output channel (a, b, o). TVM's generic
    conv2d_transpose dilates, pads and convolves (PP-OCRv4 det's 2x2, stride-2 upsampling took
    70 % of its time that way); a 1x1 conv is a conv template's, and an int8 one's, and stays
    in the blocked layout: its channels run (a, b, o), so with the block dividing O each
    sub-pixel's channels are whole blocks and convert-layout-nchwc moves the shuffle into the
    blocked layout as copies of channel vectors (det at 640 on x86: no layout transform or
    transpose left in its head).

    Options: none.
    Example (Relax TVMScript, x: (1, 24, 8, 8), W: (24, 6, 2, 2)):
        before:  y = R.nn.conv2d_transpose(x, W, strides=[2, 2])
        after:   v = R.permute_dims(W, [2, 3, 1, 0])          # (2, 2, 6, 24)
                 c = R.nn.conv2d(x, R.reshape(v, (24, 24, 1, 1)))   # (1, 2 * 2 * 6, 8, 8)
                 d = R.reshape(c, (1, 2, 2, 6, 8, 8))
                 e = R.permute_dims(d, [0, 3, 4, 1, 5, 2])     # (1, 6, 8, 2, 8, 2)
                 y = R.reshape(e, (1, 6, 16, 16))
    Leaves alone: overlapping windows (stride < kernel), padding, output_padding, dilation,
    groups, layouts other than NCHW / IOHW, dynamic shapes.
    """

    def transform_function(self, func, mod, ctx):
        return _Rewrite().visit_expr(func)


@relax.expr_functor.mutator
class _Rewrite(relax.PyExprMutator):
    def visit_call_(self, call):
        call = super().visit_call_(call)
        if call.op != _CONV_TRANSPOSE or not _rewritable(call):
            return call
        x, w = call.args
        n, c, h, wd = _static(x.ty.shape)
        _, o, kh, kw = _static(w.ty.shape)
        emit = self.builder_.emit
        # output channels (kh, kw, o): each sub-pixel's O channels are contiguous (whole
        # channel blocks once the layout is blocked)
        weight = emit(relax.op.permute_dims(w, [2, 3, 1, 0]))
        weight = emit(relax.op.reshape(weight, (kh * kw * o, c, 1, 1)))
        patches = emit(relax.op.nn.conv2d(x, weight))
        patches = emit(relax.op.reshape(patches, (n, kh, kw, o, h, wd)))
        shuffled = emit(relax.op.permute_dims(patches, SHUFFLE_AXES))
        return relax.op.reshape(shuffled, (n, o, h * kh, wd * kw))
