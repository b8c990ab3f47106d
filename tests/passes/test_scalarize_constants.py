import numpy as np
import tvm
from tvm import relax
from tvm.script import ir as I
from tvm.script import relax as R

from tilecc.passes.scalarize_constants import ScalarizeConstants


def check(before, expected):
    after = ScalarizeConstants()(before)
    relax.analysis.well_formed(after)
    tvm.ir.assert_structural_equal(after, expected)


def _module(const, x_shape=(1, 16, 8, 8)):
    bb = relax.BlockBuilder()
    x = relax.Var("x", R.Tensor(x_shape, "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit_output(R.multiply(R.const(const), x))
        bb.emit_func_output(y)
    return bb.get()


def test_one_element_constant_becomes_scalar():
    before = _module(np.full((1,), 2.0, "float32"))
    expected = _module(np.array(2.0, "float32"))
    check(before, expected)


def test_rank4_one_element_constant_becomes_scalar():
    check(_module(np.full((1, 1, 1, 1), 0.5, "float32")), _module(np.array(0.5, "float32")))


def test_no_change_for_per_channel_constant():
    before = _module(np.ones((1, 16, 1, 1), "float32"))
    check(before, before)


def test_no_change_when_constant_has_higher_rank():
    # (1, 1, 1) * (4,) is (1, 1, 4): a scalar would change the result's rank.
    before = _module(np.ones((1, 1, 1), "float32"), x_shape=(4,))
    check(before, before)


def test_no_change_for_non_constant_operands():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 4), "float32"), s: R.Tensor((1,), "float32")):
            with R.dataflow():
                y = R.add(x, s)
                R.output(y)
            return y

    check(Before, Before)
