"""conv2d_int8: direct convolution of 8-bit data by int8 weights into int32, groups == 1.

y[n, o, oh, ow] = sum_{c, kh, kw} int32(x[n, c, oh*s + kh*d, ow*s + kw*d]) * int32(w[o, c, kh, kw])
over zero-padded x: uint8 data on x86, int8 on aarch64 (`workload.dtype`), NCHW[b]c with b a
multiple of 4. Zero points and scales are the graph's business (passes/quantize_int8.py pads
with the zero point before the conv and requantizes after it, in the fused epilogue).

Layout (`vector` knob: P x v int32 accumulators per vector, P output pixels by v output
channels; v the output block, or the target's fp32 lanes when those are a multiple of it; P > 1
only where P x v fills the target's vector; T = tile_oc, R = tile_ow, a multiple of P):
    data_pad         zero padding, and the columns that round OW up to R (none if not needed)
    weight_pack      [O/T, C/b, KH, KW, b/4, T/v, P, v, 4] int8: per (tap, 4 input channels), the
                     P x v x 4 bytes one dot-product instruction takes (the v channels' weights
                     once per pixel), O padded up to T with zeros
    conv2d_int8      [N, O/T, OH, OWp/P, T/v, P, v] int32
    conv2d_int8_out  NCHW[ob]c (NCHW if ob is 1), the padding dropped
Schedule (TVM's x86 conv2d_NCHWc_int8, on s_tir): parallel over fused (n, O/T, OH), then ow
tiles; per tile [C/b > KH > KW > b/4 > R/P > T/v > (P, v, 4)], the (P, v, 4) loops tensorized
into the target's dot-product instruction (schedules/int8_dot.py), an R/P x T/v block of int32
vectors as accumulators, R/P and T/v unrolled. The output stage and the fused epilogue
(requantization, bias, activation, the next layer's quantize) run on the finished tile, as in
conv2d_direct, one output block per vector.

Why pixels: on AVX-512 an NCHW8c conv with 24 output channels (det's FPN) cannot fill zmm with
channels; 2 pixels x 8 channels can: twice the multiply-adds per vpdpbusd, for a second data
broadcast and a combine per pixel pair. That pays where the CPU runs zmm at full width (det's
96 -> 24 3x3 convs at 160 x 160 alone: 1.17 -> 0.80 ms); on AMD Zen 4, which issues zmm as
two ymm halves, the pair is only overhead (1.47 ms as 8c, 1.85 as 2x8c; det int8 12.75 ->
11.72 ms with 8c), so there the default stays one block per vector. The epilogue stays one
block wide: over pixels x channels every per-channel constant would be gathered lane by lane
(TVM's vectorizer cannot express the repeated 8-lane pattern), which cost more than the wider
arithmetic saved.
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
    vector=Knob(
        ("4c", "8c", "16c", "2x4c", "2x8c", "4x4c"),
        default="8c",
        why="the int32 accumulator vector: v output channels ('16c': the SIMD width, spanning "
        "several output blocks), or P pixels x v channels ('2x8c' fills zmm on an NCHW8c conv "
        "whose channels do not come in 16s)",
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


def vector_shape(cfg) -> tuple[int, int]:
    """(P, v): pixels and channels of the config's `vector` knob."""
    return _pixels_channels(cfg["vector"])


def _pixels_channels(vector: str) -> tuple[int, int]:
    """'2x8c' -> (2, 8), '16c' -> (1, 16)."""
    pixels, _, channels = vector.rstrip("c").rpartition("x")
    return int(pixels or 1), int(channels)


def _vectors(wl, lanes: int) -> list[str]:
    """The accumulator vectors `wl` can take on a target of `lanes` fp32 lanes."""
    ob = wl.out_block
    if ob <= 1:
        return [f"{lanes}c"]
    out = [f"{ob}c"]
    if ob < lanes and lanes % ob == 0:
        if wl.out_channels % lanes == 0:
            out.append(f"{lanes}c")  # a full-width vector spans lanes / ob output blocks
        pixels = lanes // ob
        if wl.stride_w == 1 and wl.out_width >= pixels:  # pixel rows one input block apart
            out.append(f"{pixels}x{ob}c")
    return out


def space(wl, lanes: int) -> Space:
    vectors = _vectors(wl, lanes)
    regs = _REGISTERS.get(lanes, 16)
    shapes = [_pixels_channels(v) for v in vectors]
    widest = max(channels for _, channels in shapes)
    even = max(pixels for pixels, _ in shapes)
    most = max(_ceil(wl.out_channels, widest) * widest, widest)
    sp = SPACE.restrict(
        vector=lambda x: x in vectors,
        tile_ow=lambda r: r <= wl.out_width and r % even == 0,
        tile_oc=lambda t: t % widest == 0 and t <= most,
    )
    knobs = dict(sp.knobs)
    # Default vector: the SIMD width in channels where they fill it (one data broadcast per
    # column), else pixels x channels where those fill it and the CPU runs the full width at
    # full rate (a broadcast per pixel and a combine, but twice the lanes of the block alone;
    # det's 96 -> 24 3x3 convs ran 1.5x faster; 1.25x slower on Zen 4), else the block. The
    # epilogue runs per block in every case (a vector over pixels x channels would gather each
    # per-channel constant lane by lane). The target is the one being compiled for, if any.
    target = tvm.target.Target.current(allow_none=True)
    paired = [x for x in vectors if "x" in x] if int8_dot.full_rate_512(target) else []
    vector = f"{lanes}c" if f"{lanes}c" in vectors else (paired or vectors)[0]
    p, v = _pixels_channels(vector)

    def score(tr):  # useful lanes x useful columns x accumulators, if the tile fits
        t, r = tr
        weights = t // v * _ceil(p * v, lanes)
        accumulators = weights * (r // p)
        if t % v or accumulators + weights + 2 > regs:
            return -1.0
        used = wl.out_channels / (_ceil(wl.out_channels, t) * t)
        used *= wl.out_width / (_ceil(wl.out_width, r) * r)
        return used * accumulators

    pairs = [(t, r) for t in knobs["tile_oc"].values for r in knobs["tile_ow"].values]
    t, r = max(pairs, key=score)
    defaults = {"vector": vector, "tile_oc": t, "tile_ow": r, "oc_outer": wl.kernel_h > 1}
    for name, value in defaults.items():
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
    (p, v), t, ib = vector_shape(cfg), cfg["tile_oc"], wl.in_block
    shape = (_ceil(wl.out_channels, t), wl.in_channels // ib, wl.kernel_h, wl.kernel_w)

    def value(ocb, icb, h, w_, i4, j, _pixel, c, q):  # zero weights for channels padding O to T
        oc, ic = ocb * t + j * v + c, icb * ib + i4 * 4 + q
        return tirx.if_then_else(oc < wl.out_channels, w[oc, ic, h, w_], tirx.const(0, "int8"))

    return te.compute((*shape, ib // 4, t // v, p, v, 4), value, name="weight_pack")


def compute(data, packed_w, wl, cfg):
    (p, v), t, ib = vector_shape(cfg), cfg["tile_oc"], wl.in_block
    dp = pad_data(data, wl, cfg)
    icb = te.reduce_axis((0, wl.in_channels // ib), "icb")
    kh = te.reduce_axis((0, wl.kernel_h), "kh")
    kw = te.reduce_axis((0, wl.kernel_w), "kw")
    i4 = te.reduce_axis((0, ib // 4), "i4")
    q = te.reduce_axis((0, 4), "q")

    def conv_value(n, ocb, oh, owp, j, pixel, c):
        ow = owp * p + pixel
        h, w = oh * wl.stride_h + kh * wl.dilation_h, ow * wl.stride_w + kw * wl.dilation_w
        x = dp[n, icb, h, w, i4 * 4 + q].astype("int32")
        wt = packed_w[ocb, icb, kh, kw, i4, j, pixel, c, q].astype("int32")
        return te.sum(x * wt, axis=[icb, kh, kw, i4, q])

    width = padded_width(wl, cfg)
    shape = (wl.batch, _ceil(wl.out_channels, t), wl.out_height, width // p, t // v, p, v)
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
        return conv[n, vec // (t // v), h, w // p, vec % (t // v), w % p, lane]

    return te.compute(wl.out_shape(), out, name="conv2d_int8_out")


def schedule(sch, block, wl, cfg, lanes):
    (p, v), r = vector_shape(cfg), cfg["tile_ow"]
    for producer in sch.get_producers(block):  # data_pad (absent when nothing pads)
        if sch.get(producer).name_hint.startswith("weight_pack"):
            sch.compute_inline(producer)
            continue
        inline_producers(sch, producer)
        schedule_pad(sch, producer, wl, lanes)
    n, ocb, oh, owp, j, pixel, c, icb, kh, kw, i4, q = sch.get_loops(block)
    owo, owi = sch.split(owp, [None, r // p])
    outer = (n, ocb, oh) if cfg["oc_outer"] else (n, oh, ocb)
    sch.reorder(*outer, owo, icb, kh, kw, i4, owi, j, pixel, c, q)
    sch.parallel(sch.fuse(*outer))
    fuse_tile_epilogue(sch, block, owo, lanes)
    for loop in (owi, j):
        sch.unroll(loop)
    init = sch.decompose_reduction(block, icb)
    sch.vectorize(sch.fuse(*sch.get_loops(init)[-2:]))  # (P, v): one accumulator vector
    target = tvm.target.Target.current(allow_none=True)
    features = int8_dot.target_features(target)
    name = int8_dot.intrinsic(wl.dtype, p * v, features, pixels=p)
    if name is not None:
        sch.tensorize(pixel if p > 1 else c, name)


def reference(data, weight, wl):
    """Integer (int64) zero-padded conv over every (dilated, strided) window."""
    pads = ((0, 0), (0, 0), (wl.pad_top, wl.pad_bottom), (wl.pad_left, wl.pad_right))
    x = np.pad(data.astype(np.int64), pads, constant_values=wl.pad_value)
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
