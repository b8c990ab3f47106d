import numpy as np
import tvm
from relax_helpers import op_names
from tvm import relax
from tvm.script import relax as R

from tilecc.passes.fold_affine_chains import FoldAffineChains

RNG = np.random.default_rng(0)


def build(steps, shape=(1, 16), extra_use=None):
    """main(x) = the chain `steps` ([(op, constant, constant_first)]) applied to x; with
    `extra_use=k`, the k-th intermediate value is also returned."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", R.Tensor(shape, "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            v, values = x, []
            for op, const, first in steps:
                c = relax.const(np.asarray(const, "float32"))
                v = bb.emit(op(c, v) if first else op(v, c))
                values.append(v)
            out = relax.Tuple([v, values[extra_use]]) if extra_use is not None else v
            y = bb.emit_output(out)
        bb.emit_func_output(y)
    return bb.get()


def run(mod, x):
    ex = tvm.compile(mod, target="llvm")
    out = relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x))
    return [o.numpy() for o in out] if isinstance(out, tvm.ir.Array) else out.numpy()


def after(mod):
    out = relax.transform.DeadCodeElimination()(FoldAffineChains()(mod))
    relax.analysis.well_formed(out)
    return out


SCALE, SHIFT = RNG.uniform(0.5, 2, (1, 16)), RNG.uniform(-1, 1, (1, 16))
REQUANTIZE_LAB = [  # int8 requantization, bias correction, bias, learnable affine block
    (relax.op.multiply, SCALE, False),
    (relax.op.subtract, SHIFT, False),
    (relax.op.add, RNG.uniform(-1, 1, (1, 16)), False),
    (relax.op.multiply, 1.9, False),
    (relax.op.add, 0.8, False),
]


def test_chain_becomes_one_multiply_and_one_add():
    mod = build(REQUANTIZE_LAB)
    folded = after(mod)
    assert op_names(folded) == ["relax.multiply", "relax.add"]
    x = RNG.standard_normal((1, 16)).astype("float32")
    np.testing.assert_allclose(run(folded, x), run(mod, x), rtol=1e-6, atol=1e-6)


def test_constant_first_subtract_and_scalars():
    steps = [(relax.op.subtract, 3.0, True), (relax.op.multiply, 0.5, False),
             (relax.op.add, 2.0, True)]  # fmt: skip
    folded = after(build(steps))
    x = RNG.standard_normal((1, 16)).astype("float32")
    np.testing.assert_allclose(run(folded, x), (3.0 - x) * 0.5 + 2.0, rtol=1e-6)
    assert op_names(folded) == ["relax.multiply", "relax.add"]


def test_a_value_used_twice_ends_the_chain():
    mod = build(REQUANTIZE_LAB, extra_use=1)  # the bias-corrected value is read again
    folded = after(mod)
    # (multiply, subtract) ends where its value is read twice: two chains, each two ops
    assert op_names(folded) == ["relax.multiply", "relax.add"] * 2
    x = RNG.standard_normal((1, 16)).astype("float32")
    for got, want in zip(run(folded, x), run(mod, x), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_single_steps_and_other_dtypes_left_alone():
    one = build([(relax.op.multiply, 2.0, False)])
    tvm.ir.assert_structural_equal(FoldAffineChains()(one), one)
    bb = relax.BlockBuilder()
    x = relax.Var("x", R.Tensor((4,), "int32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            a = bb.emit(relax.op.multiply(x, relax.const(np.int32(2))))
            y = bb.emit_output(relax.op.add(a, relax.const(np.int32(1))))
        bb.emit_func_output(y)
    ints = bb.get()
    tvm.ir.assert_structural_equal(FoldAffineChains()(ints), ints)


def test_shape_set_by_a_dropped_constant_is_kept():
    steps = [(relax.op.add, np.zeros((2, 16)), False), (relax.op.multiply, 1.0, False)]
    folded = after(build(steps, shape=(16,)))
    x = RNG.standard_normal(16).astype("float32")
    assert run(folded, x).shape == (2, 16)
