"""Latency of tilecc against ONNX Runtime on this host, in one run and at one thread count."""

from __future__ import annotations

import tempfile
from pathlib import Path

from . import api
from .errors import TargetError
from .kernel_profile import profile_kernels
from .runtime import CompiledModel, random_inputs


def bench_model(
    model, target, shapes, threads, repeat, top_kernels=0, inputs=None, progress=print
) -> dict:
    """Compile `model`, time it and ORT on the same inputs; optionally the slowest kernels."""
    api.set_threads(threads)
    with tempfile.TemporaryDirectory(prefix="tilecc-bench-") as tmp:
        progress(f"compiling {model} for {target}")
        so = api.compile_model(model, target, Path(tmp) / "model.so", shapes, threads=threads)
        compiled = CompiledModel(so)
        if compiled.target.runner is not None:
            raise TargetError(
                f"bench measures this host only; {target} runs emulated here (use --target x86)"
            )
        inputs = inputs or random_inputs(compiled.inputs)
        progress(f"timing tilecc and ONNX Runtime, {repeat} runs each, {threads} threads")
        ours = api.time_host_model(compiled, inputs, repeat)
        theirs = api.time_ort(model, inputs, threads, repeat)
        kernels = []
        if top_kernels:
            progress("timing each kernel inside the model's run")
            vm, args = compiled.host_vm(), compiled.host_args(inputs)
            kernels = profile_kernels(vm, args, repeat)[:top_kernels]
    return {
        "model": str(model),
        "target": target,
        "threads": threads,
        "tilecc": ours,
        "ort": theirs,
        "kernels": kernels,
    }


def format_bench(result: dict) -> str:
    ours, theirs = result["tilecc"], result["ort"]
    lines = [
        f"{Path(result['model']).name} on {result['target']}, {result['threads']} threads",
        f"  tilecc  median {ours.median_ms:9.2f} ms  min {ours.min_ms:9.2f}  "
        f"max {ours.max_ms:9.2f}",
        f"  ORT     median {theirs.median_ms:9.2f} ms  min {theirs.min_ms:9.2f}  "
        f"max {theirs.max_ms:9.2f}",
        f"  ratio tilecc/ORT {ours.median_ms / theirs.median_ms:.2f}x",
    ]
    for k in result["kernels"]:
        inputs = " ".join("x".join(map(str, shape)) for shape, _ in k.arg_shapes[:2])
        lines.append(
            f"    {k.total_ms:8.2f} ms  {k.calls:3d} x {k.ms_per_call:7.3f} ms  {k.name} ({inputs})"
        )
    return "\n".join(lines)
