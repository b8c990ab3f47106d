import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from tune_templates import DENSE, WORKLOAD

from tilecc.schedules.space import Config
from tilecc.schedules.tune import LocalMeasurer, Measurer, MeasureResult, Records, tune
from tilecc.schedules.workload import DenseWorkload

TARGET = "x86/test"
SPACE_SIZE = len(DENSE.space(WORKLOAD, 16))  # 48


def fake_gflops(cfg):
    """Known speeds: a wide n block, a mid k block and threads are fast; tile_n 1 crashes."""
    if cfg["tile_n"] == 1:
        return None
    return cfg["tile_n"] * (2 if cfg["parallel"] else 1) / (1 + abs(cfg["tile_k"] - 4))


class FakeMeasurer(Measurer):
    """Answers at once from fake_gflops; stops (as a killed run would) after `stop_after`."""

    lanes = 16

    def __init__(self, timed=True, stop_after=None):
        self.timed = timed
        self.note = "" if timed else "correctness only (qemu): emulated time is not speed"
        self.stop_after = stop_after
        self.measured = []  # config keys, in order, over every call

    def measure(self, candidates, on_result=None):
        results = []
        for c in candidates:
            if self.stop_after is not None and len(self.measured) == self.stop_after:
                raise KeyboardInterrupt
            self.measured.append(c.config.key())
            g = fake_gflops(c.config)
            if g is None:
                result = MeasureResult(c, "crash", error="worker died (signal SIGSEGV)")
            elif self.timed:
                result = MeasureResult(c, "ok", c.workload.flops() / g / 1e9, g)
            else:
                result = MeasureResult(c, "ok")
            results.append(result)
            if on_result:
                on_result(result)
        return results


@dataclass
class Task:
    template: object
    workload: object


def keys_in_file(path):
    return [
        json.dumps(obj["config"], sort_keys=True, separators=(",", ":"))
        for obj in map(json.loads, Path(path).read_text().splitlines())
        if "config" in obj
    ]


def test_budget_respected_default_first_no_config_twice(tmp_path):
    measurer, updates = FakeMeasurer(), []
    summary = tune(
        [(DENSE, WORKLOAD)],
        measurer,
        tmp_path / "r.json",
        TARGET,
        trials_per_task=20,
        batch=8,
        progress=updates.append,
    )
    default = DENSE.space(WORKLOAD, 16).default().key()
    assert len(measurer.measured) == 20 == len(set(measurer.measured))
    assert measurer.measured[0] == default
    assert keys_in_file(tmp_path / "r.json") == measurer.measured
    (task,) = summary.tasks
    assert (task.status, task.measured, task.total) == ("tuned", 20, 20)
    assert Records(tmp_path / "r.json").done(DENSE.name, WORKLOAD, TARGET) == 20
    # the best found is the fastest measured, and the model found the known optimum's region
    best_cfg, best_seconds, best_gflops = task.best
    assert best_gflops == max(fake_gflops(Config.from_key(k)) or 0 for k in measurer.measured)
    assert best_gflops >= 32
    assert [u.event for u in updates] == ["start"] + ["result"] * 20 + ["done"]
    assert updates[-1].line().startswith(f"[tune 1/1] {WORKLOAD.describe()} ({DENSE.name}): 20/20")


def test_budget_beyond_the_space_measures_each_config_once(tmp_path):
    measurer = FakeMeasurer()
    summary = tune([(DENSE, WORKLOAD)], measurer, tmp_path / "r.json", TARGET, 100, progress=None)
    assert len(measurer.measured) == SPACE_SIZE == len(set(measurer.measured))
    assert summary.tasks[0].statuses == {"ok": 40, "crash": 8}


def test_resume_reuses_records_and_skips_done_tasks(tmp_path):
    path = tmp_path / "r.json"
    other = DenseWorkload(4, 16, 8)
    tasks = [(DENSE, WORKLOAD), Task(DENSE, other)]
    with pytest.raises(KeyboardInterrupt):  # interrupted in the first task
        tune(tasks, FakeMeasurer(stop_after=7), path, TARGET, 12, batch=4, progress=None)
    first = keys_in_file(path)
    assert len(first) == 7
    assert Records(path).done(DENSE.name, WORKLOAD, TARGET) is None

    measurer = FakeMeasurer()
    summary = tune(tasks, measurer, path, TARGET, 12, batch=4, progress=None)
    assert not set(measurer.measured[:5]) & set(first)  # the first task continues ...
    assert [(t.measured, t.total) for t in summary.tasks] == [(5, 12), (12, 12)]  # ... to 12
    for key, count in Counter(keys_in_file(path)[:12]).items():
        assert count == 1, key

    measurer = FakeMeasurer()
    summary = tune(tasks, measurer, path, TARGET, 12, progress=None)
    assert measurer.measured == []
    assert [t.status for t in summary.tasks] == ["skipped", "skipped"]
    assert summary.tasks[0].best is not None

    measurer = FakeMeasurer()  # a larger budget continues a finished task
    summary = tune(tasks[:1], measurer, path, TARGET, 15, progress=None)
    assert len(measurer.measured) == 3 and summary.tasks[0].total == 15


def test_no_resume_starts_over(tmp_path):
    path = tmp_path / "r.json"
    tune([(DENSE, WORKLOAD)], FakeMeasurer(), path, TARGET, 6, progress=None)
    measurer = FakeMeasurer()
    tune([(DENSE, WORKLOAD)], measurer, path, TARGET, 6, resume=False, progress=None)
    assert len(measurer.measured) == 6


def test_untimed_measurer_samples_and_records(tmp_path):
    updates = []
    summary = tune(
        [(DENSE, WORKLOAD)],
        FakeMeasurer(timed=False),
        tmp_path / "r.json",
        "arm-cpu",
        10,
        progress=updates.append,
        plot_dir=tmp_path / "plots",
    )
    recs = Records(tmp_path / "r.json")
    assert len(recs) == 10 and all(r.seconds is None for r in recs)
    assert recs.best(WORKLOAD, "arm-cpu") is None
    assert summary.tasks[0].plot is None  # no speed to plot
    assert "correctness only (qemu): emulated time is not speed" in updates[-1].line()


def test_plot_written_per_task(tmp_path):
    summary = tune(
        [(DENSE, WORKLOAD), (DENSE, DenseWorkload(4, 16, 8))],
        FakeMeasurer(),
        tmp_path / "r.json",
        TARGET,
        10,
        progress=None,
        plot_dir=tmp_path / "plots",
    )
    plots = [t.plot for t in summary.tasks]
    assert len(set(plots)) == 2
    for plot in plots:
        assert plot.parent == tmp_path / "plots"
        assert plot.read_bytes().startswith(b"\x89PNG")
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == sorted(p.name for p in plots)


KILLED_RUN = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[1])
    from tune_templates import DENSE, WORKLOAD
    from tilecc.schedules.tune import LocalMeasurer, tune
    with LocalMeasurer({"kind": "llvm"}, timeout_s=30, min_repeat_ms=1) as measurer:
        tune([(DENSE, WORKLOAD)], measurer, sys.argv[2], "x86/test", 10, batch=4, progress=None)
    """
)


def test_kill_9_loses_nothing_and_resume_completes(tmp_path):
    path = tmp_path / "r.json"
    here = str(Path(__file__).parent)
    proc = subprocess.Popen([sys.executable, "-c", KILLED_RUN, here, str(path)])
    deadline = time.monotonic() + 120
    while not (path.exists() and len(path.read_bytes().splitlines()) >= 2):
        assert proc.poll() is None, "the tuning run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    workers = psutil.Process(proc.pid).children(recursive=True)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    _, alive = psutil.wait_procs(workers, timeout=10)  # the worker follows its parent
    assert alive == []

    lines = path.read_text().splitlines()
    assert all(json.loads(line)["status"] == "ok" for line in lines)
    before = keys_in_file(path)
    assert 2 <= len(before) < 10

    with LocalMeasurer({"kind": "llvm"}, timeout_s=30, min_repeat_ms=1) as measurer:
        summary = tune([(DENSE, WORKLOAD)], measurer, path, TARGET, 10, batch=4, progress=None)
    after = keys_in_file(path)
    assert after[: len(before)] == before
    assert len(after) == 10 == len(set(after))
    assert summary.tasks[0].measured == 10 - len(before)
    assert Records(path).done(DENSE.name, WORKLOAD, TARGET) == 10
