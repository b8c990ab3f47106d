"""Tile plans: how each NPU kernel's loops split its work so every tile fits the buffers.

The byte counts here are the ones runtime/npu_sim.c claims for the same tiles; the simulator
checks every access, so a plan that did not fit would fail at run time, not overflow.
"""

from __future__ import annotations

from .config import NpuConfig, NpuConfigError
from .kernels import c1


def plan_conv(cfg: NpuConfig, g: dict, slots: int, where: str) -> dict:
    """m_tile (pixels), n_tile (output channel blocks), c1_tile (input blocks per L1 slab),
    k_tile (k blocks per L0 load), by least estimated cycles among those that fit."""
    m_total = g["oh"] * g["ow"]
    taps = g["kh"] * g["kw"]
    best = None
    m_cands = sorted({min(16 * c1(m_total), m) for m in (16, 32, 64, 128, 256, 512, 1024, 2048)})
    for m_tile in m_cands:
        m1 = m_tile // 16
        rows = min(
            g["h"], ((m_tile + g["ow"] - 1) // g["ow"] + 1) * g["sh"] + (g["kh"] - 1) * g["dh"]
        )
        for n_tile in range(g["c1_out"], 0, -1):
            if n_tile * m_tile * 64 > cfg.l0c_bytes:
                continue
            if (slots * n_tile * m_tile * 16 * 2 + n_tile * 64) > cfg.ub_bytes:
                continue
            for c1_tile in range(g["c1_in"], 0, -1):
                # L1 holds the input slab and the weights of one k step (k_tile blocks)
                weights_room = (cfg.l1_bytes - c1_tile * rows * g["w"] * 32) // (n_tile * 512)
                k_tile = min(c1_tile * taps, cfg.l0a_bytes // (m1 * 512),
                             cfg.l0b_bytes // (n_tile * 512), weights_room)  # fmt: skip
                if k_tile < 1:
                    continue
                cost = _conv_cost(cfg, g, m_tile, n_tile, c1_tile, k_tile, rows)
                if best is None or cost < best[0]:
                    best = (
                        cost,
                        dict(m_tile=m_tile, n_tile=n_tile, c1_tile=c1_tile, k_tile=k_tile),
                    )
                break  # the largest c1_tile that fits
    if best is None:
        raise NpuConfigError(f"{where}: no tiling fits this NPU's buffers ({_sizes(cfg)})")
    return best[1]


def _conv_cost(cfg, g, m_tile, n_tile, c1_tile, k_tile, rows) -> float:
    taps = g["kh"] * g["kw"]
    mt = -(-g["oh"] * g["ow"] // m_tile)
    nt = -(-g["c1_out"] // n_tile)
    cc = -(-g["c1_in"] // c1_tile)
    slab = g["c1_in"] * rows * g["w"] * 32 * (nt if cc > 1 else 1)
    weights = g["c1_in"] * taps * g["c1_out"] * 512
    steps = mt * nt * cc * -(-c1_tile * taps // k_tile)
    # weights: one transfer per k step when a tile spans all output blocks, else one per row
    weight_transfers = steps if nt == 1 else mt * nt * g["c1_in"] * taps
    transfers = mt * g["c1_in"] * (nt if cc > 1 else 1) + weight_transfers
    dma = mt * (slab + weights) / cfg.dma_bytes_per_cycle + transfers * cfg.dma_latency
    cube = steps * cfg.issue_cycles + mt * (m_tile // 16) * g["c1_in"] * taps * g["c1_out"]
    return g["n"] * max(dma, cube)


def plan_window(cfg: NpuConfig, g: dict, slots: int, where: str) -> dict:
    ub = cfg.ub_bytes
    taps = g["kh"] * g["kw"]

    def need(rows_tile, c1_tile, in_rows):
        ne = c1_tile * rows_tile * g["ow"] * 16
        extra = (c1_tile * taps * 32 if g["weights"] else 0) + (c1_tile * 64 if g["bias"] else 0)
        return slots * ne * 2 + ne * 4 + c1_tile * in_rows * g["w"] * 32 + extra

    for rows_tile in range(g["oh"], 0, -1):
        full = min(g["h"], (rows_tile - 1) * g["sh"] + (g["kh"] - 1) * g["dh"] + 1)
        for c1_tile in range(g["c1"], 0, -1):
            if need(rows_tile, c1_tile, full) <= ub:
                return dict(rows_tile=rows_tile, in_rows_tile=full, c1_tile=c1_tile)
    for in_rows in range(g["h"], 0, -1):  # a window larger than UB: read it in row chunks
        if need(1, 1, in_rows) <= ub:
            return dict(rows_tile=1, in_rows_tile=in_rows, c1_tile=1)
    raise NpuConfigError(f"{where}: no tiling fits this NPU's buffers ({_sizes(cfg)})")


def plan_eltwise(cfg: NpuConfig, shape: tuple[int, int, int], slots: int, where: str) -> dict:
    n1, p = shape[1], shape[2]
    for n_tile in range(n1, 0, -1):
        m_tile = min(p, cfg.ub_bytes // (slots * n_tile * 32))
        if m_tile >= min(p, 16):
            return dict(n_tile=n_tile, m_tile=m_tile)
    raise NpuConfigError(f"{where}: no tiling fits this NPU's buffers ({_sizes(cfg)})")


def plan_softmax(cfg: NpuConfig, channels: int, pixels: int, slots: int, where: str) -> int:
    """Pixels per tile: a softmax tile holds every channel block of its pixels (the input
    tile beside the program's slots)."""
    m_tile = min(pixels, cfg.ub_bytes // ((slots + 1) * c1(channels) * 32))
    if m_tile < 1:
        raise NpuConfigError(f"{where}: softmax over {channels} channels does not fit UB")
    return m_tile


def _sizes(cfg: NpuConfig) -> str:
    return ", ".join(f"{b} {v} B" for b, v in cfg.buffer_bytes().items())
