"""Arguments and file handling shared by subcommands."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from tilecc.compiler.errors import InputError, OutputError
from tilecc.compiler.frontend_onnx import parse_input_shapes
from tilecc.targets import all_targets


def add_model_args(parser, target_default: str | None = "x86") -> None:
    parser.add_argument("model", metavar="MODEL", help="an ONNX file")
    parser.add_argument(
        "--target",
        default=target_default,
        help=f"one of: {', '.join(all_targets())} (default: {target_default})",
    )
    parser.add_argument(
        "--input-shapes",
        action="append",
        metavar='"NAME:[d0,d1,...]"',
        help="static shape of an input (repeatable); default: the model's own static dims",
    )


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
    out = Path(path)
    if not out.parent.is_dir() or not os.access(out.parent, os.W_OK):
        raise OutputError(f"{out}: directory {out.parent} is missing or not writable")
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
