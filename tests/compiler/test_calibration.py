"""Calibration math: quantize / dequantize, per-channel weight scales, percentile ranges and
KL (entropy) thresholds, each against a reference computed another way."""

import numpy as np
import pytest
from scipy.stats import entropy

from tilecc.compiler.calibration import (
    ChannelMeanObserver,
    HistogramObserver,
    QParams,
    RangeObserver,
    activation_qparams,
    bias_shift,
    kl_threshold,
    percentile_range,
    quantize_weight,
    weight_scales,
)

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("symmetric", [True, False])
def test_quantize_dequantize_round_trip_is_within_half_a_step(symmetric):
    x = RNG.uniform(-3.0, 5.0, 10_000).astype(np.float32)
    qp = activation_qparams(float(x.min()), float(x.max()), symmetric)
    back = qp.dequantize(qp.quantize(x))
    assert np.abs(back - x).max() <= qp.scale / 2 + 1e-6
    assert qp.dequantize(qp.quantize(np.zeros(1)))[0] == 0.0  # zero is exact
    clipped = qp.dequantize(qp.quantize(np.array([100.0, -100.0])))
    assert clipped[0] == pytest.approx(qp.scale * (127 - qp.zero_point))
    assert clipped[1] == pytest.approx(qp.scale * (-128 - qp.zero_point))


def test_asymmetric_parameters_cover_the_range_exactly():
    qp = activation_qparams(0.0, 6.0, symmetric=False)  # a ReLU6 output
    assert qp == QParams(6.0 / 255.0, -128)
    assert qp.dequantize(np.array([127], np.int8))[0] == pytest.approx(6.0)


def test_per_channel_weight_scales_match_a_loop_over_channels():
    w = RNG.standard_normal((5, 3, 3, 3)).astype(np.float32) * np.arange(1, 6)[:, None, None, None]
    scales = weight_scales(w, per_channel=True)
    expected = np.array([np.abs(w[o]).max() / 127.0 for o in range(5)])
    np.testing.assert_allclose(scales, expected, rtol=1e-12)
    q = quantize_weight(w, scales)
    for o in range(5):
        assert np.abs(q[o]).max() == 127  # each channel uses its whole range
        np.testing.assert_allclose(q[o] * scales[o], w[o], atol=scales[o] / 2 + 1e-7)
    per_tensor = weight_scales(w, per_channel=False)
    assert per_tensor.shape == (1,) and per_tensor[0] == pytest.approx(np.abs(w).max() / 127)


def test_matmul_weight_scales_along_the_output_axis():
    w = RNG.standard_normal((16, 4)).astype(np.float32)  # [K, N]: channels on axis 1
    scales = weight_scales(w, per_channel=True, axis=1)
    np.testing.assert_allclose(scales, np.abs(w).max(axis=0) / 127.0)
    assert quantize_weight(w, scales, axis=1).shape == (16, 4)


def observe(data, bins=2048):
    rng = RangeObserver()
    for batch in data:
        rng.observe(batch)
    hist = HistogramObserver(rng.low, rng.high, bins)
    for batch in data:
        hist.observe(batch)
    return rng, hist


def test_minmax_and_percentile_ranges_match_numpy():
    data = [RNG.laplace(0.0, 1.0, 20_000) for _ in range(3)]
    everything = np.concatenate(data)
    rng, hist = observe(data)
    assert (rng.low, rng.high) == (everything.min(), everything.max())
    lo, hi = percentile_range(hist, 99.9)
    width = (rng.high - rng.low) / hist.bins
    # 0.05 % in each tail: 30 of the 60,000 values. The bin edge found lies within a bin of
    # the order statistics on either side of that cut (the tails are sparse).
    ordered = np.sort(everything)
    assert ordered[29] - width <= lo <= ordered[30] + width
    assert ordered[-31] - width <= hi <= ordered[-30] + width
    assert percentile_range(hist, 100.0) == pytest.approx((rng.low, rng.high), abs=width)


def reference_kl_threshold(hist, absmax, levels=128):
    """TensorRT's entropy calibration written out another way: plain loops over the merged
    groups, KL from scipy.stats.entropy."""
    hist = np.asarray(hist, float)
    n = len(hist)
    divergences = {}
    for i in range(levels, n + 1):
        p = hist[:i].copy()
        p[-1] += hist[i:].sum()
        q = np.zeros(i)
        merged = i // levels
        for j in range(levels):
            lo, hi = j * merged, (i if j == levels - 1 else (j + 1) * merged)
            filled = [b for b in range(lo, hi) if hist[b] != 0]
            for b in filled:
                q[b] = hist[lo:hi].sum() / len(filled)
        if np.any((p > 0) & (q == 0)):
            continue
        divergences[i] = entropy(p, q)
    best = min(divergences, key=lambda i: (divergences[i], i))
    return (best + 0.5) * absmax / n if best < n else absmax


@pytest.mark.parametrize(
    "name, sample",
    [
        ("gaussian", lambda: np.abs(RNG.standard_normal(200_000))),
        ("laplace with outliers", lambda: np.abs(np.r_[RNG.laplace(0, 1, 200_000), [40, -55]])),
        ("relu of gaussian", lambda: np.maximum(RNG.normal(0.5, 1.0, 200_000), 0)),
        ("uniform", lambda: RNG.uniform(0, 1, 200_000)),
    ],
)
def test_kl_threshold_matches_the_reference_computation(name, sample):
    values = sample()
    absmax = float(values.max())
    hist = np.histogram(values, 1024, (0, absmax))[0]
    got = kl_threshold(hist, absmax)
    assert got == pytest.approx(reference_kl_threshold(hist, absmax), rel=1e-12)
    assert 0 < got <= absmax


def test_kl_clips_far_outliers_and_keeps_a_uniform_range():
    values = np.abs(np.r_[RNG.standard_normal(200_000), [60.0]])
    hist = np.histogram(values, 2048, (0, 60.0))[0]
    assert kl_threshold(hist, 60.0) < 10.0  # the outlier is not worth 6x coarser steps
    uniform = RNG.uniform(0, 1, 200_000)
    hist = np.histogram(uniform, 2048, (0, 1.0))[0]
    assert kl_threshold(hist, 1.0) > 0.9


def test_channel_means_add_up_over_batches():
    a, b = RNG.standard_normal((1, 3, 4, 5)), RNG.standard_normal((2, 3, 2, 2)) + 1.0
    conv = ChannelMeanObserver(1)
    conv.observe(a)
    conv.observe(b)
    flat = np.concatenate([np.moveaxis(t, 1, -1).reshape(-1, 3) for t in (a, b)])
    np.testing.assert_allclose(conv.mean, flat.mean(axis=0))
    rows = ChannelMeanObserver(-1)
    rows.observe(a.reshape(6, 10))
    np.testing.assert_allclose(rows.mean, a.reshape(6, 10).mean(axis=0))


def test_matmul_bias_shift_is_the_mean_output_change_of_the_rounded_weights():
    x = RNG.standard_normal((50, 8)) + RNG.uniform(-3, 3, 8)  # channels off zero
    w = RNG.standard_normal((8, 6))
    rounded = quantize_weight(w, weight_scales(w, True, 1, 7), 1, 7) * weight_scales(w, True, 1, 7)
    shift = bias_shift(w, rounded, x.mean(axis=0), "matmul")
    np.testing.assert_allclose(shift, (x @ rounded - x @ w).mean(axis=0), atol=1e-12)


def test_grouped_conv_bias_shift_matches_a_loop_over_taps():
    groups, out, per = 2, 6, 3  # 6 input channels in 2 groups, 3 outputs per group
    w = RNG.standard_normal((out, per, 3, 3))
    rounded = np.round(w * 4) / 4
    mean = RNG.uniform(-2, 2, groups * per)
    want = np.zeros(out)
    for o in range(out):
        g = o // (out // groups)
        for i in range(per):
            for kh in range(3):
                for kw in range(3):
                    want[o] += (rounded[o, i, kh, kw] - w[o, i, kh, kw]) * mean[g * per + i]
    np.testing.assert_allclose(bias_shift(w, rounded, mean, "conv2d", groups), want)
    assert bias_shift(w, rounded, mean[:per], "conv2d", groups) is None  # not one per channel


def test_bias_shift_needs_one_mean_per_input_channel():
    w = RNG.standard_normal((8, 6))
    assert bias_shift(w, w, np.zeros(6), "matmul") is None  # 6 outputs, 8 inputs
    assert bias_shift(w[None], w[None], np.zeros(8), "matmul") is None  # not [K, N]
