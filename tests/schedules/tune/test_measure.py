"""Measurers against real workers: every failure is named, and measuring goes on after it."""

import pytest
from tune_templates import DENSE, TRAPS, WORKLOAD

from tilecc.schedules.space import Config
from tilecc.schedules.tune import Candidate, LocalMeasurer, QemuMeasurer
from tilecc.targets import get_target


def trap(behave, tile_n=8):
    return Candidate(TRAPS.name, WORKLOAD, Config({"behave": behave, "tile_n": tile_n}))


def test_crash_timeout_and_errors_are_named_and_later_candidates_measured():
    candidates = [
        trap("ok"),
        trap("segfault"),
        trap("ok", tile_n=4),  # on the restarted worker
        trap("hang"),
        trap("build_error"),
        trap("wrong"),
        trap("noisy"),  # prints to stdout: must not break the protocol
        trap("ok"),
    ]
    seen = []
    with LocalMeasurer({"kind": "llvm"}, timeout_s=5, min_repeat_ms=1) as measurer:
        results = measurer.measure(candidates, on_result=seen.append)
    assert seen == results
    assert [r.candidate for r in results] == candidates
    assert [r.status for r in results] == [
        "ok",
        "crash",
        "ok",
        "timeout",
        "build_error",
        "wrong_result",
        "ok",
        "ok",
    ]
    for r in results:
        if r.status == "ok":
            assert r.seconds > 0
            assert abs(r.gflops - WORKLOAD.flops() / r.seconds / 1e9) < 1e-9 * r.gflops
            assert r.error == ""
        else:
            assert r.seconds is None and r.gflops is None
    crash, timeout, build, wrong = (results[i].error for i in (1, 3, 4, 5))
    assert "SIGSEGV" in crash and "in _schedule (tune_templates.py:" in crash
    assert "after 5 s" in timeout and "stuck in _schedule (tune_templates.py:" in timeout
    assert build == "ValueError: deliberate build failure"
    assert "max abs error" in wrong


@pytest.mark.qemu
def test_qemu_measurer_checks_correctness_without_timing():
    arm = get_target("arm-cpu")
    target = arm.target_dict(2)
    measurer = QemuMeasurer(target, arm.runner, arm.cross_compiler, timeout_s=120)
    assert not measurer.timed and measurer.lanes == 4
    assert "emulated time is not speed" in measurer.note
    default = DENSE.space(WORKLOAD, measurer.lanes).default()
    with measurer:
        ok, wrong = measurer.measure(
            [Candidate(DENSE.name, WORKLOAD, default), trap("wrong", tile_n=4)]
        )
    assert (ok.status, ok.seconds, ok.gflops, ok.error) == ("ok", None, None, "")
    assert wrong.status == "wrong_result"
