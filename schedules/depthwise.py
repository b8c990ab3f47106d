"""depthwise: y[n, c, oh, ow] = sum_{kh,kw} pad(x)[n, c, oh*sh + kh*dh, ow*sw + kw*dw] * w[c,kh,kw].

fp32, or 8-bit data (uint8 / int8, `workload.dtype`) by int8 weights summed in int32.

Layout: data and output stay in the graph's NCHW[b]c (b = 1 is NCHW). The weight is packed once
to [C/b, KH, KW, R, b], each channel block's taps repeated R times, so that one vector of R*b
lanes covers R adjacent output columns x b channels: b = 1 vectorizes along ow (R = SIMD width),
b < SIMD width with stride 1 widens the b-lane channel vector (R*b <= SIMD width).

Padding is its own stage, computed for each row tile in the parallel loop into a small buffer
(re-copying the halo rows) rather than a padded tensor in DRAM; for b = 1 it also splits rows into
`stride_w` column phases (even/odd columns for stride 2) so every tap is a unit-stride load.

Schedule: parallel over (n, c/b, oh/tile_oh); per output tile tile_ow accumulator vectors stay
in registers over the unrolled kh, kw; the blocks after the conv in its PrimFunc (bias, relu,
clip, hard-swish chains) are inlined into one block that writes the tile out, vectorized like
it. Tails (odd widths, partial vectors, halo columns) become their own loops by loop
partitioning, so no inner loop tests a condition. Not knobs: kh, kw and the tile are always
unrolled (accumulators become registers only under constant indices), and b = 1 never packs
channels (a transpose in and out would double the traffic of a memory-bound op).
"""

from __future__ import annotations

import numpy as np
from tvm import te, tirx
from tvm.s_tir.schedule import ScheduleError

from .space import Knob, Space
from .template import Template, annotations, epilogue_chain, inline_producers

# A padded row tile up to this size stays in L1 (48 KB here) beside the output and weights. On 7
# PPLCNet-sized layers, the largest tile_oh that fits (else 8 rows, L2-resident, 25% halo) was
# the best or within 5% of the best tile_oh.
L1_TILE_BYTES = 20 * 1024

SPACE = Space(
    tile_ow=Knob(
        (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16),
        default=8,
        why="accumulator vectors along ow: a weight vector loaded per tap feeds tile_ow FMAs and "
        "LLVM reuses each input vector across kw; at most 16 registers of accumulators",
    ),
    tile_oh=Knob(
        (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16),
        default=8,
        why="output rows per padding tile: each tile re-copies (KH - stride) halo rows, so more "
        "rows copy less but need a bigger buffer; divisors of OH only (no row predicate)",
    ),
    ow_lanes=Knob(
        (1, 2, 4, 8, 16),
        default=16,
        why="output columns per vector (R): b = 1 vectorizes ow alone; for b < SIMD width R*b "
        "lanes instead of b (NCHW4c 5x5 1.45x faster); default the widest legal",
    ),
)


def space(wl, lanes):
    b, ow = wl.in_block, wl.out_width
    if b == 1:  # a vector along ow, of at least 4 lanes
        sp = SPACE.restrict(ow_lanes=lambda r: 4 <= r <= max(lanes, 4))
    else:  # adjacent columns are adjacent in memory only at stride 1; no partial vectors
        sp = SPACE.restrict(
            ow_lanes=lambda r: r == 1 or (wl.stride_w == 1 and r * b <= lanes and ow % r == 0)
        )
    regs = max(1, b // lanes)  # SIMD registers per accumulator vector
    columns = -(-ow // min(sp.knobs["ow_lanes"].values))
    sp = sp.restrict(
        tile_oh=lambda t: wl.out_height % t == 0,
        tile_ow=lambda t: t * regs <= 16 and t <= columns,
    )
    rows, cols = _padded(wl)
    row_bytes = cols * b * np.dtype(wl.dtype).itemsize
    knob = sp.knobs["tile_oh"]
    fits = [t for t in knob.values if rows(t) * row_bytes <= L1_TILE_BYTES]
    default = max(fits) if fits else max(t for t in knob.values if t <= 8)
    return Space(**{**sp.knobs, "tile_oh": Knob(knob.values, default, knob.why)})


def applies(wl):
    return wl.op == "conv2d" and wl.is_depthwise and wl.in_block == wl.out_block


def weight_transform(w, wl, cfg):
    """OIHW [C, 1, KH, KW] -> [C/b, KH, KW, R, b]."""
    b = wl.in_block
    shape = (wl.in_channels // b, wl.kernel_h, wl.kernel_w, cfg["ow_lanes"], b)
    return te.compute(
        shape, lambda c, kh, kw, r, ci: w[c * b + ci, 0, kh, kw], name="depthwise_weight"
    )


def _padded(wl):
    """(rows a tile of t output rows reads, padded columns a row reads)."""
    span_h = (wl.kernel_h - 1) * wl.dilation_h + 1
    cols = (wl.out_width - 1) * wl.stride_w + (wl.kernel_w - 1) * wl.dilation_w + 1
    return (lambda t: (t - 1) * wl.stride_h + span_h), cols


def compute(data, w, wl, cfg):
    b, r = wl.in_block, cfg["ow_lanes"]
    phases = wl.stride_w if b == 1 else 1
    rows, cols = _padded(wl)
    fill = tirx.const(wl.pad_value, wl.dtype)  # 0, or the zero point of 8-bit data

    def pad_fn(n, c, h, p, q, ci):
        y, x = h - wl.pad_top, q * phases + p - wl.pad_left
        v = data[(n, c, y, x) if b == 1 else (n, c, y, x, ci)]
        # `likely` column tests let loop partitioning split the left and right halo off; the
        # row test is invariant along a row and LLVM hoists it
        v = tirx.if_then_else(tirx.all(tirx.likely(x >= 0), tirx.likely(x < wl.width)), v, fill)
        return tirx.if_then_else(tirx.all(y >= 0, y < wl.height), v, fill)

    shape = (wl.batch, wl.in_channels // b, rows(wl.out_height), phases, -(-cols // phases), b)
    pad = te.compute(shape, pad_fn, name="depthwise_pad")
    kh = te.reduce_axis((0, wl.kernel_h), "kh")
    kw = te.reduce_axis((0, wl.kernel_w), "kw")

    def conv(n, c, oh, ow, *ci):  # no ci when b = 1
        ci, x = (ci[0] if ci else 0), kw * wl.dilation_w
        q = ow * (wl.stride_w // phases) + x // phases
        v = pad[n, c, oh * wl.stride_h + kh * wl.dilation_h, x % phases, q, ci]
        return te.sum(_product(v, w[c, kh, kw, ow % r, ci], wl), axis=[kh, kw])

    attrs = annotations("depthwise", wl, cfg)
    return te.compute(wl.out_shape(), conv, name="depthwise", attrs=attrs)


def _product(x, w, wl):
    """x * w; 8-bit data and int8 weights multiply and sum in int32 (an int16 product, which
    fits, measured no faster)."""
    return x * w if wl.dtype == "float32" else x.astype("int32") * w.astype("int32")


def schedule(sch, block, wl, cfg, lanes):
    b, r = wl.in_block, cfg["ow_lanes"]
    for blk in sch.get_producers(block):
        if sch.get(blk).name_hint.startswith("depthwise_pad"):
            pad = blk
        else:  # weight packing, if it was fused in
            sch.compute_inline(blk)
    inline_producers(sch, pad)  # injective ops on the data, if fused in
    chain = epilogue_chain(sch, block)
    n, c, oh, ow, *ci, kh, kw = sch.get_loops(block)
    oh_o, oh_i = sch.split(oh, [None, cfg["tile_oh"]])
    ow_o, ow_t, ow_r = sch.split(ow, [None, cfg["tile_ow"], r])
    sch.reorder(n, c, oh_o, oh_i, ow_o, kh, kw, ow_t, ow_r, *ci)
    outer = sch.fuse(n, c, oh_o)
    sch.parallel(outer)
    lane = sch.fuse(ow_r, *ci)  # R columns x b channels
    # accumulate the tile in registers; the epilogue chain then writes it out
    local = sch.cache_write(block, 0, "local")
    last = _fuse_epilogue(sch, [local, *chain], ow_o)
    for loop in (kh, kw, ow_t):
        sch.unroll(loop)
    sch.vectorize(lane)
    init = sch.decompose_reduction(block, kh)
    for blk in (init, last):  # loops under (outer, oh_i, ow_o): the tile
        sch.unroll(_vectorize(sch, sch.fuse(*sch.get_loops(blk)[3:]), r * b))
    # a partial last tile along ow becomes its own loops
    for loop in (ow_o, ow_t, lane):
        sch.annotate(loop, "pragma_loop_partition_hint", 1)
    sch.compute_at(pad, outer, preserve_unit_loops=True)
    _schedule_pad(sch, pad, lanes)


def _schedule_pad(sch, pad, lanes):
    """Copy rows in SIMD-wide pieces of (q, ci); loop partitioning, keyed on the `likely` column
    tests, splits off the left and right halo so the copy loop carries no condition."""
    p = sch.get_loops(pad)[-3]
    count = int(sch.get(p).extent)  # b = 1 column phases; 1 when dilation hits only phase 0
    # a loop per phase, so that the halo bounds of each are constants
    for loop in sch.loop_partition(p, [1] * (count - 1) + [None]) if count > 1 else [p]:
        (blk,) = sch.get_child_blocks(loop)
        _vectorize(sch, sch.fuse(*sch.get_loops(blk)[-2:]), lanes)


def _vectorize(sch, loop, width):
    """Vectorize `loop` in pieces of `width` lanes; loop partitioning gives a partial last
    piece its own shorter vector instead of a predicate. Returns the loop over pieces."""
    pieces, inner = sch.split(loop, [None, width])
    sch.vectorize(inner)
    for part in (pieces, inner):
        sch.annotate(part, "pragma_loop_partition_hint", 1)
    return pieces


def _fuse_epilogue(sch, chain, loop):
    """template.fuse_epilogue for a chain that starts at the cache-write block: all blocks but
    the last are inlined forward into their consumers, so the chain becomes one block at `loop`
    reading the register tile (reverse_compute_inline into the reduction always fails)."""
    for blk in chain[:-1]:
        try:
            sch.compute_inline(blk)
        except ScheduleError:  # not injective: compute it at the tile instead
            sch.reverse_compute_at(blk, loop)
    sch.reverse_compute_at(chain[-1], loop)
    return chain[-1]


def reference(data, weight, wl):
    """float64, or for 8-bit data int64 (exact)."""
    pads = ((0, 0), (0, 0), (wl.pad_top, wl.pad_bottom), (wl.pad_left, wl.pad_right))
    acc = np.float64 if wl.dtype == "float32" else np.int64
    data, weight = data.astype(acc), weight.astype(acc)
    x = np.pad(data, pads, constant_values=wl.pad_value)
    out = np.zeros((data.shape[0], data.shape[1], wl.out_height, wl.out_width), acc)
    for kh in range(wl.kernel_h):
        for kw in range(wl.kernel_w):
            y0, x0 = kh * wl.dilation_h, kw * wl.dilation_w
            rows = slice(y0, y0 + (wl.out_height - 1) * wl.stride_h + 1, wl.stride_h)
            cols = slice(x0, x0 + (wl.out_width - 1) * wl.stride_w + 1, wl.stride_w)
            out += x[:, :, rows, cols] * weight[None, :, 0, kh, kw, None, None]
    return out


TEMPLATE = Template(
    "depthwise", "conv2d", space, applies, weight_transform, compute, schedule, reference
)
