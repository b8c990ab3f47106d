"""dce: remove bindings and functions that nothing reachable from the entry functions uses."""

from __future__ import annotations

from tvm import relax

from .registry import register_pass


@register_pass("dce", scope="module")  # unused functions are a module-wide property
class Dce:
    """Remove unused bindings, and functions unreachable from the entry functions.

    Wraps `relax.transform.DeadCodeElimination`: pure bindings whose variable is never used are
    dropped, then functions no entry function calls (directly or through another function).
    Options:
        entry_functions (tuple[str, ...]) = ("main",): functions that are kept and walked from.
            Text form: dce{entry-functions=main,init}
    Example (Relax TVMScript):
        before:  y = R.add(x, x)          after:  y = R.add(x, x)
                 z = R.multiply(x, x)
                 R.output(y)                      R.output(y)
    Leaves alone: impure calls (they may have side effects), functions with an entry name or
    reachable from one, public functions given as entries.
    """

    def __init__(self, entry_functions: tuple[str, ...] = ("main",)):
        self.entry_functions = list(entry_functions)

    def transform_module(self, mod, ctx):
        return relax.transform.DeadCodeElimination(self.entry_functions)(mod)
