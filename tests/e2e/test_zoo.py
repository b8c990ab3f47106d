"""The model zoo (compiler/zoo.py): every network builds, passes the ONNX checker, and compiles
for x86 (and the CNNs for arm-cpu, run under qemu) to a .so that matches ONNX Runtime within
1e-4 on seeded standard-normal inputs.

Every model runs at its default input size (224x224 for the CNNs, 64x64 for the ViT): the whole
file takes ~40 s on 2 cores, almost all of it compilation, which does not depend on resolution.
"""

import numpy as np
import onnx
import pytest

from tilecc.compiler import api, zoo
from tilecc.compiler.errors import ModelError
from tilecc.compiler.reference import compare, ort_run

ATOL = 1e-4


CNNS = sorted(name for name in zoo.MODELS if not name.startswith("vit"))
CASES = [("x86", name) for name in sorted(zoo.MODELS)] + [
    pytest.param("arm-cpu", name, marks=pytest.mark.qemu) for name in CNNS
]


@pytest.mark.slow
@pytest.mark.parametrize("target,name", CASES)
def test_zoo_model_matches_onnxruntime(target, name, tmp_path):
    entry = zoo.MODELS[name]
    path = zoo.export(name, tmp_path / "m.onnx", seed=0)
    onnx.checker.check_model(onnx.load(path), full_check=True)

    shape = entry.input_shape()
    inputs = {"input": np.random.default_rng(1).standard_normal(shape).astype(np.float32)}
    so = api.compile_model(path, target, tmp_path / "m.so")
    got = api.load(so).run(inputs)
    want = ort_run(path, inputs)
    assert list(got) == list(want)
    for diff in compare(got, want):
        assert diff.within(ATOL), f"{name} at {shape} on {target}: {diff}"


def test_zoo_builds_are_seeded_and_checked():
    for entry in zoo.MODELS.values():
        model = entry.build(seed=3, resolution=128)
        onnx.checker.check_model(model, full_check=True)
        assert model.opset_import[0].version == 17
        again = entry.build(seed=3, resolution=128)
        assert model.SerializeToString() == again.SerializeToString()
        other = entry.build(seed=4, resolution=128)
        assert model.SerializeToString() != other.SerializeToString()


def test_zoo_export_unknown_name_lists_known(tmp_path):
    with pytest.raises(ModelError, match="known: .*mobilenetv2"):
        zoo.export("resnet50", tmp_path / "m.onnx")
    assert not list(tmp_path.iterdir())
