"""PP-OCRv4 det / cls / rec: compile to a .so, run it, and match ONNX Runtime within 1e-4.

Inputs are rendered text (not noise, which leaves det's probability map near 0 and so checks
little), normalized as PP-OCR does. arm-cpu builds run under qemu-aarch64 through the C++ runner.
"""

import numpy as np
import pytest

from tilecc.compiler import api
from tilecc.compiler.assets import model_path
from tilecc.compiler.reference import compare, ort_run
from tilecc.compiler.runtime import CompiledModel
from tilecc.compiler.sample_inputs import ppocr_input

ATOL = 1e-4

CASES = [
    ("x86", "det", (1, 3, 320, 320)),
    ("x86", "det", (1, 3, 640, 640)),
    ("x86", "cls", (1, 3, 48, 192)),
    ("x86", "rec", (1, 3, 48, 320)),
    pytest.param("arm-cpu", "det", (1, 3, 320, 320), marks=pytest.mark.qemu),
    pytest.param("arm-cpu", "cls", (1, 3, 48, 192), marks=pytest.mark.qemu),
]


@pytest.mark.slow
@pytest.mark.parametrize("target,kind,shape", CASES)
def test_ppocr_matches_onnxruntime(target, kind, shape, tmp_path):
    onnx_path = model_path(f"ppocr-{kind}")
    so = api.compile_model(onnx_path, target, tmp_path / f"{kind}.so", {"x": list(shape)})
    compiled = CompiledModel(so)
    assert compiled.target.name == target
    assert [(i.name, i.shape) for i in compiled.inputs] == [("x", shape)]

    inputs = {"x": ppocr_input(kind, shape)}
    got = compiled.run(inputs)
    want = ort_run(onnx_path, inputs)
    assert list(got) == list(want)
    for diff in compare(got, want):
        assert diff.within(ATOL), f"{kind} {shape} on {target}: {diff}"
    if kind == "det":  # the input really has text: a good part of the map is confident
        assert (want["sigmoid_0.tmp_0"] > 0.3).mean() > 0.01
    if kind == "rec":  # and the recognizer decodes the same character sequence
        out = next(iter(want))
        np.testing.assert_array_equal(got[out].argmax(-1), want[out].argmax(-1))
