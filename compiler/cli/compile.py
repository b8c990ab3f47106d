"""`tilecc compile MODEL.onnx --target T -o OUT.so`: ONNX -> deployable shared library."""

from __future__ import annotations

import time

from tilecc.compiler import api

from .common import (
    add_accelerator_args,
    add_ir_args,
    add_model_args,
    add_quant_args,
    input_shapes,
    ir_options,
    partition_printer,
    progress,
)


def add_parser(sub) -> None:
    parser = sub.add_parser("compile", help="compile an ONNX model to a .so")
    add_model_args(parser)
    parser.add_argument("-o", "--output", required=True, metavar="OUT.so", help="output file")
    parser.add_argument("--threads", type=int, default=None, help="threads the .so is built for")
    parser.add_argument(
        "--tuning-records",
        metavar="R.json",
        default=None,
        help="use the fastest configuration recorded by `tilecc tune` for each kernel",
    )
    add_accelerator_args(parser)
    add_quant_args(parser)
    add_ir_args(parser)
    parser.set_defaults(drive=drive_compile)


def drive_compile(args) -> int:
    start = time.perf_counter()
    out = api.compile_model(
        args.model,
        args.target,
        args.output,
        input_shapes(args),
        threads=args.threads,
        ir=ir_options(args),
        tuning_records=args.tuning_records,
        host=args.host,
        accel_config=args.accel_config,
        on_partition=partition_printer(args),
        fake_quant=args.fake_quant,
        quantize=args.quantize,
    )
    progress(f"wrote {out} ({args.target}, {time.perf_counter() - start:.1f} s)")
    return 0
