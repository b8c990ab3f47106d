"""ONNX's backend node tests (shipped inside the `onnx` package, built in memory from
`onnx.backend.test.case.node`) run through tilecc's ONNX backend, for the op set in
`selection.py`. Each case is one ONNX node (or its function expansion) on fixed inputs, compiled
by tilecc for x86 and compared with the outputs ONNX's own reference stored with the case.

    pytest tests/onnx_node                  # prints the pass rate and the expected failures
    pytest tests/onnx_node -k resize        # one op's cases
    TILECC_RUN_EXPECTED_FAILURES=1 pytest tests/onnx_node   # run those too: each must fail
"""

import os

import onnx.backend.test
from selection import EXPECTED_FAILURES, include_patterns, is_selected

from tilecc.compiler.backend import TileccBackend

backend_test = onnx.backend.test.BackendTest(TileccBackend, __name__)
for pattern in include_patterns():
    backend_test.include(pattern)
if not os.environ.get("TILECC_RUN_EXPECTED_FAILURES"):
    for pattern in EXPECTED_FAILURES:
        backend_test.exclude(pattern)


def _node_cases() -> type:
    """BackendTest's node TestCase with only the selected tests: the thousands of others (other
    ops, CUDA, and the model categories, which download) would each show up as a skip."""
    case = backend_test.test_cases["OnnxBackendNodeModelTest"]
    for name in [name for name in dir(case) if name.startswith("test_")]:
        if not is_selected(name):
            delattr(case, name)
    return case


OnnxBackendNodeModelTest = _node_cases()
