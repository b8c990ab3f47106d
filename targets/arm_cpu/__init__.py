"""arm-cpu: a 64-bit Arm phone (aarch64 Linux/Android class) with NEON, through LLVM.

+dotprod (Armv8.2-A's sdot/udot, in every phone core since Cortex-A55/A75, 2017) is what the
int8 kernels tensorize into; fp32 code does not use it.

The `.so` is cross-linked with the aarch64 gcc; here it runs under qemu-aarch64 through the C++
runner in `runner/` (the same program a phone app would embed), for correctness only.
"""

from ..spec import LLVM_WORKAROUNDS, TargetSpec, default_graph_pipeline
from .runtime import CROSS_COMPILER, ensure_aarch64_runtime, qemu_aarch64, read_metadata_aarch64

TARGET = TargetSpec(
    name="arm-cpu",
    summary="aarch64 phone CPU with NEON and dotprod (LLVM, cross-linked; runs under qemu here)",
    tvm_target={
        "kind": "llvm",
        "mtriple": "aarch64-linux-gnu",
        "mattr": ["+neon", "+dotprod"],
        "cl-opt": list(LLVM_WORKAROUNDS),
    },
    machine="aarch64",
    graph_pipeline=default_graph_pipeline(4),
    vector_lanes=4,
    tuning_key="arm-cpu/neon",
    cross_compiler=CROSS_COMPILER,
    runner=qemu_aarch64,
    read_metadata=read_metadata_aarch64,
    setup=ensure_aarch64_runtime,
    options={"threads": 2},
    int8_data="int8",
)
