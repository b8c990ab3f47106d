"""x86: this host's CPU through LLVM, with every feature the host has (AVX2, AVX-512, ...)."""

from pathlib import Path

import tvm

from ..spec import LLVM_WORKAROUNDS, TargetSpec, default_graph_pipeline


def _host_llvm_target() -> dict:
    return {
        "kind": "llvm",
        "mcpu": tvm.target.codegen.llvm_get_system_cpu(),
        "cl-opt": list(LLVM_WORKAROUNDS),
    }


def _host_lanes() -> int:
    """fp32 lanes of the widest vector unit this host has."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return 8
    return 16 if "avx512f" in flags else 8 if "avx2" in flags else 4


LANES = _host_lanes()

TARGET = TargetSpec(
    name="x86",
    summary="this host's x86-64 CPU (LLVM, -mcpu=<host>)",
    tvm_target=_host_llvm_target,
    machine="x86_64",
    graph_pipeline=default_graph_pipeline(LANES),
    vector_lanes=LANES,
    tuning_key=f"x86/{tvm.target.codegen.llvm_get_system_cpu()}",
    options={"threads": 2},
)
