import numpy as np
import pytest
import tvm
from relax_helpers import dataflow_module
from tvm import relax
from tvm.script import ir as I
from tvm.script import relax as R
from tvm.script import tirx as T

from tilecc.compiler.build import template_plan
from tilecc.compiler.errors import PassOptionError
from tilecc.compiler.pipeline import relax_pipeline
from tilecc.passes.cancel_inverse_pairs import CancelInversePairs
from tilecc.passes.convert_layout_nchwc import ConvertLayoutNCHWc
from tilecc.targets import get_target

I32 = "int32"  # ConvertLayout builds its index maps over int32 indices


def check(before, expected, **options):
    after = ConvertLayoutNCHWc(**options)(before)
    relax.analysis.well_formed(after)
    tvm.ir.assert_structural_equal(after, expected)


def test_conv_relu_in_nchw16c():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 32, 8, 8), "float32"), w: R.Tensor((32, 32, 3, 3), "float32")):
            with R.dataflow():
                a = R.nn.conv2d(x, w, padding=[1, 1, 1, 1])
                y = R.nn.relu(a)
                R.output(y)
            return y

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((1, 32, 8, 8), "float32"), w: R.Tensor((32, 32, 3, 3), "float32")):
            with R.dataflow():
                lv = R.layout_transform(
                    x,
                    index_map=T.index_map(
                        lambda n, c, h, w: (n, c // 16, h, w, c % 16), index_dtype=I32
                    ),
                )
                lv1 = R.layout_transform(
                    w,
                    index_map=T.index_map(
                        lambda o, i, h, w: (o // 16, i // 16, h, w, i % 16, o % 16), index_dtype=I32
                    ),
                )
                a = R.nn.conv2d(
                    lv, lv1, padding=[1, 1, 1, 1], data_layout="NCHW16c",
                    kernel_layout="OIHW16i16o", out_layout="NCHW16c",
                )  # fmt: skip
                lv2 = R.nn.relu(a)
                y = R.layout_transform(
                    lv2,
                    index_map=T.index_map(
                        lambda n, c, h, w, b: (n, c * 16 + b, h, w), index_dtype=I32
                    ),
                )
                R.output(y)
            return y

    check(Before, Expected, block=16)


def test_depthwise_conv_uses_one_input_channel_kernel_layout():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 8, 6, 6), "float32"), w: R.Tensor((8, 1, 3, 3), "float32")):
            with R.dataflow():
                y = R.nn.conv2d(x, w, groups=8)
                R.output(y)
            return y

    after = ConvertLayoutNCHWc(block=4)(Before)
    text = after.script()
    assert 'data_layout="NCHW4c", kernel_layout="OIHW1i4o"' in text


def test_no_change_when_block_divides_no_conv():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 24, 8, 8), "float32"), w: R.Tensor((24, 24, 1, 1), "float32")):
            with R.dataflow():
                y = R.nn.conv2d(x, w)
                R.output(y)
            return y

    check(Before, Before, block=16, min_block=16)


def test_no_change_for_grouped_conv():
    # groups=2 is neither dense nor depthwise: no template reads it blocked.
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 32, 8, 8), "float32"), w: R.Tensor((32, 16, 1, 1), "float32")):
            with R.dataflow():
                y = R.nn.conv2d(x, w, groups=2)
                R.output(y)
            return y

    check(Before, Before, block=16)


def test_conv_transpose_after_blocked_conv_stays_nchw():
    @I.ir_module
    class Before:
        @R.function
        def main(
            x: R.Tensor((1, 16, 4, 4), "float32"),
            w: R.Tensor((16, 16, 1, 1), "float32"),
            wt: R.Tensor((16, 8, 2, 2), "float32"),
        ):
            with R.dataflow():
                a = R.nn.conv2d(x, w)
                y = R.nn.conv2d_transpose(a, wt, strides=[2, 2])
                R.output(y)
            return y

    text = ConvertLayoutNCHWc(block=16)(Before).script()
    assert 'data_layout="NCHW16c"' in text
    assert "conv2d_transpose(lv" in text and 'data_layout="NCHW", kernel_layout="IOHW"' in text


def test_block_is_the_largest_that_converts_most_work():
    # 96 -> 24 holds nearly all the multiply-adds; 8 divides it, 16 does not.
    @I.ir_module
    class Before:
        @R.function
        def main(
            x: R.Tensor((1, 96, 32, 32), "float32"),
            w1: R.Tensor((24, 96, 3, 3), "float32"),
            w2: R.Tensor((32, 24, 1, 1), "float32"),
        ):
            with R.dataflow():
                a = R.nn.conv2d(x, w1, padding=[1, 1, 1, 1])
                y = R.nn.conv2d(a, w2)
                R.output(y)
            return y

    layout = ConvertLayoutNCHWc(block=16)
    assert layout.choose_block(Before["main"]) == 8
    assert ConvertLayoutNCHWc(block=16, min_block=16).choose_block(Before["main"]) is None


def test_no_change_with_symbolic_spatial_size():
    @I.ir_module
    class Before:
        @R.function
        def main(
            x: R.Tensor((1, 16, "h", "w"), "float32"), weight: R.Tensor((16, 16, 1, 1), "float32")
        ):
            with R.dataflow():
                y = R.nn.conv2d(x, weight)
                R.output(y)
            return y

    check(Before, Before, block=16)


@pytest.mark.parametrize("options", [{"block": 12}, {"block": 1}, {"block": 4, "min_block": 8}])
def test_bad_block_options_are_refused(options):
    with pytest.raises(PassOptionError, match="convert-layout-nchwc"):
        ConvertLayoutNCHWc(**options)


def _calls(mod, name):
    found = []
    relax.analysis.post_order_visit(
        mod["main"].body,
        lambda e: found.append(e) if isinstance(e, relax.Call) and e.op.name == name else None,
    )
    return found


def _run(mod, *arrays):
    """Compiled as tilecc compiles (blocked convs need its templates) for this host."""
    spec = get_target("x86")
    target = spec.tvm()
    ex = tvm.compile(mod, target=target, relax_pipeline=relax_pipeline(target, template_plan(spec)))
    vm = relax.VirtualMachine(ex, tvm.cpu())
    return vm["main"](*[tvm.runtime.tensor(a) for a in arrays]).numpy()


def assert_same_values(after, before):
    """`after` computes what `before` does, on random values for main's parameters."""
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal([int(d) for d in p.ty.shape]).astype("float32")
              for p in before["main"].params]  # fmt: skip
    np.testing.assert_allclose(_run(after, *arrays), _run(before, *arrays), rtol=1e-4, atol=1e-4)


def test_resize_and_channel_concat_between_blocked_convs_stay_blocked():
    @I.ir_module
    class Before:
        @R.function
        def main(
            x: R.Tensor((1, 16, 4, 4), "float32"),
            w1: R.Tensor((16, 16, 1, 1), "float32"),
            w2: R.Tensor((8, 32, 3, 3), "float32"),
        ):
            with R.dataflow():
                a = R.nn.conv2d(x, w1)
                up = R.image.resize2d(a, R.shape([8, 8]), method="nearest_neighbor")
                b = R.nn.conv2d(R.image.resize2d(x, R.shape([8, 8])), w1)
                cat = R.concat([up, b], axis=1)
                y = R.nn.conv2d(cat, w2, padding=[1, 1, 1, 1])
                R.output(y)
            return y

    after = CancelInversePairs()(ConvertLayoutNCHWc(block=8)(Before))
    relax.analysis.well_formed(after)
    resizes = _calls(after, "relax.image.resize2d")
    assert [str(r.attrs.layout) for r in resizes] == ["NCHW8c", "NCHW"]  # x's resize: NCHW in
    assert all(len(c.ty.shape) == 5 for c in _calls(after, "relax.concat"))
    # x and the three weights are blocked once each; y is unblocked once; nothing between
    assert len(_calls(after, "relax.layout_transform")) == 5
    assert_same_values(after, Before)


def test_stem_on_image_channels_writes_blocks_itself():
    @I.ir_module
    class Before:
        @R.function
        def main(
            x: R.Tensor((1, 3, 8, 8), "float32"),
            w1: R.Tensor((16, 3, 3, 3), "float32"),
            w2: R.Tensor((16, 16, 1, 1), "float32"),
        ):
            with R.dataflow():
                a = R.nn.relu(R.nn.conv2d(x, w1, strides=[2, 2], padding=[1, 1, 1, 1]))
                y = R.nn.conv2d(a, w2)
                R.output(y)
            return y

    after = CancelInversePairs()(ConvertLayoutNCHWc(block=8)(Before))
    layouts = [(str(c.attrs.data_layout), str(c.attrs.out_layout))
               for c in _calls(after, "relax.nn.conv2d")]  # fmt: skip
    assert layouts == [("NCHW", "NCHW8c"), ("NCHW8c", "NCHW8c")]
    assert_same_values(after, Before)


def test_clamps_after_a_resize_stay_blocked():
    """A QDQ model clamps every value to its quantized range: after a resize too."""

    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 16, 4, 4), "float32"), w: R.Tensor((16, 16, 1, 1), "float32")):
            with R.dataflow():
                up = R.image.resize2d(R.nn.conv2d(x, w), R.shape([8, 8]), method="nearest_neighbor")
                m = R.minimum(R.maximum(up, R.const(-1.0, "float32")), R.const(1.0, "float32"))
                y = R.nn.conv2d(R.clip(m, -0.5, 0.5), w)
                R.output(y)
            return y

    after = CancelInversePairs()(ConvertLayoutNCHWc(block=8)(Before))
    for op in ("relax.maximum", "relax.minimum", "relax.clip"):
        assert all(len(c.ty.shape) == 5 for c in _calls(after, op)), op
    assert_same_values(after, Before)


def _const(*shape):
    return relax.const(np.random.default_rng(1).standard_normal(shape).astype("float32"))


def _data_transforms(mod):
    """layout_transforms of data that something uses (not of a constant weight, which
    fold-constant folds)."""
    transforms = _calls(relax.transform.DeadCodeElimination()(mod), "relax.layout_transform")
    return [t for t in transforms if not isinstance(t.args[0], tvm.ir.Constant)]


def test_depth_to_space_and_per_channel_affine_stay_blocked():
    """conv-transpose-to-conv1x1's shuffle (channels (a, b, o) to pixels, O = 8) and the
    batch norm after it run on blocks: whole channel blocks move, the per-channel constants
    are regrouped, and nothing is unblocked before the next conv."""

    def body(bb, x):
        a = bb.emit(relax.op.nn.conv2d(x, _const(32, 16, 1, 1)))  # channels (a, b, o)
        a = bb.emit(relax.op.reshape(a, (1, 2, 2, 8, 4, 4)))
        a = bb.emit(relax.op.permute_dims(a, [0, 3, 4, 1, 5, 2]))
        a = bb.emit(relax.op.reshape(a, (1, 8, 8, 8)))
        a = bb.emit(relax.op.multiply(a, _const(1, 8, 1, 1)))
        a = bb.emit(relax.op.nn.relu(relax.op.add(a, _const(1, 8, 1, 1))))
        return relax.op.nn.conv2d(a, _const(8, 8, 1, 1))

    before = dataflow_module(body, (1, 16, 4, 4))
    after = CancelInversePairs()(ConvertLayoutNCHWc(block=8)(before))
    relax.analysis.well_formed(after)
    assert [len(c.ty.shape) for c in _calls(after, "relax.permute_dims")] == [7]
    for op in ("relax.multiply", "relax.add", "relax.nn.relu"):
        assert all(len(c.ty.shape) == 5 for c in _calls(after, op)), op
    assert len(_data_transforms(after)) == 2  # x in, y out
    assert_same_values(after, before)


def test_leading_channels_of_one_block_leave_it_through_a_lane_slice():
    """A conv padded to one block (pad-channels) whose first 4 channels go on in NCHW: a slice
    of its lanes and a permute, which TVM fuses with the consumer, instead of a layout
    transform of the whole block."""

    def body(bb, x):
        a = bb.emit(relax.op.nn.conv2d(x, _const(8, 16, 1, 1)))
        a = bb.emit(relax.op.strided_slice(a, axes=[1], begin=[0], end=[4]))
        return relax.op.sigmoid(a)

    before = dataflow_module(body, (1, 16, 4, 4))
    after = CancelInversePairs()(ConvertLayoutNCHWc(block=8)(before))
    relax.analysis.well_formed(after)
    assert len(_data_transforms(after)) == 1  # x in
    assert [len(c.ty.shape) for c in _calls(after, "relax.strided_slice")] == [5]
    assert_same_values(after, before)
