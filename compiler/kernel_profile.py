"""Per-kernel latency of a model on this host, measured inside the model's own run.

The Relax VM calls an instrument function before and after every call it makes
(`VirtualMachine.set_instrument`); stamping the clock in both gives each kernel's time as the
model runs it: on the model's own inputs, with the caches as the kernels before it left them and
the thread pool awake. So the kernel times add up to the model's latency, less the VM's own work
between calls (a few microseconds a call), which timing each kernel alone on fresh arguments
does not: there every kernel starts cold. Each kernel's time is the median over runs.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class KernelTime:
    name: str
    calls: int  # calls per run of the model
    ms_per_call: float
    arg_shapes: tuple  # ((shape, dtype), ...) of the tensor arguments of its first call

    @property
    def total_ms(self) -> float:
        return self.calls * self.ms_per_call


def _tensor_shapes(args) -> tuple:
    """((shape, dtype), ...) of the arguments that are tensors."""
    shapes = []
    for arg in args:
        if hasattr(arg, "shape") and hasattr(arg, "dtype"):
            shapes.append((tuple(int(d) for d in arg.shape), str(arg.dtype)))
    return tuple(shapes)


@dataclass(frozen=True)
class Profile:
    kernels: list[KernelTime]  # slowest total first
    run_ms: float  # median wall time of the profiled runs, hook included

    @property
    def kernel_ms(self) -> float:
        return sum(k.total_ms for k in self.kernels)


def profile_kernels(vm, args: list, repeat: int = 10, warmup: int = 2) -> list[KernelTime]:
    """Every function that `vm`'s "main" calls (fused kernels and VM builtins), called with
    `args` (tvm tensors) `repeat` times after `warmup` runs; slowest total first."""
    return profile_model(vm, args, repeat, warmup).kernels


def profile_model(vm, args: list, repeat: int = 10, warmup: int = 2) -> Profile:
    """`profile_kernels`, and the median wall time of the same runs: on a host whose speed
    drifts, the kernel times are read against the runs they were taken in."""
    from tvm.runtime.vm import VMInstrumentReturnKind

    started: list[float] = []
    per_run: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    shapes: dict[str, tuple] = {}

    def instrument(func, symbol, before_run, ret_value, *call_args):
        now = time.perf_counter()
        if before_run:
            started.append(now)
            if symbol not in shapes:
                shapes[symbol] = _tensor_shapes(call_args)
        else:
            per_run[symbol] += now - started.pop()
            calls[symbol] += 1
        return VMInstrumentReturnKind.NO_OP

    main = vm["main"]
    for _ in range(warmup):
        main(*args)
    vm.set_instrument(instrument)
    totals: dict[str, list[float]] = defaultdict(list)
    runs = []
    try:
        for _ in range(repeat):
            per_run.clear()
            start = time.perf_counter()
            main(*args)
            runs.append(time.perf_counter() - start)
            for symbol, seconds in per_run.items():
                totals[symbol].append(seconds)
    finally:
        vm.set_instrument(None)
    times = []
    for symbol, samples in totals.items():
        count = calls[symbol] // repeat
        ms = float(np.median(samples)) * 1e3 / max(count, 1)
        times.append(KernelTime(symbol, count, ms, shapes[symbol]))
    kernels = sorted(times, key=lambda k: -k.total_ms)
    return Profile(kernels, float(np.median(runs)) * 1e3)
