"""Measuring candidates, behind one interface so that the tuner does not care where.

`Measurer.measure(candidates)` returns one `MeasureResult` per candidate, in order, and calls
`on_result` as each arrives (the tuner writes its record at once). `timed` says whether "ok"
results carry a time; `lanes` is the target's float32 SIMD width that templates schedule for.
A remote measurer (TVM RPC tracker) is one more subclass.

The two here run every candidate in an isolated worker subprocess (worker.py), one at a time
(measurements on a 2-core host must not share it): a candidate that segfaults or hangs kills
only the worker, which is restarted for the next one (apache/tvm#10240).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tilecc.compiler.errors import TilecError

from ..space import Config

QEMU_NOTE = "correctness only (qemu): emulated time is not speed"


class MeasurerError(TilecError):
    """The measuring worker cannot start at all (not the fault of any one candidate)."""


@dataclass(frozen=True)
class Candidate:
    """One configuration of one template for one workload."""

    template_name: str
    workload: Any  # a workload from schedules/workload.py
    config: Config


@dataclass(frozen=True)
class MeasureResult:
    """What measuring a candidate gave; `status` is one of records.STATUSES."""

    candidate: Candidate
    status: str
    seconds: float | None = None  # median; None unless "ok" and timed
    gflops: float | None = None
    error: str = ""  # short text for failures


class Measurer:
    """Base class: measure candidates, in order."""

    timed: bool = True
    lanes: int = 4
    note: str = ""  # shown with progress, e.g. why there are no times

    def measure(
        self,
        candidates: Sequence[Candidate],
        on_result: Callable[[MeasureResult], None] | None = None,
    ) -> list[MeasureResult]:
        raise NotImplementedError

    def close(self) -> None:
        """Release workers or connections; measuring again restarts them."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def float32_lanes(target: dict) -> int:
    """The fp32 SIMD width LLVM would vectorize for on `target` (16 AVX-512, 8 AVX2, 4 NEON)."""
    import tvm

    return max(1, tvm.target.codegen.llvm_get_vector_width(tvm.target.Target(target)) // 32)


class WorkerMeasurer(Measurer):
    """Measures through a persistent worker subprocess, restarted after a crash or timeout."""

    def __init__(self, setup: dict, timeout_s: float, threads: int, startup_timeout_s=120.0):
        self.timeout_s = float(timeout_s)
        self.threads = int(threads)
        self.startup_timeout_s = startup_timeout_s
        self._setup = {**setup, "sys_path": [p or os.getcwd() for p in sys.path]}
        self._proc: subprocess.Popen | None = None
        self._stderr = None
        self._buffer = b""

    def measure(self, candidates, on_result=None) -> list[MeasureResult]:
        results = []
        for candidate in candidates:
            result = self._measure_one(candidate)
            results.append(result)
            if on_result is not None:
                on_result(result)
        return results

    def close(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()  # the worker's cue to exit
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=10)
            self._discard()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __del__(self):
        with contextlib.suppress(Exception):
            self.close()

    # --- one candidate -----------------------------------------------------------------------

    def _measure_one(self, candidate: Candidate) -> MeasureResult:
        if self._proc is None or self._proc.poll() is not None:
            self._start()
        self._stderr.truncate(0)  # keep only this candidate's stderr, for its crash report
        request = {
            "template": candidate.template_name,
            "workload": candidate.workload.key(),
            "config": dict(candidate.config),
        }
        try:
            self._proc.stdin.write((json.dumps(request) + "\n").encode())
            self._proc.stdin.flush()
            reply = self._read_reply(self.timeout_s)
        except (EOFError, BrokenPipeError):
            return MeasureResult(candidate, "crash", error=self._died())
        except TimeoutError:
            where = self._where_stuck()
            self._discard()
            error = f"no result after {self.timeout_s:g} s{where}; worker killed"
            return MeasureResult(candidate, "timeout", error=error)
        return MeasureResult(
            candidate, reply["status"], reply["seconds"], reply["gflops"], reply["error"]
        )

    def _died(self) -> str:
        code = self._proc.wait()
        self._discard()  # and whatever it had started
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        if where := _innermost_frame(self._stderr_text()):
            return f"worker died ({how}) {where}"
        tail = self._stderr_tail()
        return f"worker died ({how})" + (f": {tail}" if tail else "")

    def _where_stuck(self) -> str:
        """`, stuck in func (file:line)`: the worker dumps its stack on SIGUSR1."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._proc.pid, signal.SIGUSR1)
            time.sleep(0.2)
        where = _innermost_frame(self._stderr_text())
        return f", stuck {where}" if where else ""

    # --- the worker process ------------------------------------------------------------------

    def _start(self) -> None:
        if self._stderr is None:
            # Unlinked at once; O_APPEND so that truncating it between candidates works
            # while the worker keeps writing through its inherited descriptor.
            fd, path = tempfile.mkstemp(prefix="tilecc-tune-worker-", suffix=".err")
            os.close(fd)
            self._stderr = open(path, "a+b")  # noqa: SIM115 - lives as long as the measurer
            os.unlink(path)
        env = {**os.environ, "TVM_NUM_THREADS": str(self.threads)}
        setup = {**self._setup, "parent_pid": os.getpid()}
        self._buffer = b""
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tilecc.schedules.tune.worker", json.dumps(setup)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            # Its own process group: a timeout kills the worker and anything it started
            # (the cross linker, qemu) together.
            start_new_session=True,
        )
        try:
            self._read_reply(self.startup_timeout_s)
        except (EOFError, TimeoutError) as err:
            self._discard()
            raise MeasurerError(
                f"the measuring worker did not start ({type(err).__name__}): "
                f"{self._stderr_tail(lines=20)}"
            ) from err

    def _read_reply(self, timeout: float) -> dict:
        """The worker's next line as JSON; EOFError if it died, TimeoutError if it is late."""
        fd = self._proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            ready, _, _ = select.select([fd], [], [], remaining)
            if ready:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    raise EOFError
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return json.loads(line)

    def _discard(self) -> None:
        """Kill the worker's process group (the worker, a linker or qemu it started), reap
        it and close its pipes; the next candidate starts a fresh worker."""
        proc, self._proc = self._proc, None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            with contextlib.suppress(OSError):
                pipe.close()

    def _stderr_text(self) -> str:
        self._stderr.flush()
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def _stderr_tail(self, lines: int = 3) -> str:
        text = self._stderr_text()
        kept = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
        return " | ".join(kept)[-600:]


def _innermost_frame(text: str) -> str | None:
    """`in func (file.py:line)`: the newest Python frame of the worker's main thread in a
    faulthandler dump (the worker enables it), or None when there is no dump."""
    for block in re.split(r"\n(?=(?:Current thread|Thread) 0x)", text):
        frames = re.findall(r'File "(.+?)", line (\d+) in (\S+)', block)
        if any(func == "main" and path.endswith("worker.py") for path, _, func in frames):
            path, line, func = frames[0]
            return f"in {func} ({Path(path).name}:{line})"
    return None


class LocalMeasurer(WorkerMeasurer):
    """Builds each candidate for `target` (a TVM target dict for this host), checks it against
    the template's reference once, and times it with `time_evaluator` (median of `repeat` runs,
    each at least `min_repeat_ms` long and of at least `number` calls), on `threads` threads."""

    timed = True

    def __init__(
        self,
        target: dict,
        timeout_s: float = 60.0,
        repeat: int = 3,
        number: int = 1,
        threads: int = 2,
        min_repeat_ms: int = 20,
        lanes: int | None = None,
    ):
        target = {**target, "num-cores": target.get("num-cores", threads)}
        self.lanes = lanes or float32_lanes(target)
        setup = {
            "mode": "time",
            "target": target,
            "lanes": self.lanes,
            "repeat": repeat,
            "number": number,
            "min_repeat_ms": min_repeat_ms,
        }
        super().__init__(setup, timeout_s, threads)


class QemuMeasurer(WorkerMeasurer):
    """Correctness only: builds each candidate for aarch64, cross-links it inside a minimal
    Relax module and runs it under qemu-aarch64 with `runner` ("module:function" or the
    function itself, called as runner(so_path, inputs, num_outputs=1)). Emulated time is not
    a phone's time, so "ok" results carry none (`timed` is False)."""

    timed = False
    note = QEMU_NOTE

    def __init__(
        self,
        target: dict,
        runner: str | Callable,
        cross_compiler: str,
        timeout_s: float = 300.0,
        threads: int = 2,
        lanes: int | None = None,
    ):
        target = dict(target)
        self.lanes = lanes or float32_lanes(target)
        if callable(runner):
            runner = f"{runner.__module__}:{runner.__qualname__}"
        setup = {
            "mode": "qemu",
            "target": target,
            # The weight transform runs on this host (at compile time, as in a real build).
            "host_target": {"kind": "llvm"},
            "lanes": self.lanes,
            "runner": runner,
            "cross_compiler": cross_compiler,
        }
        super().__init__(setup, timeout_s, threads)
