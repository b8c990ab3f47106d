"""The measuring subprocess: `python -m tilecc.schedules.tune.worker SETUP_JSON`.

Protocol (JSON, one object per line; measure.py is the other end):
    worker -> parent   {"ready": true}                       once TVM is imported
    parent -> worker   {"template": name, "workload": key, "config": {...}}
    worker -> parent   {"status": ..., "seconds": ..., "gflops": ..., "error": ...}
    parent closes stdin                                      the worker exits
One request is answered before the next is sent. A candidate that crashes or hangs this process
is the parent's to notice (EOF, or no reply in time) and to name; everything else (a failing
build, a wrong answer) is answered here.

SETUP_JSON: {"mode": "time" | "qemu", "target": {...}, "host_target": {...}, "lanes": int,
"repeat": int, "number": int, "min_repeat_ms": int, "runner": "module:function",
"cross_compiler": str, "sys_path": [...], "parent_pid": int}.

The protocol owns file descriptor 1: anything else that writes to stdout (Python prints, LLVM or
TVM C++ logging) is sent to stderr, which the parent keeps for crash reports.
"""

from __future__ import annotations

import faulthandler
import importlib
import json
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    setup = json.loads((argv if argv is not None else sys.argv[1:])[0])
    protocol = _take_stdout()
    _exit_with_parent(setup["parent_pid"])
    # Templates named "module:ATTR" may live where only the parent's sys.path finds them.
    sys.path[:0] = [p for p in setup.get("sys_path", []) if p not in sys.path]
    job = Job(setup)
    # Python stacks on stderr when a candidate segfaults, or on SIGUSR1 from a parent about to
    # kill a candidate that hangs: the parent names the frame in its crash / timeout report.
    # Enabled after TVM is imported, so that its own crash handler is chained, not replaced.
    faulthandler.enable()
    faulthandler.register(signal.SIGUSR1)
    _send(protocol, {"ready": True})
    for line in sys.stdin:
        if line.strip():
            _send(protocol, job.measure(json.loads(line)))
    return 0


def _take_stdout():
    """A private copy of fd 1 for the protocol; fd 1 itself (and sys.stdout) go to stderr."""
    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return protocol


def _send(stream, obj) -> None:
    try:
        stream.write(json.dumps(obj) + "\n")
        stream.flush()
    except BrokenPipeError:  # the parent is gone: nobody wants the answer
        os._exit(0)


def _exit_with_parent(parent_pid: int) -> None:
    """Exit when the parent dies (even by kill -9, which closes no pipe while this process is
    busy in a hanging candidate): orphaned workers would otherwise hold a core forever."""

    def watch():
        while True:
            if os.getppid() != parent_pid:
                os._exit(3)
            time.sleep(0.5)

    threading.Thread(target=watch, daemon=True).start()


def short_error(err: BaseException) -> str:
    """`Type: first line of the message`, at most 300 characters (records hold short text)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = f"{type(err).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    return text if len(text) <= 300 else text[:297] + "..."


def link_error(err: RuntimeError) -> str:
    """The cross-link failure with its command line (apache/tvm#11143: shown nowhere else)."""
    text = str(err)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    command = next((line for line in lines if line.startswith("Command line:")), "")
    output = [line for line in lines if line not in ("Compilation error:", command)]
    detail = output[0] if output else ""  # the linker's first complaint is the specific one
    return f"cross-link failed: {detail} | {command}"[:600]


class Job:
    """Builds, checks and (in "time" mode) times candidates; one instance per worker."""

    def __init__(self, setup: dict):
        import tvm

        from . import kernel

        self.tvm, self.kernel, self.setup = tvm, kernel, setup
        self.target = tvm.target.Target(setup["target"])
        self.host_target = tvm.target.Target(setup.get("host_target") or setup["target"])
        self.lanes = int(setup["lanes"])
        self.problems: dict[tuple[str, str], object] = {}  # the reference is costly: once each

    def measure(self, request: dict) -> dict:
        from ..registry import get_template
        from ..space import Config
        from ..workload import workload_from_key

        try:
            template = get_template(request["template"])
            workload = workload_from_key(request["workload"])
            cfg = Config(request["config"])
            problem = self._problem(template, workload)
            packed = self.kernel.packed_weight(
                template, workload, cfg, problem.weight, self.host_target
            )
            func = self.kernel.scheduled_kernel(
                template, workload, cfg, self.lanes, packed.shape, self.target
            )
            if self.setup["mode"] == "qemu":
                return self._run_qemu(func, workload, problem, packed)
            lib = self.tvm.compile(self.tvm.IRModule({"main": func}), target=self.target)
        except Exception as err:  # noqa: BLE001 - any failure to build is this candidate's
            return _result("build_error", error=short_error(err))
        return self._run_local(lib, workload, problem, packed)

    def _problem(self, template, workload):
        from ..int8_dot import target_features, weight_max

        key = (template.name, workload.key())
        if key not in self.problems:
            most = weight_max(workload.dtype, target_features(self.target))
            self.problems[key] = self.kernel.problem(template, workload, most)
        return self.problems[key]

    def _run_local(self, lib, workload, problem, packed) -> dict:
        tvm, dev = self.tvm, self.tvm.cpu()
        try:
            args = [tvm.runtime.tensor(problem.data, dev), tvm.runtime.tensor(packed, dev)]
            out = tvm.runtime.empty(workload.out_shape(), workload.out_dtype, dev)
            lib(*args, out)
            if why := self.kernel.mismatch(out.numpy(), problem.expected):
                return _result("wrong_result", error=why)
            timer = lib.mod.time_evaluator(
                "main",
                dev,
                number=int(self.setup["number"]),
                repeat=int(self.setup["repeat"]),
                min_repeat_ms=int(self.setup["min_repeat_ms"]),
            )
            times = sorted(timer(*args, out).results)
        except Exception as err:  # noqa: BLE001
            return _result("run_error", error=short_error(err))
        seconds = times[len(times) // 2]  # the median (upper one for an even count)
        return _result("ok", seconds=seconds, gflops=workload.flops() / seconds / 1e9)

    def _run_qemu(self, func, workload, problem, packed) -> dict:
        tvm = self.tvm
        module, attr = self.setup["runner"].split(":", 1)
        runner = getattr(importlib.import_module(module), attr)
        with tempfile.TemporaryDirectory(prefix="tilecc-tune-") as tmp:
            so_path = Path(tmp) / "kernel.so"
            exe = tvm.compile(
                self.kernel.relax_wrapper(func, workload, packed.shape), target=self.target
            )
            fcompile = tvm.support.cc.cross_compiler(self.setup["cross_compiler"])
            try:
                exe.export_library(str(so_path), fcompile=fcompile)
            except RuntimeError as err:  # the linker's command, not just "Compilation error"
                return _result("build_error", error=link_error(err))
            try:
                (got,) = runner(so_path, [problem.data, packed], num_outputs=1)
            except Exception as err:  # noqa: BLE001 - the runner names what went wrong
                status = "crash" if "crashed" in str(err) else "run_error"
                return _result(status, error=short_error(err))
        if why := self.kernel.mismatch(got, problem.expected):
            return _result("wrong_result", error=why)
        return _result("ok")  # emulated time says nothing about a phone's: not recorded


def _result(status: str, seconds=None, gflops=None, error: str = "") -> dict:
    return {"status": status, "seconds": seconds, "gflops": gflops, "error": error}


if __name__ == "__main__":
    sys.exit(main())
