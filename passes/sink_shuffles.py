"""sink-shuffles: elementwise ops after a pure data shuffle run before it instead."""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

from .bindings import bound_values, use_counts
from .registry import register_pass

_SHUFFLES = ("relax.reshape", "relax.permute_dims")
_BINARY = ("relax.add", "relax.subtract", "relax.multiply", "relax.divide", "relax.maximum",
           "relax.minimum")  # fmt: skip
_UNARY = ("relax.nn.relu", "relax.sigmoid")
_CASTS = ("relax.quantize", "relax.dequantize", "relax.astype")


@register_pass("sink-shuffles", scope="function")
class SinkShuffles:
    """Move a pure data shuffle (a chain of reshape / permute_dims, each result used once: a
    depth-to-space) below the elementwise ops after it when they end in a narrower type (a
    quantize): shuffle(y) -> f1 -> ... -> quantize becomes y -> f1' -> ... -> quantize ->
    shuffle, each constant operand shuffled back to match. The ops then join the epilogue of
    the kernel that produced y, and the shuffle moves the narrow values.
    Why: det's head upsamples by a transposed conv that conv-transpose-to-conv1x1 made a 1x1
    conv and a depth-to-space; its batch norm, ReLU and, in int8, the next conv's quantize
    follow the shuffle, so the conv wrote fp32 and the shuffle's kernel read it back. After
    the move the conv's epilogue quantizes and the shuffle moves bytes: a quarter of the
    traffic. The same operations on the same elements: results are bit-identical. A chain
    that does not narrow stays: moved into a conv's epilogue (det's final sigmoid) it ran in
    the conv's narrow output blocks instead of the shuffle's full rows, 0.3 ms against 0.2.
    Elementwise here: add, subtract, multiply, divide, maximum, minimum with a constant
    operand; relu, sigmoid; quantize / dequantize / astype (quantize with a one-element scale
    and zero point).
    Example (Relax TVMScript, c per channel of s):
        before:  s = R.permute_dims(y, [0, 2, 1]); r = R.add(s, c)
                 q = R.quantize(r, s0, z0, out_dtype="uint8")
        after:   t = R.add(y, c2); u = R.quantize(t, s0, z0, out_dtype="uint8")
                 q = R.permute_dims(u, [0, 2, 1])   # c2: c shuffled back
    Leaves alone: a chain that does not end narrower than the shuffle's data, a shuffle or op
    result with another use, an op of two computed values, an op that broadcasts to a larger
    shape, and a constant that shuffled back is no longer a small broadcast (more than 65536
    elements: it would vary along the axes it broadcast over).
    """

    def transform_function(self, func, mod, ctx):
        return _Sink(func).visit_expr(func)


def _shape(expr) -> tuple[int, ...] | None:
    try:
        return tuple(int(d) for d in expr.ty.shape)
    except (TypeError, AttributeError):  # symbolic or unknown
        return None


# a shuffled-back constant larger than this is left alone (it would not be a broadcast)
_MAX_CONSTANT = 1 << 16


@relax.expr_functor.mutator
class _Sink(relax.PyExprMutator):
    def __init__(self, func: relax.Function):
        super().__init__()
        self.uses, self.bound = use_counts(func), bound_values(func)

    def visit_call_(self, call):
        original = call
        call = super().visit_call_(call)
        found = self._chain(original)
        if found is None:
            return call
        ops, (source, steps) = found
        shape, rank = steps[-1][2], len(steps[0][1])
        if any(_shape(op) != shape for op in ops) or _itemsize(original) >= _itemsize(source):
            return call  # a broadcast to another shape, or nothing narrower to move
        moved_args = []
        for op in ops:
            args = list(op.args)
            for i, arg in enumerate(op.args):
                if not isinstance(arg, tvm.ir.Constant):
                    continue
                value = arg.value.numpy()
                if value.size == 1:
                    args[i] = arg if value.ndim <= rank else relax.const(value.reshape(()))
                    continue
                back = _unshuffle(value, steps)
                if back is None:
                    return call
                args[i] = relax.const(back, str(value.dtype))
            moved_args.append(args)
        value = source
        for op, args in zip(ops, moved_args, strict=True):
            args[_data_operand(op)] = value
            value = self.builder_.emit(relax.Call(op.op, args, op.attrs, op.ty_args))
        for name, _, out_shape, attrs in steps[:-1]:
            value = self.builder_.emit(_step(value, name, out_shape, attrs))
        name, _, out_shape, attrs = steps[-1]
        return _step(value, name, out_shape, attrs)

    def _chain(self, last):
        """(the elementwise ops from a shuffle's result to `last`, in order; (source, steps))
        when each value on the way is used once, else None."""
        ops, op = [], last
        while _is_elementwise(op):
            ops.insert(0, op)
            data = op.args[_data_operand(op)]
            if self.uses.get(data, 0) != 1:
                return None
            shuffle = self._shuffle(data)
            if shuffle is not None:
                return ops, shuffle
            op = self.bound.get(data)
        return None

    def _shuffle(self, var):
        """(source, steps) if `var` is a shuffle of `source`, each step used once; steps: (op
        name, its argument's shape, its result's shape, attrs), in order; source: the value in
        the new function. Else None."""
        steps, source = [], var
        while True:
            value = self.bound.get(source)
            if getattr(getattr(value, "op", None), "name", None) not in _SHUFFLES:
                break
            shapes = _shape(value.args[0]), _shape(value)
            if None in shapes or self.uses.get(source, 0) != 1:
                return None
            steps.insert(0, (value.op.name, shapes[0], shapes[1], value.attrs))
            source = value.args[0]
        if not steps or not isinstance(source, relax.Var):
            return None
        return self.visit_expr(source), steps


def _is_elementwise(call) -> bool:
    return (
        isinstance(call, relax.Call)
        and getattr(call.op, "name", None) in _BINARY + _UNARY + _CASTS
        and _data_operand(call) is not None
    )


def _itemsize(expr) -> int:
    return np.dtype(str(expr.ty.dtype)).itemsize


def _data_operand(call) -> int | None:
    """The index of the one computed operand, every other one a constant (a quantize's scale
    and zero point of one element), else None."""
    computed = [i for i, a in enumerate(call.args) if not isinstance(a, tvm.ir.Constant)]
    if len(computed) != 1 or not isinstance(call.args[computed[0]], relax.Var):
        return None
    if call.op.name in _CASTS[:2] and any(a.value.numpy().size != 1 for a in call.args[1:]):
        return None
    return computed[0]


def _step(value, name, out_shape, attrs):
    if name == "relax.reshape":
        return relax.op.reshape(value, out_shape)
    return relax.op.permute_dims(value, [int(a) for a in attrs.axes])


def _unshuffle(const: np.ndarray, steps) -> np.ndarray | None:
    """The constant that, broadcast against the shuffle's source, gives each element the
    operand `const` broadcast against the shuffle's result gave it: `const` at full size moved
    back through the steps, then every axis it is constant along cut to 1; None if that is
    larger than _MAX_CONSTANT elements."""
    full = np.broadcast_to(const, steps[-1][2])
    for name, in_shape, _, attrs in reversed(steps):
        if name == "relax.reshape":
            full = full.reshape(in_shape)
        else:
            full = full.transpose(np.argsort([int(a) for a in attrs.axes]))
    for axis in range(full.ndim):
        first = np.take(full, [0], axis=axis)
        if np.array_equal(np.broadcast_to(first, full.shape), full):
            full = first
    if full.size > _MAX_CONSTANT:
        return None
    return np.ascontiguousarray(full)
