"""`tilecc` entry point: dispatch to a subcommand; user errors are one line, exit 1."""

from __future__ import annotations

import argparse
import sys
import traceback

from tilecc.compiler.errors import TilecError

from . import bench, compile, opt, passes, quantize, run, setup, targets, tune, zoo

SUBCOMMANDS = [compile, tune, quantize, run, bench, opt, passes, targets, zoo, setup]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tilecc", description="Compile ONNX models ahead of time for CPUs, phones and NPUs."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in SUBCOMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.drive(args) or 0)
    except TilecError as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug in tilecc or TVM: say so, keep the trace behind -v
        if args.verbose:
            traceback.print_exc()
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        print(f"internal error: {type(exc).__name__}: {first} (rerun with -v)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
