"""The simulated NPU core's configuration: buffer sizes and the cost model's rates.

Defaults follow one AI core of an Ascend 310-class NPU. A JSON file given to
`tilecc compile --target npu --accel-config FILE` overrides any of the fields below, e.g.
`{"l1_bytes": 524288, "ub_bytes": 131072}`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from tilecc.compiler.errors import TilecError

CUBE = 16  # the cube unit multiplies 16x16 by 16x16 fp16 fractals
FRACTAL_FP16 = CUBE * CUBE * 2  # bytes of one fp16 fractal (L0A / L0B / L1)
FRACTAL_FP32 = CUBE * CUBE * 4  # bytes of one fp32 fractal (L0C)


class NpuConfigError(TilecError):
    """An NPU configuration that cannot run the cube unit's tiles."""


@dataclass(frozen=True)
class NpuConfig:
    l1_bytes: int = 1024 * 1024
    ub_bytes: int = 256 * 1024
    l0a_bytes: int = 64 * 1024
    l0b_bytes: int = 64 * 1024
    l0c_bytes: int = 256 * 1024
    dma_bytes_per_cycle: int = 32
    dma_latency: int = 64
    mte1_bytes_per_cycle: int = 256
    vector_lanes: int = 128
    issue_cycles: int = 8
    clock_mhz: int = 1000

    def buffer_bytes(self) -> dict[str, int]:
        return {
            "L1": self.l1_bytes,
            "UB": self.ub_bytes,
            "L0A": self.l0a_bytes,
            "L0B": self.l0b_bytes,
            "L0C": self.l0c_bytes,
        }

    def validate(self, source: str = "npu config") -> NpuConfig:
        """Refuse buffers that cannot hold one cube tile (and nonsensical rates)."""
        need = {
            "l0a_bytes": FRACTAL_FP16,
            "l0b_bytes": FRACTAL_FP16,
            "l0c_bytes": FRACTAL_FP32,
            "l1_bytes": 2 * FRACTAL_FP16,
            "ub_bytes": 2 * FRACTAL_FP16,
        }
        for name, minimum in need.items():
            if getattr(self, name) < minimum:
                raise NpuConfigError(
                    f"{source}: {name}={getattr(self, name)} is too small for one "
                    f"{CUBE}x{CUBE} tile (at least {minimum} bytes)"
                )
        for f in dataclasses.fields(self):
            may_be_zero = f.name in ("dma_latency", "issue_cycles")
            if getattr(self, f.name) < (0 if may_be_zero else 1):
                kind = "non-negative" if may_be_zero else "positive"
                raise NpuConfigError(f"{source}: {f.name} must be {kind}")
        return self

    @classmethod
    def from_file(cls, path: str | Path) -> NpuConfig:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except OSError as exc:
            raise NpuConfigError(f"{path}: cannot read ({exc.strerror})") from exc
        except json.JSONDecodeError as exc:
            raise NpuConfigError(f"{path}: not JSON ({exc})") from exc
        known = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(data, dict) or (unknown := sorted(set(data) - known)):
            raise NpuConfigError(
                f"{path}: unknown field(s) {', '.join(unknown) if isinstance(data, dict) else ''}"
                f" (fields: {', '.join(sorted(known))})"
            )
        if bad := [k for k, v in data.items() if not isinstance(v, int) or isinstance(v, bool)]:
            raise NpuConfigError(f"{path}: field(s) {', '.join(bad)} must be integers")
        return cls(**data).validate(str(path))

    def c_initializer(self) -> str:
        """The `npu_config` struct literal for the generated C."""
        sizes = ", ".join(str(v) for v in self.buffer_bytes().values())
        return (
            f"{{{{{sizes}}}, {self.dma_bytes_per_cycle}, {self.dma_latency}, "
            f"{self.mte1_bytes_per_cycle}, {self.vector_lanes}, {self.issue_cycles}, "
            f"{self.clock_mhz}}}"
        )
