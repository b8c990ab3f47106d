"""Target registry: each sub-folder with a `TARGET` is a target; nothing else lists them."""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from functools import cache

from tilecc.compiler.errors import TargetError

from .spec import TargetSpec

__all__ = ["TargetSpec", "all_targets", "get_target"]


@cache
def all_targets() -> dict[str, TargetSpec]:
    """Every target, by name, discovered from this package's sub-folders."""
    found = {}
    for info in pkgutil.iter_modules(__path__):
        if not info.ispkg:
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        spec = getattr(module, "TARGET", None)
        if isinstance(spec, TargetSpec):
            found[spec.name] = spec
    return dict(sorted(found.items()))


def get_target(name: str) -> TargetSpec:
    """The target called `name`, or a TargetError that lists the known ones."""
    targets = all_targets()
    if name in targets:
        return targets[name]
    close = difflib.get_close_matches(name, targets, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise TargetError(f"unknown target '{name}' (known: {', '.join(targets)}){hint}")


def target_for_machine(machine: str) -> TargetSpec:
    """The CPU target whose `.so` files are built for ELF machine `machine` (an accelerator
    target's `.so` runs on its host CPU's, which is the one returned)."""
    for spec in all_targets().values():
        if spec.machine == machine and spec.accelerator is None:
            return spec
    raise TargetError(f"no target builds for machine '{machine}'")
