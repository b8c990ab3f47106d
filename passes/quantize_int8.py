"""quantize-int8: each calibrated conv2d / matmul as an 8-bit x int8 -> int32 op, requantized to
fp32."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
from tvm import relax

from tilecc.compiler.calibration import bias_shift, quantize_weight, weight_scales
from tilecc.compiler.errors import PassOptionError

from .fake_quantize import anchor_key, is_anchor, is_nearest_resize, quantized_inputs
from .registry import register_pass

_BLOCKED = re.compile(r"^NCHW(\d+)c$")
_KERNEL = re.compile(r"^OIHW(?:(\d+)i)?(\d+)o$")
# the table's zero points are on the int8 scale; uint8 data shifts them by 128
_ZERO_SHIFT = {"uint8": 128, "int8": 0}


@register_pass("quantize-int8", scope="function")
class QuantizeInt8:
    """Replace each conv2d and matmul the quantization table calibrated by the same op in integers:
    its input quantized to 8 bits with the table's scale s and zero point z, padded with z
    (so padding is still 0.0; a conv pads with zeros itself when z is 0, as after a ReLU on
    uint8 data), convolved with the weights rounded per output channel to
    [-weight-max, weight-max] (scale sw[o]) into int32, then requantized to fp32 as
    (acc - z * sum(Wq[o])) * s * sw[o], less the bias correction where the table holds the
    input's per-channel mean (the mean shift E[(Wq * sw - W) x], as fake-quantize subtracts).
    Bias, activation and the next layer's quantize stay separate ops, which FuseOps puts in the
    int8 kernel's epilogue.
    Runs after layout conversion: the table's keys (`conv2d:<k>`, the k-th conv2d / matmul
    with constant weights) count anchors the same way as the pipeline it was calibrated on.
    A nearest-neighbour resize of an activation that some conv / matmul here quantizes copies
    the 8-bit codes instead and is dequantized after (det's FPN upsampling: a quarter of the
    bytes, and its fp32 input is then often read only by its quantize); fake-quantize resizes
    the quantized value likewise, so the two agree.
    Options: table (path of the JSON table), data-dtype (uint8 for x86's vpmaddubsw, int8 for
    aarch64's sdot), weight-max (63 where vpmaddubsw would saturate, else 127), per-channel
    (default true), bias-correction (default true), quantized-resize (default true).
    Example (x calibrated to s, z; NCHW8c, uint8):
        before:  y = R.nn.conv2d(x, W, padding=[1, 1, 1, 1], data_layout="NCHW8c", ...)
        after:   q = R.quantize(x, s, z + 128, out_dtype="uint8")
                 p = R.nn.pad(q, [0, 0, 0, 0, 1, 1, 1, 1, 0, 0], pad_value=z + 128)
                 a = R.nn.conv2d(p, Wq, kernel_layout="OIHW", out_dtype="int32", ...)
                 y = R.multiply(R.astype(R.subtract(a, corr), "float32"), s * sw)
    A matmul by constant weights W [K, N] is requantized the same way per output column:
    (acc - z * sum_k(Wq[:, n])) * s * sw[n].
    A conv on plain NCHW data (a stem on 3 image channels) gets its quantized input regrouped
    into NCHW4c, the channels padded with the zero point and the weights with zero filters: the
    int8 kernels reduce input channels 4 at a time.
    Leaves alone: ops the table does not name; convs on blocked data whose block is not a
    multiple of 4 (NCHW2c; depthwise convs may take any block) or whose output layout differs;
    matmuls whose K is not a multiple of 4 or whose shapes are dynamic.
    """

    def __init__(
        self,
        table: str = "",
        data_dtype: str = "uint8",
        weight_max: int = 127,
        per_channel: bool = True,
        bias_correction: bool = True,
        quantized_resize: bool = True,
    ):
        if data_dtype not in _ZERO_SHIFT:
            raise PassOptionError(
                "quantize-int8", "data-dtype", data_dtype, known=sorted(_ZERO_SHIFT)
            )
        if not 1 <= weight_max <= 127:
            raise PassOptionError("quantize-int8", "weight-max", weight_max)
        try:
            data = json.loads(Path(table).read_text())
            self.activations = data["activations"]
            self.shift_weight_max = data.get("output_shift_weight_max")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise PassOptionError("quantize-int8", "table", f"{table} ({exc})") from exc
        self.data_dtype, self.weight_max, self.per_channel = data_dtype, weight_max, per_channel
        self.bias_correction, self.quantized_resize = bias_correction, quantized_resize

    def transform_function(self, func, mod, ctx):
        return _QuantizeInt8(self, quantized_inputs(func, self.activations)).visit_expr(func)


@relax.expr_functor.mutator
class _QuantizeInt8(relax.PyExprMutator):
    def __init__(self, opts: QuantizeInt8, inputs: dict):
        super().__init__()
        self.opts = opts
        self.inputs = inputs if opts.quantized_resize else {}  # resizes copy these as 8 bits
        self.count = 0  # conv2d / matmul anchors seen so far: the table's key
        self.quantized: dict = {}  # activation -> its 8-bit value (emitted once)

    def visit_call_(self, call):
        original = call
        call = super().visit_call_(call)
        if is_nearest_resize(original) and original.args[0] in self.inputs:
            return self._int8_resize(call, original.args[0], self.inputs[original.args[0]])
        if not is_anchor(original):
            return call
        key = anchor_key(original, self.count)
        self.count += 1
        params = self.opts.activations.get(key)
        if params is None:
            return call
        if original.op.name == "relax.matmul" and supported_matmul(original):
            return self._int8_matmul(call, original.args[0], params)
        if original.op.name == "relax.nn.conv2d" and supported(original):
            return self._int8_conv(call, original.args[0], params)
        return call

    def _quantized_input(self, call, x, params) -> tuple[relax.Expr, int, float]:
        """x as 8-bit data (emitted once per activation), its zero point and its scale."""
        opts = self.opts
        zero = int(params["zero_point"]) + _ZERO_SHIFT[opts.data_dtype]
        scale = float(params["scale"])
        if x not in self.quantized:
            self.quantized[x] = self.builder_.emit(
                relax.op.quantize(
                    call.args[0],
                    relax.const(np.float32(scale)),
                    relax.const(np.dtype(opts.data_dtype).type(zero)),
                    out_dtype=opts.data_dtype,
                )
            )
        return self.quantized[x], zero, scale

    def _int8_resize(self, call, x, params):
        """The resize on x's 8-bit codes, dequantized: equal to resizing dequantize(quantize(x)),
        which is what fake-quantize computes."""
        data, zero, scale = self._quantized_input(call, x, params)
        moved = self.builder_.emit(relax.Call(call.op, [data, *call.args[1:]], call.attrs))
        zero_point = relax.const(np.dtype(self.opts.data_dtype).type(zero))
        return relax.op.dequantize(moved, relax.const(np.float32(scale)), zero_point)

    def _int8_matmul(self, call, x, params):
        opts = self.opts
        data, zero, scale = self._quantized_input(call, x, params)
        weight = call.args[1].value.numpy()  # [K, N]
        scales = weight_scales(weight, opts.per_channel, 1, opts.weight_max)
        scales = np.broadcast_to(scales, (weight.shape[1],))
        wq = quantize_weight(weight, scales, 1, opts.weight_max)
        acc = self.builder_.emit(relax.op.matmul(data, relax.const(wq), out_dtype="int32"))
        correction = zero * wq.astype(np.int64).sum(axis=0)
        mean = params.get("channel_mean")
        shift = None  # with means of another length (x's first consumer was a conv), none
        if opts.bias_correction and mean is not None:
            shift = self._measured(params, weight.shape[1])
            if shift is None:
                rounded = wq * scales.reshape(1, -1)
                shift = bias_shift(weight, rounded, np.asarray(mean), "matmul")
        return self._requantize(acc, correction, scale * scales, shift, relax.const)

    def _measured(self, params, channels: int) -> np.ndarray | None:
        """The table's measured output shift (empirical bias correction), widened by zeros
        to `channels` (output channels pad-channels added since), if it was measured with
        weights rounded as here; else None."""
        shift = params.get("output_shift")
        if shift is None or self.opts.shift_weight_max != self.opts.weight_max:
            return None
        shift = np.asarray(shift, np.float64)
        return np.pad(shift, (0, channels - shift.size))

    def _requantize(self, acc, correction, rescale, shift, shaped):
        """(acc - correction) * rescale [- shift]: per-output-channel int / float vectors, each
        made a constant that broadcasts against acc by `shaped`."""
        shifted = relax.op.subtract(acc, shaped(correction.astype(np.int32)))
        real = relax.op.astype(self.builder_.emit(shifted), "float32")
        out = relax.op.multiply(self.builder_.emit(real), shaped(rescale.astype(np.float32)))
        if shift is None:
            return out
        return relax.op.subtract(self.builder_.emit(out), shaped(shift.astype(np.float32)))

    def _in_blocks_of_four(self, data, weight, zero):
        """NCHW 8-bit data as NCHW4c (channels padded with the zero point up to 4k) and the
        OIHW weights with zero filters for the padded channels. Up to 4 channels (an image),
        each pixel's bytes are packed into one int32 by shifts and ors over whole rows, which
        is then viewed as bytes (little-endian, as on x86 and aarch64): TVM's layout_transform
        gathers the bytes from the channel planes one by one (det's stem: 0.42 ms that way on
        2 threads). Symbolic shapes take the layout_transform."""
        channels = weight.shape[1]
        weight = np.pad(weight, ((0, 0), (0, -channels % 4), (0, 0), (0, 0)))
        try:
            n, _, h, w = (int(d) for d in data.ty.shape)
        except TypeError:  # a symbolic dimension
            n = None
        if channels > 4 or n is None:
            blocked = relax.op.layout_transform(
                data, lambda n, c, h, w: (n, c // 4, h, w, c % 4), pad_value=zero
            )
            return self.builder_.emit(blocked), weight
        emit = self.builder_.emit
        byte = zero & 0xFF  # the zero point's bit pattern, uint8 or int8
        fill = sum(byte << (8 * c) for c in range(channels, 4))  # the padded channels
        word = None
        for c in range(channels):
            plane = relax.op.strided_slice(data, axes=[1], begin=[c], end=[c + 1])
            bits = relax.op.bitwise_and(relax.op.astype(plane, "int32"), _int32(0xFF))
            shifted = relax.op.left_shift(emit(bits), _int32(8 * c)) if c else bits
            word = emit(shifted) if word is None else emit(relax.op.bitwise_or(word, shifted))
        if fill:
            word = emit(relax.op.bitwise_or(word, _int32(fill)))
        shape = relax.ShapeExpr([n, 1, h, w, 4])
        return emit(relax.op.memory.view(word, shape, self.opts.data_dtype)), weight

    def _int8_conv(self, call, x, params):
        attrs, opts = call.attrs, self.opts
        data, zero, scale = self._quantized_input(call, x, params)
        weight = _to_oihw(call.args[1].value.numpy(), str(attrs.kernel_layout))
        data_layout = str(attrs.data_layout)
        if data_layout == "NCHW" and int(attrs.groups) == 1:  # into NCHW4c, channels padded
            data, weight = self._in_blocks_of_four(data, weight, zero)
            data_layout = "NCHW4c"
        pad = [int(p) for p in attrs.padding]  # top, left, bottom, right
        if any(pad) and zero != 0:  # the int8 conv pads with 0: right only for zero point 0
            width = [0, 0] * len(data.ty.shape)
            width[4:8] = [pad[0], pad[2], pad[1], pad[3]]
            data = self.builder_.emit(relax.op.nn.pad(data, width, pad_value=float(zero)))
            pad = [0, 0, 0, 0]
        scales = weight_scales(weight, opts.per_channel, 0, opts.weight_max)
        scales = np.broadcast_to(scales, (weight.shape[0],))
        wq = quantize_weight(weight, scales, 0, opts.weight_max)
        acc = self.builder_.emit(
            relax.op.nn.conv2d(
                data, relax.const(wq), attrs.strides, pad, attrs.dilation,
                attrs.groups, data_layout, "OIHW", attrs.out_layout, "int32",
            )
        )  # fmt: skip
        correction = zero * wq.reshape(wq.shape[0], -1).astype(np.int64).sum(axis=1)
        mean = params.get("channel_mean")
        shift = None  # with means of another length (x's first consumer was a matmul), none
        if opts.bias_correction and mean is not None:
            shift = self._measured(params, weight.shape[0])
            if shift is None:
                rounded = wq * scales.reshape(-1, 1, 1, 1)
                mean = _padded_mean(np.asarray(mean), weight)
                shift = bias_shift(weight, rounded, mean, "conv2d", int(attrs.groups))
        layout = str(attrs.out_layout)
        return self._requantize(
            acc, correction, scale * scales, shift, lambda v: _per_channel(v, layout)
        )


def _int32(value: int) -> relax.Constant:
    return relax.const(np.int32(_signed(value)))


def _signed(value: int) -> int:
    """A 32-bit pattern as the int32 that holds it."""
    return value - (1 << 32) if value >= 1 << 31 else value


def supported(call) -> bool:
    """OIHW-family weights and: input channels in contiguous groups of 4 (NCHW[4k]c) with the
    same layout out; or plain NCHW in (the pass regroups it into NCHW4c, padding the channels:
    a stem on 3 image channels) and NCHW or NCHW[b]c out; or a depthwise conv (it reduces no
    channels) in any one layout."""
    attrs = call.attrs
    layout, out, kernel = str(attrs.data_layout), str(attrs.out_layout), str(attrs.kernel_layout)
    match = _BLOCKED.match(layout)
    if (match is None and layout != "NCHW") or (out != "NCHW" and _BLOCKED.match(out) is None):
        return False
    if kernel != "OIHW" and _KERNEL.match(kernel) is None:
        return False
    block = int(match.group(1)) if match else 1
    groups, channels = int(attrs.groups), int(call.args[0].ty.shape[1]) * block
    if groups == channels > 1:
        return out == layout
    if groups != 1:
        return False
    return layout == "NCHW" or (block % 4 == 0 and out == layout)


def supported_matmul(call) -> bool:
    """matmul(x, W) with W a constant [K, N], x of static shape [..., M, K] and K a multiple
    of 4 (what dense_int8 computes)."""
    weight, shape = call.args[1], call.args[0].ty.shape
    if len(weight.ty.shape) != 2 or shape is None or len(shape) < 2:
        return False
    try:
        dims = [int(d) for d in shape]
    except (TypeError, ValueError):  # a symbolic dimension
        return False
    return dims[-1] == int(weight.ty.shape[0]) and dims[-1] % 4 == 0


def _padded_mean(mean: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """The calibrated per-channel mean of a conv input that pad-channels widened after
    calibration, extended by zeros: the new channels' weights are zero, so their mean does not
    enter the bias shift."""
    extra = weight.shape[1] - mean.shape[0]
    if mean.ndim != 1 or extra <= 0 or np.any(weight[:, mean.shape[0] :]):
        return mean
    return np.concatenate([mean, np.zeros(extra, mean.dtype)])


def _to_oihw(weight: np.ndarray, layout: str) -> np.ndarray:
    """A constant conv weight in OIHW[i]i[o]o (or OIHW[o]o) as OIHW."""
    match = _KERNEL.match(layout)
    if layout == "OIHW" or match is None:
        return weight
    if match.group(1):  # [O/ob, I/ib, H, W, ib, ob]
        o, i, h, w, ib, ob = weight.shape
        return weight.transpose(0, 5, 1, 4, 2, 3).reshape(o * ob, i * ib, h, w)
    o, i, h, w, ob = weight.shape  # [O/ob, I, H, W, ob]
    return weight.transpose(0, 4, 1, 2, 3).reshape(o * ob, i, h, w)


def _per_channel(values: np.ndarray, layout: str) -> relax.Constant:
    """A per-output-channel vector shaped to broadcast against a conv output in `layout`."""
    match = _BLOCKED.match(layout)
    if match is None:
        return relax.const(values.reshape(1, -1, 1, 1))
    block = int(match.group(1))
    return relax.const(values.reshape(1, -1, 1, 1, block))
