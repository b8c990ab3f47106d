"""conv2d_int8 bit for bit against its NumPy integer reference: layouts, kernels, strides,
padding, dilation, uint8 and int8 data, and the dot-product instruction it tensorizes into."""

import dataclasses

import pytest
import tvm
from template_harness import check, check_pad_value_reference
from tvm import s_tir, te

from tilecc.schedules import int8_dot
from tilecc.schedules.conv2d_int8 import TEMPLATE, reference, space, vector_shape
from tilecc.schedules.space import ConfigError
from tilecc.schedules.template import template_blocks
from tilecc.schedules.workload import Conv2dWorkload


def conv(c, h, w, o, k, s=1, pad=(0, 0, 0, 0), d=1, ib=8, ob=8, batch=1, dtype="uint8"):
    """A groups-1 8-bit workload; `pad` is (top, left, bottom, right)."""
    return Conv2dWorkload(
        batch, c, h, w, o, k, k, s, s, *pad, d, d, in_block=ib, out_block=ob, dtype=dtype
    )


SHAPES = [
    conv(16, 9, 11, 24, 3, pad=(1, 1, 1, 1)),  # O padded up to the tile, ow tail
    conv(32, 7, 9, 48, 1),  # 1x1, no padding stage
    conv(16, 9, 11, 16, 3, s=2, pad=(0, 1, 1, 2)),  # stride 2, asymmetric padding
    conv(8, 10, 10, 8, 5, pad=(4, 4, 4, 4), d=2),  # dilation 2
    conv(16, 7, 9, 32, 3, pad=(1, 1, 1, 1), ib=16, ob=8, batch=2),  # in block != out block
    conv(8, 6, 5, 13, 3, pad=(1, 1, 1, 1), ob=1),  # blocked in, NCHW out, odd O
    conv(12, 6, 7, 8, 3, pad=(1, 1, 1, 1), ib=4, ob=4, dtype="int8"),  # aarch64's form
]
IDS = [f"{wl.describe()} b{wl.in_block}-{wl.out_block} {wl.dtype}" for wl in SHAPES]


@pytest.mark.parametrize("wl", SHAPES, ids=IDS)
def test_bit_exact_over_space(wl):
    sp = space(wl, 8)
    for cfg in [sp.default(), *sp.sample(3, seed=0)]:
        check(TEMPLATE, wl, cfg, lanes=8)


@pytest.mark.parametrize("dtype,value", [("uint8", 131), ("int8", -7)])
def test_pads_with_the_zero_point(dtype, value):
    """A zero-point pad taken in from the graph (compiler/templates.py: fold_zero_point_pad):
    the template's padding stage fills with the value; its reference is the conv over data
    padded with it."""
    wl = dataclasses.replace(SHAPES[2], dtype=dtype, pad_value=value)  # asymmetric padding
    ib = 4 if dtype == "int8" else 8
    wl = dataclasses.replace(wl, in_block=ib, out_block=ib)
    for cfg in [space(wl, 8).default(), *space(wl, 8).sample(2, seed=3)]:
        check(TEMPLATE, wl, cfg, lanes=8)
    check_pad_value_reference(reference, wl)


def test_sixteen_lane_target():
    wl = conv(32, 6, 7, 48, 3, pad=(1, 1, 1, 1), ib=16, ob=16)
    check(TEMPLATE, wl, space(wl, 16).default(), lanes=16)


def test_sixteen_lanes_span_two_eight_channel_blocks():
    wl = conv(16, 7, 9, 32, 3, pad=(1, 1, 1, 1), ib=8, ob=8, batch=2)
    sp = space(wl, 16)
    assert sp.knobs["vector"].values == ("8c", "16c", "2x8c")
    for vector in sp.knobs["vector"].values:  # 8 and 16 channels, 2 pixels x 8 channels
        for cfg in [sp.default(), *sp.sample(2, seed=1)]:
            check(TEMPLATE, wl, sp.check({**cfg, "vector": vector}), lanes=16)
    assert "16c" not in space(conv(16, 7, 9, 24, 3), 16).knobs["vector"].values  # 24 not in 16s


@pytest.mark.parametrize(
    "wl",
    [
        conv(96, 12, 16, 24, 3, pad=(1, 1, 1, 1)),  # det's FPN: 24 channels, zmm only by pixels
        conv(16, 6, 9, 32, 1),  # 1x1, odd width: the last tile's pixel pair straddles the edge
        conv(16, 7, 9, 8, 3, pad=(1, 1, 1, 1), d=1, ob=8, ib=16),
    ],
    ids=lambda wl: wl.describe(),
)
def test_pixel_pairs_fill_sixteen_lanes(wl):
    sp = space(wl, 16)
    assert "2x8c" in sp.knobs["vector"].values
    for cfg in [sp.default(), *sp.sample(3, seed=2)]:
        check(TEMPLATE, wl, sp.check({**cfg, "vector": "2x8c"}), lanes=16)


@pytest.mark.parametrize("lanes,vector", [(16, "4x4c"), (8, "2x4c")])
def test_pixels_times_four_channel_blocks(lanes, vector):
    wl = conv(8, 6, 9, 12, 3, pad=(1, 1, 1, 1), ib=4, ob=4)
    sp = space(wl, lanes)
    assert vector in sp.knobs["vector"].values and sp.default()["vector"] == vector
    check(TEMPLATE, wl, sp.default(), lanes=lanes)


def test_pixel_pairs_only_where_pixels_sit_one_block_apart():
    assert "2x8c" not in space(conv(16, 9, 11, 16, 3, s=2), 16).knobs["vector"].values
    assert "2x8c" not in space(conv(16, 1, 1, 16, 1), 16).knobs["vector"].values  # one pixel
    assert space(conv(96, 160, 160, 24, 3, pad=(1, 1, 1, 1)), 16).default()["vector"] == "2x8c"


def test_pixel_pairs_are_no_default_where_zmm_runs_as_two_halves():
    wl = conv(96, 160, 160, 24, 3, pad=(1, 1, 1, 1))
    with tvm.target.Target({"kind": "llvm", "mcpu": "znver4"}):  # AMD Zen 4
        zen4 = space(wl, 16)
    assert zen4.default()["vector"] == "8c" and "2x8c" in zen4.knobs["vector"].values
    with tvm.target.Target({"kind": "llvm", "mcpu": "sapphirerapids"}):
        assert space(wl, 16).default()["vector"] == "2x8c"


def _scheduled(wl, cfg, target):
    data = te.placeholder(wl.data_shape(), wl.dtype, name="data")
    weight = te.placeholder(TEMPLATE.weight_transform(
        te.placeholder(wl.weight_shape(), "int8"), wl, cfg).shape, "int8", name="w")  # fmt: skip
    out = TEMPLATE.compute(data, weight, wl, cfg)
    sch = s_tir.Schedule(tvm.IRModule({"main": te.create_prim_func([data, weight, out])}))
    (block,) = template_blocks(sch)
    with target:
        p, v = vector_shape(cfg)
        TEMPLATE.schedule(sch, block, wl, cfg, p * v)
    return sch.mod


def test_avx2_tensorizes_into_vpmaddubsw():
    wl = SHAPES[0]
    target = tvm.target.Target({"kind": "llvm", "mcpu": "haswell"})
    text = _scheduled(wl, space(wl, 8).default(), target).script()
    assert "llvm.x86.avx2.pmadd.ub.sw" in text and "llvm.x86.avx2.pmadd.wd" in text


def test_aarch64_dotprod_tensorizes_into_sdot():
    wl = SHAPES[-1]
    target = tvm.target.Target(
        {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon", "+dotprod"]}
    )
    assert "llvm.aarch64.neon.sdot" in _scheduled(wl, space(wl, 4).default(), target).script()


def test_no_dot_product_instruction_leaves_plain_loops():
    wl = SHAPES[-1]
    target = tvm.target.Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]})
    assert "call_llvm_pure_intrin" not in _scheduled(wl, space(wl, 4).default(), target).script()


@pytest.mark.parametrize("mcpu", ["icelake-server", "alderlake"])  # AVX512-VNNI + VL; AVX-VNNI
def test_vnni_tensorizes_eight_lanes_into_ymm_vpdpbusd(mcpu):
    wl = SHAPES[0]
    target = tvm.target.Target({"kind": "llvm", "mcpu": mcpu})
    mod = _scheduled(wl, space(wl, 8).default(), target)
    assert "llvm.x86.avx512.vpdpbusd.256" in mod.script() and "pmadd" not in mod.script()
    asm = tvm.compile(mod, target=target).mod.inspect_source("s")
    assert "vpdpbusd" in asm and "ymm" in asm


def test_weight_range_follows_the_instruction():
    avx512 = {"avx2", "avx512bw"}
    assert int8_dot.weight_max("uint8", {"avx2"}) == 63  # vpmaddubsw pair sums saturate s16
    assert int8_dot.weight_max("uint8", avx512) == 63
    # VNNI without VL has no 8-lane form: NCHW8c convs would still take vpmaddubsw
    assert int8_dot.weight_max("uint8", avx512 | {"avx512vnni"}) == 63
    assert int8_dot.weight_max("uint8", avx512 | {"avx512vnni", "avx512vl"}) == 127
    assert int8_dot.weight_max("uint8", {"avx2", "avxvnni"}) == 127
    assert int8_dot.weight_max("int8", {"dotprod"}) == 127
    assert int8_dot.intrinsic("uint8", 8, {"avx2"}) == "tilecc_dot_8x4_u8i8i32_avx2"
    assert int8_dot.intrinsic("uint8", 8, {"avx2", "avxvnni"}).endswith("avxvnni")
    assert int8_dot.intrinsic("uint8", 16, avx512 | {"avx512vnni"}).endswith("vnni")
    assert int8_dot.intrinsic("int8", 8, {"avx2"}) is None


def test_space_and_applies():
    wl = SHAPES[0]
    sp = space(wl, 8)
    assert sp.knobs["vector"].values == ("8c",)
    for bad in ({"tile_oc": 12}, {"vector": "4c"}, {"tile_ow": 9}):  # not a multiple of v, ...
        with pytest.raises(ConfigError):
            sp.check({**sp.default(), **bad})
    cfg = sp.default()
    assert cfg["tile_oc"] // 8 * (cfg["tile_ow"] + 1) + 2 <= 16  # fits AVX2's registers
    assert not TEMPLATE.applies(conv(16, 8, 8, 16, 3, dtype="float32"))
    assert not TEMPLATE.applies(conv(6, 8, 8, 16, 3, ib=1, ob=8))  # channels not in 4s
    assert not TEMPLATE.applies(
        Conv2dWorkload(1, 16, 8, 8, 16, 3, 3, groups=16, in_block=8, out_block=8, dtype="uint8")
    )
