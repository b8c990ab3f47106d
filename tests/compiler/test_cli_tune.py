"""`tilecc tune` and `tilecc compile --tuning-records`: records written as measured, a kill -9
loses nothing already measured, --resume continues, corrupt lines are reported and skipped."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx_models import conv_relu, relu_only

from tilecc.compiler import api
from tilecc.compiler.reference import ort_run

TILECC = [sys.executable, "-m", "tilecc.compiler.cli.main"]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("tune") / "conv.onnx"
    onnx.save(conv_relu((1, 16, 14, 14), channels=32), path)
    return path


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_tune_then_compile_with_records(cli, model_file, tmp_path):
    records = tmp_path / "r.json"
    plots = tmp_path / "plots"
    code, _out, err = cli("tune", model_file, "--trials", 3, "-o", records, "--plot-dir", plots)
    assert code == 0, err
    measured = [r for r in _records(records) if "status" in r]
    done = [r for r in _records(records) if r.get("done")]
    # conv 16->32 3x3 stride 1: direct and Winograd both compete, 3 trials each
    assert sorted({r["template"] for r in measured}) == ["conv2d_direct", "conv2d_winograd"]
    assert len(measured) == 6 and len(done) == 2
    assert all(r["status"] == "ok" and r["seconds"] > 0 for r in measured)
    assert len(list(plots.glob("*.png"))) == 2
    assert "best" in err and "GFLOP/s" in err

    so = tmp_path / "m.so"
    code, _out, err = cli("compile", model_file, "-o", so, "--tuning-records", records)
    assert code == 0, err
    x = np.random.default_rng(0).standard_normal((1, 16, 14, 14)).astype(np.float32)
    got = api.run_model(so, {"x": x})["y"]
    np.testing.assert_allclose(got, ort_run(str(model_file), {"x": x})["y"], atol=1e-4)


def test_compile_reports_corrupt_records_line(cli, model_file, tmp_path):
    records = tmp_path / "r.json"
    records.write_text('{"template": "conv2d_direct"\nnot json at all\n')
    code, _out, err = cli(
        "compile", model_file, "-o", tmp_path / "m.so", "--tuning-records", records
    )
    assert code == 0
    assert f"{records}:1:" in err and f"{records}:2:" in err and "skipped" in err


def test_compile_missing_records_file_is_one_line_error(cli, model_file, tmp_path):
    code, _out, err = cli(
        "compile", model_file, "-o", tmp_path / "m.so", "--tuning-records", tmp_path / "no.json"
    )
    assert code == 1 and err.strip().count("\n") == 0 and "no such tuning records" in err
    assert not (tmp_path / "m.so").exists()


def test_kill_9_keeps_records_and_resume_continues(model_file, tmp_path):
    records = tmp_path / "r.json"
    cmd = [*TILECC, "tune", str(model_file), "--trials", "6", "-o", str(records)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and (not records.exists() or len(_records(records)) < 3):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = records.read_text().splitlines()
    complete = [json.loads(line) for line in before[:-1]]  # every line but maybe the last parses
    assert len(complete) >= 2 and not any(r.get("done") for r in complete)

    resumed = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    lines = [json.loads(x) for x in records.read_text().splitlines() if _parses(x)]
    measured = [r for r in lines if "status" in r]
    keys = [(r["template"], json.dumps(r["config"], sort_keys=True)) for r in measured]
    assert len(keys) == len(set(keys)), "a configuration was measured twice"
    assert len(measured) == 12 and sum(1 for r in lines if r.get("done")) == 2
    assert measured[: len(complete)] == complete  # nothing measured before the kill was lost


def _parses(line: str) -> bool:
    try:
        json.loads(line)
        return True
    except ValueError:
        return False


def test_model_without_tunable_ops_is_a_notice(cli, tmp_path):
    path = tmp_path / "relu.onnx"
    onnx.save(relu_only(), path)
    code, _out, err = cli("tune", path, "-o", tmp_path / "r.json")
    assert code == 0 and "notice:" in err and "no conv2d or dense" in err
    assert not (tmp_path / "r.json").exists()
