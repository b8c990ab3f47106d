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
