"""fake-quantize: int8 quantize -> dequantize around every calibrated conv2d / matmul input, and
its weights rounded to int8 per output channel, all computed in fp32 (what QAT simulates)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tvm
from tvm import relax

from tilecc.compiler.calibration import bias_shift, quantize_weight, weight_scales
from tilecc.compiler.errors import PassOptionError

from .registry import register_pass

_AXIS = {"relax.nn.conv2d": 0, "relax.matmul": -1}  # the weights' output-channel axis


@register_pass("fake-quantize", scope="function")
class FakeQuantize:
    """Simulate int8 inference in fp32: the activation input of each conv2d / matmul the
    quantization table (`tilecc quantize`) names (`<op>:<k>`, the k-th such op) becomes
    dequantize(quantize(x)) with the table's scale and zero point, and each constant weight is
    replaced by its int8 per-channel (symmetric) rounding times its scale. Where the table
    holds the input's per-channel mean, the mean shift the rounding causes is subtracted from
    the output (bias correction); where it holds a measured `output_shift` (calibrated with
    empirical bias correction, weights rounded as here), that is subtracted instead. The int8
    accuracy preview before deploying.
    Options: table (path of the JSON table), per-channel (weights per output channel, default
    true; false: one scale per tensor), weight-max (weights rounded to [-weight-max,
    weight-max]: 127, or 63 where the target's int8 kernels take 7-bit weights),
    bias-correction (default true; applies where the table has `channel_mean`),
    quantized-resize (default true: a nearest-neighbour resize of an activation the table
    quantizes reads the quantized value, as the int8 build copies its 8-bit codes).
    Example (x calibrated to scale s, zero point z, mean m):
        before:  y = R.nn.conv2d(x, W); u = R.image.resize2d(x, ..., method="nearest_neighbor")
        after:   q = R.quantize(x, s, z); x2 = R.dequantize(q, s, z)
                 y = R.subtract(R.nn.conv2d(x2, W8), shift)  # shift = E[(W8 - W) x] from m
                 u = R.image.resize2d(x2, ..., method="nearest_neighbor")
    Leaves alone: inputs the table does not name, weights computed at run time.
    """

    def __init__(
        self,
        table: str = "",
        per_channel: bool = True,
        weight_max: int = 127,
        bias_correction: bool = True,
        quantized_resize: bool = True,
    ):
        if not table:
            raise PassOptionError("fake-quantize", "table", table)
        try:
            data = json.loads(Path(table).read_text())
            self.activations = data["activations"]
            self.shift_weight_max = data.get("output_shift_weight_max")
        except (OSError, ValueError, KeyError) as exc:
            raise PassOptionError("fake-quantize", "table", f"{table} ({exc})") from exc
        if not 1 <= weight_max <= 127:
            raise PassOptionError("fake-quantize", "weight-max", weight_max)
        self.per_channel, self.weight_max = per_channel, weight_max
        self.bias_correction, self.quantized_resize = bias_correction, quantized_resize

    def transform_function(self, func, mod, ctx):
        return _FakeQuantize(self, quantized_inputs(func, self.activations)).visit_expr(func)


def is_anchor(call) -> bool:
    """A conv2d / matmul with constant weights on an activation: what int8 runs."""
    return (
        isinstance(call, relax.Call)
        and getattr(call.op, "name", None) in _AXIS
        and isinstance(call.args[0], relax.Var)
        and isinstance(call.args[1], tvm.ir.Constant)
    )


def anchor_key(call: relax.Call, index: int) -> str:
    """The table's key of the `index`-th anchor: `conv2d:3`, `matmul:7`."""
    return f"{call.op.name.split('.')[-1]}:{index}"


def anchors(func: relax.Function) -> list[tuple[str, relax.Call]]:
    """(key, call) of every anchor in `func`, in binding order: the table's numbering."""
    found = []
    for block in func.body.blocks:
        for binding in block.bindings:
            if is_anchor(binding.value):
                found.append((anchor_key(binding.value, len(found)), binding.value))
    return found


def quantized_inputs(func: relax.Function, activations: dict) -> dict:
    """activation -> the table's parameters of the first anchor in `func` that takes it (the
    values the int8 build quantizes)."""
    found = {}
    for key, call in anchors(func):
        if key in activations:
            found.setdefault(call.args[0], activations[key])
    return found


def is_nearest_resize(call) -> bool:
    """A nearest-neighbour resize2d of fp32 data: it only copies elements, so it commutes with
    quantization, and on a quantized value it can copy the 8-bit codes."""
    return (
        isinstance(call, relax.Call)
        and getattr(call.op, "name", None) == "relax.image.resize2d"
        and str(call.attrs.method) == "nearest_neighbor"
        and str(call.attrs.out_dtype) in ("None", "void", "")  # the output takes the input's
        and isinstance(call.args[0], relax.Var)
        and getattr(call.args[0].ty, "dtype", None) == "float32"
    )


@relax.expr_functor.mutator
class _FakeQuantize(relax.PyExprMutator):
    def __init__(self, opts: FakeQuantize, inputs: dict):
        super().__init__()
        self.activations = opts.activations
        self.inputs = inputs if opts.quantized_resize else {}  # resizes read these quantized
        self.per_channel, self.weight_max = opts.per_channel, opts.weight_max
        self.bias_correction = opts.bias_correction
        self.measured = opts.shift_weight_max == opts.weight_max  # output_shift applies
        self.count = 0  # conv2d / matmul with constant weights seen so far: the table's key
        self.done: dict = {}  # activation -> its dequantized value (emitted once)

    def visit_call_(self, call):
        original = call
        call = super().visit_call_(call)
        if is_nearest_resize(original) and original.args[0] in self.inputs:
            x = self._dequantized(original.args[0], call.args[0], self.inputs[original.args[0]])
            return relax.Call(call.op, [x, *call.args[1:]], call.attrs, call.ty_args)
        if not is_anchor(original):
            return call
        name = original.op.name
        key = anchor_key(original, self.count)
        self.count += 1
        params = self.activations.get(key)
        if params is None:
            return call
        x = self._dequantized(original.args[0], call.args[0], params)
        w = call.args[1].value.numpy()
        axis = _AXIS[name] % w.ndim
        scales = weight_scales(w, self.per_channel, axis, self.weight_max)
        shape = [1] * w.ndim
        shape[axis] = -1
        w8 = quantize_weight(w, scales, axis, self.weight_max).astype(np.float32)
        fake = (w8 * (scales.reshape(shape) if scales.size > 1 else scales[0])).astype(np.float32)
        out = relax.Call(call.op, [x, relax.const(fake)], call.attrs, call.ty_args)
        shift = self._shift(original, w, fake, params)
        if shift is None:
            return out
        return relax.op.subtract(self.builder_.emit(out), relax.const(shift))

    def _dequantized(self, x, value, params):
        """dequantize(quantize(value)) with `params`: activation `x` as int8 sees it (emitted
        once per activation)."""
        if x not in self.done:
            scale = relax.const(np.float32(params["scale"]))
            zero = relax.const(np.int8(params["zero_point"]))
            q = self.builder_.emit(relax.op.quantize(value, scale, zero, out_dtype="int8"))
            self.done[x] = self.builder_.emit(relax.op.dequantize(q, scale, zero))
        return self.done[x]

    def _shift(self, call, weight, fake, params):
        """The bias correction of `call` shaped to broadcast against its output, or None."""
        mean = params.get("channel_mean")
        if not self.bias_correction or mean is None:
            return None
        measured = params.get("output_shift") if self.measured else None
        if call.op.name == "relax.matmul":
            shift = measured if measured is not None else bias_shift(weight, fake, mean, "matmul")
            return None if shift is None else np.asarray(shift, np.float32)
        attrs = call.attrs
        if (str(attrs.data_layout), str(attrs.out_layout), str(attrs.kernel_layout)) != (
            "NCHW", "NCHW", "OIHW"
        ):  # fmt: skip
            return None
        if measured is None:
            measured = bias_shift(weight, fake, mean, "conv2d", int(attrs.groups))
        return None if measured is None else np.asarray(measured, np.float32).reshape(1, -1, 1, 1)
