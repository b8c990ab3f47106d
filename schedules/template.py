"""The template contract and what every template shares.

A template module (`conv2d_direct.py`, `conv2d_winograd.py`, `depthwise.py`, `dense.py`)
defines one `TEMPLATE = Template(...)`:

    space(workload, lanes) -> Space        knobs legal for this workload; `lanes` is the target's
                                           fp32 SIMD width (16 AVX-512, 8 AVX2, 4 NEON)
    applies(workload) -> bool              can this template compute that workload at all
    weight_transform(w, workload, cfg)     TE: OIHW (or [n, k]) weight -> the layout compute
                                           reads; runs once, at compile time (constant-folded)
    compute(data, packed_w, workload, cfg) TE: the output in the graph's layout; the main
                                           reduction block carries `annotations(...)`
    schedule(sch, block, workload, cfg, lanes)
                                           s_tir schedule of the main block, in place, inside a
                                           PrimFunc that may also hold producers (padding,
                                           packing) and fused consumers (bias, activation,
                                           layout unpacking): it must schedule those too
    reference(data, weight, workload)      NumPy in float64 from plain NCHW/OIHW (or [m,k],[n,k])
                                           arrays, written without reading compute()

Tuning sees only this record and the workload key (STYLE.md §3).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import tvm
from tvm import s_tir, te, tirx
from tvm.sym import detect_linear_equation

from .space import Config, Space

_realize = tvm.get_global_func("s_tir.schedule.GetSBlockRealize")  # a block's loop binding

TEMPLATE_ATTR = "tilecc.template"
WORKLOAD_ATTR = "tilecc.workload"
CONFIG_ATTR = "tilecc.config"


@dataclass(frozen=True)
class Template:
    name: str
    op: str  # the Workload.op it serves: "conv2d" or "dense"
    space: Callable[..., Space]
    applies: Callable[..., bool]
    weight_transform: Callable[..., te.Tensor]
    compute: Callable[..., te.Tensor]
    schedule: Callable[..., None]
    reference: Callable[..., np.ndarray]


def annotations(template: str, workload, cfg: Config) -> dict[str, str]:
    """The block annotations that let a later pass find and schedule a template's block
    after operator fusion (block annotations survive FuseTIR; function attributes do not)."""
    return {TEMPLATE_ATTR: template, WORKLOAD_ATTR: workload.key(), CONFIG_ATTR: cfg.key()}


def read_annotations(sch: s_tir.Schedule, block) -> tuple[str, str, Config] | None:
    """(template name, workload key, config) of a block made by `compute`, else None."""
    ann = sch.get(block).annotations
    if TEMPLATE_ATTR not in ann:
        return None
    return (
        str(ann[TEMPLATE_ATTR]),
        str(ann[WORKLOAD_ATTR]),
        Config(json.loads(str(ann[CONFIG_ATTR]))),
    )


# --- schedule helpers every template uses --------------------------------------------------


def inline_producers(sch: s_tir.Schedule, block) -> None:
    """Inline every injective producer of `block` (zero padding, index remapping) into it.
    Producers that read a parameter directly are the only kind templates create."""
    for producer in sch.get_producers(block):
        sch.compute_inline(producer)


def epilogue_chain(sch: s_tir.Schedule, block) -> list:
    """The blocks after `block` in its PrimFunc (bias, activation, layout unpack, ...), in order,
    up to the first one that writes more elements than `block` does.

    FuseOps also fuses a broadcast after a conv: squeeze-excite multiplies a whole feature map
    by a conv over a 1x1 image. Computed at the conv's tile, such a block would run the whole
    map once per tile (and unrolled, take LLVM minutes); it and what follows stay outside, for
    `schedule_rest`.
    """
    root = sch.get_sblock("root")
    children = sch.get_child_blocks(root)
    names = [sch.get(b).name_hint for b in children]
    start = names.index(sch.get(block).name_hint)
    limit = _written_elements(sch, block)
    chain = []
    for blk in children[start + 1 :]:
        if _written_elements(sch, blk) > limit:
            break
        chain.append(blk)
    return chain


def _written_elements(sch: s_tir.Schedule, block) -> int:
    total = 0
    for region in sch.get(block).writes:
        count = 1
        for dim in region.source.shape:
            count *= int(dim)
        total = max(total, count)
    return total


def schedule_rest(sch: s_tir.Schedule, done_loop, lanes: int) -> None:
    """Give what no template scheduled a plain data-parallel schedule: blocks at the top level
    outside the nest under `done_loop` (None: every block; a fused kernel with no template
    block, such as layout transforms, pixel shuffles, elementwise chains).

    Injective blocks are first inlined into their consumers (FuseTIR leaves each op of a fused
    chain writing its own intermediate buffer), except one that feeds a reduction and another
    block, which inlining would compute twice (softmax's exp); each remaining spatial block
    that reads one element per instance then gets its outer loops fused and parallel and its
    innermost loop split into vectors (`lanes` wide, or the widest half of it that divides the
    loop). A reduction runs its leading spatial loops in parallel and keeps its own order of
    summation; gathers keep their loops (what topi made of them).
    """
    try:
        root = sch.get_sblock("root")
    except s_tir.schedule.ScheduleError:  # hand-written TIR (topi's scan kernels): no blocks
        return
    nest = set()
    if done_loop is not None:
        nest = {str(sch.get(b).name_hint) for b in sch.get_child_blocks(done_loop)}
    for blk in sch.get_child_blocks(root)[:-1]:
        if str(sch.get(blk).name_hint) in nest or not _untouched(sch, blk):
            continue
        if _feeds_a_reduction_and_more(sch, blk):
            continue
        try:
            sch.compute_inline(blk)
        except s_tir.schedule.ScheduleError:
            pass  # a reduction, or read in a way that cannot be inlined
    for blk in sch.get_child_blocks(root):
        if str(sch.get(blk).name_hint) in nest or not _untouched(sch, blk):
            continue
        if _is_reduction(sch, blk):
            _parallel_spatial(sch, blk, lanes)
            continue
        if not _point_reads(sch, blk):
            continue
        try:
            _parallel_vectorize(sch, sch.get_loops(blk), lanes)
        except s_tir.schedule.ScheduleError:
            continue  # loops not perfectly nested: leave them as they are


def _is_reduction(sch: s_tir.Schedule, block) -> bool:
    return _reductions(sch, block) > 0


def _feeds_a_reduction_and_more(sch: s_tir.Schedule, block) -> bool:
    """Inlined, `block` would be computed once per consumer: once in a reduction and again
    in another consumer (softmax's exp, in its sum and its normalization)."""
    consumers = sch.get_consumers(block)
    return len(consumers) > 1 and any(_is_reduction(sch, c) for c in consumers)


def _parallel_spatial(sch: s_tir.Schedule, block, lanes: int) -> None:
    """Run a reduction's leading loops in parallel where each binds a spatial iterator
    one to one (softmax's rows, a mean pool's channels): each instance reduces alone, in the
    same order as before."""
    iter_vars = sch.get(block).iter_vars
    lead = []
    for loop, iv, value in zip(
        sch.get_loops(block), iter_vars, _realize(sch, block).iter_values, strict=False
    ):
        if iv.iter_type != 0 or not value.same_as(sch.get(loop).loop_var):
            break
        lead.append(loop)
    if not lead or _trip_count(sch, lead) < 2:
        return
    inner = _vector_channel(sch, block, lead, lanes)
    if inner is not None:
        lead = lead[:-1]
    try:
        if lead:
            sch.parallel(sch.fuse(*lead) if len(lead) > 1 else lead[0])
        if inner is not None:
            reduce = sch.get_loops(block)[-_reductions(sch, block) :]
            sch.reorder(*reduce, inner)
            init = sch.decompose_reduction(block, reduce[0])
            sch.vectorize(sch.get_loops(init)[-1])
            # the update's channel loop, under its reduction loops, is not a loop s_tir can
            # vectorize (no compact dataflow below it): contiguous and innermost, it is left
            # to LLVM
    except s_tir.schedule.ScheduleError:
        pass  # not a plain nest over the block: leave it as far as it got


def _reductions(sch: s_tir.Schedule, block) -> int:
    return sum(iv.iter_type != 0 for iv in sch.get(block).iter_vars)


def _vector_channel(sch: s_tir.Schedule, block, lead, lanes: int):
    """The last of a reduction's leading spatial loops, when only reduction loops follow it,
    it indexes the innermost dimension of what the block reads, and its extent is a vector
    width (NCHW[x]c's channel block under a pool over h, w): with that loop innermost the
    sum reads memory in order, a vector per pixel, instead of a strided scalar sum per
    channel (det's 96 x 160 x 160 pool: 1.24 -> 0.18 ms). Else None."""
    loops = sch.get_loops(block)
    last = lead[-1]
    if len(loops) != len(lead) + _reductions(sch, block) or int(sch.get(last).extent) not in (
        _widths(lanes)
    ):
        return None
    var = sch.get(block).iter_vars[len(lead) - 1].var
    reads = sch.get(block).reads
    if not reads or not all(r.region[-1].min.same_as(var) for r in reads):
        return None
    return last


def _trip_count(sch: s_tir.Schedule, loops) -> int:
    """Iterations of the nest of `loops` (static extents; 1 for none)."""
    return int(np.prod([int(sch.get(loop).extent) for loop in loops]))


def _untouched(sch: s_tir.Schedule, block) -> bool:
    """Has loops, all serial, unannotated (nothing scheduled it yet) and of a static, non-zero
    extent (a symbolic or empty loop is left as it is)."""
    loops = sch.get_loops(block)
    return bool(loops) and all(
        sch.get(loop).kind == 0 and _static_positive(sch.get(loop).extent) for loop in loops
    )


def _static_positive(extent) -> bool:
    return hasattr(extent, "value") and int(extent.value) > 0


def _point_reads(sch: s_tir.Schedule, block) -> bool:
    """Every read is one element per block instance (a layout transform, an elementwise op),
    or a few fixed elements at indices affine in the block's variables (an image's channel
    planes packed into one word). A gather (resize, take) reads a data-dependent region and
    is left alone: nearest-neighbour resize computes its source pixel in float arithmetic, and
    fusing or vectorizing its loops changed the rounding at ties (ONNX
    test_resize_upsample_sizes_nearest)."""
    regions = [region.region for region in sch.get(block).reads]
    if all(_static_positive(r.extent) and int(r.extent.value) == 1 for rs in regions for r in rs):
        return True
    stmt = sch.get(block).body
    if not isinstance(stmt, tirx.BufferStore):
        return False
    variables = [iv.var for iv in sch.get(block).iter_vars]
    return all(
        len(detect_linear_equation(index, variables)) > 0
        for load in _loads(stmt.value)
        for index in load.indices
    )


def _loads(expr) -> list:
    """The buffer loads in `expr` (a PrimExpr tree), in no particular order."""
    found, stack = [], [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, tvm.ir.expr.TensorLoad):  # what tirx.BufferLoad makes
            found.append(node)
        for field in ("a", "b", "value", "condition", "true_value", "false_value", "indices",
                      "args"):  # fmt: skip
            child = getattr(node, field, None)
            if isinstance(child, tvm.ir.expr.Expr):
                stack.append(child)
            elif child is not None and hasattr(child, "__iter__"):  # indices, args
                stack.extend(c for c in child if isinstance(c, tvm.ir.expr.Expr))
    return found


# Parallel chunks enough to balance a phone's cores: below it, the row loop joins the fused
# parallel loop too.
_PARALLEL_CHUNKS = 32


def _parallel_vectorize(sch: s_tir.Schedule, loops, lanes: int) -> None:
    """Parallel over the fused outer loops but the row (the next-to-innermost loop, which stays
    serial so the element loop's index arithmetic is an increment, not a division per vector),
    unless that leaves too few chunks; the innermost loop in `lanes`-wide vectors."""
    inner = loops[-1]
    extent = int(sch.get(inner).extent)
    outer = list(loops[:-1])
    chunks = _trip_count(sch, outer[:-1])
    if len(outer) > 1 and chunks >= _PARALLEL_CHUNKS:
        outer = outer[:-1]
    if outer:
        sch.parallel(sch.fuse(*outer))
    width = next((w for w in _widths(lanes) if extent % w == 0), None)
    if width == extent:
        sch.vectorize(inner)
    elif width is not None:
        sch.vectorize(sch.split(inner, [None, width])[1])


def _widths(lanes: int) -> list[int]:
    """Vector widths to try, widest first: `lanes`, then halves of it down to 2 (a row of 24
    floats on AVX-512 goes in three vectors of 8 rather than one element at a time)."""
    return [lanes >> k for k in range(lanes.bit_length()) if lanes >> k >= 2]


def fuse_epilogue(sch: s_tir.Schedule, block, loop) -> object | None:
    """Fuse the epilogue of `block` under `loop` of its nest: each epilogue block but the last
    is inlined into its producer when it is that producer's sole reader (TVM's
    reverse_compute_inline does not check this, and hard-swish x * relu6(x + 3) / 6 reads x
    twice), else computed at `loop`; the last is computed at `loop`. Returns the last block, so
    the caller can vectorize its inner loop, or None when there is no epilogue."""
    chain = epilogue_chain(sch, block)
    for blk in chain[:-1]:
        if all(len(sch.get_consumers(p)) == 1 for p in sch.get_producers(blk)):
            try:
                sch.reverse_compute_inline(blk)
                continue
            except s_tir.schedule.ScheduleError:  # not injective (a reduction, ...)
                pass
        sch.reverse_compute_at(blk, loop, preserve_unit_loops=True)
    if chain:
        sch.reverse_compute_at(chain[-1], loop, preserve_unit_loops=True)
    return chain[-1] if chain else None


# --- NumPy layout helpers for references and tests ------------------------------------------


def pack_nchwc(x: np.ndarray, block: int) -> np.ndarray:
    """NCHW -> NCHW[block]c (block 1 returns NCHW unchanged)."""
    if block == 1:
        return x
    n, c, h, w = x.shape
    return x.reshape(n, c // block, block, h, w).transpose(0, 1, 3, 4, 2).copy()


def unpack_nchwc(x: np.ndarray) -> np.ndarray:
    """NCHW[block]c -> NCHW (a 4-d array is returned unchanged)."""
    if x.ndim == 4:
        return x
    n, cb, h, w, b = x.shape
    return x.transpose(0, 1, 4, 2, 3).reshape(n, cb * b, h, w)


def template_blocks(sch: s_tir.Schedule) -> list:
    """The blocks of the PrimFunc `sch` works on that a template's `compute` made."""
    try:
        root = sch.get_sblock("root")
    except s_tir.schedule.ScheduleError:  # hand-written TIR (topi's scan kernels) has no blocks
        return []
    return [b for b in sch.get_child_blocks(root) if TEMPLATE_ATTR in sch.get(b).annotations]
