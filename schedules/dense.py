"""dense: out[m, n] = sum_k data[m, k] * weight[n, k] (ONNX Gemm transB=1, MatMul by a constant).

Layout: `weight_transform` packs weight [n, k] at compile time into panels
[ceil(n / tile_n), k, tile_n]; when tile_n does not divide n the last panel is zero-filled (any
n works, tile_n need not divide it). `compute` reduces into a padded accumulator `dense`
[ceil(m / tile_m) * tile_m, ceil(n / tile_n) * tile_n] and `dense_slice` crops it to [m, n]:
padded columns multiply zero weights, padded rows re-read data row m - 1 (a clamped index, no
branch), so the reduction never has a tail. Only the crop and the fused epilogue see partial
tiles, as predicates that LoopPartition confines to the last tiles.

Schedule: the parallel loop runs over (tile_m x tile_n) output tiles. A tile's accumulators have
constant indices only (rows and vectors unrolled, one native-width vector innermost), so LLVM
keeps its tile_m * tile_n / lanes vectors in registers through the whole k loop; a k step
broadcasts tile_m data values and loads tile_n / lanes weight vectors. The crop and the
graph's epilogue (bias, activation chains, residual add) run on the tile right after, from
registers and L1. m = 1 (GEMV) is the same loop nest with tile_m = 1: vectors over n, k unrolled.

Knobs: tile_m x tile_n is the register tile. On AVX-512, 6 x 32 (12 zmm accumulators, 2 weight
vectors) came within 2% of the best tile on 256x512x512, 197x576x192 and 17x192x192 (~170
GFLOP/s on one core) and stays under 1 KiB: larger accumulator buffers leave the stack for
TVM's workspace allocator, one call per tile. unroll_k and order moved those shapes by under
3% (their operands fit in L2); they are there for the ones that do not.
"""

from __future__ import annotations

from tvm import s_tir, te, tirx

from .space import Knob, Space
from .template import Template, annotations, epilogue_chain, inline_producers, schedule_rest

SPACE = Space(
    tile_m=Knob(
        (1, 2, 3, 4, 6, 8), 6, "rows per register tile; each weight vector feeds tile_m FMAs"
    ),
    tile_n=Knob(
        (4, 8, 12, 16, 24, 32, 48, 64, 96, 128),
        32,
        "columns per register tile = packed panel width, whole SIMD vectors; more columns share "
        "each data broadcast, and tile_m x tile_n / lanes accumulators hide the FMA latency",
    ),
    unroll_k=Knob((1, 2, 4, 8), 4, "k steps unrolled (a divisor of k): loop overhead vs code size"),
    order=Knob(("nm", "mn"), "nm", "outer tile loop: n keeps a weight panel hot, m a data row"),
)

# (tile_m, tile_n) per fp32 SIMD width: AVX-512 and NEON have 32 vector registers, AVX2 16.
# 6 rows x 2 zmm; NEON 6 x 4 q = 24 accumulators; AVX2 6 x 2 ymm = 12 of its 16 registers.
_DEFAULTS = {16: (6, 32), 8: (6, 16), 4: (6, 16)}


def _ceil(a: int, b: int) -> int:
    return -(-a // b) * b


def space(wl, lanes: int) -> Space:
    return register_tile_space(SPACE, wl, lanes, unroll_k=lambda v: wl.k % v == 0)


def register_tile_space(base: Space, wl, lanes: int, **more) -> Space:
    """`base` (knobs tile_m, tile_n, order, ...) restricted to `wl` (and by `more`), with the
    register tile's defaults for `lanes`; dense_int8 shares it."""
    # At most 4 vectors per row when rows share them (4 x tile_m accumulators + 4 weights in 32
    # registers), 8 for one row. Space has no joint constraints, so tile_m 8 x 4 vectors stays in
    # (it spills: slow, not wrong).
    widest = (8 if wl.m == 1 else 4) * lanes
    sp = base.restrict(
        tile_m=lambda v: v <= wl.m,
        tile_n=lambda v: v % lanes == 0 and v <= min(_ceil(wl.n, lanes), widest),
        order=lambda v: wl.m > 1 or v == "nm",  # one row: both orders are the same loop
        **more,
    )
    # GEMV streams the weight once: one row, four vectors of independent FMAs per k step.
    tile_m, tile_n = (1, 4 * lanes) if wl.m == 1 else _DEFAULTS.get(lanes, (4, 2 * lanes))
    knobs = dict(sp.knobs)
    for name, wish in (("tile_m", tile_m), ("tile_n", tile_n)):  # the legal value nearest
        knob = knobs[name]
        knobs[name] = Knob(knob.values, min(knob.values, key=lambda v: abs(v - wish)), knob.why)
    return Space(**knobs)


def applies(wl) -> bool:
    return wl.op == "dense" and wl.dtype == "float32"


def weight_transform(weight: te.Tensor, wl, cfg) -> te.Tensor:
    bn = cfg["tile_n"]

    def packed(panel, kk, lane):
        col = panel * bn + lane
        return te.if_then_else(col < wl.n, weight[te.min(col, wl.n - 1), kk], 0.0)

    return te.compute((_ceil(wl.n, bn) // bn, wl.k, bn), packed, name="dense_pack")


def compute(data: te.Tensor, packed: te.Tensor, wl, cfg) -> te.Tensor:
    bm, bn = cfg["tile_m"], cfg["tile_n"]
    rows = _ceil(wl.m, bm)
    k = te.reduce_axis((0, wl.k), name="k")

    def row(i):  # padded rows re-read the last real row: finite values, dropped by the crop
        return i if rows == wl.m else te.min(i, wl.m - 1)

    acc = te.compute(
        (rows, _ceil(wl.n, bn)),
        lambda i, j: te.sum(data[row(i), k] * packed[j // bn, k, j % bn], axis=k),
        name="dense",
        attrs=annotations("dense", wl, cfg),
    )
    return te.compute((wl.m, wl.n), lambda i, j: acc[i, j], name="dense_slice")


def schedule(sch: s_tir.Schedule, block, wl, cfg, lanes: int) -> None:
    inline_producers(sch, block)
    i, j, k = sch.get_loops(block)
    io, ii = sch.split(i, [None, cfg["tile_m"]])
    jo, ji = sch.split(j, [None, cfg["tile_n"]])
    jv, jl = sch.split(ji, [None, lanes])  # LLVM legalizes <48 x float> badly: native vectors
    ko, ki = sch.split(k, [None, cfg["unroll_k"]])
    outer = (jo, io) if cfg["order"] == "nm" else (io, jo)
    sch.reorder(*outer, ko, ki, ii, jv, jl)
    tile = sch.fuse(*outer)
    epilogue = fuse_epilogue_at_tile(sch, block, tile)
    # Predicated (tail) tiles scalarize their vector stores; partitioning the tile loop keeps
    # that to the last tiles. The accumulator stays a "global" buffer: LowerTVMBuiltin puts
    # those under 1 KiB on the stack, while "local" ones always go to the workspace allocator.
    sch.annotate(tile, "pragma_loop_partition_hint", 1)
    sch.parallel(tile)  # before decompose_reduction: parallel needs the intact reduction block
    for loop in (ki, ii, jv):
        sch.unroll(loop)
    sch.vectorize(jl)
    vectorize_tile_epilogue(sch, epilogue, tile, lanes)
    sch.decompose_reduction(block, ko)
    schedule_rest(sch, tile, lanes)  # what could not join the tile: a row reduction and after


def fuse_epilogue_at_tile(sch: s_tir.Schedule, block, tile) -> list:
    """Run the crop and the blocks after it per output tile, under `tile`; returns the blocks
    computed there (the others were inlined into them). Unlike template.fuse_epilogue, the crop
    goes to the tile first (nothing inlines into a reduction), the last block is inlined when it
    can be, and a reduction ends the fusion: it and the blocks after it run after all tiles."""
    crop, *rest = epilogue_chain(sch, block)
    sch.reverse_compute_at(crop, tile)
    computed = [crop]
    for blk in rest:
        if any(v.iter_type != tirx.IterVar.DataPar for v in sch.get(blk).iter_vars):
            break  # a row reduction needs every tile
        if _sole_consumer(sch, blk):
            try:
                sch.reverse_compute_inline(blk)
                continue
            except s_tir.ScheduleError:  # its index map is not a bijection of the producer's
                pass
        try:  # x * erf(x) reads x twice: compute it on the tile
            sch.reverse_compute_at(blk, tile)
        except s_tir.ScheduleError:  # reads outside its tile (a reshape across rows)
            break
        computed.append(blk)
    return computed


def _sole_consumer(sch: s_tir.Schedule, block) -> bool:
    """Whether `block` reads one block that nothing else reads. TVM 0.27's reverse_compute_inline
    does not check the second half: it inlines sigmoid(x) into x's producer and leaves x * s
    reading a buffer that no block writes any more."""
    producers = sch.get_producers(block)
    return len(producers) == 1 and len(sch.get_consumers(producers[0])) == 1


def vectorize_tile_epilogue(sch: s_tir.Schedule, blocks, tile, lanes: int) -> None:
    """The epilogue `blocks` computed under `tile`: rows and column chunks unrolled, columns in
    `lanes`-wide vectors (dense_int8 shares it)."""
    for blk in blocks:
        *rows, cols = _loops_under(sch, blk, tile)
        cols, vector = sch.split(cols, [None, lanes])
        for loop in (*rows, cols):
            sch.unroll(loop)  # constant indices keep the accumulator tile in registers
        sch.vectorize(vector)


def _loops_under(sch: s_tir.Schedule, block, outer) -> list:
    loops = sch.get_loops(block)
    outer = sch.get(outer)
    return loops[[sch.get(loop).same_as(outer) for loop in loops].index(True) + 1 :]


def reference(data, weight, wl):
    return data.astype("float64") @ weight.astype("float64").T


TEMPLATE = Template(
    name="dense",
    op="dense",
    space=space,
    applies=applies,
    weight_transform=weight_transform,
    compute=compute,
    schedule=schedule,
    reference=reference,
)
