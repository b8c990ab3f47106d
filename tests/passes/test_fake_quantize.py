"""fake-quantize: quantize -> dequantize on calibrated conv2d / matmul inputs, int8-rounded
weights; IR in / IR out, and the numbers against a NumPy fake-quant reference."""

import json

import numpy as np
import pytest
import tvm
from relax_helpers import op_names
from tvm import relax
from tvm.script import ir as I
from tvm.script import relax as R

from tilecc.compiler.calibration import QParams, quantize_weight, weight_scales
from tilecc.compiler.errors import PassOptionError
from tilecc.passes.fake_quantize import FakeQuantize

RNG = np.random.default_rng(0)
W1 = RNG.standard_normal((4, 3, 3, 3)).astype("float32")
W2 = RNG.standard_normal((4, 3, 1, 1)).astype("float32")


def module():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 3, 6, 6), "float32"), w1: R.Tensor((4, 3, 3, 3), "float32"),
                 w2: R.Tensor((4, 3, 1, 1), "float32")):  # fmt: skip
            R.func_attr({"num_input": 1})
            with R.dataflow():
                a = R.nn.conv2d(x, w1, padding=[1, 1, 1, 1])
                b = R.nn.conv2d(x, w2)
                c = R.add(a, b)
                R.output(c)
            return c

    params = {"w1": tvm.runtime.tensor(W1), "w2": tvm.runtime.tensor(W2)}
    return relax.transform.BindParams("main", params)(Before)


def table(tmp_path, entries):
    path = tmp_path / "table.json"
    path.write_text(json.dumps({"activations": entries}))
    return str(path)


def run(mod, x):
    ex = tvm.compile(mod, target=tvm.target.Target({"kind": "llvm"}))
    return relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()


def fake_weight(w):
    scales = weight_scales(w)
    return quantize_weight(w, scales) * scales[:, None, None, None]


def test_a_shared_input_is_quantized_once_and_weights_are_rounded_to_int8(tmp_path):
    qp = QParams(0.02, -5)
    entry = {"scale": qp.scale, "zero_point": qp.zero_point}
    after = FakeQuantize(table(tmp_path, {"conv2d:0": entry, "conv2d:1": entry}))(module())
    relax.analysis.well_formed(after)
    assert op_names(after) == [
        "relax.quantize", "relax.dequantize", "relax.nn.conv2d", "relax.nn.conv2d", "relax.add"
    ]  # fmt: skip
    x = RNG.uniform(-2.0, 3.0, (1, 3, 6, 6)).astype("float32")  # some of it clips
    xq = qp.dequantize(qp.quantize(x))
    ref = run(module(), xq)  # the fp32 module on fake-quantized x ...
    got = run(after, x)
    with_w = FakeQuantize(table(tmp_path, {}))(module())  # (the empty table changes nothing)
    tvm.ir.assert_structural_equal(with_w, module())
    # ... differs from the fake-quant one only by the weights' int8 rounding:
    assert not np.allclose(got, ref, atol=1e-4)
    expected = _conv(xq, fake_weight(W1), pad=1) + _conv(xq, fake_weight(W2), pad=0)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_only_the_named_op_is_touched(tmp_path):
    after = FakeQuantize(table(tmp_path, {"conv2d:1": {"scale": 0.05, "zero_point": 0}}))(module())
    calls = [b.value for b in after["main"].body.blocks[0].bindings]
    first = next(c for c in calls if c.op.name == "relax.nn.conv2d")
    assert first.args[0].name == "x"  # conv2d:0 reads x itself
    np.testing.assert_array_equal(first.args[1].value.numpy(), W1)


def test_a_missing_table_is_an_option_error(tmp_path):
    with pytest.raises(PassOptionError, match="table"):
        FakeQuantize(str(tmp_path / "nope.json"))
    with pytest.raises(PassOptionError, match="table"):
        FakeQuantize("")


def _conv(x, w, pad):
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.zeros((n, o, h + 2 * pad - kh + 1, wd + 2 * pad - kw + 1))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i : i + out.shape[2], j : j + out.shape[3]]
            out += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j])
    return out.astype(np.float32)


def test_bias_correction_removes_the_mean_shift_of_rounded_weights(tmp_path):
    """x's channels sit far from 0, so the rounded weights move the 1x1 conv's (conv2d:1)
    output mean; with the channel means of its (fake-quantized) input in the table the shift is
    subtracted: the output's mean per channel is that input's through the exact weights."""
    x = (RNG.standard_normal((1, 3, 6, 6)) + np.array([4.0, -3.0, 2.5])[:, None, None]).astype(
        "float32"
    )
    qp = QParams(0.04, 0)
    xq = qp.dequantize(qp.quantize(x))
    entry = {"scale": qp.scale, "zero_point": qp.zero_point}
    with_mean = dict(entry, channel_mean=xq.mean(axis=(0, 2, 3)).tolist())
    plain = FakeQuantize(table(tmp_path, {"conv2d:1": entry}))(module())
    corrected = FakeQuantize(table(tmp_path, {"conv2d:1": with_mean}))(module())
    off = FakeQuantize(table(tmp_path, {"conv2d:1": with_mean}), bias_correction=False)(module())
    assert op_names(corrected).count("relax.subtract") == 1
    tvm.ir.assert_structural_equal(off, plain)
    conv_a = _conv(x, W1, pad=1)  # conv2d:0 is not in the table
    exact = _conv(xq, W2, pad=0)
    drift_plain = (run(plain, x) - conv_a - exact).mean(axis=(0, 2, 3))
    drift_corrected = (run(corrected, x) - conv_a - exact).mean(axis=(0, 2, 3))
    assert np.abs(drift_plain).max() > 1e-3  # rounding W2 moved the means ...
    np.testing.assert_allclose(drift_corrected, 0, atol=2e-5)  # ... and the shift undoes it


def test_a_mean_of_another_length_is_not_used(tmp_path):
    """A value that first feeds a matmul has its means on the last axis; a conv reading it
    leaves them alone rather than broadcasting the wrong channels."""
    entry = {"scale": 0.04, "zero_point": 0, "channel_mean": [1.0] * 6}  # x has 3 channels
    mod = FakeQuantize(table(tmp_path, {"conv2d:1": entry}))(module())
    assert "relax.subtract" not in op_names(mod)
