"""dense vs its NumPy reference: GEMV, odd sizes, the knob space, fused epilogues, packing."""

import numpy as np
import pytest
import tvm
from template_harness import EPILOGUES, check, host_target
from tvm import s_tir, te

from tilecc.schedules.dense import TEMPLATE, reference, space
from tilecc.schedules.space import ConfigError
from tilecc.schedules.template import template_blocks
from tilecc.schedules.workload import DenseWorkload as Dense

SHAPES = [
    Dense(1, 33, 19),  # GEMV, one full panel + 1 column, prime k
    Dense(1, 768, 192),  # GEMV as a classifier head runs it
    Dense(7, 33, 19),  # a row tail, a column tail and no k unrolling
    Dense(7, 192, 64),
    Dense(64, 64, 64),  # everything divides
    Dense(64, 768, 19),
    Dense(197, 33, 192),  # ViT token count: 197 rows never divide
    Dense(197, 192, 64),
]


@pytest.mark.parametrize("wl", SHAPES, ids=[wl.describe() for wl in SHAPES])
def test_matches_reference_over_space(wl):
    sp = space(wl, 16)
    for cfg in [sp.default(), *sp.sample(3, seed=0)]:
        check(TEMPLATE, wl, cfg, lanes=16)


@pytest.mark.parametrize("wl", [SHAPES[0], SHAPES[2], SHAPES[4]], ids=["gemv", "odd", "even"])
def test_narrower_simd_target(wl):
    sp = space(wl, 4)
    for cfg in [sp.default(), *sp.sample(1, seed=0)]:
        check(TEMPLATE, wl, cfg, lanes=4)


def _bias_relu6(y, bias):
    """A 2-block epilogue as the graph fuses it: a bias add, then a separate clip block."""
    t = te.compute(y.shape, lambda i, j: y[i, j] + bias[j], name="bias_add")
    return te.compute(y.shape, lambda i, j: te.min(te.max(t[i, j], 0.0), 6.0), name="clip")


def _np_bias_relu6(y, bias):
    return np.clip(y + bias, 0.0, 6.0)


@pytest.mark.parametrize("wl", [SHAPES[0], SHAPES[2], SHAPES[6]], ids=["gemv", "odd", "197"])
@pytest.mark.parametrize("epilogue", ["bias_relu", "bias_relu6"])
def test_fused_epilogue(wl, epilogue, monkeypatch):
    monkeypatch.setitem(EPILOGUES, "bias_relu6", (_bias_relu6, _np_bias_relu6))
    check(TEMPLATE, wl, space(wl, 16).default(), lanes=16, epilogue=epilogue)


def _swish_residual(y, bias, residual):
    """bias, x * sigmoid(x) with x read twice (its blocks cannot all inline), residual add."""
    x = te.compute(y.shape, lambda i, j: y[i, j] + bias[j], name="bias_add")
    s = te.compute(y.shape, lambda i, j: te.sigmoid(x[i, j]), name="sigmoid")
    z = te.compute(y.shape, lambda i, j: x[i, j] * s[i, j], name="swish")
    return te.compute(y.shape, lambda i, j: z[i, j] + residual[i, j], name="residual_add")


def _row_sum(y, bias, residual):
    """A reduction over n after the dense needs every tile: it and the scale run after them."""
    x = te.compute(y.shape, lambda i, j: y[i, j] + residual[i, j], name="residual_add")
    r = te.reduce_axis((0, y.shape[1]), name="r")
    total = te.compute((y.shape[0],), lambda i: te.sum(x[i, r] + bias[r], axis=r), name="sum")
    return te.compute(total.shape, lambda i: total[i] * 0.5, name="scale")


def _schedule(wl, cfg, epilogue, lanes=16):
    """The scheduled PrimFunc (data, packed, bias, residual) -> epilogue(dense), and `packed`."""
    data = te.placeholder(wl.data_shape(), name="data")
    packed = TEMPLATE.weight_transform(te.placeholder(wl.weight_shape(), name="w"), wl, cfg)
    packed_in = te.placeholder(packed.shape, name="packed")
    bias = te.placeholder((wl.n,), name="bias")
    residual = te.placeholder(wl.out_shape(), name="residual")
    out = epilogue(TEMPLATE.compute(data, packed_in, wl, cfg), bias, residual)
    func = te.create_prim_func([data, packed_in, bias, residual, out])
    sch = s_tir.Schedule(tvm.IRModule({"main": func}))
    (block,) = template_blocks(sch)
    TEMPLATE.schedule(sch, block, wl, cfg, lanes)
    return sch, packed


@pytest.mark.parametrize(
    "epilogue, expected",
    [
        (_swish_residual, lambda y, b, r: (y + b) / (1 + np.exp(-(y + b))) + r),
        (_row_sum, lambda y, b, r: (y + r + b).sum(axis=1) * 0.5),
    ],
    ids=["swish-residual", "row-sum"],
)
def test_multi_block_epilogue(epilogue, expected):
    wl = SHAPES[2]
    cfg = space(wl, 16).default()
    sch, packed = _schedule(wl, cfg, epilogue)
    target, dev = host_target(), tvm.cpu()
    w_in = te.placeholder(wl.weight_shape(), name="w")
    pack_func = te.create_prim_func([w_in, TEMPLATE.weight_transform(w_in, wl, cfg)])
    pack = tvm.compile(tvm.IRModule({"main": pack_func}), target)
    rng = np.random.default_rng(0)
    x, w = (rng.uniform(-1, 1, s).astype("float32") for s in (wl.data_shape(), wl.weight_shape()))
    bias = rng.uniform(-1, 1, (wl.n,)).astype("float32")
    residual = rng.uniform(-1, 1, wl.out_shape()).astype("float32")
    w_packed = tvm.runtime.empty([int(d) for d in packed.shape], "float32", dev)
    pack(tvm.runtime.tensor(w, dev), w_packed)
    want = expected(reference(x, w, wl), bias.astype("float64"), residual.astype("float64"))
    got = tvm.runtime.empty(want.shape, "float32", dev)
    x_in, bias_in, residual_in = (tvm.runtime.tensor(a, dev) for a in (x, bias, residual))
    tvm.compile(sch.mod, target)(x_in, w_packed, bias_in, residual_in, got)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("wl", [SHAPES[0], SHAPES[2]], ids=["gemv", "odd"])
def test_epilogue_runs_at_the_output_tile_vectorized(wl):
    sch, _ = _schedule(wl, space(wl, 16).default(), _swish_residual)
    blocks = sch.get_child_blocks(sch.get_sblock("root"))
    names = [sch.get(b).name_hint for b in blocks]
    # bias_add is inlined into the crop, residual_add into swish; sigmoid and swish both read x
    assert names == ["dense_init", "dense_update", "dense_slice", "sigmoid", "swish"]
    tiles = {sch.get(sch.get_loops(b)[0]) for b in blocks}
    assert len(tiles) == 1  # one tile loop holds the dense and its whole epilogue
    assert tiles.pop().kind == tvm.tirx.ForKind.PARALLEL  # m = 1 too (its unit row loop)
    for blk in blocks:
        assert sch.get(sch.get_loops(blk)[-1]).kind == tvm.tirx.ForKind.VECTORIZED


def test_space_refuses_illegal_configs():
    wl = SHAPES[2]  # 7 x 33, k = 19
    sp = space(wl, 16)
    for bad in (
        {"tile_n": 24},  # not a whole number of 16-lane vectors
        {"tile_n": 64},  # wider than 33 columns rounded up to vectors
        {"tile_m": 8},  # more rows than the 7 there are
        {"unroll_k": 4},  # does not divide k = 19
        {"tile_k": 4},  # unknown knob
    ):
        with pytest.raises(ConfigError):
            sp.check({**sp.default(), **bad})


def test_defaults_per_simd_width():
    def tile(wl, lanes):
        cfg = space(wl, lanes).default()
        return cfg["tile_m"], cfg["tile_n"]

    assert tile(SHAPES[4], 16) == (6, 32)  # 6 rows x 2 zmm
    assert tile(SHAPES[4], 4) == (6, 16)  # NEON: 6 rows x 4 q registers
    assert tile(SHAPES[2], 16) == (6, 32)  # 7 rows: 6 is still legal
    assert tile(SHAPES[1], 16) == (1, 64)  # GEMV: one row, 4 vectors
    assert tile(SHAPES[0], 16) == (1, 48)  # 33 columns: at most 3 vectors
    gemv = space(SHAPES[1], 16)
    assert gemv.knobs["tile_m"].values == (1,) and gemv.knobs["order"].values == ("nm",)


def test_weight_pack_zero_fills_the_last_panel():
    wl = SHAPES[2]
    cfg = {**space(wl, 16).default(), "tile_n": 32}
    weight = te.placeholder(wl.weight_shape(), name="w")
    packed = TEMPLATE.weight_transform(weight, wl, cfg)
    func = tvm.compile(tvm.IRModule({"main": te.create_prim_func([weight, packed])}), host_target())
    w = np.random.default_rng(0).uniform(-1, 1, wl.weight_shape()).astype("float32")
    got = tvm.runtime.empty([int(d) for d in packed.shape], "float32", tvm.cpu())
    func(tvm.runtime.tensor(w, tvm.cpu()), got)
    padded = np.concatenate([w, np.zeros((64 - wl.n, wl.k), "float32")])
    np.testing.assert_array_equal(got.numpy(), padded.reshape(2, 32, wl.k).transpose(0, 2, 1))


def test_applies_to_float32_dense_only():
    assert TEMPLATE.applies(SHAPES[0])
    assert not TEMPLATE.applies(Dense(4, 8, 8, dtype="int8"))
