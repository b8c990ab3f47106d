"""`tilecc` with `--target npu`: reports, and bad input (one-line errors, nothing written)."""

import json

import numpy as np
import pytest
from onnx import TensorProto, helper

from tilecc.compiler.reference import ort_run
from tilecc.compiler.runtime import CompiledModel


def model(tmp_path, name, nodes, inputs, output, initializers=()):
    graph = helper.make_graph(nodes, name, inputs, [output], list(initializers))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / f"{name}.onnx"
    path.write_bytes(m.SerializeToString())
    return path


@pytest.fixture
def conv_model(tmp_path):
    w = helper.make_tensor("w", TensorProto.FLOAT, [8, 3, 3, 3], np.ones(216, "float32") * 0.1)
    return model(
        tmp_path,
        "conv",
        [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16, 16]),
        [w],
    )


def assert_one_line_error(code, err, *fragments):
    assert code == 1
    lines = [line for line in err.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_a_model_with_no_npu_op_compiles_for_the_cpu_with_a_notice(cli, tmp_path):
    path = model(
        tmp_path,
        "shapes",
        [
            helper.make_node("Transpose", ["x"], ["t"], perm=[0, 1, 3, 2]),
            helper.make_node("Resize", ["t", "", "scales"], ["y"], mode="nearest"),
        ],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 5])],
        helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 10, 12]),
        [helper.make_tensor("scales", TensorProto.FLOAT, [4], [1.0, 1.0, 2.0, 2.0])],
    )
    out = tmp_path / "shapes.so"
    code, _, err = cli("compile", path, "--target", "npu", "-o", out)
    assert code == 0
    assert "notice: no op of this model runs on tilecc_npu (2 ops stay on the host CPU" in err
    x = np.random.default_rng(0).standard_normal((1, 4, 6, 5)).astype("float32")
    got = CompiledModel(out).run({"x": x})["y"]
    np.testing.assert_allclose(got, ort_run(path, {"x": x})["y"], atol=1e-6)


def test_partition_report_and_npu_report(cli, conv_model, tmp_path):
    code, out, err = cli(
        "run", conv_model, "--target", "npu", "--partition-report", "--npu-report",
        "--compare-ort", "--atol", "1e-2",
    )  # fmt: skip
    assert code == 0, err
    assert "tilecc_npu: 1 of 1 ops in 1 subgraph(s); 0 on the host CPU" in out
    assert "tilecc_npu_0: nn.conv2d x1" in out
    row = next(line for line in out.splitlines() if line.startswith("tilecc_npu_0 "))
    assert int(row.split()[1].replace(",", "")) > 0  # cycles
    assert "NPU time per inference:" in out
    assert "vs ORT y:" in out and "ok" in out


@pytest.mark.qemu
def test_npu_report_from_an_aarch64_host_build_under_qemu(cli, conv_model):
    code, out, err = cli(
        "run", conv_model, "--target", "npu", "--host", "arm-cpu", "--npu-report",
        "--compare-ort", "--atol", "1e-2",
    )  # fmt: skip
    assert code == 0, err
    assert "(emulated)" in err
    assert next(line for line in out.splitlines() if line.startswith("tilecc_npu_0 "))
    assert "vs ORT y:" in out


def test_npu_report_needs_an_npu_model(cli, conv_model):
    code, _, err = cli("run", conv_model, "--target", "x86", "--npu-report")
    assert_one_line_error(code, err, "--npu-report needs a model compiled for --target npu")


@pytest.mark.parametrize(
    "config, fragment",
    [
        ({"l0a_bytes": 256}, "l0a_bytes=256 is too small for one 16x16 tile (at least 512 bytes)"),
        ({"l0c_bytes": 1000}, "l0c_bytes=1000 is too small for one 16x16 tile"),
        ({"l2_bytes": 4096}, "unknown field(s) l2_bytes"),
        ({"ub_bytes": "big"}, "field(s) ub_bytes must be integers"),
    ],
)
def test_bad_npu_config_is_refused_before_anything_is_written(
    cli, conv_model, tmp_path, config, fragment
):
    cfg = tmp_path / "npu.json"
    cfg.write_text(json.dumps(config))
    out = tmp_path / "m.so"
    code, _, err = cli("compile", conv_model, "--target", "npu", "--accel-config", cfg, "-o", out)
    assert_one_line_error(code, err, str(cfg), fragment)
    assert not out.exists() and list(tmp_path.glob("*.so*")) == []


def test_buffers_too_small_for_a_layer_name_the_kernel(cli, conv_model, tmp_path):
    cfg = tmp_path / "npu.json"
    cfg.write_text(json.dumps({"l1_bytes": 1024, "ub_bytes": 1024}))
    out = tmp_path / "m.so"
    code, _, err = cli("compile", conv_model, "--target", "npu", "--accel-config", cfg, "-o", out)
    assert_one_line_error(
        code, err, "tilecc_npu_0 kernel 0 (nn.conv2d -> [1, 8, 16, 16])", "no tiling fits"
    )
    assert not out.exists()


def test_host_and_accel_config_apply_to_accelerator_targets_only(cli, conv_model, tmp_path):
    code, _, err = cli("compile", conv_model, "--host", "arm-cpu", "-o", tmp_path / "m.so")
    assert_one_line_error(code, err, "--host applies to an accelerator target (npu), not 'x86'")
    code, _, err = cli("compile", conv_model, "--target", "npu", "--host", "armcpu", "-o",
                       tmp_path / "m.so")  # fmt: skip
    assert_one_line_error(code, err, "unknown target 'armcpu'", "did you mean 'arm-cpu'?")


def test_targets_lists_what_the_npu_offloads(cli):
    code, out, _ = cli("targets")
    assert code == 0
    assert "npu " in out and "offloads (tilecc_npu):" in out
    assert "conv2d [+bias] [+relu/relu6] (cube unit" in out
