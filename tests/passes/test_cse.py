import tvm
import tvm_ffi
from tvm import relax
from tvm.script import ir as I
from tvm.script import relax as R

from tilecc.passes.cse import Cse
from tilecc.passes.registry import get_pass_info


def check(before, expected, **options):
    after = Cse(**options)(before)
    relax.analysis.well_formed(after)  # raises on the first violation (0.27)
    tvm.ir.assert_structural_equal(after, expected)


def test_repeated_call_becomes_alias():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((2, 3), "float32")):
            with R.dataflow():
                a = R.add(x, x)
                b = R.add(x, x)
                y = R.multiply(a, b)
                R.output(y)
            return y

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((2, 3), "float32")):
            with R.dataflow():
                a = R.add(x, x)
                b = a  # noqa: F841 - the alias CSE leaves
                y = R.multiply(a, a)
                R.output(y)
            return y

    check(Before, Expected)


def test_no_merge_when_attrs_differ():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((2, 2), "float32")):
            with R.dataflow():
                a = R.sum(x, axis=[0])
                b = R.sum(x, axis=[1])
                c = R.permute_dims(x, [1, 0])
                d = R.permute_dims(x, [0, 1])
                y = (a, b, c, d)
                R.output(y)
            return y

    check(Before, Before)


def test_no_merge_of_impure_calls():
    @I.ir_module
    class Before:
        @R.function(pure=False)
        def main(x: R.Tensor((2, 3), "float32")):
            R.print(x, format="{}")
            R.print(x, format="{}")
            return x

    check(Before, Before)


def test_pure_calls_outside_dataflow_are_merged():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((2, 3), "float32")):
            a = R.nn.relu(x)
            b = R.nn.relu(x)
            return (a, b)

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((2, 3), "float32")):
            a = R.nn.relu(x)
            b = a  # noqa: F841 - the alias CSE leaves
            return (a, a)

    check(Before, Expected)


def _repeated_tuple():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((2, 3), "float32")):
            with R.dataflow():
                a = R.add(x, x)
                b = R.add(x, x)
                t1 = (a, x)
                t2 = (b, x)
                y = (t1, t2)
                R.output(y)
            return y

    return Before


def test_tuples_are_merged_by_default():
    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((2, 3), "float32")):
            with R.dataflow():
                a = R.add(x, x)
                b = a  # noqa: F841 - the alias CSE leaves
                t1 = (a, x)
                t2 = t1  # noqa: F841 - the alias CSE leaves
                y = (t1, t1)
                R.output(y)
            return y

    check(_repeated_tuple(), Expected)


def test_call_only_keeps_tuples():
    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((2, 3), "float32")):
            with R.dataflow():
                a = R.add(x, x)
                b = a  # noqa: F841 - the alias CSE leaves
                t1 = (a, x)
                t2 = (a, x)
                y = (t1, t2)
                R.output(y)
            return y

    check(_repeated_tuple(), Expected, call_only=True)


def test_text_option_form():
    built = get_pass_info("cse").create(call_only="true")
    assert built.info.name == "cse"
    before = _repeated_tuple()
    tvm.ir.assert_structural_equal(built(before), Cse(call_only=True)(before))
    assert not tvm_ffi.structural_equal(built(before), Cse()(before))
