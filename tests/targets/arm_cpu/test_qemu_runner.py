"""The aarch64 runner: a Relax module compiled for aarch64, run under qemu-aarch64, vs NumPy."""

import json
import subprocess

import numpy as np
import pytest
import tvm
from tvm import relax
from tvm.script import ir as I
from tvm.script import relax as R
from tvm.support import cc

from tilecc.compiler.errors import ToolError
from tilecc.targets.arm_cpu.runtime import (
    CROSS_COMPILER,
    QEMU,
    SYSROOT,
    ensure_aarch64_runtime,
    qemu_aarch64,
    read_metadata_aarch64,
)

pytestmark = pytest.mark.qemu

METADATA = {"model": "tiny", "inputs": ["x", "y"]}
AARCH64 = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"], "num-cores": 2}


def export_aarch64(mod, metadata, path):
    """Add `tilecc_metadata` as the compiler does, build for aarch64, link with the cross g++."""
    bb = relax.BlockBuilder(mod)
    with bb.function("tilecc_metadata", []):
        bb.emit_func_output(relax.expr.String(json.dumps(metadata)))
    ex = tvm.compile(bb.get(), target=tvm.target.Target(AARCH64))
    ex.export_library(str(path), fcompile=cc.cross_compiler(CROSS_COMPILER))
    return path


@pytest.fixture(scope="module")
def matmul_so(tmp_path_factory):
    @I.ir_module
    class Module:
        @R.function
        def main(x: R.Tensor((2, 3), "float32"), y: R.Tensor((3, 4), "float32")):
            with R.dataflow():
                a = R.nn.relu(R.matmul(x, y))
                b = R.multiply(x, R.const(2.0, "float32"))
                out = (a, b)
                R.output(out)
            return out

    return export_aarch64(Module, METADATA, tmp_path_factory.mktemp("qemu") / "matmul.so")


@pytest.fixture(scope="module")
def dtypes_so(tmp_path_factory):
    # One input per dtype the runner's .npy reader and writer handle; a nested tuple out.
    @I.ir_module
    class Module:
        @R.function
        def main(
            f16: R.Tensor((3,), "float16"),
            i64: R.Tensor((2, 2), "int64"),
            i32: R.Tensor((1,), "int32"),
            i8: R.Tensor((2,), "int8"),
            u8: R.Tensor((2, 1), "uint8"),
            flag: R.Tensor((3,), "bool"),
        ):
            with R.dataflow():
                out = ((R.add(f16, f16), R.add(i64, R.const(1, "int64"))), i32, (i8, (u8, flag)))
                R.output(out)
            return out

    return export_aarch64(Module, {}, tmp_path_factory.mktemp("qemu") / "dtypes.so")


def test_matmul_relu_and_double_match_numpy(matmul_so):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3), dtype=np.float32)
    y = rng.standard_normal((3, 4), dtype=np.float32)
    a, b = qemu_aarch64(matmul_so, [x, y], num_outputs=2)
    assert (a.shape, a.dtype, b.shape, b.dtype) == ((2, 4), np.float32, (2, 3), np.float32)
    expected = np.maximum(x.astype("float64") @ y.astype("float64"), 0)
    np.testing.assert_allclose(a, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(b, 2 * x, rtol=1e-5, atol=1e-5)


def test_every_npy_dtype_round_trips_and_nested_tuple_flattens(dtypes_so):
    inputs = [
        np.array([0.5, -1.25, 3.0], np.float16),
        np.array([[1, -2], [2**40, 7]], np.int64),
        np.array([-123456], np.int32),
        np.array([-128, 127], np.int8),
        np.array([[0], [255]], np.uint8),
        np.array([True, False, True]),
    ]
    outputs = qemu_aarch64(dtypes_so, inputs)
    expected = [inputs[0] * 2, inputs[1] + 1, *inputs[2:]]
    assert [(o.shape, o.dtype) for o in outputs] == [(e.shape, e.dtype) for e in expected]
    for got, want in zip(outputs, expected, strict=True):
        np.testing.assert_array_equal(got, want)


def test_info_returns_metadata_json(matmul_so):
    assert json.loads(read_metadata_aarch64(matmul_so)) == METADATA


def test_repeat_prints_median_time_and_still_returns_outputs(matmul_so, capsys):
    x, y = np.ones((2, 3), np.float32), np.ones((3, 4), np.float32)
    a, _ = qemu_aarch64(matmul_so, [x, y], repeat=3)
    np.testing.assert_array_equal(a, np.full((2, 4), 3, np.float32))
    assert "median" in capsys.readouterr().err


def test_wrong_shaped_input_names_the_parameter(matmul_so):
    x, y = np.zeros((3, 3), np.float32), np.zeros((3, 4), np.float32)
    with pytest.raises(ToolError, match=r"tilecc_run: error: .*param=x.*shape\[0\] mismatch"):
        qemu_aarch64(matmul_so, [x, y])


def test_wrong_number_of_inputs(matmul_so):
    with pytest.raises(ToolError, match=r"main expects 2 arguments \(x, y\), but 1"):
        qemu_aarch64(matmul_so, [np.zeros((2, 3), np.float32)])


def test_wrong_output_count_is_reported(matmul_so):
    x, y = np.zeros((2, 3), np.float32), np.zeros((3, 4), np.float32)
    with pytest.raises(ToolError, match="returned 2 outputs, expected 3"):
        qemu_aarch64(matmul_so, [x, y], num_outputs=3)


def test_missing_model_file(tmp_path):
    missing = tmp_path / "missing.so"
    with pytest.raises(ToolError, match=r"tilecc_run: error: .*missing\.so: no such file"):
        qemu_aarch64(missing, [np.zeros((2, 3), np.float32)])


def test_runner_rejects_fortran_order_npy(matmul_so, tmp_path):
    # qemu_aarch64 always writes C order, so call the runner directly with a Fortran-order file.
    np.save(tmp_path / "x.npy", np.asfortranarray(np.zeros((2, 3), np.float32)))
    np.save(tmp_path / "y.npy", np.zeros((3, 4), np.float32))
    cmd = [QEMU, "-L", str(SYSROOT), str(ensure_aarch64_runtime())]
    cmd += [str(matmul_so), str(tmp_path / "out"), str(tmp_path / "x.npy"), str(tmp_path / "y.npy")]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.startswith("tilecc_run: error: ")
    assert "x.npy: Fortran-order arrays are not supported" in result.stderr
    assert result.stderr.count("\n") == 1  # one line
