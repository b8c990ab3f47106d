import sys
from pathlib import Path

import pytest

# tests/onnx_models.py and friends are plain helpers, imported by name.
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def cli(capsys):
    """Run `tilecc ARGS...` in this process; returns (exit code, stdout, stderr)."""
    from tilecc.compiler.cli.main import main

    def run(*args):
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run
