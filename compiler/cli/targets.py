"""`tilecc targets`: every registered target, what it runs, and its options."""

from __future__ import annotations

from tilecc.targets import all_targets


def add_parser(sub) -> None:
    parser = sub.add_parser("targets", help="list the targets")
    parser.set_defaults(drive=drive_targets)


def drive_targets(args) -> int:
    for spec in all_targets().values():
        print(f"{spec.name:10s} {spec.summary}")
        if spec.accelerator is not None:
            print(f"{'':10s} offloads ({spec.accelerator.name}):")
            for phrase in spec.accelerator.supports:
                print(f"{'':12s}- {phrase}")
            print(f"{'':10s} everything else runs on the host: {spec.host} (--host to change)")
        else:
            print(f"{'':10s} runs every op tilecc imports (kernel templates for conv / dense)")
        options = ", ".join(f"{k}={v}" for k, v in spec.options.items())
        if options:
            print(f"{'':10s} options: {options}")
    return 0
