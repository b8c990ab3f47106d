"""`tilecc bench MODEL.onnx`: tilecc vs ONNX Runtime latency in one run, same thread count."""

from __future__ import annotations

import tempfile
from pathlib import Path

from tilecc.compiler import api
from tilecc.compiler.errors import TargetError
from tilecc.compiler.runtime import CompiledModel, random_inputs

from .common import add_model_args, input_shapes, progress


def add_parser(sub) -> None:
    parser = sub.add_parser("bench", help="latency of tilecc vs ONNX Runtime on this host")
    add_model_args(parser)
    parser.add_argument("--threads", type=int, default=2, help="threads for both (default 2)")
    parser.add_argument("--repeat", type=int, default=20, help="timed runs each (default 20)")
    parser.add_argument(
        "--top-kernels", type=int, default=0, metavar="N", help="also list the N slowest kernels"
    )
    parser.set_defaults(drive=drive_bench)


def drive_bench(args) -> int:
    result = bench_model(
        args.model, args.target, input_shapes(args), args.threads, args.repeat, args.top_kernels
    )
    print(format_bench(result))
    return 0


def bench_model(model, target, shapes, threads, repeat, top_kernels=0) -> dict:
    api.set_threads(threads)
    with tempfile.TemporaryDirectory(prefix="tilecc-bench-") as tmp:
        progress(f"compiling {model} for {target}")
        so = api.compile_model(model, target, Path(tmp) / "model.so", shapes, threads=threads)
        compiled = CompiledModel(so)
        if compiled.target.runner is not None:
            raise TargetError(
                f"bench measures this host only; {target} runs emulated here (use --target x86)"
            )
        inputs = random_inputs(compiled.inputs)
        progress(f"timing tilecc and ONNX Runtime, {repeat} runs each, {threads} threads")
        ours = api.time_host_model(compiled, inputs, repeat)
        theirs = api.time_ort(model, inputs, threads, repeat)
    result = {
        "model": str(model),
        "target": target,
        "threads": threads,
        "tilecc": ours,
        "ort": theirs,
        "kernels": [],
    }
    if top_kernels:
        from tilecc.compiler.kernel_profile import profile_kernels
        from tilecc.targets import get_target

        progress("timing each kernel")
        imported = api.import_model(model, shapes)
        result["kernels"] = profile_kernels(imported, get_target(target).tvm(threads))[:top_kernels]
    return result


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
