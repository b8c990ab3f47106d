"""Small ONNX models built in code for tests: each exercises one import or error path."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def conv_relu(dims=(1, 3, 8, 8), channels=4, opset=13) -> onnx.ModelProto:
    """x -> Conv(3x3, pad 1) -> Relu; `dims` may hold strings (dynamic dims)."""
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((channels, dims[1], 3, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv0", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["y"], name="relu0"),
    ]
    out_dims = [dims[0], channels, dims[2], dims[3]]
    graph = helper.make_graph(
        nodes,
        "conv_relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(dims))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_dims)],
        [numpy_helper.from_array(weight, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def relu_only(opset=13) -> onnx.ModelProto:
    """x (1 x 4) -> Relu: a model with no conv, dense or matmul (nothing to tune or quantize)."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def runtime_reshape(batch=1, channels=4, height=6, width=10) -> onnx.ModelProto:
    """PP-OCR's pattern: the Reshape target is computed from Shape at run time
    (Shape -> Gather -> Cast -> Slice -> Concat -> Reshape), then a MatMul."""
    rng = np.random.default_rng(1)
    weight = rng.standard_normal((height * width, 5)).astype(np.float32)
    i64 = TensorProto.INT64

    def const(name, values):
        return helper.make_node(
            "Constant", [], [name], value=helper.make_tensor(name, i64, [len(values)], values)
        )

    nodes = [
        helper.make_node("Shape", ["x"], ["shape"], name="shape0"),
        const("idx", [0, 1]),
        helper.make_node("Gather", ["shape", "idx"], ["nc"], name="gather0", axis=0),
        helper.make_node("Cast", ["nc"], ["nc32"], name="cast0", to=TensorProto.INT32),
        helper.make_node("Cast", ["nc32"], ["nc64"], name="cast1", to=i64),
        const("s0", [0]),
        const("s1", [2]),
        helper.make_node("Slice", ["nc64", "s0", "s1"], ["nc_sliced"], name="slice0"),
        const("minus1", [-1]),
        helper.make_node("Concat", ["nc_sliced", "minus1"], ["target"], name="concat0", axis=0),
        helper.make_node("Reshape", ["x", "target"], ["flat"], name="reshape0"),
        helper.make_node("MatMul", ["flat", "w"], ["y"], name="matmul0"),
    ]
    graph = helper.make_graph(
        nodes,
        "runtime_reshape",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", channels, height, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(weight, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def with_unsupported_ops() -> onnx.ModelProto:
    """Two op types TVM's importer lacks (Det twice, Celu once) and a custom-domain op."""
    nodes = [
        helper.make_node("Celu", ["x"], ["a"], name="celu0"),
        helper.make_node("Det", ["a"], ["d1"], name="det0"),
        helper.make_node("Det", ["x"], ["d2"], name="det1"),
        helper.make_node("Add", ["d1", "d2"], ["s"], name="add0"),
        helper.make_node("FancyNorm", ["s"], ["y"], name="fancy0", domain="com.example"),
    ]
    graph = helper.make_graph(
        nodes,
        "unsupported",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    opsets = [helper.make_opsetid("", 13), helper.make_opsetid("com.example", 1)]
    return helper.make_model(graph, opset_imports=opsets)


def with_external_weight(model: onnx.ModelProto, location: str) -> onnx.ModelProto:
    """`model` with its first initializer's bytes said to live in the file `location`."""
    weight = model.graph.initializer[0]
    nbytes = onnx.numpy_helper.to_array(weight).nbytes
    weight.ClearField("raw_data")
    weight.ClearField("float_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(nbytes))):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    return model
