import numpy as np
from onnx_models import conv_relu

from tilecc.compiler import api
from tilecc.compiler.kernel_profile import profile_kernels, profile_model
from tilecc.compiler.reference import ort_run
from tilecc.compiler.runtime import CompiledModel


def test_profile_times_each_kernel_inside_the_model_run(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(conv_relu(dims=(1, 3, 16, 16), channels=8).SerializeToString())
    compiled = CompiledModel(api.compile_model(path, "x86", tmp_path / "m.so"))
    inputs = {"x": np.random.default_rng(0).random((1, 3, 16, 16), np.float32)}
    vm = compiled.host_vm()
    profile = profile_model(vm, compiled.host_args(inputs), repeat=3)
    kernels = profile.kernels
    assert profile.run_ms > 0 and profile.kernel_ms == sum(k.total_ms for k in kernels)
    assert {k.name for k in profile_kernels(vm, compiled.host_args(inputs))} == {
        k.name for k in kernels
    }
    conv = next(k for k in kernels if "conv2d" in k.name)
    assert conv.calls == 1  # per run, not per profile
    assert conv.arg_shapes[0] == ((1, 3, 16, 16), "float32")
    assert conv.arg_shapes[-1] == ((1, 8, 16, 16), "float32")
    assert all(k.ms_per_call > 0 and k.calls >= 1 for k in kernels)
    assert [k.total_ms for k in kernels] == sorted((k.total_ms for k in kernels), reverse=True)
    # the hook is gone afterwards: the model runs on and still gives ONNX Runtime's numbers
    np.testing.assert_allclose(compiled.run(inputs)["y"], ort_run(path, inputs)["y"], atol=1e-5)


def test_bench_cli_prints_both_latencies_ratio_and_kernels(cli, tmp_path):
    path = tmp_path / "conv.onnx"
    path.write_bytes(conv_relu().SerializeToString())
    code, out, err = cli("bench", path, "--repeat", "3", "--top-kernels", "2")
    assert code == 0, err
    assert "tilecc  median" in out and "ORT     median" in out and "ratio tilecc/ORT" in out
    assert "conv2d" in out
