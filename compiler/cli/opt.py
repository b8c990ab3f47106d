"""`tilecc opt IN.py --passes PIPELINE [-o OUT.py]`: run passes on Relax TVMScript text.

Like `mlir-opt`: the input is an IRModule as `mod.script()` prints it (weights as parameters,
since TVMScript leaves bound constants out), the output is the same form, so every pass can be
run and tested on IR text alone.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tilecc.compiler.errors import ModelError
from tilecc.compiler.pass_pipeline import PipelineError, run_pipeline

from .common import add_ir_args, ir_options, write_text_atomic


def add_parser(sub) -> None:
    parser = sub.add_parser("opt", help="run passes on Relax TVMScript (IR in, IR out)")
    parser.add_argument("input", metavar="IN.py", help="Relax TVMScript file ('-' for stdin)")
    parser.add_argument("-o", "--output", metavar="OUT.py", help="write here (default stdout)")
    add_ir_args(parser)
    parser.set_defaults(drive=drive_opt)


def read_module(path: str):
    """Parse TVMScript; its `from tvm.script import ...` lines may stay (or be commented out)."""
    import tvm

    if path == "-":
        text, name = sys.stdin.read(), "<stdin>"
    else:
        if not Path(path).is_file():
            raise ModelError(f"{path}: no such file")
        text, name = Path(path).read_text(), path
    body = "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith("from tvm.script")
    )
    try:
        mod = tvm.script.from_source(body)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
        raise ModelError(f"{name}: not a Relax TVMScript module ({first})") from exc
    if not isinstance(mod, tvm.IRModule):
        raise ModelError(f"{name}: expected an @I.ir_module class, got {type(mod).__name__}")
    return mod


def drive_opt(args) -> int:
    ir = ir_options(args)
    if ir.passes is None:
        raise PipelineError("tilecc opt needs --passes PIPELINE (see `tilecc passes`)")
    mod = run_pipeline(read_module(args.input), ir.passes, **ir.flags())
    text = mod.script()
    if args.output:
        write_text_atomic(args.output, text)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0
