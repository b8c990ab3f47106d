"""conv2d_direct vs its NumPy reference: layouts, kernels, strides, padding, dilation, epilogues."""

import numpy as np
import pytest
import tvm
from template_harness import EPILOGUES, check, host_target
from tvm import s_tir, te

from tilecc.schedules.conv2d_direct import TEMPLATE, reference, space
from tilecc.schedules.space import ConfigError
from tilecc.schedules.template import pack_nchwc, template_blocks
from tilecc.schedules.workload import Conv2dWorkload


def conv(c, h, w, o, k, s=1, pad=(0, 0, 0, 0), d=1, ib=1, ob=1, batch=1):
    """A groups-1 workload; `pad` is (top, left, bottom, right)."""
    return Conv2dWorkload(batch, c, h, w, o, k, k, s, s, *pad, d, d, in_block=ib, out_block=ob)


SHAPES = [
    conv(32, 9, 7, 32, 3, pad=(1, 1, 1, 1), ib=16, ob=16),  # 7 columns: an ow tile tail
    conv(16, 9, 11, 24, 3, s=2, pad=(0, 1, 1, 2), ib=8, ob=8),  # 2 ic lanes, O padded, asym
    conv(3, 11, 13, 16, 3, s=2, pad=(1, 1, 1, 1)),  # first layer: plain NCHW in and out
    conv(8, 10, 10, 12, 5, pad=(4, 4, 4, 4), d=2, ib=4, ob=4),  # 4 channels x 2 ic lanes, dil 2
    conv(32, 7, 9, 48, 1, ib=16, ob=16),  # 1x1, no padding stage
    conv(16, 7, 9, 32, 3, pad=(2, 0, 0, 2), ib=8, ob=16, batch=2),  # in block != out block
    conv(8, 6, 5, 16, 3, pad=(1, 1, 1, 1), ib=4, ob=1),  # blocked in, NCHW out
    conv(3, 12, 12, 16, 3, s=2, pad=(1, 1, 1, 1), ib=1, ob=8),  # a stem: NCHW in, blocks out
    conv(5, 6, 7, 1, 3, pad=(1, 1, 1, 1)),  # one output channel (a head), odd C
]
IDS = [f"{wl.describe()} b{wl.in_block}-{wl.out_block}" for wl in SHAPES]


@pytest.mark.parametrize("wl", SHAPES, ids=IDS)
def test_matches_reference_over_space(wl):
    sp = space(wl, 16)
    for cfg in [sp.default(), *sp.sample(3, seed=0)]:
        check(TEMPLATE, wl, cfg, lanes=16)


@pytest.mark.parametrize(
    "lanes, wl", [(4, SHAPES[0]), (4, SHAPES[3]), (8, SHAPES[3])], ids=["4-b16", "4-b4", "8-b4"]
)
def test_narrower_simd_targets(lanes, wl):
    check(TEMPLATE, wl, space(wl, lanes).default(), lanes=lanes)


def _channel(y, i):  # the output channel of index i, NCHW[b]c or NCHW
    return i[1] * int(y.shape[4]) + i[4] if len(y.shape) == 5 else i[1]


def _bias_relu6(y, bias):
    """A 2-block epilogue as the graph fuses it: a bias add, then a separate clip block."""
    t = te.compute(y.shape, lambda *i: y(*i) + bias[_channel(y, i)], name="bias_add")
    return te.compute(y.shape, lambda *i: te.min(te.max(t(*i), 0.0), 6.0), name="clip")


def _np_bias_relu6(y, bias):
    return np.clip(y + bias.reshape(1, -1, 1, 1), 0.0, 6.0)


@pytest.mark.parametrize("wl", SHAPES[:3], ids=["b16", "b8", "b1"])
@pytest.mark.parametrize("epilogue", ["bias_relu", "bias_relu6"])
def test_fused_epilogue(wl, epilogue, monkeypatch):
    monkeypatch.setitem(EPILOGUES, "bias_relu6", (_bias_relu6, _np_bias_relu6))
    check(TEMPLATE, wl, space(wl, 16).default(), lanes=16, epilogue=epilogue)


@pytest.mark.parametrize("wl", SHAPES[:2], ids=["b16", "b8"])
def test_epilogue_runs_at_the_output_tile_vectorized(wl):
    cfg = space(wl, 16).default()
    data = te.placeholder(wl.data_shape(), name="data")
    packed = TEMPLATE.weight_transform(te.placeholder(wl.weight_shape()), wl, cfg)
    weight = te.placeholder(packed.shape, name="packed")
    bias = te.placeholder((wl.out_channels,), name="bias")
    out = _bias_relu6(TEMPLATE.compute(data, weight, wl, cfg), bias)
    sch = s_tir.Schedule(tvm.IRModule({"main": te.create_prim_func([data, weight, bias, out])}))
    (block,) = template_blocks(sch)
    TEMPLATE.schedule(sch, block, wl, cfg, 16)
    names = [sch.get(b).name_hint for b in sch.get_child_blocks(sch.get_sblock("root"))]
    assert names[-1] == "clip" and "bias_add" not in names  # inlined into the last block
    tile = sch.get_loops(block)[1]  # under the parallel loop: the ow tile
    for blk in sch.get_child_blocks(tile):  # conv2d_direct (init, update), P-lane sum, clip
        loops = [sch.get(x) for x in sch.get_loops(blk)]
        assert loops[0].kind == tvm.tirx.ForKind.PARALLEL
        assert loops[-1].kind == tvm.tirx.ForKind.VECTORIZED


def test_space_refuses_illegal_configs():
    wl = SHAPES[0]  # 7 columns, blocks of 16
    sp = space(wl, 16)
    for bad in (
        {"tile_oc": 8},  # not a whole output block
        {"tile_ow": 8},  # wider than the output
        {"ic_lanes": 2},  # 16 channels already fill the vector
        {"tile_oc": 48, "tile_ow": 6},  # 288 accumulator floats: off the stack
        {"tile_block": 4},  # unknown knob
    ):
        with pytest.raises(ConfigError):
            sp.check({**sp.default(), **bad})
    assert all(cfg["tile_ow"] * cfg["tile_oc"] * cfg["ic_lanes"] <= 255 for cfg in sp)
    assert space(SHAPES[1], 16).default()["ic_lanes"] == 2  # 8 channels x 2 ic per zmm
    assert space(SHAPES[1], 8).default()["ic_lanes"] == 1  # AVX2: 8 channels fill a ymm


def test_applies_only_to_ungrouped_conv():
    assert TEMPLATE.applies(SHAPES[0])
    assert not TEMPLATE.applies(Conv2dWorkload(1, 16, 8, 8, 16, 3, 3, groups=16))
    assert not TEMPLATE.applies(Conv2dWorkload(1, 16, 8, 8, 32, 3, 3, groups=2))


def test_reference_matches_direct_sum():
    wl = conv(2, 6, 7, 3, 3, s=2, pad=(1, 0, 2, 1), d=2)
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((1, 2, 6, 7)), rng.standard_normal((3, 2, 3, 3))
    xp = np.pad(x, ((0, 0), (0, 0), (1, 2), (0, 1)))
    expected = np.zeros((1, 3, wl.out_height, wl.out_width))
    for o, i, j in np.ndindex(expected.shape[1:]):
        window = xp[0, :, 2 * i : 2 * i + 5 : 2, 2 * j : 2 * j + 5 : 2]
        expected[0, o, i, j] = (window * w[o]).sum()
    np.testing.assert_allclose(reference(x, w, wl), expected, rtol=1e-12)


@pytest.mark.parametrize("wl", [SHAPES[1], SHAPES[4]], ids=["padded", "unpadded"])
def test_packing_producer_is_scheduled_with_the_padding(wl):
    """A layout pack fused before the conv (NCHW -> NCHW[ib]c, here times 2) runs in the
    parallel, vectorized data_pad stage (or alone in its place when nothing pads)."""
    cfg, ib = space(wl, 16).default(), wl.in_block
    plain = (wl.batch, wl.in_channels, wl.height, wl.width)
    raw = te.placeholder(plain, name="raw")
    data = te.compute(wl.data_shape(), lambda n, c, h, w, b: raw[n, c * ib + b, h, w] * 2.0)
    weight = te.placeholder(wl.weight_shape(), name="weight")
    packed = TEMPLATE.weight_transform(weight, wl, cfg)
    packed_in = te.placeholder(packed.shape, name="packed")
    out = TEMPLATE.compute(data, packed_in, wl, cfg)
    sch = s_tir.Schedule(tvm.IRModule({"main": te.create_prim_func([raw, packed_in, out])}))
    (block,) = template_blocks(sch)
    TEMPLATE.schedule(sch, block, wl, cfg, 16)
    target, dev = host_target(), tvm.cpu()
    pack = tvm.compile(tvm.IRModule({"main": te.create_prim_func([weight, packed])}), target)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, plain).astype("float32")
    w = rng.uniform(-1, 1, wl.weight_shape()).astype("float32")
    w_packed = tvm.runtime.empty([int(d) for d in packed.shape], "float32", dev)
    pack(tvm.runtime.tensor(w, dev), w_packed)
    y = tvm.runtime.empty(wl.out_shape(), "float32", dev)
    tvm.compile(sch.mod, target)(tvm.runtime.tensor(x, dev), w_packed, y)
    expected = pack_nchwc(reference(2.0 * x, w, wl), wl.out_block)
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-4, atol=1e-4)
