"""tutorials/new_target.py: the toy accelerator offloads ops, its C computes them (a wrong
formula shows up against ONNX Runtime), and the tutorial stays under 100 lines of code."""

import ast
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

TUTORIAL = Path(__file__).resolve().parents[2] / "tutorials" / "new_target.py"
ATOL = 1e-4  # the toy computes in float32, as ONNX Runtime does


@pytest.fixture(scope="module")
def tutorial():
    spec = importlib.util.spec_from_file_location("new_target", TUTORIAL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ops_offloaded(report) -> dict[str, int]:
    total: dict[str, int] = {}
    for ops in report.subgraphs.values():
        for op, n in ops.items():
            total[op] = total.get(op, 0) + n
    return total


def add_relu_model(path: Path) -> Path:
    """relu(x + y) + y feeds a multiply (host), then relu (toy), then a constant add (host):
    the first toy subgraph has two inputs, an intermediate value and two outputs."""
    nodes = [
        helper.make_node("Add", ["x", "y"], ["a"]),
        helper.make_node("Relu", ["a"], ["r"]),
        helper.make_node("Add", ["r", "y"], ["s"]),
        helper.make_node("Mul", ["r", "s"], ["m"]),
        helper.make_node("Relu", ["m"], ["z"]),
        helper.make_node("Add", ["z", "bias"], ["out"]),
    ]
    bias = np.arange(4, dtype=np.float32).reshape(1, 4, 1, 1)
    shape = [1, 4, 6, 6]
    graph = helper.make_graph(
        nodes,
        "add_relu",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n in ("x", "y")],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, shape)],
        [numpy_helper.from_array(bias, "bias")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path.write_bytes(model.SerializeToString())
    return path


def add_relu_inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {n: rng.standard_normal((1, 4, 6, 6)).astype(np.float32) for n in ("x", "y")}


@pytest.mark.slow
def test_tutorial_model_matches_onnxruntime(tutorial, tmp_path, capsys):
    report, error = tutorial.main(tmp_path)
    offloaded = ops_offloaded(report)
    assert offloaded.get("nn.relu", 0) >= 1 and offloaded.get("add", 0) >= 1, report.text()
    assert report.on_host > 0  # conv, constant (bias) adds, ... stay on x86
    assert error <= ATOL
    assert "max abs error" in capsys.readouterr().out


def test_subgraph_with_two_outputs_matches_onnxruntime(tutorial, tmp_path):
    onnx_path = add_relu_model(tmp_path / "add_relu.onnx")
    report, error = tutorial.check(onnx_path, add_relu_inputs(), tmp_path)
    subgraphs = {name: dict(ops) for name, ops in report.subgraphs.items()}
    assert subgraphs == {"toy_0": {"add": 2, "nn.relu": 1}, "toy_1": {"nn.relu": 1}}
    assert dict(report.host_ops["multiply"]) == {"not in the toy's pattern table": 1}
    reason = "a constant operand (the toy reads only the tensors the host hands it)"
    assert dict(report.host_ops["add"]) == {reason: 1}
    assert error <= ATOL


def test_wrong_formula_in_the_toy_c_is_caught(tutorial, tmp_path, monkeypatch):
    # The offloaded adds run the toy's generated C, not the host's kernels: subtracting instead
    # changes the result.
    monkeypatch.setitem(tutorial.OPS, "relax.add", "{0} - {1}")
    onnx_path = add_relu_model(tmp_path / "add_relu.onnx")
    report, error = tutorial.check(onnx_path, add_relu_inputs(), tmp_path)
    assert ops_offloaded(report) == {"add": 2, "nn.relu": 2}
    assert error > 0.1


def test_tutorial_is_under_100_lines_of_code():
    """Counted: non-blank lines after the module docstring (comments and the C included)."""
    source = TUTORIAL.read_text()
    docstring = ast.parse(source).body[0]
    assert isinstance(docstring, ast.Expr) and isinstance(docstring.value, ast.Constant)
    code = [line for line in source.splitlines()[docstring.end_lineno :] if line.strip()]
    assert len(code) < 100, f"{len(code)} lines of code"
