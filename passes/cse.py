"""cse: merge pure expressions that compute the same value into one binding."""

from __future__ import annotations

from tvm import relax

from .registry import register_pass


@register_pass("cse", scope="module")  # EliminateCommonSubexpr is itself a per-function pass
class Cse:
    """Replace a repeated pure expression by the variable first bound to it.

    Wraps `relax.transform.EliminateCommonSubexpr`: within each function (and within each nested
    function), a binding whose value is structurally equal to an earlier one in scope becomes an
    alias of it (`b = a`); later uses of such tuples and calls read the first variable.
    Options:
        call_only (bool) = False: merge only calls, not tuples or other expressions.
            Text form: cse{call-only=true}
    Example (Relax TVMScript):
        before:  a = R.add(x, x)          after:  a = R.add(x, x)
                 b = R.add(x, x)                  b = a
                 y = R.multiply(a, b)             y = R.multiply(a, a)
    Leaves alone: impure calls (R.print, calls in impure functions that are not pure ops), calls
    that differ in any argument or attribute (R.sum axis=[0] vs axis=[1]); the `b = a` aliases stay
    for `dce` (or Relax CanonicalizeBindings) to remove.
    """

    def __init__(self, call_only: bool = False):
        self.call_only = call_only

    def transform_module(self, mod, ctx):
        return relax.transform.EliminateCommonSubexpr(call_only=self.call_only)(mod)
