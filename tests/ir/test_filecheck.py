"""IR text tests, as MLIR's lit tests: each `tests/ir/*.py` file is a Relax module with a
`# RUN: tilecc opt %s ...` line; its output is checked against the file's CHECK lines with
FileCheck (PyPI `filecheck`)."""

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
CASES = sorted(p for p in HERE.glob("*.py") if not p.name.startswith("test_"))
BIN = Path(sys.executable).parent


def run_line(path: Path) -> str:
    for line in path.read_text().splitlines():
        if line.startswith("# RUN:"):
            return line.removeprefix("# RUN:").strip().replace("%s", shlex.quote(str(path)))
    raise AssertionError(f"{path.name}: no '# RUN:' line")


@pytest.mark.parametrize("case", CASES, ids=[p.stem for p in CASES])
def test_ir_text(case):
    command = f"{run_line(case)} | filecheck {shlex.quote(str(case))}"
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, f"$ {command}\n{result.stdout}{result.stderr}"
