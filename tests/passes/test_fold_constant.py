import tvm
from tvm import relax
from tvm.script import ir as I
from tvm.script import relax as R

from tilecc.passes.fold_constant import FoldConstant


def check(before, expected, **options):
    after = FoldConstant(**options)(before)
    relax.analysis.well_formed(after)
    tvm.ir.assert_structural_equal(after, expected)


def test_constant_add_is_folded():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((2, 3), "float32")):
            with R.dataflow():
                c = R.add(R.const(1, "float32"), R.const(2, "float32"))
                y = R.add(x, c)
                R.output(y)
            return y

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((2, 3), "float32")):
            with R.dataflow():
                y = R.add(x, R.const(3, "float32"))
                R.output(y)
            return y

    check(Before, Expected)


def test_no_fold_with_a_non_constant_input():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((2, 3), "float32")):
            with R.dataflow():
                y = R.add(x, R.const(1, "float32"))
                z = R.multiply(y, R.const(2, "float32"))
                R.output(z)
            return z

    check(Before, Before)
