"""`tilecc zoo list` / `tilecc zoo export NAME -o m.onnx`: the lightweight networks tilecc is
tested on, built as ONNX from code here (seeded weights, nothing downloaded)."""

from __future__ import annotations

from tilecc.compiler import zoo

from .common import progress


def add_parser(sub) -> None:
    parser = sub.add_parser("zoo", help="list or export the built-in model zoo")
    verbs = parser.add_subparsers(dest="zoo_command", metavar="VERB", required=True)
    verbs.add_parser("list", help="the zoo's models").set_defaults(drive=drive_list)
    export = verbs.add_parser("export", help="write a zoo model as ONNX")
    export.add_argument("name", metavar="NAME")
    export.add_argument("-o", "--output", required=True, metavar="OUT.onnx")
    export.add_argument("--seed", type=int, default=0, help="weight seed (default 0)")
    export.add_argument("--resolution", type=int, default=None, help="input height and width")
    export.set_defaults(drive=drive_export)


def drive_list(args) -> int:
    for model in zoo.MODELS.values():
        shape = "x".join(map(str, model.input_shape()))
        print(f"{model.name:20s} {shape:16s} {model.summary}")
    return 0


def drive_export(args) -> int:
    path = zoo.export(args.name, args.output, seed=args.seed, resolution=args.resolution)
    progress(f"wrote {path}")
    return 0
