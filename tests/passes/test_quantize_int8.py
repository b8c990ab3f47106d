"""quantize-int8: calibrated convs and matmuls become 8-bit x int8 -> int32 ops (convs with
zero-point padding) and an fp32 requantization; IR in / IR out, and the numbers against a NumPy
integer reference."""

import json

import numpy as np
import pytest
import tvm
from tvm import relax
from tvm.script import ir as I
from tvm.script import relax as R

from tilecc.compiler.build import template_plan
from tilecc.compiler.calibration import bias_shift, quantize_weight, weight_scales
from tilecc.compiler.errors import PassOptionError
from tilecc.compiler.pipeline import relax_pipeline
from tilecc.passes.fake_quantize import FakeQuantize
from tilecc.passes.quantize_int8 import QuantizeInt8
from tilecc.targets import get_target

RNG = np.random.default_rng(0)
W_DENSE = RNG.standard_normal((5, 16)).astype("float32")
W_CONV = RNG.standard_normal((2, 2, 3, 3, 8, 8)).astype("float32")  # OIHW8i8o: 16 -> 16
W_DW = RNG.standard_normal((2, 1, 3, 3, 1, 8)).astype("float32")  # depthwise OIHW1i8o
W_FIRST = RNG.standard_normal((16, 3, 3, 3)).astype("float32")  # 3 image channels, NCHW


def module():
    """A matmul (anchor 0), a blocked conv (1), a depthwise conv (2), a plain NCHW conv (3)."""

    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 2, 6, 7, 8), "float32"), img: R.Tensor((1, 3, 6, 7), "float32"),
                 v: R.Tensor((3, 16), "float32"), wd: R.Tensor((16, 5), "float32"),
                 wc: R.Tensor((2, 2, 3, 3, 8, 8), "float32"),
                 ww: R.Tensor((2, 1, 3, 3, 1, 8), "float32"),
                 wf: R.Tensor((16, 3, 3, 3), "float32")):  # fmt: skip
            R.func_attr({"num_input": 3})
            with R.dataflow():
                m = R.matmul(v, wd)
                a = R.nn.conv2d(x, wc, padding=[1, 1, 1, 1], data_layout="NCHW8c",
                                kernel_layout="OIHW8i8o", out_layout="NCHW8c")  # fmt: skip
                b = R.nn.conv2d(a, ww, padding=[1, 1, 1, 1], groups=16, data_layout="NCHW8c",
                                kernel_layout="OIHW1i8o", out_layout="NCHW8c")  # fmt: skip
                c = R.nn.conv2d(img, wf, padding=[1, 1, 1, 1])
                R.output(m, b, c)
            return (m, b, c)

    params = {
        "wd": tvm.runtime.tensor(W_DENSE.T.copy()),
        "wc": tvm.runtime.tensor(W_CONV),
        "ww": tvm.runtime.tensor(W_DW),
        "wf": tvm.runtime.tensor(W_FIRST),
    }
    return relax.transform.BindParams("main", params)(Before)


A_PARAMS = {"scale": 0.03, "zero_point": -20}  # x: int8 zero point -20, uint8 108
B_PARAMS = {"scale": 0.25, "zero_point": 3}
EVERY = {"matmul:0": A_PARAMS, "conv2d:1": A_PARAMS, "conv2d:2": B_PARAMS, "conv2d:3": A_PARAMS}


def table(tmp_path, entries=EVERY):
    path = tmp_path / "table.json"
    path.write_text(json.dumps({"activations": entries}))
    return str(path)


def calls(mod):
    found = []
    relax.analysis.post_order_visit(
        mod["main"].body,
        lambda e: (
            found.append(e) if isinstance(e, relax.Call) and isinstance(e.op, tvm.ir.Op) else 0
        ),
    )
    return found


def run(mod, *args):
    """Compiled as tilecc compiles (the 8-bit convs on its int8 templates) for this host."""
    spec = get_target("x86")
    target = spec.tvm()
    ex = tvm.compile(mod, target=target, relax_pipeline=relax_pipeline(target, template_plan(spec)))
    out = relax.VirtualMachine(ex, tvm.cpu())["main"](*[tvm.runtime.tensor(a) for a in args])
    return [o.numpy() for o in out] if isinstance(out, tvm.ir.Array) else [out.numpy()]


def unblock(x):  # NCHW8c -> NCHW
    n, cb, h, w, b = x.shape
    return x.transpose(0, 1, 4, 2, 3).reshape(n, cb * b, h, w)


def oihw(w):  # OIHW[i]i[o]o -> OIHW
    o, i, h, ww, ib, ob = w.shape
    return w.transpose(0, 5, 1, 4, 2, 3).reshape(o * ob, i * ib, h, ww)


def int8_conv(x, w, params, dtype, weight_max, groups=1):
    """The integer computation the pass asks for, in NumPy (int64), requantized to float."""
    shift = 128 if dtype == "uint8" else 0
    scale, zero = params["scale"], params["zero_point"] + shift
    lo, hi = (0, 255) if dtype == "uint8" else (-128, 127)
    q = np.clip(np.round(x.astype(np.float64) / scale) + zero, lo, hi).astype(np.int64)
    q = np.pad(q, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=zero)
    sw = weight_scales(w, True, 0, weight_max)
    wq = quantize_weight(w, sw, 0, weight_max).astype(np.int64)
    n, c, h, width = q.shape
    o = wq.shape[0]
    acc = np.zeros((n, o, h - 2, width - 2), np.int64)
    per = c // groups
    for oc in range(o):
        g = oc // (o // groups)
        for kh in range(3):
            for kw in range(3):
                patch = q[:, g * per : (g + 1) * per, kh : kh + h - 2, kw : kw + width - 2]
                acc[:, oc] += np.einsum("nchw,c->nhw", patch, wq[oc, :, kh, kw])
    corr = zero * wq.reshape(o, -1).sum(axis=1)
    return (acc - corr[None, :, None, None]) * (scale * sw)[None, :, None, None]


def int8_matmul(v, w, params, dtype, weight_max):
    """v @ w ([K, N] weights, per-column scales) in integers (int64), requantized to float."""
    shift = 128 if dtype == "uint8" else 0
    scale, zero = params["scale"], params["zero_point"] + shift
    lo, hi = (0, 255) if dtype == "uint8" else (-128, 127)
    q = np.clip(np.round(v.astype(np.float64) / scale) + zero, lo, hi).astype(np.int64)
    sw = weight_scales(w, True, 1, weight_max)
    wq = quantize_weight(w, sw, 1, weight_max).astype(np.int64)
    return (q @ wq - zero * wq.sum(axis=0)) * (scale * sw)


@pytest.mark.parametrize("dtype,weight_max", [("uint8", 63), ("int8", 127)])
def test_blocked_and_depthwise_convs_run_in_integers(tmp_path, dtype, weight_max):
    opts = dict(data_dtype=dtype, weight_max=weight_max)
    after = QuantizeInt8(table(tmp_path), **opts)(module())
    relax.analysis.well_formed(after)
    convs = [c for c in calls(after) if c.op.name == "relax.nn.conv2d"]
    assert [str(c.ty.dtype) for c in convs] == ["int32", "int32", "int32"]
    stem = convs[2]  # 3 image channels, NCHW: regrouped into NCHW4c, channels padded to 4
    assert str(stem.attrs.data_layout) == "NCHW4c" and str(stem.attrs.out_layout) == "NCHW"
    assert stem.args[1].ty.shape[1] == 4 and not np.any(stem.args[1].value.numpy()[:, 3])
    # each pixel's bytes packed into one int32 over whole rows, viewed as NCHW4c bytes
    assert "relax.memory.view" in [c.op.name for c in calls(after)]
    for conv in convs:
        assert [int(p) for p in conv.attrs.padding] == [0, 0, 0, 0]  # padded with z instead
        assert conv.args[0].ty.shape[2] == 8  # 6 rows + 2 of z
        assert str(conv.attrs.kernel_layout) == "OIHW" and str(conv.args[0].ty.dtype) == dtype
        assert str(conv.args[1].ty.dtype) == "int8"
        assert np.abs(conv.args[1].value.numpy()).max() <= weight_max
    (matmul,) = [c for c in calls(after) if c.op.name == "relax.matmul"]
    assert str(matmul.args[0].ty.dtype) == dtype and str(matmul.ty.dtype) == "int32"
    assert np.abs(matmul.args[1].value.numpy()).max() <= weight_max

    x = RNG.uniform(-3.0, 4.0, (1, 2, 6, 7, 8)).astype("float32")  # some of it clips
    img = RNG.uniform(-1, 1, (1, 3, 6, 7)).astype("float32")
    v = RNG.uniform(-1, 1, (3, 16)).astype("float32")
    m, b, c = run(after, x, img, v)
    expected_c = int8_conv(img, W_FIRST, A_PARAMS, dtype, weight_max)
    np.testing.assert_allclose(c, expected_c, rtol=1e-5, atol=1e-5)
    expected_m = int8_matmul(v, W_DENSE.T, A_PARAMS, dtype, weight_max)
    np.testing.assert_allclose(m, expected_m, rtol=1e-5, atol=1e-5)
    a = int8_conv(unblock(x), oihw(W_CONV), A_PARAMS, dtype, weight_max)
    dw = oihw(W_DW)
    expected = int8_conv(a.astype(np.float32), dw, B_PARAMS, dtype, weight_max, groups=16)
    np.testing.assert_allclose(unblock(b), expected, rtol=1e-5, atol=1e-5)


def test_a_shared_input_is_quantized_once(tmp_path):
    @I.ir_module
    class Two:
        @R.function
        def main(
            x: R.Tensor((1, 1, 5, 5, 8), "float32"), w: R.Tensor((1, 1, 1, 1, 8, 8), "float32")
        ):
            R.func_attr({"num_input": 1})
            with R.dataflow():
                a = R.nn.conv2d(x, w, data_layout="NCHW8c", kernel_layout="OIHW8i8o",
                                out_layout="NCHW8c")  # fmt: skip
                b = R.nn.conv2d(x, w, data_layout="NCHW8c", kernel_layout="OIHW8i8o",
                                out_layout="NCHW8c")  # fmt: skip
                c = R.add(a, b)
                R.output(c)
            return c

    entries = {"conv2d:0": A_PARAMS, "conv2d:1": A_PARAMS}
    weight = tvm.runtime.tensor(np.ones((1, 1, 1, 1, 8, 8), "float32"))
    after = QuantizeInt8(table(tmp_path, entries))(
        relax.transform.BindParams("main", {"w": weight})(Two)
    )
    names = [c.op.name for c in calls(after)]
    assert names.count("relax.quantize") == 1 and names.count("relax.nn.pad") == 0  # 1x1


def test_no_change_for_ops_the_table_does_not_name(tmp_path):
    after = QuantizeInt8(table(tmp_path, {"conv2d:7": A_PARAMS}))(module())
    tvm.ir.assert_structural_equal(after, module())


def test_matmul_whose_k_is_not_in_fours_stays_fp32(tmp_path):
    @I.ir_module
    class Odd:
        @R.function
        def main(v: R.Tensor((3, 6), "float32"), w: R.Tensor((6, 5), "float32")):
            R.func_attr({"num_input": 1})
            with R.dataflow():
                m = R.matmul(v, w)
                R.output(m)
            return m

    odd = relax.transform.BindParams("main", {"w": tvm.runtime.tensor(W_DENSE[:, :6].T.copy())})(
        Odd
    )
    after = QuantizeInt8(table(tmp_path, {"matmul:0": A_PARAMS}))(odd)
    tvm.ir.assert_structural_equal(after, odd)


def test_stem_with_a_symbolic_width_is_regrouped_by_layout_transform(tmp_path):
    """Packing bytes into words needs the row's static shape; a symbolic width (rec's
    dynamic-width input) takes layout_transform."""

    @I.ir_module
    class Stem:
        @R.function
        def main(img: R.Tensor((1, 3, 6, "w"), "float32"), wf: R.Tensor((16, 3, 3, 3), "float32")):
            R.func_attr({"num_input": 1})
            with R.dataflow():
                c = R.nn.conv2d(img, wf, padding=[1, 1, 1, 1])
                R.output(c)
            return c

    stem = relax.transform.BindParams("main", {"wf": tvm.runtime.tensor(W_FIRST)})(Stem)
    after = QuantizeInt8(table(tmp_path, {"conv2d:0": A_PARAMS}))(stem)
    relax.analysis.well_formed(after)
    names = [c.op.name for c in calls(after)]
    assert "relax.layout_transform" in names and "relax.memory.view" not in names


def test_bad_options_are_named(tmp_path):
    with pytest.raises(PassOptionError, match="data-dtype"):
        QuantizeInt8(table(tmp_path), data_dtype="int4")
    with pytest.raises(PassOptionError, match="weight-max"):
        QuantizeInt8(table(tmp_path), weight_max=200)
    with pytest.raises(PassOptionError, match="table"):
        QuantizeInt8(str(tmp_path / "missing.json"))


def test_zero_point_zero_keeps_the_convs_own_padding(tmp_path):
    """Calibrated to [0, max] (after a ReLU), uint8 data has zero point 0: the conv pads with
    zeros itself and no pad op is emitted."""

    @I.ir_module
    class One:
        @R.function
        def main(x: R.Tensor((1, 2, 6, 7, 8), "float32"),
                 wc: R.Tensor((2, 2, 3, 3, 8, 8), "float32")):  # fmt: skip
            R.func_attr({"num_input": 1})
            with R.dataflow():
                a = R.nn.conv2d(x, wc, padding=[1, 1, 1, 1], data_layout="NCHW8c",
                                kernel_layout="OIHW8i8o", out_layout="NCHW8c")  # fmt: skip
                R.output(a)
            return a

    one = relax.transform.BindParams("main", {"wc": tvm.runtime.tensor(W_CONV)})(One)
    relu_range = {"scale": 0.02, "zero_point": -128}  # int8 -128 = uint8 0
    after = QuantizeInt8(table(tmp_path, {"conv2d:0": relu_range}), weight_max=63)(one)
    assert "relax.nn.pad" not in [c.op.name for c in calls(after)]
    (conv,) = [c for c in calls(after) if c.op.name == "relax.nn.conv2d"]
    assert [int(p) for p in conv.attrs.padding] == [1, 1, 1, 1]
    x = RNG.uniform(0.0, 5.0, (1, 2, 6, 7, 8)).astype("float32")
    (got,) = run(after, x)
    expected = int8_conv(unblock(x), oihw(W_CONV), relu_range, "uint8", 63)
    np.testing.assert_allclose(unblock(got), expected, rtol=1e-5, atol=1e-5)


def upsample_then_conv():
    """det's FPN step: x upsampled 2x (nearest) and added to y, x also the input of a conv
    (anchor 0) that comes after the resize in binding order."""

    @I.ir_module
    class Fpn:
        @R.function
        def main(x: R.Tensor((1, 2, 3, 4, 8), "float32"), y: R.Tensor((1, 2, 6, 8, 8), "float32"),
                 wc: R.Tensor((2, 2, 3, 3, 8, 8), "float32")):  # fmt: skip
            R.func_attr({"num_input": 2})
            with R.dataflow():
                up = R.image.resize2d(x, R.shape([6, 8]), layout="NCHW8c",
                                      method="nearest_neighbor",
                                      coordinate_transformation_mode="asymmetric",
                                      rounding_method="floor")  # fmt: skip
                s = R.add(y, up)
                a = R.nn.conv2d(x, wc, padding=[1, 1, 1, 1], data_layout="NCHW8c",
                                kernel_layout="OIHW8i8o", out_layout="NCHW8c")  # fmt: skip
                R.output(s, a)
            return (s, a)

    return relax.transform.BindParams("main", {"wc": tvm.runtime.tensor(W_CONV)})(Fpn)


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_nearest_resize_of_a_quantized_input_copies_its_8bit_codes(tmp_path, dtype):
    path = table(tmp_path, {"conv2d:0": A_PARAMS})
    after = QuantizeInt8(path, data_dtype=dtype)(upsample_then_conv())
    relax.analysis.well_formed(after)
    (resize,) = [c for c in calls(after) if c.op.name == "relax.image.resize2d"]
    assert str(resize.args[0].ty.dtype) == dtype and str(resize.ty.dtype) == dtype
    names = [c.op.name for c in calls(after)]
    assert names.count("relax.quantize") == 1 and names.count("relax.dequantize") == 1

    x = RNG.uniform(-3.0, 4.0, (1, 2, 3, 4, 8)).astype("float32")  # some of it clips
    y = RNG.uniform(-1.0, 1.0, (1, 2, 6, 8, 8)).astype("float32")
    s, _ = run(after, x, y)
    scale, zero = A_PARAMS["scale"], A_PARAMS["zero_point"]
    seen = (np.clip(np.round(x / scale) + zero, -128, 127) - zero) * scale
    up = seen.repeat(2, axis=2).repeat(2, axis=3)
    np.testing.assert_allclose(s, y + up.astype(np.float32), rtol=0, atol=1e-6)
    # the fake-quant preview resizes the quantized value too: the same sum (to fp32 rounding:
    # the builds fuse the dequantize's multiply and the add differently)
    fake = FakeQuantize(path)(upsample_then_conv())
    fake_s, _ = run(fake, x, y)
    np.testing.assert_allclose(fake_s, s, rtol=0, atol=1e-6)


def test_quantized_resize_false_leaves_the_resize_in_fp32(tmp_path):
    path = table(tmp_path, {"conv2d:0": A_PARAMS})
    for opts in (
        QuantizeInt8(path, quantized_resize=False),
        FakeQuantize(path, quantized_resize=False),
    ):
        after = opts(upsample_then_conv())
        (resize,) = [c for c in calls(after) if c.op.name == "relax.image.resize2d"]
        assert resize.args[0].same_as(after["main"].params[0])


def rounded(w, weight_max):
    scales = weight_scales(w, True, 0, weight_max)
    return quantize_weight(w, scales, 0, weight_max) * scales[:, None, None, None]


def test_bias_correction_subtracts_the_tables_mean_shift(tmp_path):
    """With the inputs' channel means in the table each int8 conv's output is the integer
    result less E[(Wq * sw - W) x] per channel, as fake-quantize subtracts it."""
    mean_x = RNG.uniform(-1, 1, 16)
    mean_a = RNG.uniform(-1, 1, 16)
    entries = {
        "conv2d:1": dict(A_PARAMS, channel_mean=mean_x.tolist()),
        "conv2d:2": dict(B_PARAMS, channel_mean=mean_a.tolist()),
    }
    after = QuantizeInt8(table(tmp_path, entries), weight_max=63)(module())
    relax.analysis.well_formed(after)
    off = QuantizeInt8(table(tmp_path, entries), weight_max=63, bias_correction=False)(module())
    assert [c.op.name for c in calls(after)].count("relax.subtract") == 4  # 2 zero points + 2
    assert [c.op.name for c in calls(off)].count("relax.subtract") == 2
    entries["conv2d:1"]["channel_mean"] = [0.5] * 32  # another consumer's axis: not used
    other = QuantizeInt8(table(tmp_path, entries), weight_max=63)(module())
    assert [c.op.name for c in calls(other)].count("relax.subtract") == 3

    x = RNG.uniform(-3.0, 4.0, (1, 2, 6, 7, 8)).astype("float32")
    img = RNG.uniform(-1, 1, (1, 3, 6, 7)).astype("float32")
    v = RNG.uniform(-1, 1, (3, 16)).astype("float32")
    _, b, _ = run(after, x, img, v)
    wc, ww = oihw(W_CONV), oihw(W_DW)
    shift_a = bias_shift(wc, rounded(wc, 63), mean_x, "conv2d")
    a = int8_conv(unblock(x), wc, A_PARAMS, "uint8", 63) - shift_a[None, :, None, None]
    shift_b = bias_shift(ww, rounded(ww, 63), mean_a, "conv2d", groups=16)
    expected = int8_conv(a.astype(np.float32), ww, B_PARAMS, "uint8", 63, groups=16)
    expected -= shift_b[None, :, None, None]
    np.testing.assert_allclose(unblock(b), expected, rtol=1e-5, atol=1e-5)


def test_mean_of_a_conv_input_pad_channels_widened_is_padded_with_zeros():
    from tilecc.passes.quantize_int8 import _padded_mean

    weight = RNG.standard_normal((4, 16, 1, 1)).astype("float32")
    weight[:, 12:] = 0  # pad-channels' zero weights for the channels it added
    mean = np.arange(12, dtype=np.float64)
    np.testing.assert_array_equal(_padded_mean(mean, weight), np.r_[mean, np.zeros(4)])
    weight[0, 13] = 1.0  # a real 16-channel conv: a 12-entry mean is not its own
    assert _padded_mean(mean, weight) is mean


def test_matmul_bias_correction(tmp_path):
    mean_v = RNG.uniform(-1, 1, 16)
    entries = {"matmul:0": dict(A_PARAMS, channel_mean=mean_v.tolist())}
    after = QuantizeInt8(table(tmp_path, entries), weight_max=63)(module())
    x = RNG.uniform(-3.0, 4.0, (1, 2, 6, 7, 8)).astype("float32")
    img = RNG.uniform(-1, 1, (1, 3, 6, 7)).astype("float32")
    v = RNG.uniform(-1, 1, (3, 16)).astype("float32")
    m, _, _ = run(after, x, img, v)
    w = W_DENSE.T
    sw = weight_scales(w, True, 1, 63)
    shift = bias_shift(w, quantize_weight(w, sw, 1, 63) * sw, mean_v, "matmul")
    expected = int8_matmul(v, w, A_PARAMS, "uint8", 63) - shift
    np.testing.assert_allclose(m, expected, rtol=1e-5, atol=1e-5)
