import numpy as np
import pytest
import tvm
from tvm import relax
from tvm.script import ir as I
from tvm.script import relax as R

from tilecc.passes.multiply_by_reciprocal import MultiplyByReciprocal


def check(before, expected, **options):
    after = MultiplyByReciprocal(**options)(before)
    relax.analysis.well_formed(after)
    tvm.ir.assert_structural_equal(after, expected)


def test_divide_by_constant_becomes_multiply():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 8), "float32")):
            with R.dataflow():
                y = R.divide(x, R.const(4.0, "float32"))
                R.output(y)
            return y

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((1, 8), "float32")):
            with R.dataflow():
                y = R.multiply(x, R.const(0.25, "float32"))
                R.output(y)
            return y

    check(Before, Expected)
    check(Before, Expected, exact_only=True)  # 1 / 4 is exact


def test_quantize_scale_becomes_a_multiply_before_it():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 8), "float32")):
            with R.dataflow():
                q = R.quantize(x, R.const(0.5, "float32"), R.const(3, "int8"), -1, "uint8")
                R.output(q)
            return q

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((1, 8), "float32")):
            with R.dataflow():
                s = R.multiply(x, R.const(2.0, "float32"))
                q = R.quantize(s, R.const(1.0, "float32"), R.const(3, "int8"), -1, "uint8")
                R.output(q)
            return q

    check(Before, Expected)


def _divide_by(divisor, dtype="float32"):
    """main(x[, divisor]) = x / divisor; a Var divisor becomes a parameter."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", R.Tensor((2, 3), dtype))
    params = [x, divisor] if isinstance(divisor, relax.Var) else [x]
    with bb.function("main", params):
        with bb.dataflow():
            y = bb.emit_output(relax.op.divide(x, divisor))
        bb.emit_func_output(y)
    return bb.get()


@pytest.mark.parametrize(
    "divisor, dtype",
    [
        (relax.const(np.array([1.0, 0.0, 2.0], "float32")), "float32"),  # a zero entry
        (relax.const(np.array([1.0, np.inf, 2.0], "float32")), "float32"),  # non-finite
        (relax.const(np.array([3, 5, 7], "int32")), "int32"),  # integer division
        (relax.Var("d", R.Tensor((2, 3), "float32")), "float32"),  # not a constant
    ],
    ids=["zero", "inf", "int", "var"],
)
def test_leaves_alone(divisor, dtype):
    mod = _divide_by(divisor, dtype)
    check(mod, mod)


def test_exact_only_keeps_a_rounding_reciprocal():
    mod = _divide_by(relax.const(6.0, "float32"))
    check(mod, mod, exact_only=True)
    changed = MultiplyByReciprocal()(mod)
    assert "R.multiply" in changed.script() and "R.divide" not in changed.script()


def test_per_channel_quantize_left_alone():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((2, 3), "float32")):
            with R.dataflow():
                scale = R.const(np.array([0.5, 0.25, 0.1], "float32"))
                q = R.quantize(x, scale, R.const(0, "int8"), 1, "int8")
                R.output(q)
            return q

    check(Before, Before)


def _run(mod, *args):
    exe = tvm.compile(mod, target="llvm")
    vm = relax.VirtualMachine(exe, tvm.cpu())
    return vm["main"](*[tvm.runtime.tensor(a) for a in args]).numpy()


def test_values_within_one_ulp_and_one_quantization_step():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 50, (4, 256)).astype("float32")
    bb = relax.BlockBuilder()
    var = relax.Var("x", R.Tensor((4, 256), "float32"))
    with bb.function("main", [var]):
        with bb.dataflow():
            y = bb.emit(relax.op.divide(var, relax.const(6.0, "float32")))
            zero, scale = relax.const(0, "int8"), relax.const(0.1, "float32")
            q = bb.emit(relax.op.quantize(y, scale, zero, -1, "int8"))
            steps = bb.emit(relax.op.dequantize(q, relax.const(1.0, "float32"), zero))
            out = bb.emit_output(relax.op.concat([y, steps], axis=0))
        bb.emit_func_output(out)
    before = bb.get()
    want, got = _run(before, x), _run(MultiplyByReciprocal()(before), x)
    divided_want, divided_got = want[:4], got[:4]
    assert np.all(np.abs(divided_got - divided_want) <= np.spacing(np.abs(divided_want)))
    assert np.max(np.abs(got[4:] - want[4:])) <= 1.0  # a .5 tie may round to the next step
    assert np.mean(got[4:] == want[4:]) > 0.99
