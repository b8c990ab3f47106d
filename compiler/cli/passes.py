"""`tilecc passes`: every registered pass with its summary and options; `--pipeline TARGET`
prints a target's default graph pipeline as text."""

from __future__ import annotations

import tilecc.passes  # noqa: F401  (registers every pass)
from tilecc.passes.registry import all_passes
from tilecc.targets import get_target


def add_parser(sub) -> None:
    parser = sub.add_parser("passes", help="list graph passes, or a target's default pipeline")
    parser.add_argument("--pipeline", metavar="TARGET", help="print TARGET's default pipeline")
    parser.add_argument("--doc", action="store_true", help="print each pass's full docstring")
    parser.set_defaults(drive=drive_passes)


def drive_passes(args) -> int:
    if args.pipeline:
        print(get_target(args.pipeline).graph_pipeline)
        return 0
    for info in all_passes():
        print(f"{info.name:24s} {info.summary}")
        for opt in info.options:
            print(f"{'':24s}   {opt.name}: {opt.type_name} = {opt.default!r}")
        if args.doc:
            print("\n".join(f"{'':26s}{line}" for line in info.doc.splitlines()))
    return 0
