"""multiply-by-reciprocal: division by a constant becomes multiplication by its reciprocal."""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

from .registry import register_pass

_DIVIDE = tvm.ir.Op.get("relax.divide")
_QUANTIZE = tvm.ir.Op.get("relax.quantize")


def _reciprocal(expr, exact_only: bool):
    """1 / the float constant `expr` (same shape and dtype), or None if it should stay a divisor:
    not a float constant, a zero or non-finite entry, or (exact_only) a reciprocal that
    rounds."""
    if not isinstance(expr, tvm.ir.Constant):
        return None
    value = expr.value.numpy()
    if value.dtype.kind != "f":
        return None
    if value.size == 0 or not np.all(np.isfinite(value)) or np.any(value == 0):
        return None
    recip = (1.0 / value.astype(np.float64)).astype(value.dtype)
    if exact_only and not np.all(np.frexp(value)[0] == 0.5 * np.sign(value)):
        return None  # only powers of two have reciprocals that round-trip exactly
    return relax.const(recip, str(value.dtype))


@register_pass("multiply-by-reciprocal", scope="function")
class MultiplyByReciprocal:
    """Rewrite `divide(x, c)` with a float constant c as `multiply(x, 1 / c)`, and
    `quantize(x, s, z)` with a constant one-element scale s as `quantize(multiply(x, 1 / s), 1, z)`
    (TVM lowers quantize to round(x / s) + z, and x / 1 folds away in LLVM).

    Why: a vector division is about ten times the cost of a multiplication (vdivps issues once
    every few cycles), and LLVM keeps x / c as a division unless 1 / c is exact. In an int8
    conv's fused epilogue on det, the requantization's and hard-swish's divisions were as many
    instructions as the vpdpbusd dot products. Integer kernels' requantization (TFLite, ORT's
    MLAS) multiplies by a precomputed reciprocal scale in the same way.
    Numerics: x * (1 / c) may differ from x / c in the last bit (a quantized value may then round
    to the neighbouring step when x / c lies on a .5 tie); `exact-only=true` rewrites only the
    powers of two, whose reciprocals are exact, and keeps the results bit-identical.
    Options: exact-only (default false).
    Example (Relax TVMScript):
        before:  y = R.divide(x, R.const(6.0))      after:  y = R.multiply(x, R.const(1 / 6.0))
                 q = R.quantize(y, R.const(0.5), z)          q = R.quantize(R.multiply(y,
                                                                  R.const(2.0)), R.const(1.0), z)
    Leaves alone: non-constant divisors, divisors with a zero or non-finite entry, integer
    division, and quantize with a per-channel scale (its axis would need a broadcast).
    """

    def __init__(self, exact_only: bool = False):
        self.exact_only = exact_only

    def transform_function(self, func, mod, ctx):
        return _Rewrite(self.exact_only).visit_expr(func)


@relax.expr_functor.mutator
class _Rewrite(relax.PyExprMutator):
    def __init__(self, exact_only: bool):
        super().__init__()
        self.exact_only = exact_only

    def visit_call_(self, call):
        call = super().visit_call_(call)
        if call.op == _DIVIDE:
            recip = _reciprocal(call.args[1], self.exact_only)
            if recip is not None:
                return relax.op.multiply(call.args[0], recip)
        elif call.op == _QUANTIZE:
            x, scale, zero_point = call.args
            recip = _reciprocal(scale, self.exact_only)
            if recip is not None and int(np.prod(recip.value.shape)) == 1:
                scaled = self.builder_.normalize(relax.op.multiply(x, recip))
                dtype = recip.value.numpy().dtype
                one = relax.const(np.ones(recip.value.shape, dtype), str(dtype))
                return relax.op.quantize(
                    scaled, one, zero_point, call.attrs.axis, call.attrs.out_dtype
                )
        return call
