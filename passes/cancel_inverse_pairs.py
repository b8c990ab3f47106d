"""cancel-inverse-pairs: drop a permute_dims/reshape/layout_transform that the next op undoes."""

from __future__ import annotations

from functools import partial

import tvm
import tvm_ffi
from tvm.relax.dpl import is_op, rewrite_call, wildcard
from tvm.sym import Analyzer

from tilecc.compiler.errors import PassOptionError

from .registry import register_pass


def _axes(call) -> list[int] | None:
    """The permutation a permute_dims applies; None for axes=None (reverse all) of unknown rank."""
    if call.attrs.axes is not None:
        return [int(a) for a in call.attrs.axes]
    ndim = call.args[0].ty.ndim
    return list(range(ndim))[::-1] if ndim >= 0 else None


def _permute_undone(inner, outer) -> bool:
    first, second = _axes(inner), _axes(outer)
    if first is None or second is None or len(first) != len(second):
        return False
    return [first[i] for i in second] == list(range(len(first)))


def _reshape_undone(inner, outer) -> bool:
    # structural_equal(None, None) is True: an unknown shape must not count as "restored".
    restored, original = outer.ty.shape, inner.args[0].ty.shape
    if restored is None or original is None:
        return False
    return tvm_ffi.structural_equal(restored, original)


def _layout_undone(inner, outer) -> bool:
    """True when outer's index map applied after inner's is the identity on inner's input
    (NCHW -> NCHW16c -> NCHW), checked symbolically over the input's indices."""
    restored, original = outer.ty.shape, inner.args[0].ty.shape
    if restored is None or original is None or not tvm_ffi.structural_equal(restored, original):
        return False
    first, second = inner.attrs.index_map, outer.attrs.index_map
    if len(first.final_indices) != len(second.initial_indices):
        return False
    indices = [tvm.tirx.Var(f"i{k}", "int64") for k in range(len(first.initial_indices))]
    analyzer = Analyzer()
    for var, extent in zip(indices, original, strict=True):
        analyzer.bind(var, tvm.ir.Range(0, extent))
    composed = second.map_indices(first.map_indices(indices))
    return all(
        analyzer.can_prove_equal(got, want) for got, want in zip(composed, indices, strict=True)
    )


_UNDONE = {
    "permute_dims": _permute_undone,
    "reshape": _reshape_undone,
    "layout_transform": _layout_undone,
}


@register_pass("cancel-inverse-pairs", scope="function")
class CancelInversePairs:
    """Remove a permute_dims, reshape or layout_transform whose result the next op of the same
    kind restores.

    Options:
        ops (tuple[str, ...]) = ("permute_dims", "reshape", "layout_transform"): op kinds to
            cancel (layout_transform pairs are what convert-layout-nchwc leaves between a
            blocked region and an op it could not convert).
            Text form: cancel-inverse-pairs{ops=reshape}
    Example (Relax TVMScript):
        before:  a = R.permute_dims(x, [0, 2, 3, 1])    after:  y = R.nn.relu(x)
                 b = R.permute_dims(a, [0, 3, 1, 2])
                 y = R.nn.relu(b)
    Leaves alone: pairs that do not compose to the identity (a reshape pair whose shapes are
    unknown counts as not); `a` stays while others use it; a function where no pair cancels is
    returned as is; impure calls. When a pair cancels, `rewrite_call` also drops pure bindings
    left unused and merges structurally equal pure bindings (what dce and cse would do).
    """

    def __init__(self, ops: tuple[str, ...] = ("permute_dims", "reshape", "layout_transform")):
        if unknown := sorted(set(ops) - set(_UNDONE)):
            raise PassOptionError("cancel-inverse-pairs", "ops", unknown, known=sorted(_UNDONE))
        self._x, self._rules = wildcard(), []
        for op in ops:
            inner = is_op(f"relax.{op}")(self._x, varg_default_wildcard=True)
            outer = is_op(f"relax.{op}")(inner, varg_default_wildcard=True)
            self._rules.append((outer, inner, _UNDONE[op]))

    def transform_function(self, func, mod, ctx):
        # rewrite_call removes every unused pure binding even when nothing matched, so keep the
        # input function unless a pair really cancelled.
        fired = []
        result = func
        for outer, inner, undone in self._rules:
            result = rewrite_call(outer, partial(self._replace, inner, undone, fired), result)
        return result if fired else func

    def _replace(self, inner, undone, fired, call, matches):
        if not undone(matches[inner], call):
            return call
        fired.append(call)
        return matches[self._x]
