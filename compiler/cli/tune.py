"""`tilecc tune MODEL.onnx --target T --trials N -o R.json`: tune the model's conv / dense kernels.

Each measurement is appended to R.json as it happens (JSON lines, fsync'd): a run killed at any
point keeps what it measured, and running the same command again (`--resume`, the default)
continues where it stopped. `tilecc compile --tuning-records R.json` uses the fastest records.
"""

from __future__ import annotations

import time

from tilecc.compiler import api

from .common import add_model_args, input_shapes, progress


def add_parser(sub) -> None:
    parser = sub.add_parser("tune", help="tune a model's kernels (XGBoost-guided search)")
    add_model_args(parser)
    parser.add_argument(
        "-o", "--output", required=True, metavar="R.json", help="tuning records (appended to)"
    )
    parser.add_argument(
        "--trials", type=int, default=32, help="measurements per (template, workload) task"
    )
    parser.add_argument("--threads", type=int, default=2, help="threads kernels run with")
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds before a candidate counts as hung"
    )
    parser.add_argument(
        "--max-tasks", type=int, default=None, help="tune only the N heaviest tasks"
    )
    parser.add_argument("--plot-dir", default=None, help="write a tuning curve PNG per task here")
    parser.add_argument(
        "--quantize",
        metavar="TABLE.json",
        help="tune the int8 build's kernels (what `compile --quantize TABLE` will run)",
    )
    resume = parser.add_mutually_exclusive_group()
    resume.add_argument(
        "--resume", dest="resume", action="store_true", default=True,
        help="skip finished tasks and measured configs found in -o (default)",
    )  # fmt: skip
    resume.add_argument(
        "--no-resume", dest="resume", action="store_false", help="start every task afresh"
    )
    parser.set_defaults(drive=drive_tune)


def drive_tune(args) -> int:
    if args.trials < 1:
        raise SystemExit("error: --trials must be at least 1")
    start = time.perf_counter()
    summary = api.tune_model(
        args.model,
        args.target,
        args.output,
        args.trials,
        input_shapes(args),
        threads=args.threads,
        timeout_s=args.timeout,
        resume=args.resume,
        plot_dir=args.plot_dir,
        max_tasks=args.max_tasks,
        quantize=args.quantize,
    )
    for warning in summary.warnings:
        progress(f"warning: {warning}")
    if not summary.tasks:
        progress(f"notice: {args.model} has no conv2d or dense that a kernel template computes")
        return 0
    progress(
        f"tuned {len(summary.tasks)} task(s), {summary.measured} new measurement(s) in "
        f"{time.perf_counter() - start:.0f} s; records: {args.output}"
    )
    return 0
