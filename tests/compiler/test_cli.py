"""`tilecc` on good and bad input: one-line errors, non-zero exits, no traceback, no files left."""

import os
import subprocess
import sys

import numpy as np
import pytest
from onnx_models import conv_relu, with_external_weight, with_unsupported_ops

from tilecc.targets import get_target


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "conv.onnx"
    path.write_bytes(conv_relu().SerializeToString())
    return path


@pytest.fixture(scope="module")
def compiled(model_file, tmp_path_factory):
    from tilecc.compiler import api

    return api.compile_model(model_file, "x86", tmp_path_factory.mktemp("so") / "conv.so")


def assert_one_line_error(code, err, *fragments):
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0]


def test_compile_run_compare_roundtrip(cli, model_file, tmp_path):
    out = tmp_path / "conv.so"
    code, _, err = cli("compile", model_file, "--target", "x86", "-o", out)
    assert code == 0, err
    assert out.exists() and [p.name for p in tmp_path.iterdir()] == ["conv.so"]
    code, stdout, err = cli("run", out, "--compare-ort", "--save-outputs", tmp_path / "o.npz")
    assert code == 0, err
    assert "vs ORT y: max abs" in stdout and "ok" in stdout
    assert np.load(tmp_path / "o.npz")["y"].shape == (1, 4, 8, 8)


def test_run_with_given_inputs(cli, model_file, compiled, tmp_path):
    from tilecc.compiler.reference import ort_run

    x = np.random.default_rng(3).standard_normal((1, 3, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "in.npz", x=x)
    code, _, err = cli(
        "run", compiled, "--inputs", tmp_path / "in.npz", "--save-outputs", tmp_path / "out.npz"
    )
    assert code == 0, err
    expected = ort_run(model_file, {"x": x})["y"]
    np.testing.assert_allclose(np.load(tmp_path / "out.npz")["y"], expected, atol=1e-4)


def test_missing_model_file(cli, tmp_path):
    out = tmp_path / "o.so"
    code, _, err = cli("compile", tmp_path / "nope.onnx", "-o", out)
    assert_one_line_error(code, err, "nope.onnx", "no such file")
    assert not out.exists()


def test_not_an_onnx_file(cli, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(os.urandom(4096))
    code, _, err = cli("compile", bad, "-o", tmp_path / "o.so")
    assert_one_line_error(code, err, "bad.onnx")
    assert list(tmp_path.iterdir()) == [bad]


def test_truncated_model(cli, tmp_path):
    data = conv_relu().SerializeToString()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) - 200])
    code, _, err = cli("compile", cut, "-o", tmp_path / "o.so")
    assert_one_line_error(code, err, "cut.onnx")
    assert list(tmp_path.iterdir()) == [cut]


def test_unsupported_ops_listed_together(cli, tmp_path):
    path = tmp_path / "odd.onnx"
    path.write_bytes(with_unsupported_ops().SerializeToString())
    code, _, err = cli("compile", path, "-o", tmp_path / "o.so")
    assert_one_line_error(
        code, err, "3 unsupported op type(s)", "Det x2", "Celu x1", "com.example.FancyNorm x1"
    )
    assert not (tmp_path / "o.so").exists()


def test_dynamic_dim_needs_input_shapes(cli, tmp_path):
    path = tmp_path / "dyn.onnx"
    path.write_bytes(conv_relu(dims=("N", 3, "H", "W")).SerializeToString())
    code, _, err = cli("compile", path, "-o", tmp_path / "o.so")
    assert_one_line_error(code, err, "input 'x' dim 0 ('N') is dynamic", "--input-shapes")
    code, _, err = cli("compile", path, "-o", tmp_path / "o.so", "--input-shapes", "x:[1,3,16,16]")
    assert code == 0, err


def test_wrong_input_shape_at_run_time(cli, compiled, tmp_path):
    np.savez(tmp_path / "in.npz", x=np.zeros((1, 3, 9, 8), np.float32))
    code, _, err = cli("run", compiled, "--inputs", tmp_path / "in.npz")
    assert_one_line_error(code, err, "input 'x' has shape [1, 3, 9, 8]", "[1, 3, 8, 8]")


def test_wrong_input_dtype_at_run_time(cli, compiled, tmp_path):
    np.savez(tmp_path / "in.npz", x=np.zeros((1, 3, 8, 8), np.float64))
    code, _, err = cli("run", compiled, "--inputs", tmp_path / "in.npz")
    assert_one_line_error(code, err, "input 'x' has dtype float64", "float32")


def test_wrong_input_name_at_run_time(cli, compiled, tmp_path):
    np.savez(tmp_path / "in.npz", image=np.zeros((1, 3, 8, 8), np.float32))
    code, _, err = cli("run", compiled, "--inputs", tmp_path / "in.npz")
    assert_one_line_error(code, err, "missing input(s) x")


def test_unknown_target(cli, model_file, tmp_path):
    code, _, err = cli("compile", model_file, "--target", "arm_cpu", "-o", tmp_path / "o.so")
    assert_one_line_error(code, err, "unknown target 'arm_cpu'", "did you mean 'arm-cpu'")
    assert not (tmp_path / "o.so").exists()


def test_unwritable_output_path(cli, model_file, tmp_path):
    code, _, err = cli("compile", model_file, "-o", tmp_path / "no" / "such" / "dir" / "o.so")
    assert_one_line_error(code, err, "does not exist")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root ignores mode bits: use a path under a file
            target = model_file / "o.so"
        else:
            target = locked / "o.so"
        code, _, err = cli("compile", model_file, "-o", target)
        assert_one_line_error(code, err, "o.so")
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


def test_external_data_outside_folder(cli, tmp_path):
    model = with_external_weight(conv_relu(), "../../etc/passwd")
    path = tmp_path / "ext.onnx"
    path.write_bytes(model.SerializeToString())
    code, _, err = cli("compile", path, "-o", tmp_path / "o.so")
    assert_one_line_error(code, err, "outside the model's folder")


def test_verbose_shows_traceback(cli, tmp_path):
    code, _, err = cli("-v", "compile", tmp_path / "nope.onnx", "-o", tmp_path / "o.so")
    assert code != 0 and "Traceback" in err


def test_console_script_exit_code(tmp_path):
    """The installed `tilecc` entry point itself: exit 1, one line, no traceback."""
    tilecc = os.path.join(os.path.dirname(sys.executable), "tilecc")
    result = subprocess.run(
        [tilecc, "compile", str(tmp_path / "x.onnx"), "-o", str(tmp_path / "x.so")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: {tmp_path / 'x.onnx'}: no such file"


def test_targets_lists_both(cli):
    code, out, _ = cli("targets")
    assert code == 0
    assert "x86" in out and "arm-cpu" in out


def test_compile_bad_pipeline_one_line(cli, model_file, tmp_path):
    code, _, err = cli("compile", model_file, "-o", tmp_path / "o.so", "--passes", "fold-const")
    assert_one_line_error(code, err, "unknown pass 'fold-const'", "did you mean 'fold-constant'")
    code, _, err = cli("compile", model_file, "-o", tmp_path / "o.so", "--passes", "dce{entry=x}")
    assert_one_line_error(code, err, "pass 'dce' has no option 'entry'")
    assert list(tmp_path.iterdir()) == []


def test_compile_prints_ir_after_pass_and_timing(cli, model_file, tmp_path):
    code, _, err = cli(
        "compile",
        model_file,
        "-o",
        tmp_path / "o.so",
        "--passes",
        "fold-constant,dce",
        "--print-ir-after",
        "dce",
        "--pass-timing",
    )
    assert code == 0, err
    assert "// -----// IR Dump After dce //----- //" in err
    assert "IR Dump After fold-constant" not in err
    assert "R.nn.conv2d" in err
    assert err.index("fold-constant ") > err.index("pass ")  # the timing table, after its header


def test_passes_lists_registry_and_pipeline(cli):
    code, out, _ = cli("passes")
    assert code == 0 and "fold-constant" in out and "entry-functions" in out
    code, out, _ = cli("passes", "--pipeline", "arm-cpu")
    assert code == 0 and out.strip() == get_target("arm-cpu").graph_pipeline


def test_opt_without_passes_is_an_error(cli, tmp_path):
    src = tmp_path / "m.py"
    src.write_text("not a module")
    code, _, err = cli("opt", src, "--passes", "dce")
    assert_one_line_error(code, err, "m.py", "not a Relax TVMScript module")
    code, _, err = cli("opt", src)
    assert_one_line_error(code, err, "needs --passes")


def test_recompiling_to_the_same_path_loads_the_new_model(tmp_path):
    """dlopen caches by path: a .so rewritten in place must not load the old code."""
    from tilecc.compiler import api

    first = tmp_path / "a.onnx"
    first.write_bytes(conv_relu(channels=4).SerializeToString())
    second = tmp_path / "b.onnx"
    second.write_bytes(conv_relu(channels=6).SerializeToString())
    out = tmp_path / "m.so"
    x = {"x": np.ones((1, 3, 8, 8), np.float32)}
    api.compile_model(first, "x86", out)
    assert api.load(out).run(x)["y"].shape == (1, 4, 8, 8)
    api.compile_model(second, "x86", out)
    assert api.load(out).run(x)["y"].shape == (1, 6, 8, 8)


def test_compile_report_counts_ops_before_after_and_per_pass(cli, tmp_path):
    """Conv + BatchNorm + Relu: fold-batchnorm trades the batch_norm for an add."""
    import onnx
    from onnx import helper, numpy_helper

    model = conv_relu()
    channels = 4
    stats = {
        n: np.full(channels, v, np.float32)
        for n, v in (("g", 1.5), ("b", 0.1), ("m", 0.2), ("v", 2.0))
    }
    model.graph.initializer.extend(numpy_helper.from_array(a, n) for n, a in stats.items())
    nodes = list(model.graph.node)
    bn = helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["bn"], name="bn0")
    nodes[1].input[0] = "bn"
    del model.graph.node[:]
    model.graph.node.extend([nodes[0], bn, nodes[1]])
    onnx.checker.check_model(model)
    path = tmp_path / "bn.onnx"
    path.write_bytes(model.SerializeToString())
    code, _, err = cli("compile", path, "-o", tmp_path / "o.so", "--report")
    assert code == 0, err
    rows = {line.split()[0]: line.split()[1:] for line in err.splitlines() if line.startswith("  ")}
    assert rows["nn.batch_norm"] == ["1", "0"]
    assert rows["nn.conv2d"] == ["1", "1"]
    assert "fold-batchnorm" in rows and "nn.batch_norm -1" in err


def test_zoo_list_and_export(cli, tmp_path):
    code, out, _ = cli("zoo", "list")
    assert code == 0 and "mobilenetv3-small" in out and "1x3x224x224" in out
    code, _, err = cli("zoo", "export", "squeezenet1.1", "-o", tmp_path / "sq.onnx")
    assert code == 0, err
    import onnx

    onnx.checker.check_model(onnx.load(tmp_path / "sq.onnx"))
    code, _, err = cli("zoo", "export", "resnet", "-o", tmp_path / "r.onnx")
    assert_one_line_error(code, err, "unknown zoo model 'resnet'")
