"""TargetSpec: everything tilecc knows about one target, declared in that target's folder."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import tvm

# LLVM 22's loop vectorizer (bundled with TVM 0.27) miscompiles a power-of-two modulo index under
# an outer non-power-of-two one (ONNX Tile: y[i, j, k] = x[i % 3, j % 4, k % 5]): SCEV drops the
# `& 3` wrap, so lanes read past the row (fixed upstream by llvm/llvm-project#191498, not in
# 22.1.x). It is target-independent, so every LLVM target turns that vectorizer off; TVM's own
# vectorization and LLVM's SLP vectorizer stay on. Costs 0-45% on a few memory-bound kernels,
# nothing on conv and matmul. tests/targets/x86/test_llvm_codegen.py guards it.
LLVM_WORKAROUNDS = ("-vectorize-loops=false",)


def default_graph_pipeline(block: int) -> str:
    """The graph pipeline of a CPU target whose templates vectorize over `block` channels:
    channel counts are padded to a multiple of 8 (or of a smaller block), the block det's FPN
    takes on AVX-512 too, without padding 12 channels to 16 and 18 to 32."""
    return (
        "fold-constant,fold-batchnorm,decompose-for-inference,simplify-reshape,"
        "conv-transpose-to-conv1x1,fold-constant,expand-clip,"
        f"scalarize-constants,pad-channels{{multiple={min(block, 8)}}},"
        f"convert-layout-nchwc{{block={block}}},fold-constant,cancel-inverse-pairs,"
        "multiply-by-reciprocal,fold-affine-chains,cse,dce"
    )


@dataclass(frozen=True)
class TargetSpec:
    """One compilation target.

    name: kebab-case name used on the command line (`--target arm-cpu`).
    summary: one line for `tilecc targets`.
    tvm_target: the TVM target as a dict, or a function returning one (x86 asks the host's CPU).
    cross_compiler: the C compiler that links the exported `.so`; None means the host's `g++`.
    runner: `runner(so_path, inputs, num_outputs=N) -> outputs` (lists in signature order) runs
        a `.so` built for this target; None means "load it in this process" (host targets).
    read_metadata: `read_metadata(so_path) -> str`, the JSON a foreign `.so` embeds.
    machine: the ELF machine name of the `.so` this target produces (`x86_64`, `aarch64`), so that
        `tilecc run model.so` finds the target from the file alone.
    setup: `setup(progress)` fetches/builds what running this target's `.so` needs (idempotent).
    graph_pipeline: the graph passes compile runs before lowering, as pipeline text.
    vector_lanes: fp32 lanes of the target's SIMD registers (16 AVX-512, 8 AVX2, 4 NEON): the
        kernel templates' vector width and the layout block.
    tuning_key: the target key under which tuning records for this target are filed (records
        from another CPU model do not apply).
    options: target options with defaults.
    export_options: flags for the C compiler when the `.so` links C sources (accelerators).
    accelerator: the BYOC plug-in (targets/accelerator.py) ops are offloaded to; None: none.
    host: for an accelerator target, the CPU target the rest of the model runs on.
    int8_data: the 8-bit data type its int8 kernels take ("uint8" for x86's vpmaddubsw /
        vpdpbusd, "int8" for aarch64's sdot); None: no int8 kernels (`--quantize` refused).
    int8_weight_max: the largest |int8 weight| its dot product takes without saturating
        (63 for vpmaddubsw without VNNI; schedules/int8_dot.py).
    """

    name: str
    summary: str
    tvm_target: dict[str, Any] | Callable[[], dict[str, Any]]
    machine: str
    cross_compiler: str | None = None
    runner: Callable | None = None
    read_metadata: Callable | None = None
    setup: Callable | None = None
    graph_pipeline: str = ""
    vector_lanes: int = 4
    tuning_key: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    export_options: tuple[str, ...] = ()
    accelerator: Any = None
    host: str | None = None
    int8_data: str | None = None
    int8_weight_max: int = 127

    def target_dict(self, num_cores: int | None = None) -> dict[str, Any]:
        """The TVM target as a plain dict with `num-cores` (what measuring workers receive)."""
        spec = dict(self.tvm_target() if callable(self.tvm_target) else self.tvm_target)
        spec.setdefault("num-cores", int(num_cores or self.options.get("threads", 2)))
        return spec

    def tvm(self, num_cores: int | None = None) -> tvm.target.Target:
        """The `tvm.target.Target` (built from a dict; TVM refuses CLI strings)."""
        return tvm.target.Target(self.target_dict(num_cores))
