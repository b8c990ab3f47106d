"""Empirical bias correction (compiler/bias_correction.py): op depths, the measured shift of a
first op against NumPy, the fake-quant build's output means brought back to fp32's, and the
int8 build subtracting the measured shifts."""

import json

import numpy as np
import pytest
import tvm
from numpy.lib.stride_tricks import sliding_window_view
from onnx import TensorProto, helper, numpy_helper
from tvm import relax

from tilecc.compiler import api
from tilecc.compiler.bias_correction import anchor_outputs
from tilecc.compiler.calibration import quantize_weight, weight_scales
from tilecc.compiler.frontend_onnx import import_onnx
from tilecc.compiler.quantize import calibrate, prepared, save_table
from tilecc.targets import get_target

SHAPE = (1, 8, 12, 12)


def two_branches():
    """x -> conv a, x -> conv b (3x3, 8 -> 8); relu(a + b) -> conv c (3x3, 8 -> 8): c's input
    depends on two ops of depth 0. No activation after c, so c's mean reaches the output."""
    rng = np.random.default_rng(0)
    weights = {n: rng.standard_normal((8, 8, 3, 3)).astype(np.float32) * 0.2 for n in "abc"}
    nodes = [
        helper.make_node("Conv", ["x", "wa"], ["a"], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["x", "wb"], ["b"], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["a", "b"], ["s"]),
        helper.make_node("Relu", ["s"], ["r"]),
        helper.make_node("Conv", ["r", "wc"], ["y"], pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(
        nodes,
        "two_branches",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(SHAPE))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(SHAPE))],
        [numpy_helper.from_array(w, f"w{n}") for n, w in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    return model, weights


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    onnx_model, weights = two_branches()
    path = tmp_path_factory.mktemp("bias") / "m.onnx"
    path.write_bytes(onnx_model.SerializeToString())
    rng = np.random.default_rng(1)
    # skewed inputs: rounding them to a coarse grid shifts the means
    samples = [{"x": rng.gamma(0.5, 1.0, SHAPE).astype(np.float32)} for _ in range(6)]
    return path, weights, samples


def _table(path, samples, empirical, tmp_path):
    imported = import_onnx(path)
    table = calibrate(imported, samples, "minmax", progress=lambda _: None, empirical=empirical)
    out = tmp_path / f"table-{empirical}.json"
    save_table(table, out)
    return table, out


def _run(path, samples, **build):
    exe = api.compile_model(path, "x86", None, None, 1, **build)
    vm = relax.VirtualMachine(exe, tvm.cpu())
    return [vm["main"](tvm.runtime.tensor(s["x"])).numpy() for s in samples]


def _conv(x, w):
    windows = sliding_window_view(np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1))), (3, 3), (2, 3))
    return np.einsum("nchwij,ocij->nohw", windows, w)


def test_ops_are_ordered_by_depth(model):
    path = model[0]
    depths = [(key, depth) for key, _, depth in anchor_outputs(prepared(import_onnx(path)))]
    assert depths == [("conv2d:0", 0), ("conv2d:1", 0), ("conv2d:2", 1)]


def test_first_op_shift_matches_numpy(model, tmp_path):
    path, weights, samples = model
    table, _ = _table(path, samples, True, tmp_path)
    entry = table["activations"]["conv2d:0"]
    scale, zero = entry["scale"], entry["zero_point"]
    weight_max = get_target("x86").int8_weight_max
    assert table["output_shift_weight_max"] == weight_max
    w = weights["a"].astype(np.float64)
    scales = weight_scales(w, True, 0, weight_max)
    w8 = quantize_weight(w, scales, 0, weight_max) * scales.reshape(-1, 1, 1, 1)
    diffs = []
    for s in samples:
        x = s["x"].astype(np.float64)
        q = np.clip(np.round(x / scale) + zero, -128, 127)
        diffs.append(_conv((q - zero) * scale, w8) - _conv(x, w))
    want = np.mean(diffs, axis=(0, 1, 3, 4))
    assert np.abs(want).max() > 1e-4  # there is a shift to measure
    np.testing.assert_allclose(entry["output_shift"], want, rtol=1e-3, atol=1e-6)


def test_fake_quant_output_means_come_back_to_fp32(model, tmp_path):
    path, _, samples = model
    fp32 = np.mean(_run(path, samples), axis=(0, 1, 3, 4))
    errors = {}
    for empirical in (False, True):
        _, table = _table(path, samples, empirical, tmp_path)
        fake = np.mean(_run(path, samples, fake_quant=table), axis=(0, 1, 3, 4))
        errors[empirical] = np.abs(fake - fp32).max()
    assert errors[True] < 1e-5 < errors[False] / 10  # measured after a and b are corrected


def test_int8_build_subtracts_the_measured_shift(model, tmp_path):
    path, _, samples = model
    table, path_table = _table(path, samples, True, tmp_path)
    base = _run(path, samples[:1], quantize=path_table)[0]
    moved = json.loads(path_table.read_text())
    delta = np.linspace(-1, 1, 8)
    entry = moved["activations"]["conv2d:2"]
    entry["output_shift"] = (np.asarray(entry["output_shift"]) + delta).tolist()
    (tmp_path / "moved.json").write_text(json.dumps(moved))
    got = _run(path, samples[:1], quantize=tmp_path / "moved.json")[0]
    want = np.broadcast_to(-delta.reshape(1, -1, 1, 1), base.shape)
    np.testing.assert_allclose(got - base, want, atol=1e-4)
    # measured at another weight range than this target's: the analytic correction instead
    moved["output_shift_weight_max"] = 63 if table["output_shift_weight_max"] == 127 else 127
    (tmp_path / "other.json").write_text(json.dumps(moved))
    del table["output_shift_weight_max"]
    for entry in table["activations"].values():
        del entry["output_shift"]
    save_table(table, tmp_path / "analytic.json")
    np.testing.assert_array_equal(
        _run(path, samples[:1], quantize=tmp_path / "other.json")[0],
        _run(path, samples[:1], quantize=tmp_path / "analytic.json")[0],
    )


def test_cli_quantize_measures_shifts_on_request(cli, model, tmp_path):
    path, _, samples = model
    calib = tmp_path / "calib"
    calib.mkdir()
    for k, sample in enumerate(samples):
        np.savez(calib / f"{k}.npz", **sample)
    out = tmp_path / "t.json"
    code, _, err = cli("quantize", path, "--calib", calib, "--empirical-bias-correction", "-o", out)
    assert code == 0, err
    assert "bias correction: depth 2/2" in err
    table = json.loads(out.read_text())
    assert all("output_shift" in e for e in table["activations"].values())
