"""Constant-bound Clip imports as maximum / minimum graph ops, with ONNX Runtime's values."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tilecc.compiler import api
from tilecc.compiler.op_report import count_ops
from tilecc.compiler.reference import ort_run


def clip_model(low, high, opset=13, dynamic_high=False):
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])]
    inits, names = [], ["x"]
    for name, value in (("lo", low), ("hi", high)):
        if value is None:
            names.append("")
        elif name == "hi" and dynamic_high:
            inputs.append(helper.make_tensor_value_info("hi", TensorProto.FLOAT, []))
            names.append("hi")
        else:
            inits.append(numpy_helper.from_array(np.array(value, np.float32), name))
            names.append(name)
    if opset < 11:
        attrs = {k: v for k, v in (("min", low), ("max", high)) if v is not None}
        node = helper.make_node("Clip", ["x"], ["y"], name="clip0", **attrs)
    else:
        node = helper.make_node("Clip", names, ["y"], name="clip0")
    graph = helper.make_graph(
        [node],
        "clip",
        inputs,
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize(
    "low, high, opset, ops",
    [
        (0.0, 6.0, 13, {"maximum": 1, "minimum": 1}),
        (-1.0, None, 13, {"maximum": 1}),
        (float("nan"), 2.0, 13, {"minimum": 1}),
        (0.0, 6.0, 6, {"maximum": 1, "minimum": 1}),
    ],
)
def test_constant_bound_clip_imports_as_graph_ops(tmp_path, low, high, opset, ops):
    path = tmp_path / "clip.onnx"
    onnx.save(clip_model(low, high, opset), path)
    imported = api.import_model(path)
    counts = count_ops(imported.mod)
    assert "call_tir" not in counts
    assert {k: counts[k] for k in ops} == ops
    x = np.linspace(-8, 8, 16, dtype=np.float32).reshape(2, 8)
    got = api.run_model(path, {"x": x})["y"]
    want = ort_run(str(path), {"x": x})["y"]
    np.testing.assert_array_equal(got, want)


def test_clip_with_runtime_bound_keeps_tvm_conversion(tmp_path):
    path = tmp_path / "clip.onnx"
    onnx.save(clip_model(0.0, 1.0, dynamic_high=True), path)
    counts = count_ops(api.import_model(path).mod)
    assert counts["call_tir"] == 2  # TVM's own Clip: topi maximum and minimum kernels
