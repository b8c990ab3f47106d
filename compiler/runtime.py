"""Load and run a `.so` that `tilecc compile` wrote, on this host or through its target's runner.

Inputs are checked against the metadata embedded in the file before anything runs, so a wrong
name, shape or dtype is reported as such rather than as a crash inside a kernel.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from tilecc.targets import TargetSpec, target_for_machine

from .build import METADATA_FORMAT, METADATA_FUNC
from .errors import InputError, ModelError
from .frontend_onnx import TensorInfo

_ELF_MACHINES = {62: "x86_64", 183: "aarch64"}
NPU_REPORT_FUNC = "tilecc_npu_report"
NPU_RESET_FUNC = "tilecc_npu_reset"


def elf_machine(path: Path) -> str:
    """`x86_64` or `aarch64`, read from the ELF header of a shared library."""
    with open(path, "rb") as f:
        header = f.read(20)
    if len(header) < 20 or header[:4] != b"\x7fELF":
        raise ModelError(f"{path}: not a shared library built by tilecc (no ELF header)")
    machine = int.from_bytes(header[18:20], "little")
    if machine not in _ELF_MACHINES:
        raise ModelError(f"{path}: built for an unknown machine (ELF e_machine={machine})")
    return _ELF_MACHINES[machine]


class CompiledModel:
    """A tilecc `.so`: its signature, and `run(inputs) -> outputs` on its own target."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"{self.path}: no such file")
        self.target: TargetSpec = target_for_machine(elf_machine(self.path))
        self._vm = None
        self._lib = None
        # What the simulated NPU counted, after a run of a model with NPU subgraphs
        # (targets/npu/report.py formats it); None otherwise.
        self.npu_report: dict | None = None
        self.meta = self._read_metadata()
        self.inputs = [TensorInfo.from_json(i) for i in self.meta["inputs"]]
        self.outputs = [TensorInfo.from_json(o) for o in self.meta["outputs"]]

    def _read_metadata(self) -> dict:
        if self.target.runner is None:
            text = str(self._host_vm()[METADATA_FUNC]())
        else:
            text = self.target.read_metadata(self.path)
        meta = json.loads(text)
        if meta.get("format") != METADATA_FORMAT:
            raise ModelError(f"{self.path}: unknown metadata format {meta.get('format')!r}")
        return meta

    def _host_vm(self):
        if self._vm is None:
            import tvm
            from tvm import relax

            try:
                lib = _load_fresh(self.path)
            except Exception as exc:
                raise ModelError(f"{self.path}: cannot load ({str(exc).splitlines()[0]})") from exc
            self._lib = lib
            self._vm = relax.VirtualMachine(lib, tvm.cpu())
        return self._vm

    def check_inputs(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Inputs in signature order; every mismatch is an InputError naming the input."""
        names = [i.name for i in self.inputs]
        if missing := [n for n in names if n not in inputs]:
            raise InputError(f"{self.path}: missing input(s) {', '.join(missing)}")
        if extra := sorted(set(inputs) - set(names)):
            raise InputError(
                f"{self.path}: unknown input(s) {', '.join(extra)} (inputs: {', '.join(names)})"
            )
        ordered = []
        for info in self.inputs:
            value = np.asarray(inputs[info.name])
            if tuple(value.shape) != tuple(info.shape):
                raise InputError(
                    f"{self.path}: input '{info.name}' has shape {list(value.shape)}, "
                    f"the model was compiled for {list(info.shape)}"
                )
            if str(value.dtype) != info.dtype:
                raise InputError(
                    f"{self.path}: input '{info.name}' has dtype {value.dtype}, "
                    f"the model expects {info.dtype}"
                )
            ordered.append(np.ascontiguousarray(value))
        return ordered

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ordered = self.check_inputs(inputs)
        if self.target.runner is None:
            results = self._run_host(ordered)
        else:
            results = self.target.runner(
                self.path, ordered, num_outputs=len(self.outputs), report_to=self._keep_report
            )
        return {info.name: value for info, value in zip(self.outputs, results, strict=True)}

    def _run_host(self, ordered):
        import tvm

        main = self._host_vm()["main"]
        has_npu = self._lib.implements_function(NPU_REPORT_FUNC, True)
        if has_npu:  # the counters then cover exactly this run
            self._lib.get_function(NPU_RESET_FUNC, True)()
        out = main(*[tvm.runtime.tensor(a) for a in ordered])
        if has_npu:
            self._keep_report(str(self._lib.get_function(NPU_REPORT_FUNC, True)()))
        return flatten_outputs(out)

    def _keep_report(self, text: str) -> None:
        self.npu_report = json.loads(text)

    def host_vm(self):
        """The Relax VM running this `.so` on this host, for timing and profiling."""
        if self.target.runner is not None:
            raise ModelError(f"{self.path}: built for {self.target.name}; cannot time it here")
        return self._host_vm()

    def host_callable(self):
        """`f(*tvm_tensors)` for timing loops on this host (no input checks, no copies)."""
        return self.host_vm()["main"]

    def host_args(self, inputs: dict[str, np.ndarray]) -> list:
        """`inputs` checked and converted to tvm tensors once, for `host_callable`."""
        import tvm

        return [tvm.runtime.tensor(a) for a in self.check_inputs(inputs)]


def _load_fresh(path: Path):
    """Load a private copy: dlopen returns the library already mapped for a path, so a `.so`
    rewritten in place (compile, load, compile again to the same path) would load stale code."""
    import tvm

    fd, copy = tempfile.mkstemp(prefix=f"{path.stem}-", suffix=".so")
    os.close(fd)
    try:
        shutil.copyfile(path, copy)
        return tvm.runtime.load_module(copy)
    finally:
        os.unlink(copy)  # the mapping outlives the name


def flatten_outputs(value) -> list[np.ndarray]:
    if hasattr(value, "numpy"):
        return [value.numpy()]
    flat = []
    for item in value:
        flat.extend(flatten_outputs(item))
    return flat


def random_inputs(infos: list[TensorInfo], seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded real-valued inputs (uniform [0, 1) floats, small non-negative integers)."""
    rng = np.random.default_rng(seed)
    values = {}
    for info in infos:
        dtype = np.dtype(info.dtype)
        if dtype.kind == "f":
            values[info.name] = rng.random(info.shape, dtype=np.float32).astype(dtype)
        elif dtype.kind == "b":
            values[info.name] = rng.integers(0, 2, info.shape).astype(dtype)
        else:
            values[info.name] = rng.integers(0, 4, info.shape).astype(dtype)
    return values
