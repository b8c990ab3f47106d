"""Post-training calibration: from observed activations to int8 quantization parameters.

Three ways to pick the range a tensor is quantized over, as onnxruntime.quantization and
TensorRT do:
  minmax      the observed minimum and maximum;
  percentile  the range that keeps `percentile` % of the observed values (outliers clipped);
  kl          TensorRT's entropy calibration: the threshold T on |x| whose 128-level
              quantization of the histogram of |x| below T (everything above T folded into the
              last bin) is closest to it in KL divergence.
Observers see the calibration data in two passes: the first finds each tensor's range (and
its mean per channel), the second fills histograms with fixed edges over it, so every batch
adds into the same bins.

Bias correction (Nagel et al., "Data-Free Quantization", 2019): rounding a weight W to Wq
shifts each output channel's mean by E[(Wq - W) x]; from the calibrated mean of x per input
channel that shift is known and is subtracted from the op's output (`bias_shift`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

METHODS = ("minmax", "percentile", "kl")
HISTOGRAM_BINS = 2048
KL_LEVELS = 128  # int8's positive levels, as TensorRT's entropy calibrator uses


@dataclass
class RangeObserver:
    """Running minimum and maximum of a tensor (pass 1)."""

    low: float = np.inf
    high: float = -np.inf

    def observe(self, x: np.ndarray) -> None:
        if x.size:
            self.low = min(self.low, float(x.min()))
            self.high = max(self.high, float(x.max()))


class ChannelMeanObserver:
    """Running mean of a tensor per channel (`axis`: 1 for a conv's NCHW input, -1 for a
    matmul's [..., K] input)."""

    def __init__(self, axis: int):
        self.axis = axis
        self.total: np.ndarray | None = None
        self.count = 0

    def observe(self, x: np.ndarray) -> None:
        x = np.moveaxis(np.asarray(x, np.float64), self.axis, -1)
        x = x.reshape(-1, x.shape[-1])
        self.total = x.sum(axis=0) if self.total is None else self.total + x.sum(axis=0)
        self.count += x.shape[0]

    @property
    def mean(self) -> np.ndarray:
        return self.total / max(self.count, 1)


class HistogramObserver:
    """A histogram of x over [low, high] (percentile), or with `magnitude`, of |x| over
    [0, max |x|] (kl) (pass 2): `counts`, `bins` equal bins from `low` to `high`."""

    def __init__(self, low: float, high: float, bins: int = HISTOGRAM_BINS, magnitude=False):
        self.magnitude = magnitude
        self.absmax = max(abs(low), abs(high), 1e-12)
        if magnitude:
            low, high = 0.0, self.absmax
        self.low, self.high = low, max(high, low + 1e-12)
        self.counts = np.zeros(bins, np.int64)
        self.bins = bins

    def observe(self, x: np.ndarray) -> None:
        x = np.asarray(x, np.float64).ravel()
        self.counts += np.histogram(
            np.abs(x) if self.magnitude else x, self.bins, (self.low, self.high)
        )[0]


def percentile_range(obs: HistogramObserver, percentile: float) -> tuple[float, float]:
    """The range holding `percentile` % of the values, the rest split evenly between tails
    (`obs` a histogram of x, not of |x|)."""
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    total = obs.counts.sum()
    if total == 0:
        return obs.low, obs.high
    tail = total * (100.0 - percentile) / 200.0
    cdf = np.cumsum(obs.counts)
    width = (obs.high - obs.low) / obs.bins
    lo_bin = int(np.searchsorted(cdf, tail, side="right"))
    hi_bin = int(np.searchsorted(cdf, total - tail, side="left"))
    return obs.low + lo_bin * width, obs.low + (hi_bin + 1) * width


def kl_threshold(hist: np.ndarray, absmax: float, levels: int = KL_LEVELS) -> float:
    """TensorRT's entropy calibration on a histogram of |x| over [0, absmax]."""
    hist = np.asarray(hist, np.float64)
    bins = len(hist)
    width = absmax / bins
    if hist.sum() == 0 or bins <= levels:
        return absmax
    best_i, best_kl = bins, np.inf
    for i in range(levels, bins + 1):
        p = hist[:i].copy()
        p[i - 1] += hist[i:].sum()  # outliers clip to the threshold
        q = _quantized(hist[:i], levels)
        kl = _kl(p, q)
        if kl < best_kl:
            best_i, best_kl = i, kl
    return (best_i + 0.5) * width if best_i < bins else absmax


def _quantized(ref: np.ndarray, levels: int) -> np.ndarray:
    """`ref` merged into `levels` groups of len(ref) // levels bins (the last group takes the
    rest), each group's mass spread evenly over its non-empty bins; empty bins stay empty."""
    starts = np.arange(levels) * (len(ref) // levels)
    sizes = np.diff(np.append(starts, len(ref)))
    nonzero = ref != 0
    mass = np.add.reduceat(ref, starts)
    count = np.add.reduceat(nonzero.astype(np.float64), starts)
    per_bin = np.divide(mass, count, out=np.zeros(levels), where=count > 0)
    return np.repeat(per_bin, sizes) * nonzero


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    p = p / p.sum()
    if q.sum() == 0:
        return np.inf
    q = q / q.sum()
    mask = p > 0
    if np.any(q[mask] == 0):
        return np.inf
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))


# ---- quantization parameters -------------------------------------------------------------


@dataclass(frozen=True)
class QParams:
    """x ≈ scale * (q - zero_point), q in [qmin, qmax] (int8)."""

    scale: float
    zero_point: int
    qmin: int = -128
    qmax: int = 127

    def quantize(self, x: np.ndarray) -> np.ndarray:
        q = np.round(np.asarray(x, np.float64) / self.scale) + self.zero_point
        return np.clip(q, self.qmin, self.qmax).astype(np.int8)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        return (self.scale * (np.asarray(q, np.float64) - self.zero_point)).astype(np.float32)


def activation_qparams(low: float, high: float, symmetric: bool) -> QParams:
    """int8 parameters for the range [low, high] (widened to hold 0, which must be exact)."""
    low, high = min(low, 0.0), max(high, 0.0)
    if symmetric:
        bound = max(-low, high, 1e-12)
        return QParams(bound / 127.0, 0)
    scale = max(high - low, 1e-12) / 255.0
    zero_point = int(np.clip(np.round(-128 - low / scale), -128, 127))
    return QParams(scale, zero_point)


def weight_scales(
    weight: np.ndarray, per_channel: bool = True, axis: int = 0, qmax: int = 127
) -> np.ndarray:
    """Symmetric int8 scales of a weight (zero point 0) onto [-qmax, qmax]: per output channel
    along `axis`, or one for the whole tensor."""
    w = np.abs(np.asarray(weight, np.float64))
    if per_channel:
        w = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
        bound = w.max(axis=1)
    else:
        bound = np.array([w.max()])
    return np.maximum(bound, 1e-12) / qmax


def quantize_weight(
    weight: np.ndarray, scales: np.ndarray, axis: int = 0, qmax: int = 127
) -> np.ndarray:
    shape = [1] * weight.ndim
    shape[axis] = -1
    s = scales.reshape(shape) if scales.size > 1 else scales.reshape(())
    return np.clip(np.round(weight / s), -qmax, qmax).astype(np.int8)


def bias_shift(
    weight: np.ndarray, rounded: np.ndarray, mean: np.ndarray, kind: str, groups: int = 1
) -> np.ndarray | None:
    """E[(rounded - weight) x] per output channel: how far rounding the weights moves an op's
    output on average, for input x with per-channel `mean`. `kind` "conv2d": OIHW weights
    (`groups` groups; padding's zeros ignored); "matmul": [K, N] weights. None when `mean`
    does not have one value per input channel (a value shared by a conv and a matmul has its
    means on its first consumer's channel axis)."""
    delta = np.asarray(rounded, np.float64) - np.asarray(weight, np.float64)
    mean = np.asarray(mean, np.float64)
    inputs = delta.shape[0] if kind == "matmul" else delta.shape[1] * groups
    if delta.ndim != (2 if kind == "matmul" else 4) or mean.shape != (inputs,):
        return None
    if kind == "matmul":
        return mean @ delta
    out, per_group = delta.shape[:2]
    taps = delta.sum(axis=(2, 3)).reshape(groups, out // groups, per_group)
    return np.einsum("goi,gi->go", taps, mean.reshape(groups, per_group)).reshape(out)
