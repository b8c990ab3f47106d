"""conv2d_direct: spatial-pack direct convolution over NCHW[b]c data, groups == 1.

Layout (T = tile_oc, R = tile_ow, P = ic_lanes, ib / ob = the workload's in / out blocks):
    data_pad       the input zero-padded in its own parallel stage (none if nothing to pad)
    weight_pack    [O/T, C/tile_ic, KH, KW, tile_ic/P, T/v, v, P], v = ob (T if ob is 1): the
                   reduction reads it front to back, one (v x P)-lane vector per step
    conv2d_direct  [N, O/T, OH, OWp, T/v, v, P], O padded up to T and OW up to a multiple of R
                   (data_pad supplies the extra zero columns), so every tile is whole
    conv2d_out     NCHW[ob]c (NCHW if ob is 1): adds the P partial sums, drops the padding
Schedule (TVM's x86 conv2d_NCHWc / arm_cpu spatial pack): parallel over fused (n, O/T, OH), then
ow tiles; per tile [C/tile_ic > KH > KW > tile_ic/P > R > T/v > (v, P)], an R x T x P block of
accumulators in vector registers, the last three loops unrolled, (v, P) one vector. conv2d_out
and the fused epilogue (bias, activations, residual add, unpack) run on the finished tile,
vectorized, so conv2d_direct never reaches memory.
P = 2 fills a vector wider than ob: NCHW8c on AVX-512 holds 8 channels x 2 adjacent input
channels per zmm, whose data operand is then one 64-bit broadcast (vbroadcastsd), and
conv2d_out adds the halves (about 2x an 8-lane ymm kernel). Knob reasons are in SPACE; `space`
restricts them to the workload and picks its defaults.
"""

from __future__ import annotations

import random

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from tvm import s_tir, te, tirx

from .space import ConfigError, Knob, Space
from .template import Template, annotations, epilogue_chain, inline_producers

# TVM keeps a CPU buffer on the stack, where LLVM promotes it to registers, only under 1 KiB
# (runtime::kMaxStackAlloca); a bigger accumulator block goes to the heap workspace and stays in
# registers only when LLVM's LICM happens to promote it. Hence a rule across three knobs.
_MAX_TILE = 255


def _fits(cfg) -> bool:
    return cfg["tile_ow"] * cfg["tile_oc"] * cfg["ic_lanes"] <= _MAX_TILE


class _TileSpace(Space):
    """A Space whose configs also keep the accumulator block within _MAX_TILE floats."""

    def check(self, cfg):
        if not _fits(cfg := super().check(cfg)):
            raise ConfigError(f"tile_ow x tile_oc x ic_lanes > {_MAX_TILE} accumulator floats")
        return cfg

    def __iter__(self):
        return filter(_fits, super().__iter__())

    def __len__(self):
        return sum(1 for _ in self)

    def restrict(self, **allowed):
        return _TileSpace(**super().restrict(**allowed).knobs)

    def sample(self, n, seed=0):
        every = list(self)
        return every if len(every) <= n else random.Random(seed).sample(every, n)

    def neighbours(self, cfg):
        return list(filter(_fits, super().neighbours(cfg)))


SPACE = _TileSpace(
    tile_ow=Knob(
        (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 15, 16),
        default=5,
        why="output columns per tile: R x T x P / lanes accumulators, >= FMA latency x ports "
        "(8) to hide it, <= the registers the weights leave",
    ),
    tile_oc=Knob(
        (4, 8, 16, 24, 32, 40, 48, 64, 80),
        default=32,
        why="output channels per tile (a multiple of out_block, O padded up to it): more of "
        "them share each data broadcast",
    ),
    tile_ic=Knob((1, 2, 3, 4, 8, 16, 32), default=16, why="ic unrolled innermost (the ib block)"),
    ic_lanes=Knob(
        (1, 2),
        default=1,
        why="input channels summed in separate lanes; space() pins it to 2 when out_block is "
        "under the SIMD width, which then still fills (or half-fills) the vector",
    ),
    unroll_kw=Knob((False, True), default=False, why="also unroll kw: more ILP, more code"),
    oc_outer=Knob(
        (True, False),
        default=True,
        why="parallel order (n, O/T, OH) keeps a chunk's weights in cache, (n, OH, O/T) the "
        "input rows (better when the weights are small, e.g. 1x1)",
    ),
)

# Accumulator vectors aimed for: 32 zmm / q registers hold ~15-20 besides the weights (and
# _MAX_TILE allows 15 zmm); AVX2's 16 ymm hold 12 (its 6x16 microkernel).
_WANT_ACC = {16: 15, 8: 12, 4: 20}


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def _ic_lanes(wl, lanes: int) -> int:
    # 2 lanes load as one 64-bit broadcast; LLVM turns 4 (a 128-bit one) into a slow gather
    return 2 if 1 < wl.out_block < lanes and wl.in_block % 2 == 0 else 1


def _legal(wl, lanes: int) -> dict:
    ib, ob, p = wl.in_block, wl.out_block, _ic_lanes(wl, lanes)

    def pow2(x):  # plain NCHW: T is one vector, and R one vector in the unpack
        return ob > 1 or x & (x - 1) == 0

    return dict(
        tile_ow=lambda r: r <= wl.out_width and pow2(r),
        tile_oc=lambda t: t % ob == 0 and (t < 2 * wl.out_channels or t == 4) and pow2(t),
        tile_ic=lambda t: wl.in_channels % t == 0 and (t % ib == 0 or ib % t == 0) and t % p == 0,
        ic_lanes=lambda v: v == p,
    )


# With NCHW output each column of a tile stores its T channels as T scalars far apart (H*W
# floats). PP-OCRv4 det's 1x1 12 -> 96 conv at 160x160 on AVX-512: 1.68 ms at T = 32, 0.36 ms
# at T = 8 (the best of 40 sampled configs); every one of the 8 fastest had T = 8.
_PLAIN_OUT_MAX_OC = 8


def _defaults(wl, space: Space, lanes: int) -> dict:
    """Pick (tile_oc, tile_ow) by a simple model: the useful fraction of the lanes (O padded up
    to T, T x P up to whole vectors) and of the columns (OW up to R; if nothing else pads, that
    also costs a data_pad pass), times the accumulators in flight out of the wanted number, a
    little less with one vector per column (its broadcasts feed fewer FMAs)."""
    o, ow, p, want = wl.out_channels, wl.out_width, _ic_lanes(wl, lanes), _WANT_ACC.get(lanes, 12)
    padded = wl.pad_left or wl.pad_right or wl.pad_top or wl.pad_bottom

    def score(tr):
        (t, r), v = tr, wl.out_block if wl.out_block > 1 else tr[0]
        vectors, owp = t // v * _ceil(v * p, lanes), _ceil(ow, r) * r  # per column
        use = o / (_ceil(o, t) * t) * t * p / (vectors * lanes) * ow / owp
        use *= (1 if padded or owp == ow else 0.5) * (0.9 if vectors == 1 else 1)
        return use * min(vectors * r, want)

    knobs = space.knobs
    pairs = [(t, r) for t in knobs["tile_oc"].values for r in knobs["tile_ow"].values]
    if wl.out_block == 1:  # plain NCHW out: a tile's T channels go to T rows, one store each
        pairs = [tr for tr in pairs if tr[0] <= _PLAIN_OUT_MAX_OC] or pairs
    oc, ow_tile = max((tr for tr in pairs if tr[0] * tr[1] * p <= _MAX_TILE), key=score)
    want_ic = max(wl.in_block, p, 8 if wl.in_block == 1 else 1)
    ic = min(knobs["tile_ic"].values, key=lambda t: abs(t - want_ic))
    return dict(tile_oc=oc, tile_ow=ow_tile, tile_ic=ic, ic_lanes=p, oc_outer=wl.kernel_h > 1)


def space(wl, lanes: int) -> Space:
    restricted = SPACE.restrict(**_legal(wl, lanes))
    knobs = dict(restricted.knobs)
    for name, value in _defaults(wl, restricted, lanes).items():
        knobs[name] = Knob(knobs[name].values, value, knobs[name].why)
    return _TileSpace(**knobs)


def applies(wl) -> bool:
    return wl.op == "conv2d" and wl.groups == 1 and wl.dtype == "float32"


def _blocks(wl, cfg):
    t = cfg["tile_oc"]
    return t, cfg["tile_ic"], cfg["ic_lanes"], (wl.out_block if wl.out_block > 1 else t)


def weight_transform(w, wl, cfg):
    t, tic, p, v = _blocks(wl, cfg)
    shape = (_ceil(wl.out_channels, t), wl.in_channels // tic, wl.kernel_h, wl.kernel_w)

    def value(ocb, ico, h, w_, icj, j, c, pi):  # zero weights for the channels padding O to T
        oc, ic = ocb * t + j * v + c, ico * tic + icj * p + pi
        return tirx.if_then_else(oc < wl.out_channels, w[oc, ic, h, w_], tirx.const(0, w.dtype))

    return te.compute((*shape, tic // p, t // v, v, p), value, name="weight_pack")


# padded_width, pad_data, schedule_pad and fuse_tile_epilogue also serve conv2d_int8: the same
# spatial-pack nest over 8-bit data.


def padded_width(wl, cfg) -> int:
    return _ceil(wl.out_width, cfg["tile_ow"]) * cfg["tile_ow"]


def pad_data(data, wl, cfg):
    span_w = (padded_width(wl, cfg) - 1) * wl.stride_w + (wl.kernel_w - 1) * wl.dilation_w + 1
    top, left, right = wl.pad_top, wl.pad_left, max(wl.pad_right, span_w - wl.width - wl.pad_left)
    if not (top or left or wl.pad_bottom or right):
        return data
    shape = (*data.shape[:2], wl.height + top + wl.pad_bottom, wl.width + left + right)

    def value(*i):
        h, w = i[2] - top, i[3] - left
        inside = tirx.all(h >= 0, h < wl.height, w >= 0, w < wl.width)
        value = data[(i[0], i[1], h, w, *i[4:])]
        return tirx.if_then_else(inside, value, tirx.const(wl.pad_value, wl.dtype))

    return te.compute((*shape, *data.shape[4:]), value, name="data_pad")


def compute(data, packed_w, wl, cfg):
    t, tic, p, v = _blocks(wl, cfg)
    dp, ib, k = pad_data(data, wl, cfg), wl.in_block, t // v
    ico = te.reduce_axis((0, wl.in_channels // tic), "ico")
    kh = te.reduce_axis((0, wl.kernel_h), "kh")
    kw = te.reduce_axis((0, wl.kernel_w), "kw")
    icj = te.reduce_axis((0, tic // p), "icj")

    def conv_value(n, ocb, oh, ow, j, c, pi):
        ic = ico * tic + icj * p + pi
        h, w = oh * wl.stride_h + kh * wl.dilation_h, ow * wl.stride_w + kw * wl.dilation_w
        x = dp[n, ic, h, w] if ib == 1 else dp[n, ic // ib, h, w, ic % ib]
        return te.sum(x * packed_w[ocb, ico, kh, kw, icj, j, c, pi], axis=[ico, kh, kw, icj])

    shape = (wl.batch, _ceil(wl.out_channels, t), wl.out_height, padded_width(wl, cfg), k, v, p)
    attrs = annotations("conv2d_direct", wl, cfg)
    conv = te.compute(shape, conv_value, name="conv2d_direct", attrs=attrs)

    def at(n, cb, h, w, c=None):  # one variable per index: reverse_compute_at solves them
        q, c = (cb, c) if wl.out_block > 1 else (cb // v, cb % v)  # NCHW: cb is the channel
        return n, q // k, h, w, q % k, c

    if p == 1:
        return te.compute(wl.out_shape(), lambda *i: conv[(*at(*i), 0)], name="conv2d_out")
    rp = te.reduce_axis((0, p), "rp")  # the P partial sums
    return te.compute(
        wl.out_shape(), lambda *i: te.sum(conv[(*at(*i), rp)], axis=rp), name="conv2d_out"
    )


def schedule_pad(sch, block, wl, lanes):
    """Parallel rows; each row (w, ib) in vectors, those clear of the left / right padding
    partitioned off so that their padding test is per row, not per lane."""
    n, c, h, *row = sch.get_loops(block)
    sch.parallel(sch.fuse(n, c, h))
    chunks, vec = sch.split(sch.fuse(*row), [None, lanes])
    first = _ceil(wl.pad_left * wl.in_block, lanes)
    clear = (wl.pad_left + wl.width) * wl.in_block // lanes - first
    rest = int(sch.get(chunks).extent) - first - clear
    if clear <= 0 or first + rest == 0:  # no vector is clear, or every one is
        if clear > 0:
            sch.vectorize(vec)
        return
    factors = [first] * (first > 0) + [clear] * (rest > 0) + [None]  # partition needs one None
    middle = sch.loop_partition(chunks, factors)[1 if first else 0]
    sch.vectorize(sch.get_loops(sch.get_child_blocks(middle)[0])[-1])


def _at_tile(sch, block, tile, lanes):
    """Compute `block` per output tile: unrolled, innermost spatial loop vectorized (constant
    accumulator indices let LLVM keep the tile in registers)."""
    sch.reverse_compute_at(block, tile, preserve_unit_loops=True)
    *outer, inner = sch.get_loops(block)[2:]  # below (parallel, ow tile)
    if any(iv.iter_type == tirx.IterVar.CommReduce for iv in sch.get(block).iter_vars):
        sch.reorder(inner, outer[-1])  # the P-lane sum goes outside the vector
        *outer, inner = sch.get_loops(block)[2:]
    if int(sch.get(inner).extent) > 4 * lanes:
        *outer, inner = [*outer, *sch.split(inner, [None, lanes])]
    sch.vectorize(inner)
    for loop in outer:
        sch.unroll(loop)


def fuse_tile_epilogue(sch, block, tile, lanes):
    """template.fuse_epilogue, inlining forward: every block after conv2d_direct but the last
    goes into its consumer (conv2d_out is a gather, which reverse inlining can't invert); one
    that can't (the P-lane sum, a reduction) and the last run at the tile."""
    *middle, last = epilogue_chain(sch, block)
    for blk in middle:
        try:
            sch.compute_inline(blk)
        except s_tir.ScheduleError:
            _at_tile(sch, blk, tile, lanes)
    _at_tile(sch, last, tile, lanes)


def schedule(sch, block, wl, cfg, lanes):
    for producer in sch.get_producers(block):  # data_pad, with any packing fused before it
        inline_producers(sch, producer)
        schedule_pad(sch, producer, wl, lanes)
    n, ocb, oh, ow, j, c, p, ico, kh, kw, icj = sch.get_loops(block)
    owo, owi = sch.split(ow, [None, cfg["tile_ow"]])
    outer = (n, ocb, oh) if cfg["oc_outer"] else (n, oh, ocb)
    vec = sch.fuse(c, p)
    sch.reorder(*outer, owo, ico, kh, kw, icj, owi, j, vec)
    sch.parallel(sch.fuse(*outer))
    fuse_tile_epilogue(sch, block, owo, lanes)
    for loop in (icj, owi, j, *([kw] if cfg["unroll_kw"] else [])):
        sch.unroll(loop)
    sch.vectorize(vec)
    sch.decompose_reduction(block, ico)  # the init copies owi, j (unrolled) and vec


def reference(data, weight, wl):
    """Explicit zero padding, then every (dilated, strided) window against every filter."""
    pads = ((0, 0), (0, 0), (wl.pad_top, wl.pad_bottom), (wl.pad_left, wl.pad_right))
    x = np.pad(data.astype(np.float64), pads)
    span = ((wl.kernel_h - 1) * wl.dilation_h + 1, (wl.kernel_w - 1) * wl.dilation_w + 1)
    win = sliding_window_view(x, span, axis=(2, 3))  # [n, c, h, w, span_h, span_w]
    win = win[:, :, :: wl.stride_h, :: wl.stride_w, :: wl.dilation_h, :: wl.dilation_w]
    return np.einsum("nchwij,ocij->nohw", win, weight.astype(np.float64))


TEMPLATE = Template(
    name="conv2d_direct",
    op="conv2d",
    space=space,
    applies=applies,
    weight_transform=weight_transform,
    compute=compute,
    schedule=schedule,
    reference=reference,
)
