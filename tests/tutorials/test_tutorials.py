"""Every tutorial runs to the end (each checks its own numbers against ONNX Runtime)."""

import subprocess
import sys
from pathlib import Path

import pytest

TUTORIALS = Path(__file__).resolve().parents[2] / "tutorials"


@pytest.mark.slow
@pytest.mark.qemu
def test_aot_compile(tmp_path):
    result = subprocess.run(
        [sys.executable, str(TUTORIALS / "aot_compile.py"), "--out-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "matches ONNX Runtime" in result.stdout
    assert (tmp_path / "det.so").exists()


@pytest.mark.slow
@pytest.mark.qemu
def test_autotune_phone(tmp_path):
    result = subprocess.run(
        [sys.executable, str(TUTORIALS / "autotune_phone.py"), "--out-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "matches ONNX Runtime" in result.stdout
    assert "arm-cpu records: {'ok': 6}" in result.stdout
    assert "correctness only (qemu): emulated time is not speed" in result.stderr
    assert (tmp_path / "records.json").exists() and (tmp_path / "cls.so").exists()
