"""`tilecc quantize MODEL.onnx --calib DIR --method minmax|percentile|kl -o TABLE.json`.

Calibrates the model on the `.npz` samples in DIR (each keyed by input name) and writes its
quantization table; `tilecc compile|run --fake-quant TABLE.json` builds the int8 preview.
"""

from __future__ import annotations

import argparse

from tilecc.compiler import api
from tilecc.compiler.calibration import METHODS

from .common import add_input_shapes_arg, input_shapes, progress


def add_parser(sub) -> None:
    parser = sub.add_parser("quantize", help="calibrate a model for int8 (a quantization table)")
    parser.add_argument("model", metavar="MODEL", help="an ONNX file")
    parser.add_argument("--calib", required=True, metavar="DIR", help="folder of .npz samples")
    parser.add_argument("--method", choices=METHODS, default="minmax", help="default: minmax")
    parser.add_argument(
        "--percentile", type=float, default=99.99, help="for --method percentile (99.99)"
    )
    parser.add_argument(
        "--symmetric-activations",
        action="store_true",
        help="activations with zero point 0 (default: asymmetric int8)",
    )
    parser.add_argument(
        "--per-channel",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="weight scales per output channel (default) or one per tensor",
    )
    parser.add_argument(
        "--bias-correction",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="record each op input's per-channel mean, so int8 builds subtract the mean shift "
        "that rounding the weights causes (default: on)",
    )
    parser.add_argument(
        "--empirical-bias-correction",
        action="store_true",
        help="measure each op's output shift in the fake-quant build, ops before it already "
        "corrected, and subtract that instead (catches what rounding activations shifts too; "
        "one run over the samples per depth of ops)",
    )
    add_input_shapes_arg(parser)
    parser.add_argument("-o", "--output", required=True, metavar="TABLE.json")
    parser.set_defaults(drive=drive_quantize)


def drive_quantize(args) -> int:
    out = api.quantize_model(
        args.model,
        args.calib,
        args.output,
        args.method,
        args.percentile,
        args.symmetric_activations,
        args.per_channel,
        input_shapes(args),
        progress=progress,
        bias_correction=args.bias_correction,
        empirical_bias_correction=args.empirical_bias_correction,
    )
    progress(f"wrote {out}")
    return 0
