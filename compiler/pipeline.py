"""The Relax -> TIR -> VM lowering pipeline a target compiles with.

Graph passes (compiler/pass_pipeline.py) run before this. Here every target runs TVM's CPU
stages (library dispatch, legalize, dataflow lowering, finalize), with tilecc's kernel
templates at legalization: conv2d and dense legalize to a template's compute
(`LegalizeOps(customize_legalize_map=...)`), and after operator fusion each fused kernel that
holds a template's block gets the template's schedule (compiler/templates.py). exp, sigmoid,
silu and softmax legalize to vectorizable forms (compiler/fast_math.py).
"""

from __future__ import annotations

import tvm
from tvm import relax
from tvm.relax.backend.cpu_generic import pipeline as cpu_generic

from .fast_math import LEGALIZE
from .templates import TemplatePlan, fold_pads, schedule_templates


def legalize_passes(plan: TemplatePlan | None) -> list[tvm.transform.Pass]:
    """TVM's CPU legalize stage, with `plan`'s templates (None: TVM's generic computes) and
    vectorizable exp / sigmoid / silu / softmax (compiler/fast_math.py)."""
    legalize = relax.transform.LegalizeOps({**LEGALIZE, **(plan.legalize_map() if plan else {})})
    passes = [
        *([fold_pads(plan)] if plan else []),
        legalize,
        relax.transform.AnnotateTIROpPattern(),
        relax.transform.FoldConstant(),
        relax.transform.FuseOps(),
        relax.transform.FuseTIR(),
    ]
    return passes + ([schedule_templates(plan)] if plan else [])


def lowering_passes(
    target: tvm.target.Target,
    plan: TemplatePlan | None = None,
    codegen: tvm.transform.Pass | None = None,
) -> list[tvm.transform.Pass]:
    """Relax graph -> fused, scheduled TIR + VM-ready Relax; `codegen` (an accelerator's
    RunCodegen) first turns its partitioned functions into external calls."""
    return (
        ([codegen] if codegen is not None else [])
        + cpu_generic.library_dispatch_passes(target)
        + legalize_passes(plan)
        + cpu_generic.dataflow_lower_passes(target)
        + cpu_generic.finalize_passes(target)
    )


def relax_pipeline(
    target: tvm.target.Target,
    plan: TemplatePlan | None = None,
    codegen: tvm.transform.Pass | None = None,
) -> tvm.transform.Pass:
    """One module pass that runs `lowering_passes` under `target` (what `tvm.compile` takes)."""

    @tvm.transform.module_pass(opt_level=0, name="tilecc-lowering")
    def _pipeline(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        with target:
            return tvm.transform.Sequential(lowering_passes(target, plan, codegen))(mod)

    return _pipeline
