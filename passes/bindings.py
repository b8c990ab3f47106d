"""What several passes read off a Relax function's bindings: how often each var is used, and
the value bound to each var."""

from __future__ import annotations

from collections import Counter

from tvm import relax


def use_counts(func: relax.Function) -> Counter:
    """var -> how many times the bindings and the function's result read it."""
    uses: Counter = Counter()

    def count(expr):
        if isinstance(expr, relax.Var):
            uses[expr] += 1

    for block in func.body.blocks:
        for binding in block.bindings:
            relax.analysis.post_order_visit(binding.value, count)
    relax.analysis.post_order_visit(func.body.body, count)
    return uses


def bound_values(func: relax.Function) -> dict:
    """var -> the value bound to it, over every block of `func`."""
    return {b.var: b.value for block in func.body.blocks for b in block.bindings}
