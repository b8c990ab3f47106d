"""pad-channels: round a conv's output channels up to a multiple, with zero filters, where
only convs read them, so both convs can take a blocked NCHW[x]c layout."""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

from tilecc.compiler.errors import PassOptionError

from .registry import register_pass

_CONV = "relax.nn.conv2d"
# ops that keep a padded channel finite when it is finite (its value is then ignored by the
# zero weights of the convs that read it); an op like log or a division by data could make a
# NaN that zero weights would not cancel
_ELEMENTWISE = {
    "relax.add", "relax.subtract", "relax.multiply", "relax.maximum", "relax.minimum",
    "relax.divide", "relax.clip", "relax.nn.relu", "relax.sigmoid", "relax.tanh",
    "relax.nn.silu", "relax.nn.gelu",
}  # fmt: skip
_PAD_VALUE = {"relax.divide": 1.0}  # a padded constant divisor must not be 0


@register_pass("pad-channels", scope="function")
class PadChannels:
    """Give a conv2d whose output channel count C is not a multiple of `multiple` C' extra
    output filters of zeros (C' the next multiple), when its output reaches only convs, through
    elementwise ops: per-channel constants on the way get C' - C padding entries, and each conv
    that reads the value gets zero weights for the new input channels. The result is exact (the
    padded channels hold finite values that zero weights ignore) and the convs on both sides
    become blockable: convert-layout-nchwc blocks channels only in multiples of its block, and
    a conv it leaves in NCHW costs two layout transforms and stays out of int8 (PP-OCRv4 det's
    FPN reduces 48, 96 and 192 channels to 12, 18 and 42 before expanding them to 96).
    Runs before convert-layout-nchwc.

    Options:
        multiple (int) = 8: the channel multiple; the target's smallest useful block.
            Text form: pad-channels{multiple=4}
    Example (multiple=8, x: (1, 48, 8, 8), b: (1, 12, 1, 1)):
        before:  a = R.nn.conv2d(x, W1)            # W1: (12, 48, 1, 1)
                 c = R.add(a, b)
                 y = R.nn.conv2d(c, W2)            # W2: (96, 12, 1, 1)
        after:   a = R.nn.conv2d(x, W1p)           # W1p: (16, 48, 1, 1), filters 12..15 zero
                 c = R.add(a, bp)                  # bp: (1, 16, 1, 1), entries 12..15 zero
                 y = R.nn.conv2d(c, W2p)           # W2p: (96, 16, 1, 1), inputs 12..15 zero
    A conv whose output reaches anything else (a function output, a reduction, a reshape)
    but whose input channels are a multiple already is padded too, and a strided_slice gives
    the other ops their C channels back: the conv is then blockable (PP-OCRv4 det's last 1x1
    conv, 24 -> 4 channels before the final shuffle, reads its blocked input as it is).
    Leaves alone: convs whose output (or a value computed from it) reaches anything but an
    allowed elementwise op or the data input of a plain NCHW conv, when their input channels
    are not a multiple either; grouped and depthwise convs as producers; weights that are not
    constants; non-NCHW layouts.
    """

    def __init__(self, multiple: int = 8):
        if multiple < 2:
            raise PassOptionError("pad-channels", "multiple", multiple, known=["an int >= 2"])
        self.multiple = multiple

    def transform_function(self, func, mod, ctx):
        plan = _plan(func, self.multiple)
        if not plan:
            return func
        return _Pad(plan).visit_expr(func)


def _is_call(expr, name: str) -> bool:
    return isinstance(expr, relax.Call) and getattr(expr.op, "name", None) == name


def _plain_conv(call) -> bool:
    """An NCHW / OIHW conv2d, not grouped, with a constant weight of static shape."""
    if not _is_call(call, _CONV) or not isinstance(call.args[1], tvm.ir.Constant):
        return False
    a = call.attrs
    layouts = (str(a.data_layout), str(a.kernel_layout), str(a.out_layout))
    return layouts == ("NCHW", "OIHW", "NCHW") and int(a.groups) == 1


def _channel_constant(expr, channels: int) -> bool:
    """A constant that broadcasts against NCHW data per channel, per pixel or as a scalar."""
    if not isinstance(expr, tvm.ir.Constant) or len(expr.value.shape) > 4:
        return False
    shape = [int(d) for d in expr.value.shape]
    return len(shape) < 3 or shape[-3] in (1, channels)


def _plan(func: relax.Function, multiple: int) -> dict:
    """{original call: {role: padded channels}} for every conv output worth padding; a role is
    'producer' (pad its filters), 'elementwise' (pad its per-channel constants) or 'consumer'
    (pad its weights' input channels)."""
    users: dict = {}
    bound = {}
    for block in func.body.blocks:
        for binding in block.bindings:
            bound[binding.var] = binding.value
            for arg in _var_args(binding.value):
                users.setdefault(arg, []).append(binding)
    outputs = set(_var_args(func.body.body)) | {
        b.var
        for block in func.body.blocks
        if isinstance(block, relax.DataflowBlock)
        for b in block.bindings
        if not isinstance(b.var, relax.DataflowVar)
    }
    plan = {}
    for var, value in bound.items():
        if not _plain_conv(value):
            continue
        channels = int(value.args[1].value.shape[0])
        padded = -(-channels // multiple) * multiple
        if padded == channels:
            continue
        roles = _reach(var, channels, users, outputs)
        if roles is None or not any(r == "consumer" for r in roles.values()):
            inputs = int(value.args[1].value.shape[1])  # OIHW, not grouped: the data's channels
            if inputs % multiple == 0:  # padded, the conv is blockable: slice after
                plan.setdefault(value, {}).update(producer=padded, slice=channels)
            continue
        plan.setdefault(value, {})["producer"] = padded
        for call, role in roles.items():  # a conv can be one producer's consumer and a producer
            plan.setdefault(call, {})[role] = padded
    return plan


def _var_args(expr) -> list:
    if isinstance(expr, relax.Call):
        return [a for a in expr.args if isinstance(a, relax.Var)] + [
            v for a in expr.args if isinstance(a, relax.Tuple) for v in a.fields
            if isinstance(v, relax.Var)
        ]  # fmt: skip
    if isinstance(expr, relax.Tuple):
        return [f for f in expr.fields if isinstance(f, relax.Var)]
    if isinstance(expr, relax.Var):
        return [expr]
    return []


def _reach(start, channels: int, users: dict, outputs: set) -> dict | None:
    """The calls `start` flows into ({call: role}), or None when one of them cannot be padded."""
    roles, frontier, reached = {}, [start], {start}
    while frontier:
        var = frontier.pop()
        if var in outputs:
            return None
        for binding in users.get(var, []):
            call = binding.value
            if _plain_conv(call) and call.args[0].same_as(var):
                roles[call] = "consumer"
                continue
            if not _elementwise(call, channels, binding.var):
                return None
            roles[call] = "elementwise"
            if binding.var not in reached:
                reached.add(binding.var)
                frontier.append(binding.var)
    for call, role in roles.items():  # every operand must itself be padded (or a constant)
        if role == "elementwise" and any(
            isinstance(arg, relax.Var) and arg not in reached for arg in call.args
        ):
            return None
    return roles


def _elementwise(call, channels: int, result) -> bool:
    """An allowed elementwise op on the padded value, its constants per channel, whose result
    keeps the NCHW shape with `channels` channels."""
    if not isinstance(call, relax.Call) or getattr(call.op, "name", None) not in _ELEMENTWISE:
        return False
    for arg in call.args:
        if isinstance(arg, tvm.ir.Constant) and not _channel_constant(arg, channels):
            return False
    if call.op.name == "relax.divide" and not isinstance(call.args[1], tvm.ir.Constant):
        return False
    shape = result.ty.shape
    if shape is None or len(shape) != 4:
        return False
    return isinstance(shape[1], tvm.tirx.IntImm) and int(shape[1]) == channels


def _pad_axis(array: np.ndarray, axis: int, size: int, value: float = 0.0) -> np.ndarray:
    width = [(0, 0)] * array.ndim
    width[axis] = (0, size - array.shape[axis])
    return np.pad(array, width, constant_values=value)


@relax.expr_functor.mutator
class _Pad(relax.PyExprMutator):
    def __init__(self, plan: dict):
        super().__init__()
        self.plan = plan

    def visit_call_(self, call):
        if call not in self.plan:
            return super().visit_call_(call)
        original, roles = call, self.plan[call]
        # the constants are padded before the call is rebuilt: with its input padded and its
        # constants not, it would not type-check
        args = [self.visit_expr(arg) for arg in call.args]
        if "producer" in roles:
            args[1] = relax.const(_pad_axis(args[1].value.numpy(), 0, roles["producer"]))
        if "consumer" in roles:
            args[1] = relax.const(_pad_axis(args[1].value.numpy(), 1, roles["consumer"]))
        if "elementwise" in roles:
            fill = _PAD_VALUE.get(original.op.name, 0.0)
            for i, arg in enumerate(args):
                if isinstance(arg, tvm.ir.Constant) and len(arg.value.shape) >= 3:
                    data = arg.value.numpy()
                    if data.shape[-3] != 1:
                        padded = roles["elementwise"]
                        args[i] = relax.const(_pad_axis(data, data.ndim - 3, padded, fill))
        padded_call = relax.Call(call.op, args, call.attrs, call.ty_args)
        if "slice" not in roles:
            return padded_call
        return relax.op.strided_slice(
            self.builder_.emit(padded_call), axes=[1], begin=[0], end=[roles["slice"]]
        )
