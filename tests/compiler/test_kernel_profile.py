from onnx_models import conv_relu

from tilecc.compiler.frontend_onnx import import_onnx
from tilecc.compiler.kernel_profile import fused_kernels, profile_kernels
from tilecc.targets import get_target


def test_profile_lists_every_called_kernel_with_its_shapes():
    imported = import_onnx("m.onnx", model=conv_relu(dims=(1, 3, 16, 16), channels=8))
    spec = get_target("x86")
    _, calls = fused_kernels(imported, spec, spec.tvm())
    kernels = profile_kernels(imported, spec, number=1, repeat=1)
    assert {k.name for k in kernels} == {name for name, _ in calls}
    conv = next(k for k in kernels if "conv2d" in k.name)
    assert conv.arg_shapes[0] == ((1, 3, 16, 16), "float32")
    assert conv.arg_shapes[-1] == ((1, 8, 16, 16), "float32")
    assert all(k.ms_per_call > 0 and k.calls >= 1 for k in kernels)
    assert [k.total_ms for k in kernels] == sorted((k.total_ms for k in kernels), reverse=True)


def test_bench_cli_prints_both_latencies_ratio_and_kernels(cli, tmp_path):
    path = tmp_path / "conv.onnx"
    path.write_bytes(conv_relu().SerializeToString())
    code, out, err = cli("bench", path, "--repeat", "3", "--top-kernels", "2")
    assert code == 0, err
    assert "tilecc  median" in out and "ORT     median" in out and "ratio tilecc/ORT" in out
    assert "conv2d" in out
