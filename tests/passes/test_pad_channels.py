import numpy as np
import pytest
import tvm
from relax_helpers import dataflow_module
from tvm import relax

from tilecc.compiler.assets import model_path
from tilecc.compiler.build import bind_params
from tilecc.compiler.errors import PassOptionError
from tilecc.compiler.frontend_onnx import import_onnx
from tilecc.compiler.pass_pipeline import run_pipeline
from tilecc.passes.pad_channels import PadChannels
from tilecc.targets import get_target

RNG = np.random.default_rng(0)


def const(*shape):
    return relax.const(RNG.standard_normal(shape).astype("float32"))


def padded(c: tvm.ir.Constant, axis: int, size: int, value: float = 0.0) -> tvm.ir.Constant:
    data = c.value.numpy()
    width = [(0, 0)] * data.ndim
    width[axis] = (0, size - data.shape[axis])
    return relax.const(np.pad(data, width, constant_values=value))


def module(body, x_shape=(1, 48, 6, 6)):
    return dataflow_module(body, x_shape)


def run(mod, x):
    ex = tvm.compile(mod, target=tvm.target.Target({"kind": "llvm"}))
    return relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()


def check(before, expected, **options):
    after = PadChannels(**options)(before)
    relax.analysis.well_formed(after)
    tvm.ir.assert_structural_equal(after, expected)
    return after


W1, BIAS, W2 = const(12, 48, 1, 1), const(1, 12, 1, 1), const(96, 12, 3, 3)


def test_conv_bias_conv_is_padded_to_the_multiple():
    def before(bb, x):
        a = bb.emit(relax.op.nn.conv2d(x, W1))
        c = bb.emit(relax.op.add(a, BIAS))
        return relax.op.nn.conv2d(c, W2, padding=[1, 1, 1, 1])

    def expected(bb, x):
        a = bb.emit(relax.op.nn.conv2d(x, padded(W1, 0, 16)))
        c = bb.emit(relax.op.add(a, padded(BIAS, 1, 16)))
        return relax.op.nn.conv2d(c, padded(W2, 1, 16), padding=[1, 1, 1, 1])

    after = check(module(before), module(expected), multiple=8)
    x = RNG.standard_normal((1, 48, 6, 6)).astype("float32")
    np.testing.assert_allclose(run(after, x), run(module(before), x), rtol=1e-5, atol=1e-5)


def test_activation_chain_and_two_consumers_match_numerically():
    def before(bb, x):
        a = bb.emit(relax.op.nn.conv2d(x, const(42, 48, 1, 1)))
        s = bb.emit(relax.op.sigmoid(bb.emit(relax.op.divide(a, const(1, 42, 1, 1)))))
        h = bb.emit(relax.op.multiply(a, s))  # swish: two chain values meet again
        r = bb.emit(relax.op.nn.relu(bb.emit(relax.op.subtract(h, relax.const(0.5)))))
        y1 = bb.emit(relax.op.nn.conv2d(r, const(8, 42, 1, 1)))
        y2 = bb.emit(relax.op.nn.conv2d(r, const(8, 42, 3, 3), padding=[1, 1, 1, 1]))
        return relax.op.add(y1, y2)

    mod = module(before)
    after = PadChannels(multiple=8)(mod)
    relax.analysis.well_formed(after)
    convs = []
    relax.analysis.post_order_visit(
        after["main"].body,
        lambda e: (
            convs.append(e) if isinstance(e, relax.Call) and e.op.name.endswith("conv2d") else None
        ),
    )
    assert [tuple(int(d) for d in c.args[1].ty.shape) for c in convs] == [
        (48, 48, 1, 1), (8, 48, 1, 1), (8, 48, 3, 3)
    ]  # fmt: skip
    x = RNG.standard_normal((1, 48, 6, 6)).astype("float32")
    np.testing.assert_allclose(run(after, x), run(mod, x), rtol=1e-4, atol=1e-4)


def test_consumer_that_is_itself_padded():
    def before(bb, x):
        a = bb.emit(relax.op.nn.conv2d(x, const(12, 48, 1, 1)))
        b = bb.emit(relax.op.nn.conv2d(a, const(18, 12, 1, 1)))
        return relax.op.nn.conv2d(b, const(8, 18, 1, 1))

    mod = module(before)
    after = PadChannels(multiple=8)(mod)
    shapes = [
        tuple(int(d) for d in b.value.args[1].ty.shape)
        for b in after["main"].body.blocks[0].bindings[:3]
    ]
    assert shapes == [(16, 48, 1, 1), (24, 16, 1, 1), (8, 24, 1, 1)]
    x = RNG.standard_normal((1, 48, 6, 6)).astype("float32")
    np.testing.assert_allclose(run(after, x), run(mod, x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "tail",
    [
        lambda bb, a: relax.op.mean(a, axis=[2, 3], keepdims=True),  # a reduction reads it
        lambda bb, a: relax.op.add(a, relax.const(1.0)),  # it leaves the function
        lambda bb, a: relax.op.nn.conv2d(  # a depthwise conv reads it
            a, const(12, 1, 3, 3), groups=12, padding=[1, 1, 1, 1]
        ),
        lambda bb, a: relax.op.nn.conv2d(  # the other operand is data from elsewhere
            bb.emit(relax.op.add(a, bb.emit(relax.op.nn.conv2d(a, const(12, 12, 1, 1))))), W2
        ),
        lambda bb, a: relax.op.nn.conv2d(bb.emit(relax.op.log(a)), W2),  # log(0) = -inf
    ],
    ids=["reduction", "function-output", "depthwise", "outside-data", "unsafe-op"],
)
def test_values_that_reach_other_ops_are_sliced_back(tail):
    """The conv's input channels are a multiple already: padded, it is blockable, and a
    strided_slice hands the other ops their 12 channels."""

    def before(bb, x):
        return tail(bb, bb.emit(relax.op.nn.conv2d(x, W1)))

    mod = module(before)
    after = PadChannels(multiple=8)(mod)
    relax.analysis.well_formed(after)
    first, second = (b.value for b in after["main"].body.blocks[0].bindings[:2])
    assert tuple(int(d) for d in first.args[1].ty.shape) == (16, 48, 1, 1)
    assert second.op.name == "relax.strided_slice"
    assert [int(d) for d in second.ty.shape][:2] == [1, 12]
    x = RNG.standard_normal((1, 48, 6, 6)).astype("float32")
    np.testing.assert_allclose(run(after, x), run(mod, x), rtol=1e-4, atol=1e-4)


def test_leaves_alone_values_that_reach_other_ops_from_unblockable_inputs():
    """Input channels not a multiple (3 image channels): padding the output alone would not
    make the conv blockable, and the slice would cost a copy."""

    def before(bb, x):
        a = bb.emit(relax.op.nn.conv2d(x, const(12, 3, 3, 3)))
        return relax.op.mean(a, axis=[2, 3], keepdims=True)

    mod = module(before, x_shape=(1, 3, 8, 8))
    check(mod, mod, multiple=8)


def test_channels_already_a_multiple_are_left_alone():
    def before(bb, x):
        a = bb.emit(relax.op.nn.conv2d(x, const(16, 48, 1, 1)))
        return relax.op.nn.conv2d(a, const(8, 16, 1, 1))

    mod = module(before)
    check(mod, mod, multiple=8)


def test_bad_multiple_names_the_pass_and_option():
    with pytest.raises(PassOptionError, match="pad-channels.*multiple"):
        PadChannels(multiple=1)


def test_det_convs_are_all_blocked_on_x86():
    """PP-OCRv4 det's FPN narrows to 12, 18 and 42 channels: padded, every conv takes NCHW8c
    (the stem reads the 3-channel image in NCHW and writes blocks), and no layout transform is
    left: the head's shuffles run on blocks, and its last conv (4 channels, padded to 8)
    leaves them through a slice of its lanes."""
    spec = get_target("x86")
    imported = import_onnx(model_path("ppocr-det"), {"x": [1, 3, 320, 320]})
    mod = run_pipeline(bind_params(imported), spec.graph_pipeline)
    convs, transforms = [], []
    relax.analysis.post_order_visit(
        mod["main"].body,
        lambda e: (
            convs.append((str(e.attrs.data_layout), str(e.attrs.out_layout)))
            if _op(e) == "relax.nn.conv2d" else
            transforms.append(e) if _op(e) == "relax.layout_transform" else None
        ),
    )  # fmt: skip
    assert len(convs) > 60 and convs.count(("NCHW8c", "NCHW8c")) == len(convs) - 1
    assert ("NCHW", "NCHW8c") in convs
    assert not transforms


def _op(expr):
    return getattr(expr.op, "name", None) if isinstance(expr, relax.Call) else None


def test_symbolic_spatial_size_still_pads():
    h, w = tvm.tirx.Var("h", "int64"), tvm.tirx.Var("w", "int64")

    def before(bb, x):
        a = bb.emit(relax.op.nn.conv2d(x, W1))
        return relax.op.nn.conv2d(bb.emit(relax.op.add(a, BIAS)), W2, padding=[1, 1, 1, 1])

    after = PadChannels(multiple=8)(module(before, x_shape=(1, 48, h, w)))
    relax.analysis.well_formed(after)
    first = after["main"].body.blocks[0].bindings[0].value
    assert tuple(int(d) for d in first.args[1].ty.shape) == (16, 48, 1, 1)
