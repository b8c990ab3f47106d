"""Knob spaces: every tunable choice of a template, declared once with its default and reason.

A `Space` is what tuning sees of a template (STYLE.md §3): it lists candidate configurations,
samples them, refuses illegal ones and turns one into a feature vector for the cost model.
A `Config` is one point of it: an immutable knob -> value mapping with a canonical JSON key.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from tilecc.compiler.errors import TilecError


class ConfigError(TilecError):
    """A configuration names an unknown knob or a value its space does not allow."""


@dataclass(frozen=True)
class Knob:
    """One tunable choice: its candidate values, the default, and why it exists."""

    values: tuple
    default: Any
    why: str

    def __post_init__(self):
        if not self.values:
            raise ConfigError(f"knob has no candidate values ({self.why})")
        if self.default not in self.values:
            raise ConfigError(f"default {self.default!r} is not among {self.values} ({self.why})")


class Config(Mapping):
    """An immutable knob -> value mapping; `key()` is its canonical JSON text."""

    def __init__(self, values: Mapping[str, Any]):
        self._values = dict(sorted(values.items()))

    def __getitem__(self, name):
        return self._values[name]

    def __iter__(self):
        return iter(self._values)

    def __len__(self):
        return len(self._values)

    def __hash__(self):
        return hash(self.key())

    def __eq__(self, other):
        return isinstance(other, Mapping) and dict(self) == dict(other)

    def __repr__(self):
        return f"Config({self._values})"

    def key(self) -> str:
        return json.dumps(self._values, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_key(cls, text: str) -> Config:
        return cls(json.loads(text))


class Space:
    """The product of named knobs. `restrict` narrows knobs for one workload."""

    def __init__(self, **knobs: Knob):
        self.knobs: dict[str, Knob] = dict(knobs)

    @property
    def names(self) -> list[str]:
        return list(self.knobs)

    def __len__(self) -> int:
        return math.prod(len(k.values) for k in self.knobs.values())

    def restrict(self, **allowed) -> Space:
        """A copy keeping, per named knob, the values for which `allowed[name](value)` is true.
        A knob whose default is dropped gets the kept value nearest to it (by position)."""
        knobs = dict(self.knobs)
        for name, keep in allowed.items():
            knob = knobs[name]
            values = tuple(v for v in knob.values if keep(v))
            if not values:
                raise ConfigError(f"knob {name}: no value of {knob.values} fits this workload")
            default = knob.default
            if default not in values:
                pos = knob.values.index(default)
                default = min(values, key=lambda v: abs(knob.values.index(v) - pos))
            knobs[name] = Knob(values, default, knob.why)
        return Space(**knobs)

    def default(self) -> Config:
        return Config({name: k.default for name, k in self.knobs.items()})

    def check(self, cfg: Mapping[str, Any]) -> Config:
        """`cfg` as a Config, or ConfigError naming the unknown knob or illegal value."""
        if unknown := sorted(set(cfg) - set(self.knobs)):
            raise ConfigError(f"unknown knob(s) {unknown}; knobs are {self.names}")
        if missing := sorted(set(self.knobs) - set(cfg)):
            raise ConfigError(f"missing knob(s) {missing}")
        for name, value in cfg.items():
            if value not in self.knobs[name].values:
                raise ConfigError(f"knob {name}={value!r} not in {self.knobs[name].values}")
        return Config(cfg)

    def __iter__(self) -> Iterator[Config]:
        names = self.names
        for values in itertools.product(*(self.knobs[n].values for n in names)):
            yield Config(dict(zip(names, values, strict=True)))

    def sample(self, n: int, seed: int = 0) -> list[Config]:
        """Up to `n` distinct configurations drawn uniformly (all of them if the space is small)."""
        if len(self) <= n:
            return list(self)
        rng = random.Random(seed)
        seen: dict[str, Config] = {}
        while len(seen) < n:
            cfg = Config({name: rng.choice(k.values) for name, k in self.knobs.items()})
            seen.setdefault(cfg.key(), cfg)
        return list(seen.values())

    def neighbours(self, cfg: Config) -> list[Config]:
        """Configurations differing from `cfg` in one knob by one position (for local search)."""
        out = []
        for name, knob in self.knobs.items():
            pos = knob.values.index(cfg[name])
            for step in (-1, 1):
                if 0 <= pos + step < len(knob.values):
                    out.append(Config({**cfg, name: knob.values[pos + step]}))
        return out

    def features(self, cfg: Config) -> list[float]:
        """One number per knob for the cost model: log2 of a positive number, 0/1 for a bool,
        the position among the candidates otherwise."""
        out = []
        for name, knob in self.knobs.items():
            value = cfg[name]
            if isinstance(value, bool):
                out.append(float(value))
            elif isinstance(value, int | float) and value > 0:
                out.append(math.log2(value))
            else:
                out.append(float(knob.values.index(value)))
        return out
