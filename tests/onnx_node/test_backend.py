"""tilecc's ONNX backend: lazy compiles per input shape and per compile-time input value, input
and output conventions, errors; and the frontend fix the node suite found (Expand)."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tilecc.compiler import backend
from tilecc.compiler.errors import InputError, TargetError, UnsupportedOpsError
from tilecc.compiler.frontend_onnx import import_onnx


def make_model(nodes, inputs, outputs, initializers=(), opset=18, domains=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, 1) for d in domains]
    return helper.make_model(graph, opset_imports=opsets)


def relu_model(shape):
    return make_model(
        [helper.make_node("Relu", ["x"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
    )


def test_dynamic_batch_compiles_once_per_shape():
    rep = backend.prepare(relu_model(["N", 3]))
    assert not rep._vms  # nothing to compile before the shapes are known
    rng = np.random.default_rng(0)
    for batch in (2, 5, 2):
        x = rng.standard_normal((batch, 3)).astype(np.float32)
        (y,) = rep.run([x])
        np.testing.assert_array_equal(y, np.maximum(x, 0))
    assert len(rep._vms) == 2


def test_static_model_compiles_in_prepare():
    rep = backend.prepare(relu_model([2, 3]))
    assert len(rep._vms) == 1


def test_reshape_target_from_graph_input_is_compiled_per_value():
    model = make_model(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])],
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
            helper.make_tensor_value_info("shape", TensorProto.INT64, [None]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["d0", "d1"])],
    )
    rep = backend.prepare(model)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(rep.run([x, np.array([3, 2])])[0], x.reshape(3, 2))
    np.testing.assert_array_equal(rep.run([x, np.array([1, 6])])[0], x.reshape(1, 6))
    assert len(rep._vms) == 2


def test_scalar_input_keeps_rank_zero():
    model = make_model(
        [helper.make_node("Mul", ["x", "s"], ["y"])],
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [3]),
            helper.make_tensor_value_info("s", TensorProto.FLOAT, []),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])],
    )
    x = np.array([1, 2, 3], dtype=np.float32)
    (y,) = backend.run_model(model, [x, np.float32(2)])
    np.testing.assert_array_equal(y, 2 * x)


def test_dict_inputs_and_outputs_by_name():
    model = make_model(
        [helper.make_node("Sub", ["a", "b"], ["d"]), helper.make_node("Neg", ["a"], ["n"])],
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, [2]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, [2]),
        ],
        [
            helper.make_tensor_value_info("n", TensorProto.FLOAT, [2]),
            helper.make_tensor_value_info("d", TensorProto.FLOAT, [2]),
        ],
    )
    a, b = np.array([1, 2], dtype=np.float32), np.array([5, 7], dtype=np.float32)
    outputs = backend.run_model(model, {"b": b, "a": a})
    np.testing.assert_array_equal(outputs[0], -a)  # graph-output order: n, then d
    np.testing.assert_array_equal(outputs["d"], a - b)


def test_wrong_input_count_is_input_error():
    rep = backend.prepare(relu_model([2, 3]))
    with pytest.raises(InputError, match="got 2 input"):
        rep.run([np.zeros((2, 3), np.float32)] * 2)


def test_unsupported_op_raises_tilecc_error_from_prepare():
    model = make_model(
        [helper.make_node("Frobnicate", ["x"], ["y"], domain="tilecc.test")],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
        domains=["tilecc.test"],
    )
    with pytest.raises(UnsupportedOpsError, match="tilecc.test.Frobnicate"):
        backend.prepare(model)


def test_run_node_matches_numpy():
    node = helper.make_node("Add", ["a", "b"], ["c"])
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.array([1, 2, 3], dtype=np.float32)
    (c,) = backend.run_node(node, [a, b])
    np.testing.assert_array_equal(c, a + b)


def test_supports_only_cpu():
    assert backend.supports_device("CPU")
    assert not backend.supports_device("CUDA")
    assert not backend.supports_device("GPU")
    with pytest.raises(TargetError, match="CPU only"):
        backend.prepare(relu_model([2]), device="CUDA")


def test_expand_target_shape_from_initializer_keeps_input_dims():
    # Regression (frontend): an initializer target shape used to reach TVM's importer as a
    # parameter; Expand then took its dynamic path, with a symbolic output shape and the 1
    # below read as 1 instead of "keep the input's 3".
    model = make_model(
        [helper.make_node("Expand", ["x", "shape"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 6])],
        initializers=[numpy_helper.from_array(np.array([2, 1, 6], dtype=np.int64), "shape")],
    )
    imported = import_onnx("expand.onnx", model=model)
    assert imported.outputs[0].shape == (2, 3, 6)
    assert "shape" not in imported.params  # an integer constant, not a weight
    x = np.array([[1], [2], [3]], dtype=np.float32)
    (y,) = backend.run_model(model, [x])
    np.testing.assert_array_equal(y, np.broadcast_to(x, (2, 3, 6)))


def test_float_initializers_stay_parameters():
    weight = np.array([1.5, -2.0], dtype=np.float32)
    model = make_model(
        [helper.make_node("Mul", ["x", "w"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
        initializers=[numpy_helper.from_array(weight, "w")],
    )
    imported = import_onnx("mul.onnx", model=model)
    assert list(imported.params) == ["w"]
    onnx.checker.check_model(imported.onnx_model)
