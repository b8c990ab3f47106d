import tvm
from tvm import relax
from tvm.script import ir as I
from tvm.script import relax as R

from tilecc.passes.dce import Dce


def check(before, expected, **options):
    after = Dce(**options)(before)
    relax.analysis.well_formed(after)
    tvm.ir.assert_structural_equal(after, expected)


def test_unused_binding_is_removed():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((2, 3), "float32")):
            with R.dataflow():
                y = R.add(x, x)
                z = R.multiply(x, x)  # noqa: F841 - the dead binding under test
                R.output(y)
            return y

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((2, 3), "float32")):
            with R.dataflow():
                y = R.add(x, x)
                R.output(y)
            return y

    check(Before, Expected)


def test_no_removal_when_everything_is_used():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((2, 3), "float32")):
            with R.dataflow():
                y = R.add(x, x)
                z = R.multiply(y, x)
                R.output(z)
            return z

    check(Before, Before)


def _module_with_helper():
    @I.ir_module
    class Module:
        @R.function(private=True)
        def helper(x: R.Tensor((2,), "float32")) -> R.Tensor((2,), "float32"):
            return x

        @R.function
        def main(x: R.Tensor((2,), "float32")):
            return x

    return Module


def test_unreachable_function_is_removed():
    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((2,), "float32")):
            return x

    check(_module_with_helper(), Expected)


def test_entry_functions_option_keeps_named_function():
    before = _module_with_helper()
    check(before, before, entry_functions=("main", "helper"))
