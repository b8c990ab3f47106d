"""Run an aarch64 `.so` under qemu-aarch64 with the C++ runner `runner/tilecc_run.cc`.

The runner links the aarch64 builds of `libtvm_runtime.so` (the Relax VM) and `libtvm_ffi.so`,
taken from the same apache-tvm and apache-tvm-ffi versions as the host's compiler, so the `.so`
tilecc emits and the runtime that loads it always agree. Everything lands in
`cache_dir()/aarch64`: `lib/` (the two libraries), `bin/tilecc_run` (found through rpath
`$ORIGIN/../lib`). Tensors cross the emulator boundary as `.npy` files.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shlex
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

import numpy as np

from tilecc.compiler.assets import cache_dir, extract_member, pip_download
from tilecc.compiler.errors import ToolError

__all__ = [
    "CROSS_COMPILER",
    "QEMU",
    "SYSROOT",
    "ensure_aarch64_runtime",
    "qemu_aarch64",
    "read_metadata_aarch64",
]

CROSS_COMPILER = "aarch64-linux-gnu-g++"
QEMU = "qemu-aarch64"
# The cross toolchain's libc and libstdc++ (Debian/Ubuntu `g++-aarch64-linux-gnu`): qemu-aarch64 -L
# resolves the runner's dynamic loader and system libraries there.
SYSROOT = Path("/usr/aarch64-linux-gnu")
WHEEL_PLATFORM = "manylinux_2_28_aarch64"
# distribution -> the runtime library inside its aarch64 wheel.
RUNTIME_LIBS = {
    "apache-tvm": "tvm/lib/libtvm_runtime.so",
    "apache-tvm-ffi": "tvm_ffi/lib/libtvm_ffi.so",
}
RUNNER_SOURCE = Path(__file__).parent / "runner" / "tilecc_run.cc"


def _root() -> Path:
    return cache_dir() / "aarch64"


def _requirements() -> list[str]:
    """`name==version` of the host's TVM packages: the aarch64 libraries must be the same build."""
    return [f"{dist}=={metadata.version(dist)}" for dist in RUNTIME_LIBS]


def _run_tool(cmd: list[str]) -> subprocess.CompletedProcess:
    try:
        result = subprocess.run(cmd, capture_output=True, text=True)
    except FileNotFoundError as err:
        raise ToolError(f"{cmd[0]} not found; command: {shlex.join(cmd)}") from err
    if result.returncode != 0:
        tail = result.stderr.strip()[-2000:]
        raise ToolError(f"command failed (exit {result.returncode}): {shlex.join(cmd)}\n{tail}")
    return result


@contextmanager
def _locked(root: Path):
    """Serialize setup across processes (parallel test workers share one cache)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _ensure_libs(root: Path, progress: Callable[[str], None]) -> Path:
    lib_dir = root / "lib"
    stamp = lib_dir / ".versions"
    wanted = "\n".join(_requirements()) + "\n"
    have_all = all((lib_dir / Path(member).name).exists() for member in RUNTIME_LIBS.values())
    if have_all and stamp.exists() and stamp.read_text() == wanted:
        return lib_dir
    for requirement, member in zip(_requirements(), RUNTIME_LIBS.values(), strict=True):
        dist, version = requirement.split("==")
        # A wheel left by an interrupted setup is reused; pip checks nothing we would not.
        found = sorted(root.glob(f"{dist.replace('-', '_')}-{version}-*aarch64*.whl"))
        if found:
            wheel = found[0]
        else:
            progress(f"  downloading {requirement} ({WHEEL_PLATFORM} wheel)")
            wheel = pip_download(requirement, root, platform=WHEEL_PLATFORM)
        progress(f"  extracting {member}")
        extract_member(wheel, member, lib_dir / Path(member).name)
        wheel.unlink()  # ~100 MB, and the library is all tilecc needs from it
    stamp.write_text(wanted)
    return lib_dir


def _include_dirs() -> list[str]:
    """Header folders of the host's tvm_ffi package; the runner uses only the tvm-ffi C++ API."""
    import tvm_ffi.libinfo

    dirs = [tvm_ffi.libinfo.find_include_path(), tvm_ffi.libinfo.find_dlpack_include_path()]
    return list(dict.fromkeys(dirs))


def _ensure_runner(root: Path, lib_dir: Path, progress: Callable[[str], None]) -> Path:
    runner = root / "bin" / "tilecc_run"
    stamp = runner.with_name(".tilecc_run.stamp")
    # The runner is rebuilt when its source or the TVM versions (headers and libraries) change.
    source_sha = hashlib.sha256(RUNNER_SOURCE.read_bytes()).hexdigest()
    wanted = f"{source_sha} {' '.join(_requirements())}\n"
    if runner.exists() and stamp.exists() and stamp.read_text() == wanted:
        return runner
    runner.parent.mkdir(parents=True, exist_ok=True)
    tmp = runner.with_name(f".tilecc_run.{os.getpid()}")
    cmd = [CROSS_COMPILER, "-O2", "-std=c++17", "-Wall"]
    for include in _include_dirs():
        cmd += ["-isystem", include]  # -isystem: no warnings from the TVM headers
    cmd += [str(RUNNER_SOURCE), "-o", str(tmp), f"-L{lib_dir}", f"-Wl,-rpath-link,{lib_dir}"]
    # --no-as-needed: the runner calls nothing in libtvm_runtime.so directly, but loading it
    # registers the Relax VM that unpacks a model's bytecode.
    cmd += ["-Wl,--no-as-needed", "-ltvm_runtime", "-ltvm_ffi", "-Wl,-rpath,$ORIGIN/../lib"]
    progress(f"  cross-compiling {RUNNER_SOURCE.name} with {CROSS_COMPILER}")
    try:
        _run_tool(cmd)
        os.replace(tmp, runner)
    finally:
        tmp.unlink(missing_ok=True)
    stamp.write_text(wanted)
    return runner


def ensure_aarch64_runtime(progress: Callable[[str], None] = print) -> Path:
    """Fetch the aarch64 TVM runtime and build the runner, once; return the runner's path.

    Downloads happen only when the libraries are missing or the host's TVM versions changed; the
    runner is rebuilt only when `tilecc_run.cc` or those versions changed. A warm call only
    compares two stamps.
    """
    root = _root()
    with _locked(root):
        lib_dir = _ensure_libs(root, progress)
        return _ensure_runner(root, lib_dir, progress)


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr)


def _run_runner(args: list[str]) -> subprocess.CompletedProcess:
    """Run the runner under qemu; a failure raises ToolError with its error line and command."""
    runner = ensure_aarch64_runtime(progress=_to_stderr)
    if not SYSROOT.is_dir():
        raise ToolError(f"{SYSROOT} not found; install the aarch64 cross toolchain")
    cmd = [QEMU, "-L", str(SYSROOT), str(runner), *args]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True)
    except FileNotFoundError as err:
        raise ToolError(f"{QEMU} not found (install qemu-user): {shlex.join(cmd)}") from err
    if result.returncode == 0:
        return result
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("tilecc_run: error:")]
    if errors:
        what = errors[-1]
    elif result.returncode < 0:
        what = f"tilecc_run crashed ({signal.Signals(-result.returncode).name}): " + " | ".join(
            lines[-5:]
        )
    else:
        what = f"tilecc_run failed (exit {result.returncode}): " + " | ".join(lines[-5:])
    raise ToolError(f"{what}\ncommand: {shlex.join(cmd)}")


def qemu_aarch64(
    so_path: str | os.PathLike,
    inputs: list[np.ndarray],
    num_outputs: int | None = None,
    repeat: int = 0,
    report_to=None,
) -> list[np.ndarray]:
    """Run the `main` of an aarch64 `.so` on `inputs` under qemu-aarch64; return its outputs.

    Outputs come back in order, tuples flattened. `num_outputs`, if given, is checked. With
    `repeat` > 0, `main` runs that many times and the runner's median time (emulated, so only
    good for comparing builds with each other) is printed to stderr. A model with NPU subgraphs
    hands the simulator's report (JSON text) to `report_to`.
    """
    with tempfile.TemporaryDirectory(prefix="tilecc-qemu-") as tmp:
        args = [str(so_path), str(Path(tmp) / "out")]
        for i, array in enumerate(inputs):
            path = Path(tmp) / f"in{i}.npy"
            np.save(path, np.asarray(array, order="C"))  # the runner reads C order only
            args.append(str(path))
        if repeat > 0:
            args += ["--repeat", str(repeat)]
        result = _run_runner(args)
        if repeat > 0:
            sys.stderr.write(result.stderr)
        outputs = []
        while (path := Path(tmp) / "out" / f"out{len(outputs)}.npy").exists():
            outputs.append(np.load(path))
        if (report := Path(tmp) / "out" / "npu_report.json").exists() and report_to is not None:
            report_to(report.read_text())
    if num_outputs is not None and len(outputs) != num_outputs:
        raise ToolError(f"{so_path}: main returned {len(outputs)} outputs, expected {num_outputs}")
    return outputs


def read_metadata_aarch64(so_path: str | os.PathLike) -> str:
    """The JSON string returned by the model's `tilecc_metadata` function, run under qemu."""
    return _run_runner([str(so_path), "--info"]).stdout.rstrip("\n")
