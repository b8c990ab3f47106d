"""scalarize-constants: a one-element constant operand of an elementwise op becomes a scalar."""

from __future__ import annotations

import tvm
from tvm import relax

from .registry import register_pass

_BINARY = {
    f"relax.{name}"
    for name in ("add", "subtract", "multiply", "divide", "maximum", "minimum", "power")
}


def _one_element(expr) -> bool:
    if not isinstance(expr, tvm.ir.Constant):
        return False
    shape = expr.value.shape
    return len(shape) > 0 and all(int(d) == 1 for d in shape)


@register_pass("scalarize-constants", scope="function")
class ScalarizeConstants:
    """Replace a constant operand of shape (1,), (1, 1, 1, 1), ... of add / subtract / multiply /
    divide / maximum / minimum / power by the same value with shape (), when the other operand has
    at least as many dimensions (so the result's shape is unchanged).

    Why: layout conversion cannot carry a blocked layout through a broadcast against a rank-1 or
    rank-4 constant, but can against a scalar. PP-OCRv4's learnable affine blocks (scale * x +
    bias with (1,)-shaped scale and bias) follow every conv of its backbone.
    Options: none.
    Example (Relax TVMScript, x: (1, 16, 8, 8)):
        before:  y = R.multiply(R.const([2.0]), x)      after:  y = R.multiply(R.const(2.0), x)
    Leaves alone: constants with more than one element; an operand of higher rank than the other
    (it would change the result's rank); non-constant operands.
    """

    def transform_function(self, func, mod, ctx):
        return _Scalarize().visit_expr(func)


@relax.expr_functor.mutator
class _Scalarize(relax.PyExprMutator):
    def visit_call_(self, call):
        call = super().visit_call_(call)
        if getattr(call.op, "name", None) not in _BINARY or len(call.args) != 2:
            return call
        args = list(call.args)
        changed = False
        for i in (0, 1):
            other = args[1 - i]
            ndim = getattr(other.ty, "ndim", -1)
            if _one_element(args[i]) and ndim >= len(args[i].value.shape):
                value = args[i].value.numpy().reshape(())
                args[i] = relax.const(value, str(value.dtype))
                changed = True
        if not changed:
            return call
        return relax.Call(call.op, args, call.attrs, call.ty_args)
