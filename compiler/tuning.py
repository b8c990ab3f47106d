"""Tuning a model: its tunable workloads as tasks, measured on the target's measurer.

`extract_tasks` runs the target's graph pipeline (so workloads carry the layouts the compiled
model will use) and lists every conv2d / dense workload once, with each template that can
compute it: Winograd and direct conv compete for a stride-1 3x3 layer, and compile takes the
faster record. Tasks come heaviest first (FLOPs x occurrences), so a short budget goes where
the time is.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tvm import relax

from tilecc.schedules.registry import templates_for
from tilecc.schedules.template import Template
from tilecc.schedules.tune import LocalMeasurer, QemuMeasurer, Records, TuneSummary, tune
from tilecc.schedules.tune.tuner import TuneProgress, print_progress
from tilecc.targets.spec import TargetSpec

from .build import optimize
from .frontend_onnx import ImportedModel
from .templates import conv2d_workload, dense_workload, fold_zero_point_pad


@dataclass(frozen=True)
class Task:
    template: Template
    workload: object
    count: int  # how many times the model runs this workload


def model_workloads(imported: ImportedModel, target: TargetSpec) -> Counter:
    """workload -> occurrences, for every conv2d and dense the templates will compute (an
    8-bit conv over a zero-point pad with the pad taken in, as the build folds it)."""
    mod = optimize(imported, target)
    found: Counter = Counter()
    bound: dict = {}  # var -> the value bound to it, in the function being visited

    def visit(expr):
        if not isinstance(expr, relax.Call):
            return
        op = getattr(expr.op, "name", "")
        workload = None
        if op == "relax.nn.conv2d":
            folded = fold_zero_point_pad(expr, bound.get(expr.args[0]))
            workload = folded[0] if folded is not None else conv2d_workload(expr)
        elif op == "relax.matmul":
            workload = dense_workload(expr)
        if workload is not None and templates_for(workload):
            found[workload] += 1

    for _gvar, func in mod.functions_items():
        if isinstance(func, relax.Function):
            bound.clear()
            for block in getattr(func.body, "blocks", []):
                bound.update({b.var: b.value for b in block.bindings})
            relax.analysis.post_order_visit(func.body, visit)
    return found


def extract_tasks(imported: ImportedModel, target: TargetSpec) -> list[Task]:
    workloads = model_workloads(imported, target)
    tasks = [
        Task(template, workload, count)
        for workload, count in workloads.items()
        for template in templates_for(workload)
    ]
    return sorted(tasks, key=lambda t: -t.workload.flops() * t.count)


def measurer_for(target: TargetSpec, threads: int, timeout_s: float):
    """Timed local measurement for a host target; correctness-only emulation otherwise."""
    spec = target.target_dict(threads)
    if target.runner is None:
        return LocalMeasurer(spec, timeout_s=timeout_s, threads=threads, lanes=target.vector_lanes)
    return QemuMeasurer(
        spec,
        target.runner,
        target.cross_compiler,
        timeout_s=max(timeout_s, 120.0),
        threads=threads,
        lanes=target.vector_lanes,
    )


def tune_imported(
    imported: ImportedModel,
    target: TargetSpec,
    records_path: str | Path,
    trials: int,
    threads: int = 2,
    timeout_s: float = 60.0,
    resume: bool = True,
    plot_dir: str | Path | None = None,
    max_tasks: int | None = None,
    progress=print_progress,
) -> TuneSummary:
    tasks = extract_tasks(imported, target)
    if max_tasks is not None:
        tasks = tasks[:max_tasks]
    measurer = measurer_for(target, threads, timeout_s)
    try:
        return tune(
            tasks,
            measurer,
            Records(records_path),
            target.tuning_key,
            trials,
            resume=resume,
            progress=progress,
            plot_dir=plot_dir,
        )
    finally:
        close = getattr(measurer, "close", None)
        if close is not None:
            close()


__all__ = ["Task", "TuneProgress", "extract_tasks", "model_workloads", "tune_imported"]
