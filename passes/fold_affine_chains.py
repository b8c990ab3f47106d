"""fold-affine-chains: a chain of multiplies, adds and subtracts by constants becomes x * A + B."""

from __future__ import annotations

import numpy as np
import tvm
import tvm_ffi
from tvm import relax

from .bindings import use_counts
from .registry import register_pass

_AFFINE = {"relax.multiply", "relax.add", "relax.subtract"}


@register_pass("fold-affine-chains", scope="function")
class FoldAffineChains:
    """Rewrite a chain of float32 multiply / add / subtract ops, each by a constant (a scalar or
    a tensor that broadcasts), as one multiply and one add: ((x * a - b) + c) * d + e becomes
    x * (a * d) + ((c - b) * d + e). Each value inside the chain must have no other use.

    Why: after quantize-int8, an int8 conv's output goes through its requantization
    (* scale, - bias correction), the model's bias add and, in PP-OCRv4, a learnable affine
    block (* a + b) before its activation: five vector operations per output value in the
    kernel's fused epilogue, which bounds the narrow convs' speed. LLVM does not reassociate
    float arithmetic, so these stay five unless the graph folds them. The combined constants
    are computed in float64 and rounded once, so results may differ from the chain's in the
    last bits.
    Options: none.
    Example (Relax TVMScript, x: (1, 16), s, b, c per channel (1, 16)):
        before:  t = R.multiply(x, s)          after:  t = R.add(R.multiply(x, s * 2), b * 2 + 1)
                 u = R.subtract(t, b)
                 v = R.multiply(u, R.const(2.0))
                 y = R.add(v, R.const(1.0))
    Leaves alone: single ops; chains whose inner values have other uses (they end the chain);
    non-constant operands; other dtypes.
    """

    def transform_function(self, func, mod, ctx):
        chains = _chains(func)
        if not chains:
            return func
        return _Rewrite(chains).visit_expr(func)


def _affine_step(call):
    """(operand, constant values, op, constant first) if `call` is a float32 multiply / add /
    subtract of a Var by a constant, else None."""
    if not isinstance(call, relax.Call) or getattr(call.op, "name", None) not in _AFFINE:
        return None
    if str(getattr(call.ty, "dtype", "")) != "float32" or len(call.args) != 2:
        return None
    a, b = call.args
    for var, const, first in ((a, b, False), (b, a, True)):
        if isinstance(var, relax.Var) and isinstance(const, tvm.ir.Constant):
            value = const.value.numpy()
            if value.dtype == np.float32:
                return var, value.astype(np.float64), call.op.name, first
    return None


def _chains(func) -> dict:
    """call -> (root var, A, B) for each chain end of two or more steps."""
    uses = use_counts(func)
    form: dict = {}  # var -> (root, A, B, steps)
    ends: dict = {}
    for block in func.body.blocks:
        for binding in block.bindings:
            step = _affine_step(binding.value)
            if step is None:
                continue
            var, c, op, first = step
            root, mul, add, steps = form.get(var, (var, 1.0, 0.0, 0))
            if uses[var] != 1:
                root, mul, add, steps = var, 1.0, 0.0, 0  # a value read elsewhere starts anew
            else:
                ends.pop(var, None)  # absorbed: no longer an end
            if op == "relax.multiply":
                mul, add = mul * c, add * c
            elif op == "relax.add":
                add = add + c
            elif first:  # c - v
                mul, add = -mul, c - add
            else:
                add = add - c
            form[binding.var] = (root, mul, add, steps + 1)
            if steps + 1 >= 2:
                ends[binding.var] = binding.value
    return {ends[v]: form[v][:3] for v in ends}


@relax.expr_functor.mutator
class _Rewrite(relax.PyExprMutator):
    def __init__(self, chains: dict):
        super().__init__()
        self.chains = chains

    def visit_call_(self, call):
        if call not in self.chains:
            return super().visit_call_(call)
        root, mul, add = self.chains[call]
        x = self.visit_expr(root)
        mul, add = np.asarray(mul, "f4"), np.asarray(add, "f4")
        scaled = self.builder_.normalize(relax.op.multiply(x, relax.const(mul)))
        short = scaled if np.all(add == 0) else relax.op.add(scaled, relax.const(add))
        if np.all(mul == 1):
            short = relax.op.add(x, relax.const(add))
        short = self.builder_.normalize(short)
        if tvm_ffi.structural_equal(short.ty, call.ty):
            return short  # a dropped all-ones / all-zeros constant did not set the shape
        return relax.op.add(scaled, relax.const(add))
