"""conv2d_winograd vs a float64 direct convolution: odd sizes, asymmetric padding, every layout
block, every tile size m, sampled configurations and fused epilogues.

Tolerance: absolute, TOL[m] x sqrt(C), where sqrt(C) is the RMS of an output summing 9 C
products of U(-1, 1) values, so it is relative to the output's magnitude. Winograd's fp32
error grows with m because A, B and G hold larger, less round numbers as the tile grows
(F(6,3): up to 21/4 in B and 32 in A, 1/90 in G). On these shapes (C <= 64) the worst errors
measured are 1.3e-6, 1.0e-5 and 4.1e-5 of the RMS for m = 2, 4, 6: TOL leaves a 5x margin or
more, while a transform coefficient off by 1e-4 already fails.
"""

import math

import numpy as np
import pytest
from template_harness import EPILOGUES, check
from tvm import te

from tilecc.schedules.conv2d_winograd import SPACE, TEMPLATE
from tilecc.schedules.space import ConfigError
from tilecc.schedules.workload import Conv2dWorkload

TOL = {2: 1e-5, 4: 5e-5, 6: 2e-4}
LANES = 16


def conv(c, h, w, o, pads=(1, 1, 1, 1), blocks=(16, 16), batch=1, **kw):
    pad = dict(zip(("pad_top", "pad_left", "pad_bottom", "pad_right"), pads, strict=True))
    return Conv2dWorkload(
        batch, c, h, w, o, 3, 3, in_block=blocks[0], out_block=blocks[1], **pad, **kw
    )


WORKLOADS = [
    conv(16, 7, 9, 32),  # odd 7x9 output: ragged tiles on both edges for every m
    conv(24, 13, 13, 40, pads=(0, 0, 0, 0), blocks=(8, 4)),  # 11x11, O not a tile_co multiple
    conv(32, 9, 7, 16, pads=(2, 0, 0, 2), blocks=(1, 1), batch=2),  # NCHW, asymmetric padding
    conv(64, 13, 13, 64, blocks=(16, 8)),
    conv(48, 11, 8, 24, pads=(1, 2, 1, 0), blocks=(4, 8)),
]


def _check(wl, cfg, epilogue=None):
    scale = TOL[cfg["m"]] * math.sqrt(wl.in_channels)
    check(TEMPLATE, wl, cfg, LANES, epilogue=epilogue, rtol=0, atol=scale)


@pytest.mark.parametrize("m", [2, 4, 6])
@pytest.mark.parametrize("wl", WORKLOADS, ids=lambda wl: wl.describe().replace(" ", "_"))
def test_default_config_matches_reference(wl, m):
    space = TEMPLATE.space(wl, LANES)
    _check(wl, space.check({**space.default(), "m": m}))


@pytest.mark.parametrize("wl", [WORKLOADS[0], WORKLOADS[3]], ids=["7x9", "13x13"])
def test_sampled_configs_match_reference(wl):
    for cfg in TEMPLATE.space(wl, LANES).sample(3, seed=0):
        _check(wl, cfg)


@pytest.mark.parametrize(
    "wl",
    [
        conv(3, 10, 12, 5, blocks=(1, 1)),  # RGB-like input, 5 outputs: vectors of one lane
        conv(8, 6, 6, 12, pads=(0, 0, 0, 0), blocks=(4, 4)),  # one 4x4 tile: unit loops
        conv(32, 7, 7, 48, batch=3),  # fewer tiles per image than a register block
    ],
    ids=lambda wl: wl.describe().replace(" ", "_"),
)
def test_small_images_and_odd_channel_counts(wl):
    space = TEMPLATE.space(wl, LANES)
    _check(wl, space.check({**space.default(), "m": max(space.knobs["m"].values)}))


def _bias(y, b):  # per output channel of NCHW or NCHW[b]c
    return lambda *i: b[i[1] * int(y.shape[4]) + i[4] if len(y.shape) == 5 else i[1]]


def _bias_hardswish(y, b):
    # three blocks, the first read by both others: bias, clip(x + 3, 0, 6), x * clip / 6
    x = te.compute(y.shape, lambda *i: y(*i) + _bias(y, b)(*i), name="bias_add")
    gate = te.compute(y.shape, lambda *i: te.min(te.max(x(*i) + 3.0, 0.0), 6.0), name="gate")
    return te.compute(y.shape, lambda *i: x(*i) * gate(*i) / 6.0, name="hardswish")


def _bias_hardswish_ref(y, b):
    x = y + (b.reshape(1, -1, 1, 1) if y.ndim == 4 else b)
    return x * np.clip(x + 3.0, 0.0, 6.0) / 6.0


@pytest.mark.parametrize("epilogue", ["bias_relu", "bias_hardswish"])
@pytest.mark.parametrize("wl", [WORKLOADS[1], WORKLOADS[2]], ids=["nchw8c", "nchw"])
def test_fused_epilogue(wl, epilogue, monkeypatch):
    monkeypatch.setitem(EPILOGUES, "bias_hardswish", (_bias_hardswish, _bias_hardswish_ref))
    _check(wl, TEMPLATE.space(wl, LANES).default(), epilogue=epilogue)


def test_reference_is_direct_convolution():
    wl = conv(2, 4, 5, 3, pads=(1, 0, 2, 1), blocks=(1, 1))
    rng = np.random.default_rng(0)
    x, w = rng.uniform(-1, 1, (1, 2, 4, 5)), rng.uniform(-1, 1, (3, 2, 3, 3))
    xp = np.pad(x, ((0, 0), (0, 0), (1, 2), (0, 1)))
    want = np.zeros((1, 3, wl.out_height, wl.out_width))
    for o, i, j in np.ndindex(3, wl.out_height, wl.out_width):
        want[0, o, i, j] = np.sum(xp[0, :, i : i + 3, j : j + 3] * w[o])
    np.testing.assert_allclose(TEMPLATE.reference(x, w, wl), want, rtol=1e-12)


@pytest.mark.parametrize(
    "wl",
    [
        conv(16, 9, 9, 16, stride_h=2, stride_w=2),
        conv(16, 9, 9, 16, dilation_h=2, dilation_w=2),
        conv(16, 9, 9, 16, groups=2),
        conv(16, 9, 9, 16, dtype="float16"),
    ],
    ids=["stride2", "dilation2", "groups2", "fp16"],
)
def test_no_winograd_for_other_convolutions(wl):
    assert not TEMPLATE.applies(wl)


def test_no_winograd_for_other_kernel_sizes():
    assert not TEMPLATE.applies(Conv2dWorkload(1, 16, 9, 9, 16, 5, 5))
    assert TEMPLATE.applies(WORKLOADS[0])


def test_space_restricts_per_workload():
    small = TEMPLATE.space(conv(16, 4, 4, 24, pads=(0, 0, 0, 0)), LANES)  # 2x2 output
    assert small.knobs["m"].values == (2,)
    # the GEMM is narrowed to the O columns read, so no tile_co may exceed O; 24 channels
    # default to a padded 16-lane vector (2 x 16 beats 3 x 8)
    assert max(small.knobs["tile_co"].values) <= 24
    assert (small.default()["tile_co"], small.default()["tile_p"]) == (16, 12)
    with pytest.raises(ConfigError):
        small.check({**small.default(), "m": 6})
    with pytest.raises(ConfigError):
        SPACE.check({**SPACE.default(), "m": 3})
