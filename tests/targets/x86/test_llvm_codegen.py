"""x86 LLVM codegen regressions: kernels built for `get_target("x86").tvm()` vs NumPy.

LLVM 22 (bundled in apache-tvm 0.27) miscompiles loops that index with a power-of-two modulo of
the loop variable, `x[i % 3, j % 4, k % 5]` (ONNX Tile / `R.tile` / `topi.tile`): LoopVectorize
treats `zext(trunc(j) to i2)` as if it were `j` and reads x with a plain stride. The SCEV wrap
predicate that should keep the vector loop from running ("{0,+,1}<i2> does not wrap") is dropped
as "implied" by the predicate on the wider i32 address recurrence (SCEVWrapPredicate::implies;
LLVM 19 was right, 22.1.0 and 22.1.8 are wrong; matches llvm/llvm-project#191498, "Bail out on
wider AddRecs in SCEVWrapPredicate::implies"). Which shapes break depends on the CPU's cost model:
AVX-512 CPUs (skylake-avx512 ... emeraldrapids, znver4) and also haswell/znver3.
Building with LLVM's loop vectorizer off (`"cl-opt": ["-vectorize-loops=false"]`) avoids it.
"""

import platform

import numpy as np
import pytest
import tvm
from tvm import relax, te
from tvm.script import relax as R

from tilecc.compiler.pipeline import relax_pipeline
from tilecc.targets import get_target

pytestmark = pytest.mark.skipif(
    platform.machine() not in ("x86_64", "AMD64"), reason="the x86 target builds for this host"
)

WORKAROUND = {"cl-opt": ["-vectorize-loops=false"]}

# (input shape, repeats): the first is the reported ONNX Tile; the others broke on this host
# (emeraldrapids) or on haswell, where (5, 16) x (4, 4) alone already gets half of y wrong.
SHAPES = [
    ((3, 4, 5), (6, 4, 2)),
    ((3, 4, 3), (6, 4, 2)),
    ((3, 8, 1), (6, 4, 2)),
    ((5, 4, 3), (2, 16, 1)),
    ((5, 4, 5), (3, 8, 1)),
    ((5, 16), (4, 4)),
    ((6, 16), (4, 4)),
    ((3, 3, 5), (2, 2, 2)),
    ((2, 4), (3, 8)),
]
WORKAROUND_SHAPES = [SHAPES[0], SHAPES[1], SHAPES[5]]


def _x86_target(extra=None) -> tvm.target.Target:
    spec = dict(get_target("x86").tvm().export())
    spec.update(extra or {})
    return tvm.target.Target(spec)


def _te_tile(in_shape, reps, target):
    """y[i, j, ...] = x[i % a, j % b, ...] as one PrimFunc, built with the default TIR pipeline."""
    out_shape = tuple(s * r for s, r in zip(in_shape, reps, strict=True))
    x = te.placeholder(in_shape, "float32", name="x")
    y = te.compute(
        out_shape, lambda *ix: x[tuple(v % s for v, s in zip(ix, in_shape, strict=True))], name="y"
    )
    lib = tvm.compile(tvm.IRModule({"main": te.create_prim_func([x, y])}), target=target)
    x_np = np.random.default_rng(0).standard_normal(in_shape).astype("float32")
    y_tvm = tvm.runtime.tensor(np.zeros(out_shape, "float32"))
    lib["main"](tvm.runtime.tensor(x_np), y_tvm)
    return y_tvm.numpy(), np.tile(x_np, reps)


def _relax_tile(in_shape, reps, target):
    """`R.tile` through tilecc's Relax pipeline (LegalizeOps -> topi.tile -> FuseTIR -> LLVM)."""

    bb = relax.BlockBuilder()
    x = relax.Var("x", R.Tensor(in_shape, "float32"))
    with bb.function("main", [x]):
        bb.emit_func_output(bb.emit(relax.op.tile(x, reps)))
    ex = tvm.compile(bb.get(), target=target, relax_pipeline=relax_pipeline(target))
    vm = relax.VirtualMachine(ex, tvm.cpu())
    x_np = np.random.default_rng(0).standard_normal(in_shape).astype("float32")
    return vm["main"](tvm.runtime.tensor(x_np)).numpy(), np.tile(x_np, reps)


def _assert_same(got, want):
    wrong = int((got != want).sum())
    assert wrong == 0, f"{wrong} of {want.size} elements wrong"


@pytest.mark.parametrize("in_shape,reps", SHAPES, ids=lambda v: "x".join(map(str, v)))
def test_tile_primfunc_matches_numpy(in_shape, reps):
    _assert_same(*_te_tile(in_shape, reps, _x86_target()))


@pytest.mark.parametrize("in_shape,reps", SHAPES, ids=lambda v: "x".join(map(str, v)))
def test_relax_tile_matches_numpy(in_shape, reps):
    _assert_same(*_relax_tile(in_shape, reps, _x86_target()))


@pytest.mark.parametrize("in_shape,reps", WORKAROUND_SHAPES, ids=lambda v: "x".join(map(str, v)))
def test_workaround_option_still_fixes_tile(in_shape, reps):
    """The LLVM option the x86 target should carry: TVM only logs (never raises) on an unknown
    `cl-opt`, so check that it still takes effect after a TVM/LLVM upgrade."""
    _assert_same(*_te_tile(in_shape, reps, _x86_target(WORKAROUND)))
