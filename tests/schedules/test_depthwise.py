"""depthwise: each layout block, kernel, stride, padding and tail vs the NumPy reference."""

import dataclasses

import numpy as np
import pytest
import tvm
from template_harness import EPILOGUES, check, check_pad_value_reference, host_target
from tvm import s_tir, te

from tilecc.schedules.depthwise import TEMPLATE, reference, space
from tilecc.schedules.space import ConfigError
from tilecc.schedules.template import pack_nchwc, template_blocks
from tilecc.schedules.workload import Conv2dWorkload


def dw(c, h, w, k, s=1, pad=None, block=16, dilation=1, batch=1):
    """A depthwise workload; `pad` is (top, left, bottom, right), default 'same' for stride 1."""
    p = pad or (dilation * (k - 1) // 2,) * 4
    return Conv2dWorkload(
        batch, c, h, w, c, k, k, s, s, *p, dilation, dilation, groups=c, in_block=block,
        out_block=block,
    )  # fmt: skip


SHAPES = [
    dw(32, 9, 11, 3),  # odd sizes, ow tail of the register tile
    dw(32, 10, 12, 3, s=2, pad=(0, 0, 1, 1)),  # asymmetric (TF 'SAME') padding
    dw(16, 7, 13, 5),
    dw(16, 6, 6, 3, batch=2),
    dw(24, 12, 10, 3, block=8),  # 8 channels x 2 columns per 16-lane vector
    dw(16, 11, 9, 5, s=2, block=8),
    dw(8, 10, 14, 3, block=4, dilation=2),
    dw(3, 9, 21, 3, block=1),  # plain NCHW: vectors along ow, lane tail
    dw(5, 11, 37, 5, s=2, pad=(2, 1, 2, 2), block=1),  # stride-2 phases
    dw(2, 13, 19, 3, s=2, block=1, dilation=2),
]


@pytest.mark.parametrize("wl", SHAPES, ids=lambda wl: wl.describe() + f" b{wl.in_block}")
def test_matches_reference_over_space(wl):
    sp = space(wl, 16)
    for cfg in [sp.default(), *sp.sample(3, seed=0)]:
        check(TEMPLATE, wl, cfg, lanes=16)


@pytest.mark.parametrize("wl", [SHAPES[0], SHAPES[4], SHAPES[8]], ids=["b16", "b8", "b1"])
def test_four_lane_target(wl):
    cfg = space(wl, 4).default()
    assert cfg["ow_lanes"] * wl.in_block <= max(4, wl.in_block)  # vectors fit the SIMD width
    check(TEMPLATE, wl, cfg, lanes=4)


def _bias_hardswish(y, bias):
    """A 3-block epilogue as the graph fuses it: t = y + bias; s = clip(t + 3, 0, 6); t * s / 6."""

    def ch(i):  # per output channel, NCHW[b]c or NCHW
        return i[1] * int(y.shape[4]) + i[4] if len(y.shape) == 5 else i[1]

    t = te.compute(y.shape, lambda *i: y(*i) + bias[ch(i)], name="bias_add")
    s = te.compute(y.shape, lambda *i: te.min(te.max(t(*i) + 3.0, 0.0), 6.0), name="clip")
    return te.compute(y.shape, lambda *i: t(*i) * s(*i) / 6.0, name="hardswish")


def _np_bias_hardswish(y, bias):
    t = y + bias.reshape(1, -1, 1, 1)
    return t * np.clip(t + 3.0, 0.0, 6.0) / 6.0


@pytest.mark.parametrize("wl", [SHAPES[1], SHAPES[4], SHAPES[8]], ids=["b16", "b8", "b1"])
@pytest.mark.parametrize("epilogue", ["bias_relu", "bias_hardswish"])
def test_fused_epilogue(wl, epilogue, monkeypatch):
    monkeypatch.setitem(EPILOGUES, "bias_hardswish", (_bias_hardswish, _np_bias_hardswish))
    check(TEMPLATE, wl, space(wl, 16).default(), lanes=16, epilogue=epilogue)


def test_epilogue_runs_at_the_output_tile_vectorized():
    wl = SHAPES[0]
    cfg = space(wl, 16).default()
    data = te.placeholder(wl.data_shape(), name="data")
    packed = TEMPLATE.weight_transform(te.placeholder(wl.weight_shape()), wl, cfg)
    weight = te.placeholder(packed.shape, name="w")
    bias = te.placeholder((wl.out_channels,), name="bias")
    out = _bias_hardswish(TEMPLATE.compute(data, weight, wl, cfg), bias)
    sch = s_tir.Schedule(tvm.IRModule({"main": te.create_prim_func([data, weight, bias, out])}))
    (block,) = template_blocks(sch)
    TEMPLATE.schedule(sch, block, wl, cfg, 16)
    blocks = sch.get_child_blocks(sch.get_sblock("root"))
    names = [sch.get(b).name_hint for b in blocks]
    assert names[-1] == "hardswish" and not {"bias_add", "clip"} & set(names)  # inlined
    for blk in blocks:  # everything inside the one parallel loop
        assert sch.get(sch.get_loops(blk)[0]).kind == tvm.tirx.ForKind.PARALLEL
    last = sch.get_loops(blocks[-1])
    assert sch.get(last[-1]).kind == tvm.tirx.ForKind.VECTORIZED
    assert sch.get(last[2]).same_as(sch.get(sch.get_loops(block)[2]))  # at the ow tile


@pytest.mark.parametrize("wl", [SHAPES[1], SHAPES[8]], ids=["b16", "b1"])
def test_fused_producers_are_inlined(wl):
    """Weight packing and an injective op on the data in the same PrimFunc (not folded away)."""
    cfg = space(wl, 16).default()
    data = te.placeholder(wl.data_shape(), name="data")
    weight = te.placeholder(wl.weight_shape(), name="weight")
    doubled = te.compute(data.shape, lambda *i: data(*i) * 2.0, name="double")
    out = TEMPLATE.compute(doubled, TEMPLATE.weight_transform(weight, wl, cfg), wl, cfg)
    sch = s_tir.Schedule(tvm.IRModule({"main": te.create_prim_func([data, weight, out])}))
    (block,) = template_blocks(sch)
    TEMPLATE.schedule(sch, block, wl, cfg, 16)
    kernel = tvm.compile(sch.mod, target=host_target())
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (wl.batch, wl.in_channels, wl.height, wl.width)).astype("float32")
    w = rng.uniform(-1, 1, wl.weight_shape()).astype("float32")
    got = tvm.runtime.empty(wl.out_shape(), "float32", tvm.cpu())
    args = [tvm.runtime.tensor(a, tvm.cpu()) for a in (pack_nchwc(x, wl.in_block), w)]
    kernel(*args, got)
    expected = pack_nchwc(
        reference(2.0 * x.astype("float64"), w.astype("float64"), wl), wl.out_block
    )
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4, atol=1e-4)


def test_space_refuses_illegal_configs():
    wl = SHAPES[0]  # OH 9, b 16
    sp = space(wl, 16)
    for bad in (
        {"tile_oh": 2},  # does not divide OH: row tiles would need a predicate
        {"tile_ow": 32},  # not a candidate
        {"ow_lanes": 2},  # 2 x 16 channels exceed the SIMD width
    ):
        with pytest.raises(ConfigError):
            sp.check({**sp.default(), **bad})
    assert space(SHAPES[1], 16).knobs["ow_lanes"].values == (1,)
    assert space(dw(8, 10, 14, 3, s=2, block=8), 16).knobs["ow_lanes"].values == (1,)  # stride 2
    assert space(wl, 4).knobs["tile_ow"].values[-1] == 4  # 16 channels = 4 registers per column
    assert space(SHAPES[7], 16).knobs["ow_lanes"].values == (4, 8, 16)  # b = 1: along ow


def test_applies_only_to_depthwise():
    assert TEMPLATE.applies(SHAPES[0])
    assert not TEMPLATE.applies(Conv2dWorkload(1, 16, 8, 8, 16, 3, 3, groups=1))
    assert not TEMPLATE.applies(Conv2dWorkload(1, 16, 8, 8, 32, 3, 3, groups=16))  # multiplier 2


def test_reference_matches_a_direct_loop():
    wl = dw(3, 9, 8, 3, s=2, pad=(1, 0, 2, 1), block=1, dilation=2)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 3, 9, 8))
    w = rng.standard_normal((3, 1, 3, 3))
    want = np.zeros((1, 3, wl.out_height, wl.out_width))
    for c, oy, ox, ky, kx in np.ndindex(3, wl.out_height, wl.out_width, 3, 3):
        y, xx = oy * 2 + ky * 2 - 1, ox * 2 + kx * 2  # stride 2, dilation 2, pads top 1, left 0
        if 0 <= y < 9 and 0 <= xx < 8:
            want[0, c, oy, ox] += x[0, c, y, xx] * w[c, 0, ky, kx]
    np.testing.assert_allclose(reference(x, w, wl), want)


INT8_SHAPES = [SHAPES[0], SHAPES[4], SHAPES[6], SHAPES[8]]


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
@pytest.mark.parametrize("wl", INT8_SHAPES, ids=lambda wl: wl.describe() + f" b{wl.in_block}")
def test_8bit_data_bit_exact(wl, dtype):
    """uint8 (x86) / int8 (aarch64) data by int8 weights into int32, as quantize-int8 emits."""
    wl = dataclasses.replace(wl, dtype=dtype)
    sp = space(wl, 8)
    for cfg in [sp.default(), *sp.sample(2, seed=0)]:
        check(TEMPLATE, wl, cfg, lanes=8)


@pytest.mark.parametrize("dtype,value", [("uint8", 131), ("int8", -7)])
@pytest.mark.parametrize("wl", [SHAPES[0], SHAPES[8]], ids=["b16", "b1"])
def test_pads_with_the_zero_point(wl, dtype, value):
    """A zero-point pad taken in from the graph: the template pads its tiles with the value,
    and the reference is the conv over data padded with it."""
    wl = dataclasses.replace(wl, dtype=dtype, pad_value=value)
    check(TEMPLATE, wl, space(wl, 8).default(), lanes=8)
    check_pad_value_reference(reference, wl)
