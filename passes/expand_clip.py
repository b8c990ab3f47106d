"""expand-clip: R.clip(x, lo, hi) becomes R.minimum(R.maximum(x, lo), hi) with scalar bounds."""

from __future__ import annotations

import math

import tvm
from tvm import relax

from .registry import register_pass

_CLIP = tvm.ir.Op.get("relax.clip")


def _bound(value) -> float:
    return float(value.value) if hasattr(value, "value") else float(value)


@register_pass("expand-clip", scope="function")
class ExpandClip:
    """Rewrite clip into maximum then minimum against scalar constants of x's dtype (an infinite
    bound is dropped). Same values, elementwise either way.

    Why: TVM 0.27's ConvertLayout has no layout rule for clip, so a clip between two blocked
    convolutions (hard-sigmoid in squeeze-excite blocks, relu6) would force the data back to
    NCHW and out again; maximum / minimum against scalars keep the blocked layout.
    Options: none.
    Example (Relax TVMScript):
        before:  y = R.clip(x, 0, 6)     after:  a = R.maximum(x, R.const(0, "float32"))
                                                 y = R.minimum(a, R.const(6, "float32"))
    Leaves alone: everything but relax.clip.
    """

    def transform_function(self, func, mod, ctx):
        return _Expand().visit_expr(func)


@relax.expr_functor.mutator
class _Expand(relax.PyExprMutator):
    def visit_call_(self, call):
        call = super().visit_call_(call)
        if call.op != _CLIP:
            return call
        x, low, high = call.args
        dtype = call.ty.dtype
        out = x
        if _bound(low) != -math.inf:
            out = self.builder_.normalize(relax.op.maximum(out, relax.const(_bound(low), dtype)))
        if _bound(high) != math.inf:
            out = self.builder_.normalize(relax.op.minimum(out, relax.const(_bound(high), dtype)))
        return out
