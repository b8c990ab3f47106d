"""x86: this host's CPU through LLVM, with every feature the host has (AVX2, AVX-512, ...)."""

from pathlib import Path

import tvm

from tilecc.schedules import int8_dot

from ..spec import LLVM_WORKAROUNDS, TargetSpec, default_graph_pipeline


def _host_llvm_target() -> dict:
    return {
        "kind": "llvm",
        "mcpu": tvm.target.codegen.llvm_get_system_cpu(),
        "cl-opt": list(LLVM_WORKAROUNDS),
    }


def _host_flags() -> set[str]:
    try:
        return set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return {"avx2"}


def _int8_weight_max() -> int:
    """127 where every uint8 dot product the int8 templates may pick on this host sums in
    int32 (VNNI), else 63 (schedules/int8_dot.py)."""
    features = int8_dot.target_features(tvm.target.Target(_host_llvm_target()))
    return int8_dot.weight_max("uint8", features)


FLAGS = _host_flags()
# fp32 lanes of the widest vector unit this host has
LANES = 16 if "avx512f" in FLAGS else 8 if "avx2" in FLAGS else 4

TARGET = TargetSpec(
    name="x86",
    summary="this host's x86-64 CPU (LLVM, -mcpu=<host>)",
    tvm_target=_host_llvm_target,
    machine="x86_64",
    graph_pipeline=default_graph_pipeline(LANES),
    vector_lanes=LANES,
    tuning_key=f"x86/{tvm.target.codegen.llvm_get_system_cpu()}",
    options={"threads": 2},
    int8_data="uint8",
    int8_weight_max=_int8_weight_max(),
)
