"""The ONNX node suite's score, printed at the end of the session: how many selected cases ran,
passed and failed, the pass rate (expected failures count as failures), and every expected
failure with its reason."""

from __future__ import annotations

import re
from collections import Counter

from selection import EXPECTED_FAILURES, group_of

SUITE_FILE = "test_onnx_node_suite.py::"
_EXCLUDED = re.compile(r'matched exclude pattern "(.*)"')


def pytest_configure(config):
    # ONNX builds its node cases when the suite is collected; some overflow or divide on purpose.
    config.addinivalue_line("filterwarnings", r"ignore::RuntimeWarning:onnx\.backend\.test\..*")


def _test_name(nodeid: str) -> str:
    return nodeid.rsplit("::", 1)[-1]


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    stats = terminalreporter.stats
    ours = {
        key: [
            r for r in stats.get(key, []) if SUITE_FILE in r.nodeid and r.when in ("call", "setup")
        ]
        for key in ("passed", "failed", "error", "skipped")
    }
    if not any(ours.values()):
        return
    expected, other_skips = [], []
    for report in ours["skipped"]:
        match = _EXCLUDED.search(_skip_reason(report))
        (expected if match else other_skips).append((report, match))
    passed = len(ours["passed"])
    failed = len({r.nodeid for r in ours["failed"] + ours["error"]})
    selected = passed + failed + len(expected) + len(other_skips)
    scored = passed + failed + len(expected)
    rate = 100.0 * passed / scored if scored else 0.0

    write = terminalreporter.write_line
    terminalreporter.section("ONNX node tests")
    write(f"expected failures ({len(expected)}):")
    for report, match in sorted(expected, key=lambda item: item[0].nodeid):
        write(f"  {_test_name(report.nodeid)}: {EXPECTED_FAILURES.get(match.group(1), '?')}")
    for report in ours["failed"] + ours["error"]:
        write(f"  UNEXPECTED FAILURE {_test_name(report.nodeid)}")
    for report, _ in other_skips:
        write(f"  skipped {_test_name(report.nodeid)}: {_skip_reason(report)}")
    ran = Counter(
        group_of(_test_name(r.nodeid)) for r in ours["passed"] + ours["failed"] + ours["error"]
    )
    ran.update(group_of(_test_name(r.nodeid)) for r, _ in expected)
    good = Counter(group_of(_test_name(r.nodeid)) for r in ours["passed"])
    write("passed per group: " + ", ".join(f"{g} {good[g]}/{n}" for g, n in sorted(ran.items())))
    write(
        f"ONNX node tests: selected {selected}, passed {passed}, "
        f"expected failures {len(expected)} (listed above), failed {failed}, "
        f"pass rate {passed}/{scored} = {rate:.1f}%"
    )
