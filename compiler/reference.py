"""ONNX Runtime as the reference: run a model and compare tilecc's outputs with it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


def ort_session(model: str | Path | bytes, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.log_severity_level = 3
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def ort_run(model, inputs: dict[str, np.ndarray], threads: int | None = None):
    session = ort_session(model, threads)
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, inputs), strict=True))


def ort_quantize_static(
    model: str | Path,
    output: str | Path,
    samples: list[dict[str, np.ndarray]],
    fmt="QDQ",
    **options,
) -> Path:
    """`model` quantized by onnxruntime.quantization.quantize_static over `samples` (dicts keyed
    by input name) into `output`: uint8 activations, int8 per-channel weights, `fmt` "QDQ" or
    "QOperator"; `options` go to quantize_static (calibrate_method, op_types_to_quantize, ...).
    The int8 reference a user would otherwise take."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Samples(CalibrationDataReader):
        def __init__(self):
            self.samples = iter(samples)

        def get_next(self):
            return next(self.samples, None)

    quantize_static(
        str(model), str(output), Samples(), quant_format=getattr(QuantFormat, fmt),
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True, **options,
    )  # fmt: skip
    return Path(output)


@dataclass(frozen=True)
class Difference:
    name: str
    max_abs: float
    max_rel: float
    shape_ok: bool

    def within(self, atol: float) -> bool:
        return self.shape_ok and self.max_abs <= atol


def compare(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> list[Difference]:
    """Max abs and max relative error per output (relative to max(|expected|, 1e-6))."""
    diffs = []
    for name, want in expected.items():
        got = actual[name]
        if got.shape != want.shape:
            diffs.append(Difference(name, float("inf"), float("inf"), False))
            continue
        if want.size == 0:
            diffs.append(Difference(name, 0.0, 0.0, True))
            continue
        err = np.abs(got.astype(np.float64) - want.astype(np.float64))
        rel = err / np.maximum(np.abs(want.astype(np.float64)), 1e-6)
        diffs.append(Difference(name, float(err.max()), float(rel.max()), True))
    return diffs
