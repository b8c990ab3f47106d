"""Kernel templates and tuning on this host: PP-OCRv4 per conv layer and whole models, one run.

    .venv/bin/python bench/tuning.py [--records R.json] [--trials 16] [--threads 2]
                                     [--out docs/TUNING.md]

1. Tunes det (1x3x640x640), cls and rec for x86 into `--records` (resumable: an existing file is
   continued, so a second run only re-measures); the tuning time is printed.
2. Per conv layer of det: GFLOP/s of the default configuration and of the best record (both
   measured again now, in one isolated worker), and % of the 2-thread sgemm peak.
3. Whole models untuned (template defaults) and tuned, vs ONNX Runtime: medians, ratios.
Writes the tables to `--out` (atomically) and prints them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from sgemm_peak import sgemm_peak_gflops

from tilecc.compiler import api
from tilecc.compiler.assets import model_path
from tilecc.compiler.files import atomic_output
from tilecc.compiler.runtime import CompiledModel
from tilecc.compiler.sample_inputs import ppocr_input
from tilecc.compiler.templates import TemplatePlan
from tilecc.compiler.tuning import measurer_for, model_workloads
from tilecc.schedules.tune import Candidate, Records
from tilecc.schedules.workload import workload_from_key
from tilecc.targets import get_target

MODELS = [("det", (1, 3, 640, 640)), ("cls", (1, 3, 48, 192)), ("rec", (1, 3, 48, 320))]
# Trials per task relative to --trials: det is the model the goals are about; cls and rec get
# half, so the whole tuning fits a coffee break on 2 cores.
TRIAL_SHARE = {"det": 1.0, "cls": 0.5, "rec": 0.5}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def tune_models(records: Path, trials: int, threads: int) -> dict[str, float]:
    minutes = {}
    for kind, shape in MODELS:
        start = time.perf_counter()
        budget = max(1, round(trials * TRIAL_SHARE[kind]))
        api.tune_model(
            model_path(f"ppocr-{kind}"), "x86", records, budget, {"x": list(shape)}, threads
        )
        minutes[kind] = (time.perf_counter() - start) / 60
        log(f"tuned {kind} in {minutes[kind]:.1f} min")
    return minutes


def conv_layers(records: Records, threads: int, peak: float) -> list[tuple]:
    """(layer, count, template default, GFLOP/s default, template tuned, GFLOP/s tuned, %)."""
    spec = get_target("x86")
    imported = api.import_model(model_path("ppocr-det"), {"x": [1, 3, 640, 640]})
    workloads = model_workloads(imported, spec)
    default_plan = TemplatePlan(spec.vector_lanes)
    tuned_plan = TemplatePlan(spec.vector_lanes, records, spec.tuning_key)
    pairs = []
    for workload in sorted(workloads, key=lambda w: -w.flops() * workloads[w]):
        if workload.op != "conv2d":
            continue
        pairs.append((workload, default_plan.choose(workload), tuned_plan.choose(workload)))
    candidates = []
    for _workload, default, tuned in pairs:
        candidates += [
            Candidate(default.template.name, default.workload, default.config),
            Candidate(tuned.template.name, tuned.workload, tuned.config),
        ]
    log(f"measuring {len(candidates)} kernels (default and tuned per det conv layer)")
    with measurer_for(spec, threads, 60.0) as measurer:
        results = measurer.measure(candidates)
    rows = []
    for i, (workload, default, tuned) in enumerate(pairs):
        first, second = results[2 * i], results[2 * i + 1]
        rows.append(
            (
                workload.describe(),
                workloads[workload],
                default.template.name,
                first.gflops or 0.0,
                tuned.template.name + ("" if tuned.source == "records" else " (no record)"),
                second.gflops or 0.0,
                100 * (second.gflops or 0.0) / peak,
            )
        )
    return rows


def whole_models(records_path: Path, threads: int, repeat: int) -> list[tuple]:
    api.set_threads(threads)
    rows = []
    with tempfile.TemporaryDirectory(prefix="tilecc-bench-") as tmp:
        for kind, shape in MODELS:
            model = model_path(f"ppocr-{kind}")
            shapes = {"x": list(shape)}
            inputs = {"x": ppocr_input(kind, shape)}
            times = []
            for label, records in (("untuned", None), ("tuned", records_path)):
                so = Path(tmp) / f"{kind}-{label}.so"
                log(f"compiling {kind} {label}")
                api.compile_model(model, "x86", so, shapes, threads, tuning_records=records)
                times.append(api.time_host_model(CompiledModel(so), inputs, repeat).median_ms)
            ort = api.time_ort(model, inputs, threads, repeat).median_ms
            rows.append((kind, "x".join(map(str, shape)), times[0], times[1], ort))
    return rows


def winograd_vs_direct(records: Records) -> list[str]:
    """Markdown rows: best Winograd vs best direct record per stride-1 3x3 conv with >= 64
    input channels (both tuned in the same run)."""
    best: dict[tuple[str, str], float] = {}
    for record in records:
        if record.timed and record.template in ("conv2d_winograd", "conv2d_direct"):
            key = (record.workload, record.template)
            best[key] = min(best.get(key, float("inf")), record.seconds)
    rows = []
    for workload_key in sorted({w for w, _ in best}):
        workload = workload_from_key(workload_key)
        both = [best.get((workload_key, t)) for t in ("conv2d_direct", "conv2d_winograd")]
        if None in both or workload.in_channels < 64:
            continue
        direct, winograd = both
        rows.append(
            f"| {workload.describe()} | {direct * 1e3:.3f} | {winograd * 1e3:.3f} | "
            f"{direct / winograd:.2f}x |"
        )
    return rows


def render(peak, minutes, layers, models, threads, trials, winograd_rows=()) -> str:
    lines = [
        "# Kernel templates and tuning: PP-OCRv4 on this host",
        "",
        f"Generated by `bench/tuning.py` in one run: {threads} threads, {trials} trials per "
        f"(template, workload) task for det, half that for cls and rec; sgemm peak "
        f"(NumPy BLAS, {threads} threads) "
        f"**{peak:.0f} GFLOP/s**. Tuning time: "
        + ", ".join(f"{k} {m:.1f} min" for k, m in minutes.items())
        + ".",
        "",
        "## Whole models (median ms)",
        "",
        "| model | input | untuned (defaults) | tuned | ORT | untuned / ORT | tuned / ORT |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, shape, untuned, tuned, ort in models:
        lines.append(
            f"| {kind} | {shape} | {untuned:.2f} | {tuned:.2f} | {ort:.2f} | "
            f"{untuned / ort:.2f}x | {tuned / ort:.2f}x |"
        )
    lines += [
        "",
        "## det 1x3x640x640 conv layers (GFLOP/s, heaviest first)",
        "",
        "| layer | calls | default template | default | tuned template | tuned | % of sgemm |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, count, t0, g0, t1, g1, pct in layers:
        lines.append(f"| {name} | {count} | {t0} | {g0:.1f} | {t1} | {g1:.1f} | {pct:.0f}% |")
    lines += [""] + winograd_section(winograd_rows)
    return "\n".join(lines) + "\n"


def winograd_section(rows) -> list[str]:
    return [
        "## Winograd vs direct: stride-1 3x3 convs with >= 64 input channels (det, cls, rec)",
        "",
        "Best tuned record of each template for the same workload (ms, from the tuning run).",
        "",
        "| layer | direct | Winograd | speed-up |",
        "|---|---|---|---|",
        *rows,
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", default="bench-records.json")
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--out", default="docs/TUNING.md")
    args = parser.parse_args()
    records = Path(args.records)
    peak = sgemm_peak_gflops(args.threads)
    log(f"sgemm peak {peak:.0f} GFLOP/s")
    minutes = tune_models(records, args.trials, args.threads)
    layers = conv_layers(Records(records), args.threads, peak)
    models = whole_models(records, args.threads, args.repeat)
    text = render(
        peak,
        minutes,
        layers,
        models,
        args.threads,
        args.trials,
        winograd_vs_direct(Records(records)),
    )
    with atomic_output(args.out) as tmp:
        tmp.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
