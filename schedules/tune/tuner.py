"""tune(): search each task's knob space for its fastest configuration, measuring in batches.

Per task (a template and a workload): the default configuration first, then batches chosen by
the cost model from a candidate pool (the whole space when small, else random samples plus
neighbours of the best so far), with a share of random picks so a wrong model still sees the
rest of the space. Every result is a record at once; a finished task gets a done line. A rerun
with the same records file skips finished tasks and continues interrupted ones from their
records, never measuring a configuration twice.

With a measurer that does not time (qemu), there is nothing to rank by: configurations are
drawn at random, and the records say which ones are correct.
"""

from __future__ import annotations

import hashlib
import random
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tilecc.compiler.files import atomic_output

from ..space import Config, ConfigError, Space
from ..template import Template
from .cost_model import CostModel
from .measure import Candidate, Measurer, MeasureResult
from .records import Record, Records

FULL_SPACE_LIMIT = 4000  # spaces up to this size are ranked whole each batch
POOL_SAMPLES = 2000  # else: this many random configs ...
POOL_BEST = 5  # ... plus the neighbours of this many best measured ones
EPSILON = 0.2  # share of each batch picked at random, not by the model


@dataclass(frozen=True)
class TuneProgress:
    """One update: a task started, was skipped, got a result, or finished."""

    event: str  # "start" | "skip" | "result" | "done"
    task_index: int  # 1-based
    num_tasks: int
    template: str
    workload: str  # workload.describe()
    trials: int  # configs measured for this task so far, earlier runs included
    total: int  # configs this task will have measured when done
    ok: int
    failed: int
    best_gflops: float | None
    best_seconds: float | None
    last: MeasureResult | None = None
    note: str = ""  # the measurer's note (why there is no time)

    def line(self) -> str:
        head = f"[tune {self.task_index}/{self.num_tasks}] {self.workload} ({self.template})"
        text = f"{head}: {self.trials}/{self.total} trials"
        if self.best_gflops is not None:
            text += f", best {self.best_gflops:.3g} GFLOP/s ({self.best_seconds * 1e3:.3g} ms)"
        if self.note:
            text += f", {self.ok} ok, {self.failed} failed; {self.note}"
        if self.event == "skip":
            text += ", already done (records)"
        elif self.event == "done":
            text += ", done"
        elif self.last is not None and self.last.status != "ok":
            text += f"; last: {self.last.status}"
        return text


def print_progress(update: TuneProgress) -> None:
    print(update.line(), file=sys.stderr, flush=True)


@dataclass
class TaskSummary:
    template: str
    workload: object
    status: str  # "tuned" | "skipped"
    measured: int  # configs measured by this run
    total: int  # configs measured for the task, earlier runs included
    best: tuple[Config, float, float] | None  # (config, seconds, GFLOP/s)
    statuses: dict[str, int] = field(default_factory=dict)  # over all the task's records
    plot: Path | None = None


@dataclass
class TuneSummary:
    tasks: list[TaskSummary]
    records: Path
    warnings: list[str]  # records lines skipped on load

    @property
    def measured(self) -> int:
        return sum(t.measured for t in self.tasks)


def tune(
    tasks: Iterable,
    measurer: Measurer,
    records: Records | str | Path,
    target_key: str,
    trials_per_task: int,
    batch: int = 8,
    seed: int = 0,
    resume: bool = True,
    progress: Callable[[TuneProgress], None] | None = print_progress,
    plot_dir: str | Path | None = None,
) -> TuneSummary:
    """Tune every task: `(template, workload)` or an object with `.template` and `.workload`.

    `target_key` files the records ("x86/emeraldrapids", "arm-cpu"). With `resume`, a task with
    a done line for at least `trials_per_task` is skipped and measured configs are not measured
    again; without it, every task starts from nothing (records are still appended).
    """
    if trials_per_task < 1 or batch < 1:
        raise ValueError(f"trials_per_task ({trials_per_task}) and batch ({batch}) must be >= 1")
    records = records if isinstance(records, Records) else Records(records)
    tasks = [_task(t) for t in tasks]
    summaries = []
    for index, (template, workload) in enumerate(tasks, start=1):
        run = _TaskRun(template, workload, measurer, records, target_key, seed)
        run.progress = _bind(progress, index, len(tasks))
        summaries.append(run.tune(trials_per_task, batch, resume, plot_dir))
    return TuneSummary(summaries, records.path, list(records.warnings))


def _task(task) -> tuple[Template, object]:
    if isinstance(task, tuple):
        template, workload = task
    else:
        template, workload = task.template, task.workload
    return template, workload


def _bind(progress, index: int, num_tasks: int):
    """`progress` with the task's place in the run filled in (None: report nothing)."""
    if progress is None:
        return None
    return lambda **fields: progress(TuneProgress(task_index=index, num_tasks=num_tasks, **fields))


class _TaskRun:
    """The search state of one task."""

    def __init__(self, template, workload, measurer, records, target, seed):
        self.template, self.workload, self.measurer = template, workload, measurer
        self.records, self.target = records, target
        self.space: Space = template.space(workload, measurer.lanes)
        # String seeds hash stably: the same task gets the same choices in every run.
        self.rng = random.Random(f"{seed}/{template.name}/{workload.key()}")
        self.model = CostModel(self.space, seed=seed)
        self.measured: dict[str, Record] = {}  # config key -> its record, in measuring order
        self.measured_now = 0
        self.total = 0
        self.progress = None
        self._all: list[Config] | None = None  # the whole space, when small enough to rank

    def tune(self, trials: int, batch: int, resume: bool, plot_dir) -> TaskSummary:
        self.total = min(trials, len(self.space))
        if resume:
            for record in self.records.task_records(self.template.name, self.workload, self.target):
                if record.config.key() not in self.measured and self._legal(record.config):
                    self.measured[record.config.key()] = record
            finished = self.records.done(self.template.name, self.workload, self.target)
            if finished is not None and finished >= trials:
                self._report("skip")
                return self._summary("skipped", None)
        self._report("start")
        default = self.space.default()
        while len(self.measured) < self.total:
            want = min(batch, self.total - len(self.measured))
            first = [] if default.key() in self.measured else [default]
            picks = first + self._choose(want - len(first), exclude=first)
            if not picks:
                break  # nothing left in the pool (only when nearly all the space is measured)
            candidates = [Candidate(self.template.name, self.workload, cfg) for cfg in picks]
            self.measurer.measure(candidates, on_result=self._on_result)
        self.records.mark_done(
            self.template.name, self.workload, self.target, trials, len(self.measured)
        )
        self._report("done")
        return self._summary("tuned", self._plot(plot_dir) if plot_dir else None)

    # --- choosing ------------------------------------------------------------------------------

    def _choose(self, n: int, exclude: Sequence[Config]) -> list[Config]:
        if n <= 0:
            return []
        skip = set(self.measured) | {c.key() for c in exclude}
        pool = [c for c in self._pool() if c.key() not in skip]
        if not self.measurer.timed:
            self.rng.shuffle(pool)  # nothing to rank by
            return pool[:n]
        # A time or a failure teaches the model; an untimed "ok" does not.
        taught = [r for r in self.measured.values() if r.status != "ok" or r.timed]
        self.model.fit([r.config for r in taught], [r.gflops if r.timed else None for r in taught])
        scores = self.model.predict(pool) if pool else []
        ranked = [pool[i] for i in np.argsort(-np.asarray(scores), kind="stable")]
        picks: list[Config] = []
        while len(picks) < n and ranked:
            # ε-greedy: the model is trained on few points and may be wrong about whole regions
            i = self.rng.randrange(len(ranked)) if self.rng.random() < EPSILON else 0
            picks.append(ranked.pop(i))
        return picks

    def _pool(self) -> list[Config]:
        if len(self.space) <= FULL_SPACE_LIMIT:
            if self._all is None:
                self._all = list(self.space)
            return self._all
        pool = self.space.sample(POOL_SAMPLES, seed=self.rng.randrange(1 << 30))
        timed = sorted((r for r in self.measured.values() if r.timed), key=lambda r: r.seconds)
        for record in timed[:POOL_BEST]:
            pool += self.space.neighbours(record.config)
        return list({c.key(): c for c in pool}.values())

    def _legal(self, cfg: Config) -> bool:
        try:
            self.space.check(cfg)
        except ConfigError:  # measured under an older space of the template
            return False
        return True

    # --- results -------------------------------------------------------------------------------

    def _on_result(self, result: MeasureResult) -> None:
        record = Record(
            template=self.template.name,
            workload=self.workload.key(),
            target=self.target,
            config=result.candidate.config,
            status=result.status,
            seconds=result.seconds,
            gflops=result.gflops,
            error=result.error,
        )
        self.records.append(record)  # at once: a crash of this process loses nothing measured
        self.measured[record.config.key()] = record
        self.measured_now += 1
        self._report("result", result)

    def _report(self, event: str, last: MeasureResult | None = None) -> None:
        if self.progress is None:
            return
        best = self.best()
        ok = sum(1 for r in self.measured.values() if r.status == "ok")
        self.progress(
            event=event,
            template=self.template.name,
            workload=self.workload.describe(),
            trials=len(self.measured),
            total=self.total,
            ok=ok,
            failed=len(self.measured) - ok,
            best_gflops=best[2] if best else None,
            best_seconds=best[1] if best else None,
            last=last,
            note=self.measurer.note,
        )

    def best(self) -> tuple[Config, float, float] | None:
        timed = [r for r in self.measured.values() if r.timed]
        if not timed:
            return None
        r = min(timed, key=lambda r: r.seconds)
        return r.config, r.seconds, r.gflops

    def _summary(self, status: str, plot: Path | None) -> TaskSummary:
        return TaskSummary(
            template=self.template.name,
            workload=self.workload,
            status=status,
            measured=self.measured_now,
            total=len(self.measured),
            best=self.best(),
            statuses=dict(Counter(r.status for r in self.measured.values())),
            plot=plot,
        )

    # --- plot ----------------------------------------------------------------------------------

    def _plot(self, plot_dir) -> Path | None:
        """Best-so-far GFLOP/s against trial number, each trial a point (failures at 0)."""
        history = list(self.measured.values())
        if not self.measurer.timed or not history:
            return None  # untimed: no speed to plot
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator

        trial = np.arange(1, len(history) + 1)
        each = np.array([r.gflops if r.timed else 0.0 for r in history])
        failed = np.array([not r.timed for r in history])
        fig = Figure(figsize=(7, 4), dpi=100)
        FigureCanvasAgg(fig)  # no pyplot: no global backend state, safe in any process
        ax = fig.add_subplot()
        ax.scatter(trial[~failed], each[~failed], s=12, color="tab:gray", label="trial")
        if failed.any():
            ax.scatter(
                trial[failed], each[failed], s=16, marker="x", color="tab:red", label="failed"
            )
        ax.step(trial, np.maximum.accumulate(each), where="post", label="best so far")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("trial")
        ax.set_ylabel("GFLOP/s")
        ax.set_title(f"{self.workload.describe()} ({self.template.name}) on {self.target}")
        ax.legend(loc="best")
        fig.tight_layout()
        out = Path(plot_dir) / _plot_name(self.template.name, self.workload)
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(out, ".png") as tmp:
            fig.savefig(tmp, format="png")
        return out


def _plot_name(template: str, workload) -> str:
    # Readable, and unique: two workloads may describe() alike (pads, dilation, layout blocks).
    digest = hashlib.sha256(workload.key().encode()).hexdigest()[:8]
    text = re.sub(r"[^A-Za-z0-9]+", "_", f"{template} {workload.describe()}").strip("_")
    return f"{text}_{digest}.png"
