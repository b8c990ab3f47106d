"""Per-kernel latency of a model on this host: which fused TIR kernels take the time.

TVM 0.27's Relax VM has no profiler, so this lowers the model to fused TIR kernels the way the
build does, reads every `call_tir` in "main" (kernel, argument shapes), builds the kernels alone,
and times each with `time_evaluator` on random arguments. The sum tracks the model's latency
minus VM overhead; the ranking says where tuning pays.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import tvm
from tvm import relax
from tvm.relax.backend.cpu_generic import pipeline as cpu_generic

from tilecc.targets import TargetSpec

from .build import optimize, template_plan
from .frontend_onnx import ImportedModel
from .pipeline import legalize_passes


@dataclass(frozen=True)
class KernelTime:
    name: str
    calls: int
    ms_per_call: float
    arg_shapes: tuple

    @property
    def total_ms(self) -> float:
        return self.calls * self.ms_per_call


def fused_kernels(imported: ImportedModel, spec: TargetSpec, target: tvm.target.Target, plan=None):
    """(lowered module, Counter of (kernel name, arg shapes/dtypes)) as the build would fuse
    and schedule: the target's graph pipeline, TVM's dispatch stage, then legalization with
    `plan`'s kernel templates (default: template defaults)."""
    mod = optimize(imported, spec)
    plan = plan or template_plan(spec)
    with target:
        passes = cpu_generic.library_dispatch_passes(target) + legalize_passes(plan)
        mod = tvm.transform.Sequential(passes)(mod)
    calls: Counter = Counter()
    call_tir = tvm.ir.Op.get("relax.call_tir")

    def visit(expr):
        if isinstance(expr, relax.Call) and expr.op.same_as(call_tir):
            args = expr.args[1].fields
            outs = expr.ty.fields if isinstance(expr.ty, relax.TupleType) else [expr.ty]
            shapes = tuple(
                (tuple(int(d) for d in t.ty.shape), str(t.ty.dtype)) for t in args
            ) + tuple((tuple(int(d) for d in t.shape), str(t.dtype)) for t in outs)
            calls[(expr.args[0].name_hint, shapes)] += 1

    relax.analysis.post_order_visit(mod["main"].body, visit)
    return mod, calls


def profile_kernels(
    imported: ImportedModel,
    spec: TargetSpec,
    threads: int | None = None,
    number=5,
    repeat=3,
    plan=None,
) -> list[KernelTime]:
    """Every fused kernel of "main", slowest total first."""
    target = spec.tvm(threads)
    lowered, calls = fused_kernels(imported, spec, target, plan)
    names = sorted({name for name, _ in calls})
    # A kernel built alone needs its own exported symbol (MakePackedAPI keys on it).
    tir_mod = tvm.IRModule(
        {lowered.get_global_var(n): lowered[n].with_attr("global_symbol", n) for n in names}
    )
    lib = tvm.compile(tir_mod, target=target).mod
    dev = tvm.cpu()
    rng = np.random.default_rng(0)
    times = []
    for (name, shapes), count in calls.items():
        args = [tvm.runtime.tensor(_random(rng, s, d), dev) for s, d in shapes]
        lib[name](*args)  # warm up: page in fresh arguments, wake the thread pool
        timer = lib.time_evaluator(name, dev, number=number, repeat=repeat)
        ms = float(np.median(timer(*args).results)) * 1e3
        times.append(KernelTime(name, count, ms, shapes))
    return sorted(times, key=lambda k: -k.total_ms)


def _random(rng, shape, dtype):
    if dtype.startswith("float"):
        return rng.random(shape, dtype=np.float32).astype(dtype)
    return np.zeros(shape, dtype=dtype)
