"""The Python API: the same verbs and arguments as the `tilecc` command line.

import tilecc.compiler.api as tilecc
tilecc.compile_model("det.onnx", target="arm-cpu", input_shapes={"x": [1, 3, 640, 640]},
                     output="det.so")
outputs = tilecc.run_model("det.so", inputs)
"""

from __future__ import annotations

import dataclasses
import functools
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tilecc.schedules.tune import Records, TuneSummary
from tilecc.schedules.tune.tuner import print_progress
from tilecc.targets import TargetSpec, get_target
from tilecc.targets.accelerator import on_host

from .build import compile_imported, export, template_plan
from .errors import InputError, TargetError
from .files import check_writable
from .frontend_onnx import ImportedModel, import_onnx
from .pass_pipeline import IROptions
from .quantize import (
    QDQ,
    calibrate,
    fake_quant_pipeline,
    import_qdq,
    int8_pipeline,
    load_samples,
    save_table,
)
from .runtime import CompiledModel
from .tuning import tune_imported


def set_threads(threads: int | None) -> None:
    """TVM's thread pool reads TVM_NUM_THREADS when it first starts, so set it before any run."""
    if threads:
        os.environ["TVM_NUM_THREADS"] = str(threads)


def compile_model(
    model: str | Path,
    target: str | TargetSpec = "x86",
    output: str | Path | None = None,
    input_shapes: dict[str, list[int]] | None = None,
    threads: int | None = None,
    ir: IROptions | None = None,
    tuning_records: str | Path | None = None,
    host: str | None = None,
    accel_config: str | Path | None = None,
    on_partition=None,
    fake_quant: str | Path | None = None,
    quantize: str | Path | None = None,
) -> Path | object:
    """Compile an ONNX file; write `output` if given (returns its path), else return the
    in-memory executable. Kernels take the fastest of `tuning_records` for this target, else
    their templates' defaults. An accelerator target (`npu`) runs what it does not take on
    `host` (default x86), reads `accel_config`, and tells `on_partition(report)` what went
    where (default: a summary line on stderr). `fake_quant`, a table from `quantize_model`,
    builds the int8 accuracy preview: int8 rounding simulated in fp32; `quantize`, such a
    table (or "qdq": a pre-quantized model's own Q/DQ parameters), builds the int8 model:
    calibrated convs run as int8 kernels."""
    spec = accelerator_spec(target, host, accel_config)
    if output is not None:
        check_writable(output)
    options = spec.accelerator.read_config(Path(accel_config)) if accel_config else None
    records = load_records(tuning_records) if tuning_records is not None else None
    if fake_quant is not None and quantize is not None:
        raise InputError("--fake-quant and --quantize are two builds: give one")
    with tempfile.TemporaryDirectory(prefix="tilecc-qdq-") as tmp:
        if str(quantize) == QDQ:
            imported, quantize = import_qdq(model, input_shapes, Path(tmp) / "qdq.table.json")
        else:
            imported = import_onnx(model, input_shapes)
        if fake_quant is not None or quantize is not None:
            ir = ir or IROptions()
            rest = ir.passes or spec.graph_pipeline
            if quantize is not None:
                passes = int8_pipeline(quantize, imported, rest, spec)
            else:
                passes = fake_quant_pipeline(fake_quant, imported, rest, spec.int8_weight_max)
            ir = dataclasses.replace(ir, passes=passes)
        if on_partition is None:
            on_partition = _partition_summary
        executable = compile_imported(
            imported, spec, threads, ir, template_plan(spec, records), options, on_partition
        )
    return export(executable, spec, output) if output is not None else executable


def quantize_model(
    model: str | Path,
    calib: str | Path,
    output: str | Path,
    method: str = "minmax",
    percentile: float = 99.99,
    symmetric_activations: bool = False,
    per_channel: bool = True,
    input_shapes: dict[str, list[int]] | None = None,
    progress=print,
    bias_correction: bool = True,
    empirical_bias_correction: bool = False,
) -> Path:
    """Calibrate `model` on the `.npz` samples in `calib` and write its quantization table."""
    check_writable(output)
    imported = import_onnx(model, input_shapes)
    samples = load_samples(calib, imported)
    table = calibrate(
        imported, samples, method, percentile, symmetric_activations, progress, per_channel,
        bias_correction, empirical_bias_correction,
    )  # fmt: skip
    save_table(table, Path(output))
    return Path(output)


def accelerator_spec(target: str | TargetSpec, host: str | None = None, accel_config=None):
    """The target `target` (a name, or a TargetSpec built in-process, as the new-target
    tutorial does); with `host`, an accelerator target re-based on that CPU target."""
    spec = target if isinstance(target, TargetSpec) else get_target(target)
    if spec.accelerator is None and (host or accel_config):
        flag = "--host" if host else "--accel-config"
        raise TargetError(f"{flag} applies to an accelerator target (npu), not '{spec.name}'")
    if accel_config and spec.accelerator.read_config is None:
        raise TargetError(f"target '{spec.name}' takes no --accel-config")
    return on_host(spec, get_target(host)) if host else spec


def _partition_summary(report) -> None:
    print(report.summary(), file=sys.stderr)


def load_records(path: str | Path) -> Records:
    """A tuning records file; a missing file is an error, skipped corrupt lines are warnings."""
    if not Path(path).is_file():
        raise InputError(f"{path}: no such tuning records file")
    records = Records(path)
    for warning in records.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return records


def tune_model(
    model: str | Path,
    target: str = "x86",
    records: str | Path = "records.json",
    trials: int = 32,
    input_shapes: dict[str, list[int]] | None = None,
    threads: int = 2,
    timeout_s: float = 60.0,
    resume: bool = True,
    plot_dir: str | Path | None = None,
    max_tasks: int | None = None,
    progress=print_progress,
    quantize: str | Path | None = None,
) -> TuneSummary:
    """Tune the conv / dense kernels of an ONNX model for `target`; every measurement is
    appended to `records` as it happens (see compiler/tuning.py). With `quantize` (a table),
    the kernels of the int8 build."""
    spec = get_target(target)
    check_writable(records)
    imported = import_onnx(model, input_shapes)
    if quantize is not None:
        pipeline = int8_pipeline(quantize, imported, spec.graph_pipeline, spec)
        spec = dataclasses.replace(spec, graph_pipeline=pipeline)
    return tune_imported(
        imported, spec, records, trials, threads, timeout_s, resume, plot_dir, max_tasks, progress
    )


def import_model(model: str | Path, input_shapes=None) -> ImportedModel:
    return import_onnx(model, input_shapes)


def load(path: str | Path) -> CompiledModel:
    return CompiledModel(path)


def run_model(
    model: str | Path,
    inputs: dict[str, np.ndarray],
    target: str | None = None,
    input_shapes: dict[str, list[int]] | None = None,
) -> dict[str, np.ndarray]:
    """Run a compiled `.so`, or compile an `.onnx` for `target` (default x86) first."""
    path = Path(model)
    if path.suffix == ".onnx":
        with tempfile.TemporaryDirectory(prefix="tilecc-run-") as tmp:
            so = compile_model(path, target or "x86", Path(tmp) / "model.so", input_shapes)
            return CompiledModel(so).run(inputs)
    return CompiledModel(path).run(inputs)


@dataclass
class Timing:
    median_ms: float
    min_ms: float
    max_ms: float
    samples_ms: tuple[float, ...] = field(default=(), repr=False)  # in the order run

    @staticmethod
    def of(samples_s: list[float]) -> Timing:
        ms = [s * 1e3 for s in samples_s]
        return Timing(statistics.median(ms), min(ms), max(ms), tuple(ms))


def paired_ratio(slow: Timing, fast: Timing) -> float:
    """The median over rounds of slow / fast, for two runners timed taking turns
    (`time_interleaved`): each round's pair ran moments apart, on the machine in one state.
    Where this VM switches between a fast and a slow state while timing, and a stall hits one
    run, the two medians can come from different states; each round's ratio does not."""
    if len(slow.samples_ms) != len(fast.samples_ms) or not slow.samples_ms:
        raise ValueError("paired_ratio needs two timings of the same interleaved rounds")
    return statistics.median(a / b for a, b in zip(slow.samples_ms, fast.samples_ms, strict=True))


def host_runner(compiled: CompiledModel, inputs) -> Callable[[], object]:
    """A no-argument call that runs `compiled` once on `inputs` (converted once, up front)."""
    func = compiled.host_callable()
    args = compiled.host_args(inputs)
    return lambda: func(*args)


def time_interleaved(
    runners: dict[str, Callable[[], object]], repeat: int, warmup: int = 2
) -> dict[str, Timing]:
    """Time each runner `repeat` times, taking turns (a, b, c, a, b, c, ...): a slow drift of
    the machine (another tenant, the clock) then shifts every runner alike instead of
    whichever ran during it, so the ratios hold even when the absolute times wander."""
    for run in runners.values():
        for _ in range(warmup):
            run()
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeat):
        for name, run in runners.items():
            start = time.perf_counter()
            run()
            samples[name].append(time.perf_counter() - start)
    return {name: Timing.of(s) for name, s in samples.items()}


def time_host_model(compiled: CompiledModel, inputs, repeat: int, warmup: int = 2) -> Timing:
    return time_interleaved({"model": host_runner(compiled, inputs)}, repeat, warmup)["model"]


def time_ort(model: str | Path | bytes, inputs, threads: int, repeat: int, warmup: int = 2):
    from .reference import ort_session

    session = ort_session(model, threads)
    run = functools.partial(session.run, None, inputs)
    return time_interleaved({"ort": run}, repeat, warmup)["ort"]
