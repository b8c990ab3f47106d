"""Calibration of a real model (PP-OCR cls) into a quantization table, the fake-quant build it
drives, and bad calibration input."""

import dataclasses
import json

import numpy as np
import onnx
import pytest
import tvm
from onnx_models import relu_only
from tvm import relax

from tilecc.compiler.api import run_model as api_run
from tilecc.compiler.assets import model_path
from tilecc.compiler.build import compile_imported, optimize, template_plan
from tilecc.compiler.errors import InputError
from tilecc.compiler.frontend_onnx import import_onnx
from tilecc.compiler.pass_pipeline import IROptions
from tilecc.compiler.quantize import (
    QUANT_PIPELINE,
    calibrate,
    int8_pipeline,
    load_samples,
    prepared,
    quantizable,
    save_table,
)
from tilecc.compiler.reference import ort_quantize_static, ort_run
from tilecc.compiler.sample_inputs import ppocr_input, text_line
from tilecc.compiler.tuning import model_workloads
from tilecc.schedules.workload import Conv2dWorkload
from tilecc.targets import get_target

SHAPE = (1, 3, 48, 192)


def cls_calibration_samples() -> list[dict[str, np.ndarray]]:
    """What cls classifies: text lines, upright and turned 180 degrees (the first is the
    upright line of ppocr_input)."""
    samples = []
    for text in ("tilecc 0.1: ONNX to phones", "int8 calibration data", "Relax TIR 0.27"):
        line = text_line(*SHAPE[2:], text).astype(np.float32) / 127.5 - 1.0
        upright = np.ascontiguousarray(line.transpose(2, 0, 1)[None])
        samples += [{"x": upright}, {"x": np.ascontiguousarray(upright[..., ::-1, ::-1])}]
    return samples


@pytest.fixture(scope="module")
def cls():
    return import_onnx(model_path("ppocr-cls"), {"x": list(SHAPE)})


def test_minmax_table_covers_every_conv_and_matmul_and_fake_quant_keeps_the_answer(cls, tmp_path):
    samples = [{"x": ppocr_input("cls", SHAPE)}, {"x": -ppocr_input("cls", SHAPE)}]
    lines = []
    table = calibrate(cls, samples, "minmax", progress=lines.append)
    assert lines[-1] == "calibrating (minmax): ranges 2/2"
    points = quantizable(prepared(cls))
    assert len(points) == 54 and [k for k, _ in points] == list(table["activations"])
    first = table["activations"]["conv2d:0"]
    assert first["observed"] == pytest.approx([-1.0, 1.0], abs=0.07)  # the normalized image
    assert first["channel_mean"] == pytest.approx([0.0] * 3, abs=1e-6)  # x and -x: mean 0
    for (key, var), entry in zip(points, table["activations"].values(), strict=True):
        channels = var.ty.shape[1 if key.startswith("conv2d") else -1]
        assert len(entry["channel_mean"]) == int(channels)  # for bias correction
    path = tmp_path / "table.json"
    save_table(table, path)

    spec = get_target("x86")
    passes = f"{QUANT_PIPELINE},fake-quantize{{table={path}}},{spec.graph_pipeline}"
    vm = relax.VirtualMachine(compile_imported(cls, spec, ir=IROptions(passes)), tvm.cpu())
    x = samples[0]["x"]
    fake = vm["main"](tvm.runtime.tensor(x)).numpy()
    (fp32,) = ort_run(model_path("ppocr-cls"), {"x": x}).values()
    assert fake.argmax() == fp32.argmax()
    assert 1e-3 < np.abs(fake - fp32).max() < 0.1  # int8 noise, not nothing, not garbage


def test_calibration_samples_are_checked(cls, tmp_path):
    with pytest.raises(InputError, match="no calibration samples"):
        load_samples(tmp_path, cls)
    np.savez(tmp_path / "a.npz", x=np.zeros((1, 3, 32, 100), np.float32))
    with pytest.raises(InputError, match=r"a.npz: 'x' is \[1, 3, 32, 100\] float32, the model "):
        load_samples(tmp_path, cls)
    np.savez(tmp_path / "a.npz", image=np.zeros(SHAPE, np.float32))
    with pytest.raises(InputError, match="no array named 'x'"):
        load_samples(tmp_path, cls)
    np.savez(tmp_path / "a.npz", x=np.zeros(SHAPE, np.float32))
    assert len(load_samples(tmp_path, cls)) == 1


def test_a_model_with_nothing_to_quantize_is_refused(tmp_path):
    path = tmp_path / "relu.onnx"
    path.write_bytes(relu_only().SerializeToString())
    imported = import_onnx(path)
    with pytest.raises(InputError, match="no quantizable op"):
        calibrate(imported, [{"x": np.ones((1, 4), np.float32)}])
    with pytest.raises(InputError, match="unknown calibration method 'mse'"):
        calibrate(imported, [{"x": np.ones((1, 4), np.float32)}], "mse")


def test_cli_quantize_then_run_the_fake_quant_preview(cli, tmp_path):
    calib = tmp_path / "calib"
    calib.mkdir()
    for i, sign in enumerate((1, -1)):
        np.savez(calib / f"{i}.npz", x=sign * ppocr_input("cls", SHAPE))
    table = tmp_path / "cls.json"
    model = model_path("ppocr-cls")
    shapes = ("--input-shapes", "x:[1,3,48,192]")
    code, _, err = cli(
        "quantize", model, *shapes, "--calib", calib, "--method", "minmax", "-o", table,
        "--no-bias-correction",
    )  # fmt: skip
    assert code == 0, err
    assert "calibrating (minmax): ranges 2/2" in err and table.is_file()
    entries = json.loads(table.read_text())["activations"].values()
    assert not any("channel_mean" in e for e in entries)
    np.savez(tmp_path / "in.npz", x=ppocr_input("cls", SHAPE))
    code, out, err = cli(
        "run", model, *shapes, "--fake-quant", table, "--inputs", tmp_path / "in.npz",
        "--compare-ort", "--atol", "0.1",
    )  # fmt: skip
    assert code == 0, err
    assert "vs ORT" in out and "ok" in out


def test_cli_quantize_refuses_bad_input_and_writes_nothing(cli, tmp_path):
    model = model_path("ppocr-cls")
    shapes = ("--input-shapes", "x:[1,3,48,192]")
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "t.json"
    code, _, err = cli("quantize", model, *shapes, "--calib", empty, "-o", out)
    assert code == 1 and "error: " in err and "no calibration samples" in err
    assert not out.exists()
    bogus = tmp_path / "bogus.json"
    bogus.write_text('{"format": "tilecc-quant-table-2", "model_sha256": "0", "activations": {}}')
    code, _, err = cli("run", model, *shapes, "--fake-quant", bogus)
    assert code == 1 and "calibrated for another model" in err
    bogus.write_text('{"format": "tilecc-quant-table-1", "model_sha256": "0", "activations": {}}')
    code, _, err = cli("run", model, *shapes, "--fake-quant", bogus)
    assert code == 1 and "format tilecc-quant-table-1" in err and "quantize` again" in err


@pytest.fixture(scope="module")
def cls_table(cls, tmp_path_factory):
    samples = cls_calibration_samples()
    path = tmp_path_factory.mktemp("table") / "cls.json"
    save_table(calibrate(cls, samples, "minmax", progress=lambda _: None), path)
    return path


def test_cli_int8_build_runs_int8_kernels_and_keeps_the_answer(cli, cls_table, tmp_path):
    model = model_path("ppocr-cls")
    shapes = ("--input-shapes", "x:[1,3,48,192]")
    so = tmp_path / "cls_int8.so"
    code, _, err = cli("compile", model, *shapes, "--quantize", cls_table, "-o", so, "--report")
    assert code == 0, err
    np.savez(tmp_path / "in.npz", x=ppocr_input("cls", SHAPE))
    code, out, err = cli(
        "run", so, "--inputs", tmp_path / "in.npz", "--save-outputs", tmp_path / "out.npz",
        "--compare-ort", "--atol", "0.1",
    )  # fmt: skip
    assert code == 0, err
    int8 = np.load(tmp_path / "out.npz")
    (name,) = int8.files
    (fp32,) = ort_run(model, {"x": ppocr_input("cls", SHAPE)}).values()
    assert int8[name].argmax() == fp32.argmax()
    assert 1e-3 < np.abs(int8[name] - fp32).max() < 0.1  # int8 noise, not nothing, not garbage


def test_int8_build_runs_every_conv_in_int8(cls, cls_table):
    spec = get_target("x86")
    passes = int8_pipeline(cls_table, cls, spec.graph_pipeline, spec)
    convs = []
    relax.analysis.post_order_visit(
        optimize(cls, spec, IROptions(passes))["main"].body,
        lambda e: (
            convs.append((str(e.args[0].ty.dtype), str(e.attrs.data_layout)))
            if isinstance(e, relax.Call) and getattr(e.op, "name", "") == "relax.nn.conv2d"
            else None
        ),
    )
    # every conv runs int8: the squeeze-excite convs on 1x1 maps (2, 10, 22... channels) are
    # padded to blocks of 8, the first (3 image channels, NCHW in) regrouped into NCHW4c
    assert convs[0] == ("uint8", "NCHW4c")
    assert {dtype for dtype, layout in convs if layout == "NCHW8c"} == {"uint8"}
    assert [dtype for dtype, _ in convs].count("float32") == 0
    assert len(convs) == 53


def test_tuning_sees_the_workloads_the_int8_build_computes(cls, cls_table):
    """Tasks are what the build legalizes: convs over a zero-point pad with the pad taken in
    (compiler/templates.py: fold_zero_point_pad), so their records apply."""
    spec = get_target("x86")
    spec = dataclasses.replace(
        spec, graph_pipeline=int8_pipeline(cls_table, cls, spec.graph_pipeline, spec)
    )
    workloads = model_workloads(cls, spec)
    plan = template_plan(spec)
    compile_imported(cls, spec, plan=plan)
    built = {choice.workload for choice in plan.choices.values()}
    assert built == set(workloads)
    convs = [wl for wl in built if isinstance(wl, Conv2dWorkload)]  # beside cls's dense
    assert any(wl.pad_value != 0 for wl in convs)  # cls pads with zero points


def test_cli_int8_build_refusals_write_nothing(cli, cls_table, tmp_path):
    model = model_path("ppocr-cls")
    shapes = ("--input-shapes", "x:[1,3,48,192]")
    out = tmp_path / "m.so"
    code, _, err = cli("compile", model, *shapes, "--target", "npu", "--quantize", cls_table,
                       "-o", out)  # fmt: skip
    assert code == 1 and "has no int8 kernels" in err and not out.exists()
    with pytest.raises(SystemExit) as exc:  # argparse: one or the other
        cli("compile", model, *shapes, "--quantize", cls_table, "--fake-quant", cls_table)
    assert exc.value.code == 2
    other = tmp_path / "relu.onnx"
    other.write_bytes(relu_only().SerializeToString())
    code, _, err = cli("compile", other, "--quantize", cls_table, "-o", out)
    assert code == 1 and "calibrated for another model" in err and not out.exists()


def test_tune_the_int8_build_then_compile_with_its_records(cli, cls_table, tmp_path):
    model = model_path("ppocr-cls")
    shapes = ("--input-shapes", "x:[1,3,48,192]")
    records = tmp_path / "r.json"
    code, _, err = cli("tune", model, *shapes, "--quantize", cls_table, "--trials", 3,
                       "--max-tasks", 1, "-o", records)  # fmt: skip
    assert code == 0, err
    lines = [json.loads(line) for line in records.read_text().splitlines()]
    measured = [r for r in lines if "status" in r]
    assert {json.loads(r["workload"])["dtype"] for r in measured} == {"uint8"}
    assert {r["template"] for r in measured} <= {"conv2d_int8", "depthwise"}
    assert len(measured) == 3 and all(r["status"] == "ok" for r in measured)
    so = tmp_path / "m.so"
    code, _, err = cli("compile", model, *shapes, "--quantize", cls_table,
                       "--tuning-records", records, "-o", so)  # fmt: skip
    assert code == 0, err
    x = ppocr_input("cls", SHAPE)
    (fp32,) = ort_run(model, {"x": x}).values()
    (int8,) = api_run(so, {"x": x}).values()
    assert int8.argmax() == fp32.argmax() and np.abs(int8 - fp32).max() < 0.1


def _ort_quantized(path, fmt, **options):
    """PP-OCR cls quantized by onnxruntime.quantization.quantize_static on two rendered text
    lines: uint8 activations, int8 per-channel weights, in QDQ or QOperator format."""
    lines = [ppocr_input("cls", SHAPE), -ppocr_input("cls", SHAPE)]
    samples = [{"x": x} for x in lines]
    return ort_quantize_static(model_path("ppocr-cls"), path, samples, fmt, **options)


@pytest.fixture(scope="module")
def cls_qdq(tmp_path_factory):
    return _ort_quantized(tmp_path_factory.mktemp("qdq") / "cls.qdq.onnx", "QDQ")


def test_qdq_model_from_ort_quantize_static_matches_ort_int8_within_one_step(cls_qdq):
    """A pre-quantized model compiled by tilecc as it is (Q/DQ computed in fp32) gives ORT's own
    int8 answer to within one step of the output's quantization (1/255 of the probabilities)."""
    x = ppocr_input("cls", SHAPE)
    (ort_int8,) = ort_run(cls_qdq, {"x": x}).values()
    (ours,) = api_run(cls_qdq, {"x": x}, input_shapes={"x": list(SHAPE)}).values()
    (fp32,) = ort_run(model_path("ppocr-cls"), {"x": x}).values()
    assert np.abs(ours - ort_int8).max() <= 1 / 255 + 1e-6
    assert np.abs(ort_int8 - fp32).max() > 1e-3  # really quantized: not the fp32 answer


def test_qdq_model_runs_on_int8_kernels_with_its_own_parameters(cli, cls_qdq, tmp_path):
    """--quantize qdq: the Q/DQ pairs come out, their scales and zero points become the table
    of the same quantize-int8 pass, and the convs run on the int8 kernels."""
    from tilecc.compiler.onnx_qdq import strip_qdq
    from tilecc.compiler.quantize import import_qdq

    imported, table_path = import_qdq(cls_qdq, {"x": list(SHAPE)}, tmp_path / "t.json")
    activations = json.loads(table_path.read_text())["activations"]
    _, anchors = strip_qdq(onnx.load(str(cls_qdq)), "cls")
    assert len(activations) == len(anchors) == 54  # every conv and matmul of cls
    assert not [n for n in imported.onnx_model.graph.node if "QuantizeLinear" in n.op_type]
    so = tmp_path / "cls.so"
    shapes = ("--input-shapes", "x:[1,3,48,192]")
    code, _, err = cli("compile", cls_qdq, *shapes, "--quantize", "qdq", "-o", so)
    assert code == 0, err
    x = ppocr_input("cls", SHAPE)
    (int8,) = api_run(so, {"x": x}).values()
    (ort_int8,) = ort_run(cls_qdq, {"x": x}).values()
    assert int8.argmax() == ort_int8.argmax()
    # int8 kernels requantize per layer with 7-bit weights on AVX2, and keep the ops between
    # convs in fp32: close to ORT's int8 run, not bit-identical to it
    assert np.abs(int8 - ort_int8).max() < 0.05
    code, _, err = cli("compile", model_path("ppocr-cls"), *shapes, "--quantize", "qdq", "-o", so)
    assert code == 1 and "needs a QDQ model" in err


@pytest.mark.qemu
def test_int8_build_for_a_phone_runs_under_qemu(cls_table, tmp_path):
    """arm-cpu's int8 build: int8 data (sdot), cross-linked, run by the aarch64 runner."""
    from tilecc.compiler.api import compile_model
    from tilecc.compiler.runtime import CompiledModel

    so = compile_model(
        model_path("ppocr-cls"), "arm-cpu", tmp_path / "cls.so", {"x": list(SHAPE)},
        quantize=cls_table,
    )  # fmt: skip
    compiled = CompiledModel(so)
    x = ppocr_input("cls", SHAPE)
    (int8,) = compiled.run({"x": x}).values()
    (fp32,) = ort_run(model_path("ppocr-cls"), {"x": x}).values()
    assert int8.argmax() == fp32.argmax()
    assert 1e-3 < np.abs(int8 - fp32).max() < 0.1


def test_qoperator_model_imports_as_its_qdq_graph(tmp_path):
    """QLinearConv / QLinearMatMul (ORT's QOperator format; TVM has no converter) become
    DQ -> Conv / MatMul -> Q: as it is, tilecc gives ORT's int8 answer; `--quantize qdq` runs
    the same model on the int8 kernels."""
    from tilecc.compiler.onnx_qdq import qoperators_as_qdq

    qop = _ort_quantized(tmp_path / "cls.qop.onnx", "QOperator", op_types_to_quantize=["Conv"])
    kinds = {n.op_type for n in onnx.load(str(qop)).graph.node}
    assert "QLinearConv" in kinds
    rewritten = {n.op_type for n in qoperators_as_qdq(onnx.load(str(qop))).graph.node}
    assert "QLinearConv" not in rewritten and {"Conv", "DequantizeLinear"} <= rewritten
    x = ppocr_input("cls", SHAPE)
    (ort_int8,) = ort_run(qop, {"x": x}).values()
    (ours,) = api_run(qop, {"x": x}, input_shapes={"x": list(SHAPE)}).values()
    assert np.abs(ours - ort_int8).max() <= 1 / 255 + 1e-6
    from tilecc.compiler.api import compile_model

    so = compile_model(qop, "x86", tmp_path / "m.so", {"x": list(SHAPE)}, quantize="qdq")
    (int8,) = api_run(so, {"x": x}).values()
    assert int8.argmax() == ort_int8.argmax() and np.abs(int8 - ort_int8).max() < 0.05
