"""Arguments and file handling shared by subcommands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from tilecc.compiler.errors import InputError
from tilecc.compiler.files import atomic_output
from tilecc.compiler.frontend_onnx import parse_input_shapes
from tilecc.compiler.pass_pipeline import IROptions
from tilecc.targets import all_targets


def add_model_args(parser, target_default: str | None = "x86") -> None:
    parser.add_argument("model", metavar="MODEL", help="an ONNX file")
    parser.add_argument(
        "--target",
        default=target_default,
        help=f"one of: {', '.join(all_targets())} (default: {target_default})",
    )
    add_input_shapes_arg(parser)


def add_input_shapes_arg(parser) -> None:
    parser.add_argument(
        "--input-shapes",
        action="append",
        metavar='"NAME:[d0,d1,...]"',
        help="static shape of an input (repeatable); default: the model's own static dims",
    )


def add_accelerator_args(parser) -> None:
    group = parser.add_argument_group("accelerator targets (npu)")
    group.add_argument(
        "--host", metavar="TARGET", help="CPU target for the ops the accelerator does not take"
    )
    group.add_argument(
        "--accel-config",
        metavar="CONFIG.json",
        help="the accelerator's configuration (npu: buffer sizes and cost-model rates)",
    )
    group.add_argument(
        "--partition-report",
        action="store_true",
        help="print which ops went to the accelerator and which stayed on the CPU, and why",
    )


def add_quant_args(parser) -> None:
    """--fake-quant / --quantize TABLE: the int8 preview and the int8 build (one or the other)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--fake-quant",
        metavar="TABLE.json",
        help="int8 accuracy preview: simulate int8 with a `tilecc quantize` table (in fp32)",
    )
    group.add_argument(
        "--quantize",
        metavar="TABLE.json",
        help="int8: run the convs a `tilecc quantize` table calibrated as int8 kernels; "
        "'qdq': take a pre-quantized (QDQ) model's own scales and zero points",
    )


def partition_printer(args):
    """What compile does with the partition report: all of it, or its summary line."""

    def show(report) -> None:
        if args.partition_report:
            print(report.text(), end="")
        else:
            progress(report.summary())

    return show


def add_ir_args(parser) -> None:
    """MLIR/IREE-style pipeline and IR-inspection flags (shared by compile and opt)."""
    group = parser.add_argument_group("passes and IR")
    group.add_argument(
        "--passes",
        metavar="PIPELINE",
        help="graph pass pipeline, e.g. 'fold-constant,dce{entry-functions=main}' "
        "(default: the target's; see `tilecc passes --pipeline TARGET`)",
    )
    group.add_argument(
        "--print-ir-before",
        metavar="PASS[,PASS]",
        default="",
        help="print the IR before these passes",
    )
    group.add_argument(
        "--print-ir-after",
        metavar="PASS[,PASS]",
        default="",
        help="print the IR after these passes",
    )
    group.add_argument(
        "--print-ir-after-all", action="store_true", help="print the IR after every pass"
    )
    group.add_argument(
        "--print-ir-after-change",
        action="store_true",
        help="print the IR after each pass that changed it",
    )
    group.add_argument(
        "--verify-each",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="verify the IR after each pass (default on)",
    )
    group.add_argument("--pass-timing", action="store_true", help="print a pass timing table")
    group.add_argument(
        "--report", action="store_true", help="op counts before/after the pipeline and per pass"
    )


def ir_options(args) -> IROptions:
    def names(text):
        return tuple(n.strip() for n in text.split(",") if n.strip())

    return IROptions(
        passes=args.passes,
        print_ir_before=names(args.print_ir_before),
        print_ir_after=names(args.print_ir_after),
        print_ir_after_all=args.print_ir_after_all,
        print_ir_after_change=args.print_ir_after_change,
        verify_each=args.verify_each,
        pass_timing=args.pass_timing,
        report=args.report,
    )


def write_text_atomic(path: str, text: str) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(text)


def input_shapes(args) -> dict[str, list[int]]:
    return parse_input_shapes(args.input_shapes)


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_npz(path: str) -> dict[str, np.ndarray]:
    if not Path(path).is_file():
        raise InputError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except Exception as exc:
        raise InputError(f"{path}: not a readable .npz file ({exc})") from exc


def save_npz(path: str, arrays: dict[str, np.ndarray]) -> None:
    """Write atomically: a temp file in the same folder, renamed when complete."""
    with atomic_output(path, ".npz") as tmp:
        np.savez(tmp, **arrays)
