"""dense_int8: out[m, n] = sum_k int32(data[m, k]) * int32(weight[n, k]), 8-bit data by int8
weights into int32 (a quantized MatMul / Gemm; uint8 data on x86, int8 on aarch64).

Zero points and scales are the graph's business (passes/quantize_int8.py requantizes after it,
in the fused epilogue), as for conv2d_int8.

Layout (v = the target's fp32 lanes: int32 accumulators per vector; k a multiple of 4):
    dense_int8_pack  [ceil(n / tile_n), k / 4, tile_n, 4] int8: per 4 k steps, the v x 4 bytes one
                     dot-product instruction takes per vector; columns past n are zero
    dense_int8       [ceil(m / tile_m) * tile_m, ceil(n / tile_n) * tile_n] int32; padded rows
                     re-read row m - 1 (clamped), dropped by the crop
    dense_int8_slice [m, n]
Schedule (dense's, with the dot product): parallel over (tile_m x tile_n) output tiles; per tile
[k / 4 > tile_m > tile_n / v > (v, 4)], the (v, 4) loops tensorized into the target's
dot-product instruction (schedules/int8_dot.py), tile_m x tile_n / v int32 accumulator vectors
in registers. The crop and the fused epilogue (requantization, bias, activation) run on the
tile, as in dense.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import s_tir, te, tirx

from . import int8_dot
from .dense import fuse_epilogue_at_tile, register_tile_space, vectorize_tile_epilogue
from .space import Knob, Space
from .template import Template, annotations, inline_producers, schedule_rest

SPACE = Space(
    tile_m=Knob(
        (1, 2, 3, 4, 6, 8),
        6,
        "rows per register tile; each weight vector feeds tile_m dot products",
    ),
    tile_n=Knob(
        (4, 8, 12, 16, 24, 32, 48, 64, 96, 128),
        32,
        "columns per register tile = packed panel width, whole vectors: each 4-byte data "
        "broadcast feeds tile_n / v dot products",
    ),
    order=Knob(("nm", "mn"), "nm", "outer tile loop: n keeps a weight panel hot, m a data row"),
)


def _ceil(a: int, b: int) -> int:
    return -(-a // b) * b


def space(wl, lanes: int) -> Space:
    return register_tile_space(SPACE, wl, lanes)


def applies(wl) -> bool:
    return wl.op == "dense" and wl.dtype in ("uint8", "int8") and wl.k % 4 == 0


def weight_transform(weight: te.Tensor, wl, cfg) -> te.Tensor:
    bn = cfg["tile_n"]

    def packed(panel, k4, lane, q):
        col = panel * bn + lane
        value = weight[te.min(col, wl.n - 1), k4 * 4 + q]
        return te.if_then_else(col < wl.n, value, tirx.const(0, "int8"))

    return te.compute((_ceil(wl.n, bn) // bn, wl.k // 4, bn, 4), packed, name="dense_int8_pack")


def compute(data: te.Tensor, packed: te.Tensor, wl, cfg) -> te.Tensor:
    bm, bn = cfg["tile_m"], cfg["tile_n"]
    rows = _ceil(wl.m, bm)
    k4 = te.reduce_axis((0, wl.k // 4), name="k4")
    q = te.reduce_axis((0, 4), name="q")

    def row(i):  # padded rows re-read the last real row, dropped by the crop
        return i if rows == wl.m else te.min(i, wl.m - 1)

    def value(i, j):
        x = data[row(i), k4 * 4 + q].astype("int32")
        return te.sum(x * packed[j // bn, k4, j % bn, q].astype("int32"), axis=[k4, q])

    acc = te.compute(
        (rows, _ceil(wl.n, bn)), value, name="dense_int8", attrs=annotations("dense_int8", wl, cfg)
    )
    return te.compute((wl.m, wl.n), lambda i, j: acc[i, j], name="dense_int8_slice")


def schedule(sch: s_tir.Schedule, block, wl, cfg, lanes: int) -> None:
    for producer in sch.get_producers(block):
        if sch.get(producer).name_hint.startswith("dense_int8_pack"):
            sch.compute_inline(producer)
    inline_producers(sch, block)
    i, j, k4, q = sch.get_loops(block)
    io, ii = sch.split(i, [None, cfg["tile_m"]])
    jo, ji = sch.split(j, [None, cfg["tile_n"]])
    jv, jl = sch.split(ji, [None, lanes])
    outer = (jo, io) if cfg["order"] == "nm" else (io, jo)
    sch.reorder(*outer, k4, ii, jv, jl, q)
    tile = sch.fuse(*outer)
    epilogue = fuse_epilogue_at_tile(sch, block, tile)
    sch.annotate(tile, "pragma_loop_partition_hint", 1)
    sch.parallel(tile)
    for loop in (ii, jv):
        sch.unroll(loop)
    vectorize_tile_epilogue(sch, epilogue, tile, lanes)
    init = sch.decompose_reduction(block, k4)
    sch.vectorize(sch.get_loops(init)[-1])
    target = tvm.target.Target.current(allow_none=True)
    name = int8_dot.intrinsic(wl.dtype, lanes, int8_dot.target_features(target))
    if name is not None:
        sch.tensorize(jl, name)
    schedule_rest(sch, tile, lanes)


def reference(data, weight, wl):
    return data.astype(np.int64) @ weight.astype(np.int64).T


TEMPLATE = Template(
    name="dense_int8",
    op="dense",
    space=space,
    applies=applies,
    weight_transform=weight_transform,
    compute=compute,
    schedule=schedule,
    reference=reference,
)
