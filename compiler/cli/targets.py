"""`tilecc targets`: every registered target, its TVM target and options."""

from __future__ import annotations

from tilecc.targets import all_targets


def add_parser(sub) -> None:
    parser = sub.add_parser("targets", help="list the targets")
    parser.set_defaults(drive=drive_targets)


def drive_targets(args) -> int:
    for spec in all_targets().values():
        print(f"{spec.name:10s} {spec.summary}")
        options = ", ".join(f"{k}={v}" for k, v in spec.options.items())
        if options:
            print(f"{'':10s} options: {options}")
    return 0
