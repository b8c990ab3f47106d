"""`tilecc bench MODEL.onnx`: tilecc vs ONNX Runtime latency in one run, same thread count."""

from __future__ import annotations

from tilecc.compiler.benchmark import bench_model, format_bench

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
        args.model,
        args.target,
        input_shapes(args),
        args.threads,
        args.repeat,
        args.top_kernels,
        progress=progress,
    )
    print(format_bench(result))
    return 0
