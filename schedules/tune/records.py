"""The tuning records file: JSON lines, one per measurement, plus one per finished task.

A measurement line:
    {"template": "dense", "workload": "<workload key>", "target": "x86/emeraldrapids",
     "config": {...}, "status": "ok", "seconds": 1.2e-05, "gflops": 35.1, "error": "",
     "timestamp": "2025-01-01T12:00:00+00:00"}
`status` is one of STATUSES; `seconds` (the median) and `gflops` are null unless the status is
"ok" and the measurer timed the kernel (a correctness-only measurer leaves them null).

A done line marks a task (template, workload, target) as finished with a trial budget, so a
resumed run tells a finished task from an interrupted one (apache/tvm#2560):
    {"done": true, "template": ..., "workload": ..., "target": ..., "trials": 64,
     "measured": 64, "timestamp": ...}

Every line is appended with one write, then flushed and fsync'ed: a `kill -9` (or a candidate
that takes the machine down) loses at most the line being written. Loading skips a line that is
not a whole record and says which line it was; it never fails.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..space import Config

STATUSES = ("ok", "build_error", "run_error", "crash", "timeout", "wrong_result")
MEASUREMENT_FIELDS = ("template", "workload", "target", "config", "status")
DONE_FIELDS = ("template", "workload", "target", "trials")


@dataclass(frozen=True)
class Record:
    """One measurement of one configuration."""

    template: str
    workload: str  # the workload's key()
    target: str
    config: Config
    status: str
    seconds: float | None = None
    gflops: float | None = None
    error: str = ""
    timestamp: str = ""

    @property
    def timed(self) -> bool:
        return self.status == "ok" and self.seconds is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "template": self.template,
            "workload": self.workload,
            "target": self.target,
            "config": dict(self.config),
            "status": self.status,
            "seconds": self.seconds,
            "gflops": self.gflops,
            "error": self.error,
            "timestamp": self.timestamp,
        }


def _key(workload) -> str:
    """A workload key from a key or from a workload."""
    return workload if isinstance(workload, str) else workload.key()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Records:
    """A records file, loaded once and appended to line by line.

    `warnings` lists the lines that were skipped on load ("R.json:17: ..."). A file that does
    not exist yet is created by the first append.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.warnings: list[str] = []
        self._records: list[Record] = []
        self._done: dict[tuple[str, str, str], int] = {}
        self.load()

    # --- reading ---------------------------------------------------------------------------

    def load(self) -> None:
        """(Re)read the file; a missing file is an empty one."""
        self.warnings, self._records, self._done = [], [], {}
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8", errors="replace") as f:
            for number, line in enumerate(f, start=1):
                if line.strip():
                    self._load_line(line, number)

    def _load_line(self, line: str, number: int) -> None:
        where = f"{self.path}:{number}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            self.warnings.append(f"{where}: not a JSON record ({err.msg}), skipped")
            return
        if not isinstance(obj, dict):
            self.warnings.append(f"{where}: not a JSON object, skipped")
            return
        if obj.get("done") is True:
            if missing := [f for f in DONE_FIELDS if f not in obj]:
                self.warnings.append(f"{where}: done line without {missing}, skipped")
                return
            task = (obj["template"], obj["workload"], obj["target"])
            self._done[task] = max(self._done.get(task, 0), int(obj["trials"]))
            return
        if missing := [f for f in MEASUREMENT_FIELDS if f not in obj]:
            self.warnings.append(f"{where}: not a tuning record (missing {missing}), skipped")
            return
        if obj["status"] not in STATUSES:
            self.warnings.append(f"{where}: unknown status {obj['status']!r}, skipped")
            return
        try:
            record = Record(
                template=str(obj["template"]),
                workload=str(obj["workload"]),
                target=str(obj["target"]),
                config=Config(obj["config"]),
                status=obj["status"],
                seconds=_number(obj.get("seconds")),
                gflops=_number(obj.get("gflops")),
                error=str(obj.get("error") or ""),
                timestamp=str(obj.get("timestamp") or ""),
            )
        except (TypeError, ValueError, AttributeError) as err:
            self.warnings.append(f"{where}: malformed field ({err}), skipped")
            return
        self._records.append(record)

    def __iter__(self):
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def task_records(self, template: str, workload, target: str) -> list[Record]:
        """Every measurement of one task, in file order."""
        key = _key(workload)
        return [
            r
            for r in self._records
            if r.template == template and r.workload == key and r.target == target
        ]

    def measured(self, template: str, workload, target: str) -> set[str]:
        """Config keys measured for a task, whatever their status."""
        return {r.config.key() for r in self.task_records(template, workload, target)}

    def done(self, template: str, workload, target: str) -> int | None:
        """The largest trial budget a task was finished with, or None if it never finished."""
        return self._done.get((template, _key(workload), target))

    def best(self, workload, target: str) -> tuple[str, Config, float] | None:
        """(template name, config, seconds) of the fastest timed "ok" record for a workload on
        a target, over all templates; None when there is none."""
        key = _key(workload)
        timed = [r for r in self._records if r.timed and r.workload == key and r.target == target]
        if not timed:
            return None
        fastest = min(timed, key=lambda r: r.seconds)
        return fastest.template, fastest.config, fastest.seconds

    # --- writing ---------------------------------------------------------------------------

    def append(self, record: Record) -> None:
        """Append one measurement and keep it in memory."""
        if not record.timestamp:
            record = replace(record, timestamp=_now())
        self._write(record.to_json())
        self._records.append(record)

    def mark_done(self, template: str, workload, target: str, trials: int, measured: int) -> None:
        """Record that a task finished with budget `trials` (`measured` configs in total)."""
        key = _key(workload)
        self._write(
            {
                "done": True,
                "template": template,
                "workload": key,
                "target": target,
                "trials": trials,
                "measured": measured,
                "timestamp": _now(),
            }
        )
        task = (template, key, target)
        self._done[task] = max(self._done.get(task, 0), trials)

    def _write(self, obj: dict[str, Any]) -> None:
        line = (json.dumps(obj, separators=(", ", ": ")) + "\n").encode()
        created = not self.path.exists()
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            # A run killed mid-line leaves a tail without "\n"; start a fresh line so the
            # next record is not glued to it (the tail alone is reported and skipped on load).
            if not created and _ends_without_newline(fd):
                line = b"\n" + line
            # One write() on an O_APPEND descriptor: the line lands whole at the end.
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            _fsync_dir(self.path.parent)


def _number(value) -> float | None:
    return None if value is None else float(value)


def _ends_without_newline(fd: int) -> bool:
    size = os.fstat(fd).st_size
    return size > 0 and os.pread(fd, 1, size - 1) != b"\n"


def _fsync_dir(folder: Path) -> None:
    """Make a new file's directory entry durable too (the file's own fsync does not)."""
    fd = os.open(folder if str(folder) else ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
