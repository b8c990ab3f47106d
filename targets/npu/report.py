"""`tilecc run --npu-report`: what the simulated NPU counted, per subgraph and in total.

The `.so` returns the counters as JSON (runtime/npu_glue.c). `CompiledModel.run` resets them
before each run, so they cover one inference; a subgraph shared by identical parts of the model
is called several times in it ("calls").
"""

from __future__ import annotations

CUBE_MACS_PER_CYCLE = 16 * 16 * 16
BUFFERS = ("L1", "UB", "L0A", "L0B", "L0C")


def utilisation(sub: dict) -> float:
    cycles = sub["cycles"]
    return sub["macs"] / (CUBE_MACS_PER_CYCLE * cycles) if cycles else 0.0


def busy_shares(sub: dict) -> list[float]:
    """Each unit's busy cycles (cube, vector, DMA) over the subgraph's cycles."""
    cycles = sub["cycles"]
    return [sub[u] / cycles if cycles else 0.0 for u in ("cube", "vector", "dma")]


def totals(subgraphs: list[dict]) -> dict:
    """Cycles, useful MACs and DMA bytes summed over `subgraphs`."""
    return {
        k: float(sum(sub[k] for sub in subgraphs)) for k in ("cycles", "macs", "dma_in", "dma_out")
    }


def format_report(report: dict) -> str:
    """A table: per subgraph cycles (and the unit that bounds it), cube utilisation, the peak
    of each on-chip buffer, DMA bytes; then totals and time at the configured clock."""
    config = report["config"]
    clock_mhz = config["clock_mhz"]
    head = (
        f"{'subgraph':14s} {'calls':>5s} {'cycles':>12s} {'cube':>6s} {'vector':>6s} {'dma':>6s} "
        f"{'cube util':>9s} "
        + " ".join(f"{b + ' peak':>9s}" for b in BUFFERS)
        + f" {'DMA in':>10s} {'DMA out':>10s}"
    )
    lines = [head]
    ran = [sub for sub in report["subgraphs"] if sub["calls"]]
    for sub in ran:
        lines.append(
            f"{sub['name']:14s} {sub['calls']:5d} {sub['cycles']:12,.0f} "
            + " ".join(f"{s:6.0%}" for s in busy_shares(sub))
            + f" {utilisation(sub):9.1%} "
            + " ".join(f"{_kib(sub['peak'][b]):>9s}" for b in BUFFERS)
            + f" {_mib(sub['dma_in']):>10s} {_mib(sub['dma_out']):>10s}"
        )
    total = totals(ran)
    util = utilisation(total)
    lines.append(
        f"{'total':14s} {'':5s} {total['cycles']:12,.0f} {'':20s} {util:9.1%} "
        + " ".join(f"{_kib(config[b]):>9s}" for b in BUFFERS)
        + f" {_mib(total['dma_in']):>10s} {_mib(total['dma_out']):>10s}"
    )
    ms = total["cycles"] / (clock_mhz * 1e3)
    lines.append(
        f"NPU time per inference: {ms:.3f} ms at {clock_mhz} MHz (cycles of the cost model; "
        "unit columns are each unit's busy share; the total row's peaks are the buffer sizes)"
    )
    return "\n".join(lines)


def _kib(n: float) -> str:
    return f"{n / 1024:.1f}K"


def _mib(n: float) -> str:
    return f"{n / 2**20:.2f}M"
