"""x86: this host's CPU through LLVM, with every feature the host has (AVX2, AVX-512, ...)."""

import tvm

from ..spec import LLVM_WORKAROUNDS, TargetSpec


def _host_llvm_target() -> dict:
    return {
        "kind": "llvm",
        "mcpu": tvm.target.codegen.llvm_get_system_cpu(),
        "cl-opt": list(LLVM_WORKAROUNDS),
    }


TARGET = TargetSpec(
    name="x86",
    summary="this host's x86-64 CPU (LLVM, -mcpu=<host>)",
    tvm_target=_host_llvm_target,
    machine="x86_64",
    options={"threads": 2},
)
