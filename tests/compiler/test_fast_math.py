"""compiler/fast_math.py: exp, sigmoid, silu and softmax lowered to vector code, within a few
float32 ulps of float64 NumPy; other dtypes keep TVM's lowering."""

import numpy as np
import pytest
import tvm
from tvm import relax
from tvm.script import relax as R

from tilecc.compiler.pipeline import relax_pipeline
from tilecc.targets import get_target

X = np.concatenate(
    [np.linspace(-100, 100, 4001), np.random.default_rng(0).normal(0, 4, 4095), [0.0]]
).astype("float32")


def _build(op, dtype="float32", shape=(X.size,)):
    bb = relax.BlockBuilder()
    x = relax.Var("x", R.Tensor(shape, dtype))
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit_output(op(x))
        bb.emit_func_output(y)
    target = get_target("x86").tvm(2)
    return tvm.compile(bb.get(), target=target, relax_pipeline=relax_pipeline(target))


def _run(exe, x):
    vm = relax.VirtualMachine(exe, tvm.cpu())
    return vm["main"](tvm.runtime.tensor(x)).numpy()


def _softmax64(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


x64 = X.astype(np.float64)
CASES = {
    "sigmoid": (relax.op.sigmoid, 1 / (1 + np.exp(-x64))),
    "silu": (relax.op.nn.silu, x64 / (1 + np.exp(-x64))),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_close_to_float64(name):
    op, want = CASES[name]
    got = _run(_build(op), X)
    err = np.abs(got - want)
    assert np.all(err <= 4 * np.spacing(np.abs(want).astype(np.float32)) + 1e-30)


def test_exp_relative_error():
    x = X[np.abs(X) < 80]  # e^-87.3 is float32's smallest normal
    got, want = _run(_build(relax.op.exp, shape=(x.size,)), x), np.exp(x.astype(np.float64))
    rel = np.abs(got - want) / want
    assert rel.max() < 3e-7  # the range reduction's error grows with |x|: 4 ulps near 80
    assert np.all(rel[np.abs(x) < 10] <= np.finfo(np.float32).eps)  # within an ulp


def test_softmax_rows_as_tvm_computes_them():
    """Against TVM's own lowering (libm exp): the same float32 sums, so the difference is the
    exponentials' (float32 sums over rec's 6625 classes alone differ from float64 by ~1e-6)."""
    x = np.random.default_rng(1).normal(0, 8, (40, 6625)).astype("float32")
    softmax = lambda v: relax.op.nn.softmax(v, axis=-1)  # noqa: E731
    got = _run(_build(softmax, shape=x.shape), x)
    bb = relax.BlockBuilder()
    var = relax.Var("x", R.Tensor(x.shape, "float32"))
    with bb.function("main", [var]):
        with bb.dataflow():
            y = bb.emit_output(softmax(var))
        bb.emit_func_output(y)
    want = _run(tvm.compile(bb.get(), target="llvm"), x)
    assert np.all(np.abs(got - want) <= 4 * np.spacing(want) + 1e-12)
    assert np.max(np.abs(got - _softmax64(x.astype(np.float64), -1))) < 1e-5


def test_kernels_call_no_libm_exp():
    asm = _build(relax.op.sigmoid).mod.imports[0].inspect_source("s")
    calls = {line.split()[1] for line in asm.splitlines() if line.strip().startswith("call")}
    assert not {c for c in calls if "exp" in c}, calls
    assert "vfmadd" in asm  # the polynomial, in vector registers


def test_float16_keeps_tvm_lowering():
    x = np.linspace(-8, 8, 64).astype("float16")
    got = _run(_build(relax.op.sigmoid, "float16", (64,)), x)
    assert np.allclose(got, 1 / (1 + np.exp(-x.astype(np.float64))), atol=2e-3)
