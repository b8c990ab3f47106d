"""Build a one-op (or op + epilogue) ONNX model, compile it for `--target npu`, run it on the
simulated core, and check the result against a NumPy reference.

Used by tests/targets/npu/test_kernels.py. Every check that a kernel really ran on the NPU lives
here: the partition put all ops in one NPU subgraph (none on the host), the subgraph ran once,
and the simulator's buffer peaks stayed within the configured sizes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tilecc.compiler.api import compile_model
from tilecc.compiler.runtime import CompiledModel

U16 = 2.0**-11  # fp16 unit roundoff: one rounding to fp16 moves a value by at most U16 * |value|

# Smaller than every tensor below of more than a few hundred elements, so each kernel loops over
# many output tiles, output-channel tiles, k steps and L1 / UB slabs.
SMALL = {
    "l1_bytes": 8 * 1024,
    "ub_bytes": 8 * 1024,
    "l0a_bytes": 2 * 1024,
    "l0b_bytes": 2 * 1024,
    "l0c_bytes": 4 * 1024,
}
BUFFERS = {"L1": "l1_bytes", "UB": "ub_bytes", "L0A": "l0a_bytes", "L0B": "l0b_bytes",
           "L0C": "l0c_bytes"}  # fmt: skip


def f16(a) -> np.ndarray:
    """`a` as the NPU stores it (fp16), widened to float64 for the reference."""
    return np.asarray(a, np.float32).astype(np.float16).astype(np.float64)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


@dataclass
class NpuRun:
    out: np.ndarray
    partition: object  # PartitionReport
    report: dict  # CompiledModel.npu_report


def run_on_npu(
    tmp_path: Path,
    nodes: list,
    inputs: dict[str, np.ndarray],
    weights: dict[str, np.ndarray],
    out_shape: tuple[int, ...],
    config: dict = SMALL,
) -> NpuRun:
    """Compile `nodes` (output `y`, float32, opset 17) for the NPU with `config` and run it."""
    graph = helper.make_graph(
        nodes,
        "kernel",
        [helper.make_tensor_value_info(k, TensorProto.FLOAT, v.shape) for k, v in inputs.items()],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape))],
        [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, tmp_path / "kernel.onnx")
    (tmp_path / "npu.json").write_text(json.dumps(config))
    partitions = []
    compile_model(
        tmp_path / "kernel.onnx",
        target="npu",
        output=tmp_path / "kernel.so",
        accel_config=tmp_path / "npu.json",
        on_partition=partitions.append,
    )
    compiled = CompiledModel(tmp_path / "kernel.so")
    out = compiled.run({k: np.asarray(v, np.float32) for k, v in inputs.items()})["y"]
    return NpuRun(out, partitions[0], compiled.npu_report)


def check_on_npu(run: NpuRun, ops: dict[str, int], config: dict = SMALL) -> None:
    """All of the model's ops in one NPU subgraph holding `ops` (Relax op -> count), nothing on
    the host; the subgraph ran once within the configured buffer sizes."""
    part = run.partition
    assert not part.host_ops, f"ops left on the host CPU: {part.text()}"
    assert len(part.subgraphs) == 1, part.text()
    (counts,) = part.subgraphs.values()
    for op, n in ops.items():
        assert counts[op] == n, f"expected {op} x{n} on the NPU: {part.text()}"
    (sub,) = run.report["subgraphs"]
    assert sub["calls"] == 1 and sub["cycles"] > 0, sub
    for buffer, field in BUFFERS.items():
        assert 0 <= sub["peak"][buffer] <= config[field], (buffer, sub["peak"])


def check_close(got: np.ndarray, want: np.ndarray, roundings: int) -> None:
    """max |got - want| <= roundings * U16 * max(1, max |want|) (see test_kernels.py)."""
    assert got.shape == want.shape, (got.shape, want.shape)
    assert got.dtype == np.float32, got.dtype
    assert np.isfinite(want).all(), "non-finite reference"
    assert np.isfinite(got).all(), "non-finite output"
    scale = max(1.0, float(np.abs(want).max()))
    err = np.abs(got.astype(np.float64) - want)
    worst = np.unravel_index(int(err.argmax()), err.shape)
    limit = roundings * U16 * scale
    assert err.max() <= limit, (
        f"max error {err.max():.3g} > {limit:.3g} ({err.max() / (U16 * scale):.1f} fp16 "
        f"roundings of {scale:.3g}) at {worst}: got {got[worst]}, want {want[worst]}"
    )


# ---- NumPy references (float64 on fp16-rounded data) ----------------------------------------


def _windows(x, kernel, strides, pads, dilations, fill):
    """Each tap's strided view of x padded by `pads` (ONNX order: top, left, bottom, right):
    yields (ky, kx, view [N, C, OH, OW])."""
    kh, kw = kernel
    (sh, sw), (dh, dw) = strides, dilations
    top, left, bottom, right = pads
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=fill)
    oh = (xp.shape[2] - (kh - 1) * dh - 1) // sh + 1
    ow = (xp.shape[3] - (kw - 1) * dw - 1) // sw + 1
    for ky in range(kh):
        for kx in range(kw):
            y0, x0 = ky * dh, kx * dw
            yield (
                ky,
                kx,
                xp[:, :, y0 : y0 + (oh - 1) * sh + 1 : sh, x0 : x0 + (ow - 1) * sw + 1 : sw],
            )


def conv2d_ref(x, w, b=None, strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), groups=1):
    """NCHW / OIHW convolution, groups 1 or depthwise (groups == C)."""
    taps = _windows(x, w.shape[2:], strides, pads, dilations, 0.0)
    out = 0.0
    for ky, kx, patch in taps:
        if groups == 1:
            out = out + np.einsum("nchw,oc->nohw", patch, w[:, :, ky, kx])
        else:
            out = out + patch * w[:, 0, ky, kx][None, :, None, None]
    return out if b is None else out + b[None, :, None, None]


def pool_ref(x, kind, kernel, strides, pads, count_include_pad=0, dilation=1):
    if kind == "max":
        dils = (dilation, dilation)
        views = [v for _, _, v in _windows(x, kernel, strides, pads, dils, -np.inf)]
        return np.max(views, axis=0)
    total = sum(v for _, _, v in _windows(x, kernel, strides, pads, (1, 1), 0.0))
    if count_include_pad:
        return total / (kernel[0] * kernel[1])
    ones = np.ones_like(x)
    count = sum(v for _, _, v in _windows(ones, kernel, strides, pads, (1, 1), 0.0))
    return total / count


def softmax_ref(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)
