"""simplify-reshape: collapse reshape/squeeze/expand_dims/flatten chains and permute_dims pairs."""

from __future__ import annotations

from functools import partial, reduce

import tvm_ffi
from tvm import relax
from tvm.relax.dpl import is_op, rewrite_call, wildcard

from .registry import register_pass

# Ops whose result is their input's elements in the same (row-major) order, only re-shaped:
# any chain of them equals one reshape to the last op's shape.
_RESHAPE_LIKE = ("reshape", "squeeze", "expand_dims", "flatten")
_MAX_ROUNDS = 64  # each round removes at least one op, so real graphs stop far earlier


def _reshape_like(arg):
    ops = reduce(lambda a, b: a | b, (is_op(f"relax.{op}") for op in _RESHAPE_LIKE))
    return ops(arg, varg_default_wildcard=True)


def _known_shape(expr):
    # ty.shape is None when the shape is unknown; structural_equal(None, None) would say "same".
    return getattr(expr.ty, "shape", None)


def _same_shape(a, b) -> bool:
    shape_a, shape_b = _known_shape(a), _known_shape(b)
    return (
        shape_a is not None and shape_b is not None and tvm_ffi.structural_equal(shape_a, shape_b)
    )


def _axes(call) -> list[int] | None:
    """The permutation a permute_dims applies; None when axes=None on a tensor of unknown rank."""
    if call.attrs.axes is not None:
        return [int(a) for a in call.attrs.axes]
    ndim = call.args[0].ty.ndim
    return list(range(ndim))[::-1] if ndim >= 0 else None


@register_pass("simplify-reshape", scope="function")
class SimplifyReshape:
    """Fold reshape-like chains into one reshape and permute_dims pairs into one permute_dims.

    Rules, applied until none fires:
      * reshape/squeeze/expand_dims/flatten of reshape/squeeze/expand_dims/flatten of x
        -> reshape(x, final shape), or x when the final shape is x's shape;
      * a single reshape-like op whose result has its input's shape -> its input;
      * permute_dims(permute_dims(x, p1), p2) -> permute_dims(x, [p1[i] for i in p2]),
        or x when that is the identity.
    Options:
        compose_permutes (bool) = True: apply the permute_dims rule.
            Text form: simplify-reshape{compose-permutes=false}
    Example (Relax TVMScript):
        before:  a = R.reshape(x, (6, 4))         after:  b = R.reshape(x, (1, 24))
                 b = R.expand_dims(R.flatten(a), [0])
    Leaves alone: a reshape-like op that changes its input's shape; reshape -> permute_dims ->
    reshape (ShuffleNet's channel shuffle: the permute moves data); ops whose shapes are unknown;
    an inner op others still use (it stays, only the outer op is rewritten); a function where no
    rule fires is returned as is; impure calls. When a rule fires, `rewrite_call` also drops
    pure bindings left unused and merges structurally equal pure bindings (as dce and cse would).
    """

    def __init__(self, compose_permutes: bool = True):
        self._x = wildcard()
        inner = _reshape_like(self._x)
        self._rules = [
            (_reshape_like(inner), self._collapse_chain),
            (_reshape_like(self._x), self._drop_identity),
        ]
        if compose_permutes:
            self._inner_permute = is_op("relax.permute_dims")(self._x)
            outer = is_op("relax.permute_dims")(self._inner_permute)
            self._rules.append((outer, self._compose_permutes))

    def transform_function(self, func, mod, ctx):
        # rewrite_call removes unused pure bindings even when nothing matched: keep the input
        # function unless some rule really fired. A rule can expose another (a permute pair
        # that cancels leaves two reshapes adjacent), so loop until a round changes nothing.
        result, fired_any = func, False
        for _ in range(_MAX_ROUNDS):
            fired = []
            for pattern, rule in self._rules:
                result = rewrite_call(pattern, partial(self._apply, rule, fired), result)
            if not fired:
                break
            fired_any = True
        return result if fired_any else func

    def _apply(self, rule, fired, call, matches):
        new = rule(call, matches)
        if new is not call:
            fired.append(call)
        return new

    def _collapse_chain(self, call, matches):
        x = matches[self._x]
        if _same_shape(call, x):
            return x
        if _known_shape(call) is None:
            return call
        return relax.op.reshape(x, call.ty.shape)

    def _drop_identity(self, call, matches):
        x = matches[self._x]
        return x if _same_shape(call, x) else call

    def _compose_permutes(self, call, matches):
        first, second = _axes(matches[self._inner_permute]), _axes(call)
        if first is None or second is None or len(first) != len(second):
            return call
        composed = [first[i] for i in second]
        x = matches[self._x]
        if composed == list(range(len(composed))):
            return x
        return relax.op.permute_dims(x, composed)
