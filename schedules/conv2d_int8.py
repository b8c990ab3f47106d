"""conv2d_int8: direct convolution of 8-bit data by int8 weights into int32, groups == 1.

y[n, o, oh, ow] = sum_{c, kh, kw} int32(x[n, c, oh*s + kh*d, ow*s + kw*d]) * int32(w[o, c, kh, kw])
over zero-padded x: uint8 data on x86, int8 on aarch64 (`workload.dtype`), NCHW[b]c with b a
multiple of 4. Zero points and scales are the graph's business (passes/quantize_int8.py pads
with the zero point before the conv and requantizes after it, in the fused epilogue).

Layout (v = the int32 accumulators per vector: the output block, or the target's fp32 lanes
when those are a multiple of it; T = tile_oc, R = tile_ow):
    data_pad         zero padding, and the columns that round OW up to R (none if not needed)
    weight_pack      [O/T, C/b, KH, KW, b/4, T/v, v, 4] int8: per (tap, 4 input channels), the
                     v x 4 bytes one dot-product instruction takes, O padded up to T with zeros
    conv2d_int8      [N, O/T, OH, OWp, T/v, v] int32
    conv2d_int8_out  NCHW[ob]c (NCHW if ob is 1), the padding dropped
Schedule (TVM's x86 conv2d_NCHWc_int8, on s_tir): parallel over fused (n, O/T, OH), then ow
tiles; per tile [C/b > KH > KW > b/4 > R > T/v > (v, 4)], the (v, 4) loops tensorized into the
target's dot-product instruction (schedules/int8_dot.py), an R x T/v block of int32 vectors as
accumulators, R and T/v unrolled. The output stage and the fused epilogue (requantization,
bias, activation, the next layer's quantize) run on the finished tile, as in conv2d_direct.
"""

from __future__ import annotations

import numpy as np
import tvm
from numpy.lib.stride_tricks import sliding_window_view
from tvm import te, tirx

from . import int8_dot
from .conv2d_direct import fuse_tile_epilogue, pad_data, padded_width, schedule_pad
from .space import Knob, Space
from .template import Template, annotations, inline_producers

SPACE = Space(
    tile_ow=Knob(
        (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16),
        default=6,
        why="output columns per tile: R x T/v int32 accumulator vectors; each weight vector "
        "loaded feeds R dot products",
    ),
    tile_oc=Knob(
        (4, 8, 12, 16, 24, 32, 48, 64),
        default=16,
        why="output channels per tile, a multiple of v (O padded up to it): each 4-byte data "
        "broadcast feeds T/v dot products",
    ),
    oc_lanes=Knob(
        (4, 8, 16),
        default=8,
        why="v, int32 accumulators per vector: the output block, or the SIMD width where that "
        "is a multiple of the block dividing the output channels (one vector then spans "
        "several blocks: 16-lane vpdpbusd for NCHW8c on AVX-512, twice the 8-lane work)",
    ),
    oc_outer=Knob(
        (True, False),
        default=True,
        why="parallel order (n, O/T, OH) keeps a chunk's weights in cache, (n, OH, O/T) the "
        "input rows",
    ),
)

# Vector registers (AVX2 16 ymm; AVX-512 and NEON 32). A tile holds R x T/v accumulators, the
# T/v weight vectors of the current tap and a data broadcast plus a product temporary.
_REGISTERS = {8: 16, 16: 32, 4: 32}


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def space(wl, lanes: int) -> Space:
    ob = wl.out_block
    v = ob if ob > 1 else lanes
    if 1 < ob < lanes and lanes % ob == 0 and wl.out_channels % lanes == 0:
        v = lanes  # a full-width vector spans lanes / ob output blocks (and may take ob)
    regs = _REGISTERS.get(lanes, 16)
    sp = SPACE.restrict(
        tile_ow=lambda r: r <= wl.out_width,
        tile_oc=lambda t: t % v == 0 and t <= max(_ceil(wl.out_channels, v) * v, v),
        oc_lanes=lambda x: x == v or x == ob,
    )
    knobs = dict(sp.knobs)
    knobs["oc_lanes"] = Knob(knobs["oc_lanes"].values, v, knobs["oc_lanes"].why)

    def score(tr):  # useful lanes x useful columns x accumulators, if the tile fits
        t, r = tr
        vectors = t // v * _ceil(v, lanes)
        if vectors + vectors * r + 2 > regs:
            return -1.0
        used = wl.out_channels / (_ceil(wl.out_channels, t) * t)
        used *= wl.out_width / (_ceil(wl.out_width, r) * r)
        return used * vectors * r

    pairs = [(t, r) for t in knobs["tile_oc"].values for r in knobs["tile_ow"].values]
    t, r = max(pairs, key=score)
    for name, value in (("tile_oc", t), ("tile_ow", r), ("oc_outer", wl.kernel_h > 1)):
        knob = knobs[name]
        knobs[name] = Knob(knob.values, value, knob.why)
    return Space(**knobs)


def applies(wl) -> bool:
    return (
        wl.op == "conv2d"
        and wl.dtype in ("uint8", "int8")
        and wl.groups == 1
        and wl.in_block % 4 == 0
    )


def weight_transform(w, wl, cfg):
    t, v, ib = cfg["tile_oc"], cfg["oc_lanes"], wl.in_block
    shape = (_ceil(wl.out_channels, t), wl.in_channels // ib, wl.kernel_h, wl.kernel_w)

    def value(ocb, icb, h, w_, i4, j, c, q):  # zero weights for the channels padding O to T
        oc, ic = ocb * t + j * v + c, icb * ib + i4 * 4 + q
        return tirx.if_then_else(oc < wl.out_channels, w[oc, ic, h, w_], tirx.const(0, "int8"))

    return te.compute((*shape, ib // 4, t // v, v, 4), value, name="weight_pack")


def compute(data, packed_w, wl, cfg):
    t, v, ib = cfg["tile_oc"], cfg["oc_lanes"], wl.in_block
    dp = pad_data(data, wl, cfg)
    icb = te.reduce_axis((0, wl.in_channels // ib), "icb")
    kh = te.reduce_axis((0, wl.kernel_h), "kh")
    kw = te.reduce_axis((0, wl.kernel_w), "kw")
    i4 = te.reduce_axis((0, ib // 4), "i4")
    q = te.reduce_axis((0, 4), "q")

    def conv_value(n, ocb, oh, ow, j, c):
        h, w = oh * wl.stride_h + kh * wl.dilation_h, ow * wl.stride_w + kw * wl.dilation_w
        x = dp[n, icb, h, w, i4 * 4 + q].astype("int32")
        wt = packed_w[ocb, icb, kh, kw, i4, j, c, q].astype("int32")
        return te.sum(x * wt, axis=[icb, kh, kw, i4, q])

    shape = (wl.batch, _ceil(wl.out_channels, t), wl.out_height, padded_width(wl, cfg), t // v, v)
    attrs = annotations("conv2d_int8", wl, cfg)
    conv = te.compute(shape, conv_value, name="conv2d_int8", attrs=attrs)

    ob = wl.out_block

    def out(n, cb, h, w, *c):  # one variable per index: reverse_compute_at solves them
        if ob == v:  # c: in the block
            vec, lane = cb, c[0]
        elif c:  # v a multiple of the output block: a vector spans v / ob blocks
            vec, lane = cb // (v // ob), cb % (v // ob) * ob + c[0]
        else:
            vec, lane = cb // v, cb % v
        return conv[n, vec // (t // v), h, w, vec % (t // v), lane]

    return te.compute(wl.out_shape(), out, name="conv2d_int8_out")


def schedule(sch, block, wl, cfg, lanes):
    for producer in sch.get_producers(block):  # data_pad (absent when nothing pads)
        if sch.get(producer).name_hint.startswith("weight_pack"):
            sch.compute_inline(producer)
            continue
        inline_producers(sch, producer)
        schedule_pad(sch, producer, wl, lanes)
    n, ocb, oh, ow, j, c, icb, kh, kw, i4, q = sch.get_loops(block)
    owo, owi = sch.split(ow, [None, cfg["tile_ow"]])
    outer = (n, ocb, oh) if cfg["oc_outer"] else (n, oh, ocb)
    sch.reorder(*outer, owo, icb, kh, kw, i4, owi, j, c, q)
    sch.parallel(sch.fuse(*outer))
    fuse_tile_epilogue(sch, block, owo, lanes)
    for loop in (owi, j):
        sch.unroll(loop)
    init = sch.decompose_reduction(block, icb)
    sch.vectorize(sch.get_loops(init)[-1])
    target = tvm.target.Target.current(allow_none=True)
    name = int8_dot.intrinsic(wl.dtype, cfg["oc_lanes"], int8_dot.target_features(target))
    if name is not None:
        sch.tensorize(c, name)


def reference(data, weight, wl):
    """Integer (int64) zero-padded conv over every (dilated, strided) window."""
    pads = ((0, 0), (0, 0), (wl.pad_top, wl.pad_bottom), (wl.pad_left, wl.pad_right))
    x = np.pad(data.astype(np.int64), pads)
    span = ((wl.kernel_h - 1) * wl.dilation_h + 1, (wl.kernel_w - 1) * wl.dilation_w + 1)
    win = sliding_window_view(x, span, axis=(2, 3))
    win = win[:, :, :: wl.stride_h, :: wl.stride_w, :: wl.dilation_h, :: wl.dilation_w]
    return np.einsum("nchwij,ocij->nohw", win, weight.astype(np.int64))


TEMPLATE = Template(
    name="conv2d_int8",
    op="conv2d",
    space=space,
    applies=applies,
    weight_transform=weight_transform,
    compute=compute,
    schedule=schedule,
    reference=reference,
)
