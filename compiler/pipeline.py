"""The Relax -> TIR -> VM lowering pipeline a target compiles with.

Graph passes (compiler/pass_pipeline.py) run before this; here every target runs TVM's generic
CPU stages (library dispatch, legalize, dataflow lowering, finalize). Kernel templates will plug
in at legalization (`LegalizeOps(customize_legalize_map=...)`).
"""

from __future__ import annotations

import tvm
from tvm.relax.backend.cpu_generic import pipeline as cpu_generic


def lowering_passes(target: tvm.target.Target) -> list[tvm.transform.Pass]:
    """Relax graph -> fused TIR + VM-ready Relax, as TVM's CPU backend stages it."""
    return (
        cpu_generic.library_dispatch_passes(target)
        + cpu_generic.legalize_passes(target)
        + cpu_generic.dataflow_lower_passes(target)
        + cpu_generic.finalize_passes(target)
    )


def relax_pipeline(target: tvm.target.Target) -> tvm.transform.Pass:
    """One module pass that runs `lowering_passes` under `target` (what `tvm.compile` takes)."""

    @tvm.transform.module_pass(opt_level=0, name="tilecc-lowering")
    def _pipeline(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        with target:
            return tvm.transform.Sequential(lowering_passes(target))(mod)

    return _pipeline
