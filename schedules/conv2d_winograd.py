"""conv2d_winograd: 3x3 stride-1 conv2d as Winograd F(m x m, 3 x 3) (Lavin & Gray, CVPR 2016).

Per alpha x alpha input tile d (alpha = m + 2; tiles overlap by 2) and channel pair (c, o):
    U = G g G^T (weights, at compile time)    V = B^T d B (input transform)
    M[eps, nu] = sum_c V[eps, nu, p, c] U[eps, nu, c, o]   (alpha^2 independent GEMMs)
    Y = A^T M A (inverse transform: an m x m output tile)
The GEMMs do (alpha / m)^2 / 9 of direct conv's multiply-adds (0.44 for m=2, 0.25 for m=4,
0.20 for m=6). The transforms, O(alpha^3) per tile and channel, stay cheap only as sparse sums
with constant coefficients: each is written out term by term (zeros dropped) from topi's
Cook-Toom A, B, G, one expression per row, and the schedule unrolls the loop that picks the
row, so the choice folds away into straight-line vector code.

Layouts (p: tile index, per image rounded up to whole tasks):
    data NCHW[b]c (b = in_block; 1 = NCHW)    Y NCHW[b]c (b = out_block), written directly
    U [alpha, alpha, O / tile_co, C, tile_co] (zero columns pad O to a multiple of tile_co)
    V [alpha, alpha, P, C]    M [alpha, alpha, O / tile_co, P, tile_co]
The GEMM's inner step broadcasts one V value against a contiguous tile_co vector of U:
tile_p x tile_co accumulators stay in registers for the whole reduction over C.

Schedule: the output drives. Its tiles are cut into tasks (the parallel loop) of about
tile_p * block_p tiles; a task transforms its input tiles, runs its GEMMs and inverse-transforms
them, so its V and M stay in L2 next to U instead of streaming through memory. The output is
made per tile and channel vector, and the fused epilogue (bias, activations, residual add)
runs on that piece while it is hot.

Knobs: m trades GEMM work for transform work, edge padding and accuracy; tile_p x tile_co is
the register block; block_p sizes a task (small: V, M, U stay in L2; large: fewer U reloads).
No input-channel block: the reduction streams a C x tile_co slice of U, in L1 to C = 256.

Accuracy: B and A grow with m (entries up to 21/4 and 32 for m=6, G holds 1/90), and so does
fp32 rounding (Barabasz et al. 2018, arXiv:1803.10986): with 128 channels the worst error is
2.4e-6, 1.8e-5 and 6e-5 of the output's RMS for m = 2, 4, 6.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import tvm
from tvm import te
from tvm.sym import Analyzer
from tvm.topi.nn.winograd_util import winograd_transform_matrices

from .space import Knob, Space
from .template import Template, annotations, fuse_epilogue

SPACE = Space(
    m=Knob((2, 4, 6), default=4, why="output tile of F(m,3); 6 is the least accurate"),
    tile_p=Knob((4, 6, 8, 12), default=12, why="tiles per register block (GEMM rows)"),
    tile_co=Knob((8, 16, 24, 32, 48, 64), default=32, why="output channels per register block"),
    block_p=Knob((1, 2, 4, 8, 16), default=1, why="register blocks per parallel task"),
    unroll=Knob((1, 2, 4), default=2, why="unroll of the reduction over input channels"),
)


def applies(wl) -> bool:
    strides = (wl.stride_h, wl.stride_w, wl.dilation_h, wl.dilation_w, wl.groups)
    shape = (wl.op, wl.dtype, wl.kernel_h, wl.kernel_w)
    return shape == ("conv2d", "float32", 3, 3) and strides == (1,) * 5


def space(wl, lanes: int) -> Space:
    oc, tiles = wl.out_channels, wl.batch * -(-wl.out_height // 4) * -(-wl.out_width // 4)
    restricted = SPACE.restrict(
        m=lambda v: v == 2 or v <= min(wl.out_height, wl.out_width),  # else mostly padding
        # the inverse transform reads only O columns of M and compute_at narrows the GEMM to
        # them, so a tile_co above O would be cut to a predicated, scalar loop
        tile_co=lambda v: v == 8 or v <= oc and -oc % v * 3 <= oc,  # padding at most 1/3
        block_p=lambda v: v == 1 or 16 * v <= tiles,  # at least two tasks
    )
    # tile_co: whole SIMD vectors, exact if possible, else padded (24 channels as 16 + 8 pad
    # beat 3 x 8 lanes); tile_p: as many rows as leave registers for the operands
    kept = restricted.knobs["tile_co"].values
    exact = [v for v in (2 * lanes, 3 * lanes, lanes, 4 * lanes) if v in kept and oc % v == 0]
    co = (exact or [v for v in (lanes,) if v in kept] or list(kept))[0]
    regs = co // math.gcd(co, lanes)  # vector registers per register-block row
    defaults = {"tile_co": co, "tile_p": max(v for v in (4, 6, 8, 12) if v * regs <= 24)}
    knobs = restricted.knobs.items()
    return Space(**{n: Knob(k.values, defaults.get(n, k.default), k.why) for n, k in knobs})


@functools.cache
def _matrices(m):
    """A (alpha x m), B (alpha x alpha), G (alpha x 3) as NumPy, read off topi's constants."""

    def value(mat, index):
        analyzer = Analyzer()
        for axis, i in zip(mat.op.axis, index, strict=True):
            analyzer.bind(axis.var, i)
        return analyzer.simplify(mat.op.body[0]).value

    out = []
    for mat in winograd_transform_matrices(m, 3, "float64"):
        shape = tuple(int(n) for n in mat.shape)
        out.append(np.array([value(mat, i) for i in np.ndindex(shape)]).reshape(shape))
    return out


def _rows(index, mat, terms):
    """(mat^T terms)[index]: one sparse constant-coefficient sum per row (zero terms dropped,
    +-1 unmultiplied), chosen by if_then_else, which folds once the loop over `index` is
    unrolled (a Select would be vectorized into a mask that the simplifier keeps)."""
    sums = []
    for column in mat.T:
        acc = None
        for coef, term in zip(column, terms, strict=True):
            if coef != 0:
                t = term if abs(coef) == 1 else term * float(abs(coef))
                acc = (t if coef > 0 else -t) if acc is None else acc + t if coef > 0 else acc - t
        sums.append(acc)
    expr = sums[-1]
    for k in range(len(sums) - 2, -1, -1):
        expr = tvm.tirx.if_then_else(index == k, sums[k], expr)
    return expr


def _tiles(wl, cfg):
    """(tile rows, tile columns, register block rows, tiles per task, tiles per image padded
    to whole tasks). Tasks share an image's tiles evenly in whole register blocks and never
    straddle images: the tile index stays affine in the loops, as compute_at needs."""
    m = cfg["m"]
    rows, cols = -(-wl.out_height // m), -(-wl.out_width // m)
    tile_p = min(cfg["tile_p"], rows * cols)
    tasks = -(-rows * cols // (tile_p * cfg["block_p"]))
    per_task = -(-rows * cols // (tasks * tile_p)) * tile_p
    return rows, cols, tile_p, per_task, -(-rows * cols // per_task) * per_task


def weight_transform(w, wl, cfg):
    g, co, oc = _matrices(cfg["m"])[2], cfg["tile_co"], wl.out_channels

    def u(e, n, oo, c, oi):  # U = G g G^T, zero in the columns that pad O
        taps = [
            [w[tvm.tirx.min(oo * co + oi, oc - 1), c, kh, kw] for kw in range(3)] for kh in range(3)
        ]
        value = _rows(e, g.T, [_rows(n, g.T, row) for row in taps])
        return tvm.tirx.if_then_else(oo * co + oi < oc, value, 0.0)

    alpha = cfg["m"] + 2
    return te.compute((alpha, alpha, -(-oc // co), wl.in_channels, co), u, name="winograd_U")


def compute(data, packed_w, wl, cfg):
    m, co, alpha, chans = cfg["m"], cfg["tile_co"], cfg["m"] + 2, wl.in_channels
    a_mat, b_mat, _ = _matrices(m)
    rows, cols, _, _, image = _tiles(wl, cfg)
    tiles = wl.batch * image

    def tile(p, i, j, c):  # the input tile's element, zero in padding and past the edges
        n, t = p // image, p % image
        h, w = t // cols * m + i - wl.pad_top, t % cols * m + j - wl.pad_left
        b = wl.in_block
        index = (n, c, h, w) if b == 1 else (n, c // b, h, w, c % b)
        inside = tvm.tirx.all(t < rows * cols, h >= 0, h < wl.height, w >= 0, w < wl.width)
        return tvm.tirx.if_then_else(inside, data[index], 0.0)

    # the tile is copied once (one bounds check per element); V = B^T d B in two passes,
    # B^T d then (B^T d) B: 2 alpha^3 terms instead of alpha^4
    d = te.compute((tiles, alpha, alpha, chans), tile, name="winograd_d")
    bt_d = te.compute(
        (tiles, alpha, alpha, chans),
        lambda p, e, j, c: _rows(e, b_mat, [d[p, i, j, c] for i in range(alpha)]),
        name="winograd_BtD",
    )
    v = te.compute(
        (alpha, alpha, tiles, chans),
        lambda e, n, p, c: _rows(n, b_mat, [bt_d[p, e, j, c] for j in range(alpha)]),
        name="winograd_V",
    )
    k = te.reduce_axis((0, chans), "c")
    gemm = te.compute(
        (alpha, alpha, int(packed_w.shape[2]), tiles, co),
        lambda e, n, oo, p, oi: te.sum(v[e, n, p, k] * packed_w[e, n, oo, k, oi], axis=k),
        name="winograd_M",
        attrs=annotations("conv2d_winograd", wl, cfg),
    )
    # Y = A^T M A, again in two passes; the second writes the graph's layout
    ma = te.compute(
        (tiles, alpha, m, wl.out_channels),
        lambda p, e, j, o: _rows(j, a_mat, [gemm[e, n, o // co, p, o % co] for n in range(alpha)]),
        name="winograd_MA",
    )

    def y(n, ob, h, w, *lane):
        o, p = ob * wl.out_block + lane[0] if lane else ob, n * image + h // m * cols + w // m
        return _rows(h % m, a_mat, [ma[p, e, w % m, o] for e in range(alpha)])

    return te.compute(wl.out_shape(), y, name="winograd_Y")


def schedule(sch, block, wl, cfg, lanes):
    m, co = cfg["m"], cfg["tile_co"]
    rows, cols, tile_p, per_task, _ = _tiles(wl, cfg)
    (v,) = sch.get_producers(block)
    (bt_d,) = sch.get_producers(v)
    (d,) = sch.get_producers(bt_d)
    for producer in sch.get_producers(d):  # fused producers of the data (padding, packing)
        sch.compute_inline(producer)
    (ma,) = sch.get_consumers(block)
    (y,) = sch.get_consumers(ma)

    # output: (th, tw) fused and cut into tasks, (n, task) parallel; inside a tile, channels
    # in vectors that never straddle a tile_co block of M. Every compute_at below keeps unit
    # loops, so each stage's nest has the same shape whatever the extents.
    n, ob, h, w, *lane = sch.get_loops(y)
    vec = math.gcd(wl.out_block if lane else wl.out_channels, co, lanes)
    chan, lane = sch.split(lane[0] if lane else ob, [None, vec])
    th, hi = sch.split(h, [rows, m])
    tw, wi = sch.split(w, [cols, m])
    sch.reorder(n, th, tw, *([ob] if wl.out_block > 1 else []), chan, hi, wi, lane)
    task, _ = sch.split(sch.fuse(th, tw), [None, per_task])
    task = sch.fuse(n, task)
    sch.parallel(task)
    sch.unroll(hi)
    sch.unroll(wi)
    sch.vectorize(lane)
    last = fuse_epilogue(sch, y, chan)
    if last is not None:
        sch.vectorize(sch.get_loops(last)[-1])
    # the first inverse pass for one channel vector, in registers
    sch.compute_at(ma, chan, preserve_unit_loops=True)
    sch.set_scope(ma, 0, "local")
    _unroll_vectorize(sch, ma)

    # GEMM of a task: (eps, nu, O / tile_co) x register blocks of tile_p x tile_co
    sch.compute_at(block, task, preserve_unit_loops=True)
    acc = sch.cache_write(block, 0, "local")
    e, nu, oo, p, oi, c = sch.get_loops(block)[-6:]
    pt, pi = sch.split(p, [None, tile_p])
    oiv, oil = sch.split(oi, [None, math.gcd(co, lanes)])  # tile_co 24: 3 x 8 lanes
    unroll = cfg["unroll"] if wl.in_channels % cfg["unroll"] == 0 else 1
    c0, c1 = sch.split(c, [None, unroll])
    sch.reorder(e, nu, oo, pt, c0, c1, pi, oiv, oil)
    sch.reverse_compute_at(acc, pt, preserve_unit_loops=True)
    acc_rows, acc_lanes = sch.get_loops(acc)[-2:]
    acc_vecs, acc_lanes = sch.split(acc_lanes, [None, math.gcd(co, lanes)])
    # every access to the accumulators at a constant index and in whole vectors, so that
    # LLVM keeps them in registers (SROA) instead of a stack array it clears with memset
    for loop in (c1, pi, oiv, acc_rows, acc_vecs):
        sch.unroll(loop)
    sch.vectorize(oil)
    sch.vectorize(acc_lanes)
    sch.decompose_reduction(block, c0)  # after vectorize, which needs a complete reduction

    # input transform of a task's tiles, one channel vector at a time (strided for NCHW)
    sch.compute_at(v, task, preserve_unit_loops=True)
    e, nu, p, c = sch.get_loops(v)[-4:]
    vec = math.gcd(wl.in_channels, wl.in_block if wl.in_block > 1 else lanes, lanes)
    c0, c1 = sch.split(c, [None, vec])
    sch.reorder(p, c0, e, nu, c1)
    sch.compute_at(bt_d, c0, preserve_unit_loops=True)
    *_, e, j, c1 = sch.get_loops(bt_d)
    sch.reorder(j, e, c1)
    # column by column: one column of the tile is live at a time
    sch.compute_at(d, j, preserve_unit_loops=True)
    sch.set_scope(bt_d, 0, "local")
    sch.set_scope(d, 0, "local")
    for blk in (v, bt_d, d):  # d's column loop has extent 1
        _unroll_vectorize(sch, blk)


def _unroll_vectorize(sch, block):
    """Unroll a transform's two row loops (folding its row choice), vectorize its channels."""
    *loops, lane = sch.get_loops(block)[-3:]
    for loop in loops:
        sch.unroll(loop)
    sch.vectorize(lane)


def reference(data, weight, wl):
    x = np.pad(data, ((0, 0), (0, 0), (wl.pad_top, wl.pad_bottom), (wl.pad_left, wl.pad_right)))
    oh, ow = wl.out_height, wl.out_width
    out = np.zeros((wl.batch, wl.out_channels, oh, ow))
    for kh in range(3):
        for kw in range(3):
            window = x[:, :, kh : kh + oh, kw : kw + ow]
            out += np.einsum("nchw,oc->nohw", window, weight[:, :, kh, kw])
    return out


TEMPLATE = Template(
    "conv2d_winograd", "conv2d", space, applies, weight_transform, compute, schedule, reference
)
