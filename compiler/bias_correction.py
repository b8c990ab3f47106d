"""Empirical bias correction: measure how far int8 moves each conv2d / matmul output on
average, with everything before it already quantized and corrected, and record the shift.

Rounding an op's input and weights moves its output by a mean amount per output channel; the
analytic correction (calibration.bias_shift) predicts the part the weights cause from the
input's mean. Quantizing the activations moves the means too (a clipped tail, rounding on a
flat region such as rec's mid-grey padding), and the errors of earlier ops reach later ones.
This measures the whole shift instead (Nagel et al. 2019, "Data-Free Quantization", the
empirical variant): the fake-quant model, with each op's correction as a run-time input, runs
the calibration samples; op k's per-channel output mean minus fp32's is its shift, measured
once the ops before it are corrected. Ops of one depth (counted in ops) do not feed one
another, so one run over the samples measures all of them.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tvm
from tvm import relax

from tilecc.passes.fake_quantize import anchor_key, is_anchor
from tilecc.targets import get_target

from .build import template_plan
from .calibration import ChannelMeanObserver
from .pass_pipeline import run_pipeline
from .pipeline import relax_pipeline


def anchor_outputs(mod: tvm.IRModule) -> list[tuple[str, relax.Var, int]]:
    """(key, output var, depth) of every conv2d / matmul with constant weights, in binding
    order; depth: 1 + the depth of the deepest such op upstream of it (0 for none)."""
    depth: dict = {}
    anchors = []
    for block in mod["main"].body.blocks:
        for binding in block.bindings:
            value = binding.value
            upstream = max((depth.get(v, 0) for v in relax.analysis.free_vars(value)), default=0)
            if is_anchor(value):
                anchors.append((anchor_key(value, len(anchors)), binding.var, upstream))
                upstream += 1
            depth[binding.var] = upstream
    return anchors


def output_axis(key: str) -> int:
    """The output-channel axis of an anchor's output: NCHW conv 1, matmul's [..., N] -1."""
    return 1 if key.startswith("conv2d:") else -1


def _with_shift_inputs(mod: tvm.IRModule) -> tuple[tvm.IRModule, dict[str, list[int]]]:
    """`main` taking one more input per anchor, a per-channel shift subtracted from its
    output (every use of the output sees the shifted value); key -> that input's shape, in
    input order."""
    main = mod["main"]
    params, keys, blocks = list(main.params), {}, []
    for block in main.body.blocks:
        bindings = []
        for binding in block.bindings:
            value = binding.value
            if not is_anchor(value):
                bindings.append(binding)
                continue
            key = anchor_key(value, len(keys))
            shape = [int(d) for d in binding.var.ty.shape]
            channels = shape[output_axis(key)]
            keys[key] = [1, channels, 1, 1] if output_axis(key) == 1 else [channels]
            shift = relax.Var(f"shift_{len(keys)}", relax.TensorType(keys[key], "float32"))
            params.append(shift)
            raw = type(binding.var)(f"{binding.var.name}_raw", binding.var.ty)
            bindings.append(relax.VarBinding(raw, value))
            bindings.append(relax.VarBinding(binding.var, relax.op.subtract(raw, shift)))
        blocks.append(type(block)(bindings))
    body = relax.BlockBuilder().normalize(relax.SeqExpr(blocks, main.body.body))
    out = tvm.IRModule(dict(mod.functions_items()))
    out["main"] = relax.Function(params, body, attrs=main.attrs)
    return relax.transform.Normalize()(out), keys


def measure_output_shifts(
    prepared: tvm.IRModule,
    table: dict,
    samples: list[list[np.ndarray]],
    fp32_means: dict[str, np.ndarray],
    weight_max: int,
    progress: Callable[[str], None] = print,
) -> dict[str, np.ndarray]:
    """key -> the mean shift per output channel of each anchor `table` quantizes, in the
    fake-quant build of `prepared` (QUANT_PIPELINE's module) with `table` and weights rounded
    to [-weight_max, weight_max]; `samples`: each a list of the model's inputs in order;
    `fp32_means`: each anchor's fp32 output mean per channel on the same samples."""
    from .quantize import fake_quantize_options, save_table, with_observers

    with tempfile.TemporaryDirectory(prefix="tilecc-bias-") as tmp:
        path = Path(tmp) / "table.json"
        save_table(table, path)
        options = fake_quantize_options(path, table, weight_max)
        fake = run_pipeline(prepared, f"fake-quantize{{{options} bias-correction=false}}")
    shifted, keys = _with_shift_inputs(fake)
    anchors = anchor_outputs(fake)
    outputs = {key: var for key, var, _ in anchors}
    depth = {key: d for key, _, d in anchors}
    observed = [outputs[k] for k in keys]
    shifts = {k: np.zeros(shape, np.float32) for k, shape in keys.items()}
    host = get_target("x86")
    target = host.tvm()
    executable = tvm.compile(
        with_observers(shifted, observed),
        target=target,
        relax_pipeline=relax_pipeline(target, template_plan(host)),
    )
    vm = relax.VirtualMachine(executable, tvm.cpu())
    inputs = [[tvm.runtime.tensor(x) for x in sample] for sample in samples]  # converted once
    own = len(vm["main"](*inputs[0], *_tensors(shifts))) - len(keys)  # the model's outputs
    index = {k: own + i for i, k in enumerate(keys)}
    measured: dict[str, np.ndarray] = {}
    levels = sorted({depth[k] for k in keys if k in table["activations"]})
    for step, level in enumerate(levels, 1):
        now = [k for k in keys if depth[k] == level and k in table["activations"]]
        means = {k: ChannelMeanObserver(output_axis(k)) for k in now}
        corrections = _tensors(shifts)  # the shifts measured so far, zeros for the rest
        for sample in inputs:
            out = vm["main"](*sample, *corrections)
            for k, mean in means.items():  # only these outputs leave the runtime
                mean.observe(out[index[k]].numpy())
        for k in now:
            measured[k] = means[k].mean - fp32_means[k]
            shifts[k] = measured[k].astype(np.float32).reshape(keys[k])
        progress(f"bias correction: depth {step}/{len(levels)}")
    return measured


def _tensors(shifts: dict[str, np.ndarray]) -> list:
    return [tvm.runtime.tensor(x) for x in shifts.values()]
