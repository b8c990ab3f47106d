import pytest
import tvm
from tvm import relax
from tvm.script import ir as I
from tvm.script import relax as R

from tilecc.compiler.errors import PassOptionError
from tilecc.passes.cancel_inverse_pairs import CancelInversePairs
from tilecc.passes.registry import get_pass_info


def check(before, expected, **options):
    after = CancelInversePairs(**options)(before)
    relax.analysis.well_formed(after)  # raises on the first violation (0.27)
    tvm.ir.assert_structural_equal(after, expected)


def test_permute_pair_restoring_layout_is_removed():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 3, 8, 8), "float32")):
            with R.dataflow():
                a = R.permute_dims(x, [0, 2, 3, 1])
                b = R.permute_dims(a, [0, 3, 1, 2])
                y = R.nn.relu(b)
                R.output(y)
            return y

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((1, 3, 8, 8), "float32")):
            with R.dataflow():
                y = R.nn.relu(x)
                R.output(y)
            return y

    check(Before, Expected)


def test_no_cancel_when_not_identity():
    # [0,2,3,1] twice is NCHW -> NWCH, not back to NCHW; (8, 24) -> (8, 3, 8) is not b's shape.
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 3, 8, 8), "float32")):
            with R.dataflow():
                a = R.permute_dims(x, [0, 2, 3, 1])
                b = R.permute_dims(a, [0, 2, 3, 1])
                c = R.reshape(b, (8, 24))
                d = R.reshape(c, (8, 3, 8))
                y = R.nn.relu(d)
                R.output(y)
            return y

    check(Before, Before)


def test_no_cancel_leaves_unrelated_dead_binding():
    # Nothing cancels, so the function comes back untouched (dead code is dce's job).
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((2, 3), "float32")):
            with R.dataflow():
                unused = R.multiply(x, x)  # noqa: F841
                y = R.permute_dims(x, [1, 0])
                R.output(y)
            return y

    check(Before, Before)


def test_reverse_all_axes_twice_is_removed():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((2, 3, 4), "float32")):
            with R.dataflow():
                a = R.permute_dims(x)
                b = R.permute_dims(a)
                y = R.nn.relu(b)
                R.output(y)
            return y

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((2, 3, 4), "float32")):
            with R.dataflow():
                y = R.nn.relu(x)
                R.output(y)
            return y

    check(Before, Expected)


def _permute_and_reshape_pairs():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 3, 8, 8), "float32")):
            with R.dataflow():
                a = R.permute_dims(x, [0, 2, 3, 1])
                b = R.permute_dims(a, [0, 3, 1, 2])
                c = R.reshape(b, (3, 64))
                d = R.reshape(c, (1, 3, 8, 8))
                y = R.nn.relu(d)
                R.output(y)
            return y

    return Before


def test_ops_reshape_only():
    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((1, 3, 8, 8), "float32")):
            with R.dataflow():
                a = R.permute_dims(x, [0, 2, 3, 1])
                b = R.permute_dims(a, [0, 3, 1, 2])
                y = R.nn.relu(b)
                R.output(y)
            return y

    check(_permute_and_reshape_pairs(), Expected, ops=("reshape",))


def test_both_kinds_cancel_in_sequence():
    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((1, 3, 8, 8), "float32")):
            with R.dataflow():
                y = R.nn.relu(x)
                R.output(y)
            return y

    check(_permute_and_reshape_pairs(), Expected)


def test_shared_inner_kept():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 3, 8, 8), "float32")):
            with R.dataflow():
                a = R.permute_dims(x, [0, 2, 3, 1])
                b = R.permute_dims(a, [0, 3, 1, 2])
                y = R.nn.relu(b)
                z = R.nn.relu(a)
                R.output(y, z)
            return (y, z)

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((1, 3, 8, 8), "float32")):
            with R.dataflow():
                a = R.permute_dims(x, [0, 2, 3, 1])
                y = R.nn.relu(x)
                z = R.nn.relu(a)
                R.output(y, z)
            return (y, z)

    check(Before, Expected)


def test_impure_calls_kept_when_pair_cancels():
    # Pins rewrite_call's cleanup (TVM 0.27): once a pair cancels, equal pure bindings merge
    # (d -> c) but the two impure prints both stay.
    @I.ir_module
    class Before:
        @R.function(pure=False)
        def main(x: R.Tensor((2, 3), "float32")):
            R.print(x, format="{}")
            R.print(x, format="{}")
            a = R.permute_dims(x, [1, 0])
            b = R.permute_dims(a, [1, 0])
            c = R.nn.relu(x)
            d = R.nn.relu(x)
            return (b, c, d)

    @I.ir_module
    class Expected:
        @R.function(pure=False)
        def main(x: R.Tensor((2, 3), "float32")):
            R.print(x, format="{}")
            R.print(x, format="{}")
            c = R.nn.relu(x)
            return (x, c, c)

    check(Before, Expected)


def test_unknown_op_option_is_refused():
    with pytest.raises(PassOptionError, match="transpose"):
        CancelInversePairs(ops=("transpose",))


def test_text_option_form():
    built = get_pass_info("cancel-inverse-pairs").create(ops="reshape")
    assert built.info.name == "cancel-inverse-pairs"
    after = built(_permute_and_reshape_pairs())
    assert "R.reshape" not in after.script()
    assert after.script().count("R.permute_dims") == 2


def test_layout_transform_pair_restoring_nchw_is_removed():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 32, 8, 8), "float32")):
            with R.dataflow():
                a = R.layout_transform(x, index_map=lambda n, c, h, w: (n, c // 16, h, w, c % 16))
                b = R.layout_transform(a, index_map=lambda n, c, h, w, b: (n, c * 16 + b, h, w))
                y = R.nn.relu(b)
                R.output(y)
            return y

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((1, 32, 8, 8), "float32")):
            with R.dataflow():
                y = R.nn.relu(x)
                R.output(y)
            return y

    check(Before, Expected)


def test_no_cancel_layout_transforms_with_different_blocks():
    # NCHW16c read back as if it were NCHW8c is a channel shuffle, not the identity.
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 32, 8, 8), "float32")):
            with R.dataflow():
                a = R.layout_transform(x, index_map=lambda n, c, h, w: (n, c // 16, h, w, c % 16))
                b = R.reshape(a, (1, 4, 8, 8, 8))
                d = R.layout_transform(b, index_map=lambda n, c, h, w, b: (n, c * 8 + b, h, w))
                y = R.nn.relu(d)
                R.output(y)
            return y

    check(Before, Before)
