"""fold-constant: evaluate operators whose inputs are all constants at compile time."""

from __future__ import annotations

from tvm import relax

from .registry import register_pass


@register_pass("fold-constant", scope="module")  # FoldConstant builds TIR kernels: module-wide
class FoldConstant:
    """Evaluate Relax ops whose inputs are all constants, replacing each call by its result.

    Wraps `relax.transform.FoldConstant`: each foldable call inside a dataflow block is legalized,
    compiled for the host and run once; its result replaces the call as an `R.const`.
    Options: none.
    Example (Relax TVMScript):
        before:  c = R.add(R.const(1, "float32"), R.const(2, "float32"))
                 y = R.add(x, c)
        after:   c = R.const(3, "float32")
                 y = R.add(x, R.const(3, "float32"))
    Leaves alone: calls with a non-constant input; calls outside dataflow blocks (they may have
    side effects); the now-unused constant bindings stay for `dce` to remove.
    """

    def transform_module(self, mod, ctx):
        return relax.transform.FoldConstant()(mod)
