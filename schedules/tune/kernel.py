"""Build one tuning candidate: the scheduled kernel, its packed weights, inputs and the answer.

The steps are those of a compiled model's kernel: the template's weight transform (run once,
on the host), its compute over (data, packed weight) and its schedule on the main block. Inputs
are seeded, so every configuration of a workload is checked against the same expected output.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import tvm
from tvm import relax, s_tir, te

from ..template import Template, pack_nchwc, template_blocks

# Relative to the output's magnitude. An indexing bug errs by O(1); float32 sums reassociated by
# a schedule do not: conv2d_winograd F(6,3) over 256 input channels is 1.4e-5 off the float64
# reference (F(4,3): 5e-6), which leaves room for longer reductions under 1e-3. int8 kernels
# sum in int32 and must be exact.
TOLERANCE = 1e-3


@dataclass(frozen=True)
class Problem:
    """Seeded inputs of a workload, in the layouts the kernel reads, and the expected output."""

    data: np.ndarray  # in the workload's data layout (NCHW[b]c for blocked conv)
    weight: np.ndarray  # plain OIHW or [n, k]: the weight transform's input
    expected: np.ndarray  # reference output, in the workload's output layout


def problem(template: Template, workload, weight_max: int, seed: int = 0) -> Problem:
    """Random data and weights in [-1, 1) and the template's float64 reference on them; for
    8-bit data, data over its whole range, weights in [-weight_max, weight_max] (the range the
    build rounds weights to for the target: schedules/int8_dot.py) and the integer reference."""
    rng = np.random.default_rng(seed)
    plain = _plain(workload.data_shape())
    if workload.dtype == "float32":
        data = rng.uniform(-1, 1, plain).astype(workload.dtype)
        weight = rng.uniform(-1, 1, workload.weight_shape()).astype(workload.dtype)
        expected = template.reference(data.astype("float64"), weight.astype("float64"), workload)
    else:
        info = np.iinfo(workload.dtype)
        data = rng.integers(info.min, info.max, plain, endpoint=True).astype(workload.dtype)
        weight = rng.integers(-weight_max, weight_max, workload.weight_shape(), endpoint=True)
        weight = weight.astype(workload.weight_dtype)
        expected = template.reference(data, weight, workload)
    if len(plain) == 4:  # conv2d: into the graph's NCHW[b]c layouts (block 1: unchanged)
        data = pack_nchwc(data, workload.in_block)
        expected = pack_nchwc(expected, workload.out_block)
    return Problem(data, weight, np.asarray(expected))


def packed_weight(template: Template, workload, cfg, weight: np.ndarray, target) -> np.ndarray:
    """`weight` through the template's weight transform, compiled for and run on this host."""
    w = te.placeholder(workload.weight_shape(), workload.weight_dtype, name="weight")
    packed = template.weight_transform(w, workload, cfg)
    lib = tvm.compile(tvm.IRModule({"main": te.create_prim_func([w, packed])}), target=target)
    dev = tvm.cpu()
    out = tvm.runtime.empty(tuple(int(d) for d in packed.shape), packed.dtype, dev)
    lib(tvm.runtime.tensor(weight, dev), out)
    return out.numpy()


def scheduled_kernel(
    template: Template, workload, cfg, lanes: int, packed_shape: tuple[int, ...], target=None
) -> tvm.tirx.PrimFunc:
    """main(data, packed_weight, out): the template's compute, scheduled with `cfg` under
    `target` (int8 templates choose their dot-product instruction by it)."""
    data = te.placeholder(workload.data_shape(), workload.dtype, name="data")
    packed = te.placeholder(packed_shape, workload.weight_dtype, name="packed_weight")
    out = template.compute(data, packed, workload, cfg)
    sch = s_tir.Schedule(tvm.IRModule({"main": te.create_prim_func([data, packed, out])}))
    (block,) = template_blocks(sch)
    with target if target is not None else contextlib.nullcontext():
        template.schedule(sch, block, workload, cfg, lanes)
    return sch.mod["main"]


def relax_wrapper(
    kernel: tvm.tirx.PrimFunc, workload, packed_shape: tuple[int, ...]
) -> tvm.IRModule:
    """A Relax module whose main(data, packed_weight) calls `kernel`: the smallest program a
    Relax VM runner (the one a phone embeds) can execute."""
    builder = relax.BlockBuilder()
    data = relax.Var("data", relax.TensorType(workload.data_shape(), workload.dtype))
    packed = relax.Var("packed_weight", relax.TensorType(packed_shape, workload.weight_dtype))
    with builder.function("main", [data, packed]):
        with builder.dataflow():
            gv = builder.add_func(kernel.with_attr("global_symbol", "kernel"), "kernel")
            out_type = relax.TensorType(workload.out_shape(), workload.out_dtype)
            out = builder.emit_output(relax.call_tir(gv, [data, packed], out_type))
        builder.emit_func_output(out)
    return builder.get()


def mismatch(got: np.ndarray, expected: np.ndarray) -> str | None:
    """Why `got` is not `expected` within TOLERANCE of the output's scale, or None."""
    if got.shape != expected.shape:
        return f"output shape {got.shape}, expected {expected.shape}"
    if not np.all(np.isfinite(got)):
        return "output has NaN or Inf"
    scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
    err = float(np.max(np.abs(got.astype("float64") - expected), initial=0.0))
    if np.issubdtype(got.dtype, np.integer):
        return f"max abs error {err:.0f} in an integer output (must be exact)" if err else None
    if err > TOLERANCE * scale:
        return f"max abs error {err:.3g} > {TOLERANCE:g} x output scale {scale:.3g}"
    return None


def _plain(shape):
    if len(shape) == 5:
        n, cb, h, w, b = shape
        return (n, cb * b, h, w)
    return tuple(shape)
