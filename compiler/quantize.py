"""Post-training quantization, step 1: calibrate a model and write its quantization table.

The model is imported and put through the graph passes that do not change layout
(`QUANT_PIPELINE`); every conv2d / matmul activation input is then added to `main`'s outputs,
the module is compiled by tilecc for this host, and the calibration samples run through it
twice: once for ranges (and per-channel means), once for histograms over those ranges
(percentile, kl). The table gives each conv2d / matmul (`conv2d:<k>`, the k-th in binding
order, stable for the same model and pipeline) the int8 parameters of its activation input and,
with bias correction, the input's mean per channel; `passes/fake_quantize.py` and
`passes/quantize_int8.py` read it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tvm
from tvm import relax

from tilecc.passes.fake_quantize import anchors
from tilecc.targets import get_target

from .bias_correction import anchor_outputs, measure_output_shifts, output_axis
from .build import bind_params, template_plan
from .calibration import (
    METHODS,
    ChannelMeanObserver,
    HistogramObserver,
    RangeObserver,
    activation_qparams,
    kl_threshold,
    percentile_range,
)
from .errors import InputError
from .files import atomic_output
from .frontend_onnx import ImportedModel
from .pass_pipeline import run_pipeline
from .pipeline import relax_pipeline

# Tables name each activation by its op's rank among the conv2d / matmul ops QUANT_PIPELINE
# leaves; version 2: conv-transpose-to-conv1x1 makes a conv2d_transpose a conv2d (a matmul
# in version 1), which renumbers the ops of a model that has one
TABLE_FORMAT = "tilecc-quant-table-2"
QUANT_PIPELINE = (
    "fold-constant,fold-batchnorm,simplify-reshape,conv-transpose-to-conv1x1,fold-constant,"
    "expand-clip,scalarize-constants,cse,dce"
)


def quantizable(mod: tvm.IRModule) -> list[tuple[str, relax.Var]]:
    """(key, activation input) of every conv2d / matmul with constant weights, in binding
    order; the key `conv2d:<k>` / `matmul:<k>` counts such ops (Relax names repeat after the
    graph passes, so they cannot be keys)."""
    return [(key, call.args[0]) for key, call in anchors(mod["main"])]


def with_observers(mod: tvm.IRModule, values: list[relax.Var]) -> tvm.IRModule:
    """`main` also returns `values` (after its own outputs), so a run shows them."""
    main = mod["main"]
    body = main.body
    outputs = body.body
    own = list(outputs.fields) if isinstance(outputs, relax.Tuple) else [outputs]
    blocks = list(body.blocks)
    if isinstance(blocks[-1], relax.DataflowBlock):  # observed values must leave the block
        exposed = set(values)
        bindings = []
        renamed = {}
        for b in blocks[-1].bindings:
            if isinstance(b.var, relax.DataflowVar) and b.var in exposed:
                var = relax.Var(b.var.name, b.var.ty)
                renamed[b.var] = var
                bindings.append(relax.VarBinding(var, b.value))
                bindings.append(relax.VarBinding(b.var, var))
            else:
                bindings.append(b)
        blocks[-1] = relax.DataflowBlock(bindings)
        values = [renamed.get(v, v) for v in values]
    new_body = relax.BlockBuilder().normalize(relax.SeqExpr(blocks, relax.Tuple(own + values)))
    func = relax.Function(main.params, new_body, attrs=main.attrs)
    out = mod.clone() if hasattr(mod, "clone") else tvm.IRModule(dict(mod.functions_items()))
    out["main"] = func
    return relax.transform.Normalize()(out)


def prepared(imported: ImportedModel) -> tvm.IRModule:
    """The module quantization sees: weights bound, layout-neutral graph passes."""
    return run_pipeline(bind_params(imported), QUANT_PIPELINE)


def calibrate(
    imported: ImportedModel,
    samples: list[dict[str, np.ndarray]],
    method: str = "minmax",
    percentile: float = 99.99,
    symmetric: bool = False,
    progress: Callable[[str], None] = print,
    per_channel: bool = True,
    bias_correction: bool = True,
    empirical: bool = False,
) -> dict:
    """The quantization table of `imported` over `samples` (dicts keyed by input name); with
    `bias_correction`, each entry also holds its input's mean per channel (`channel_mean`);
    with `empirical` too, the mean shift of its output that the fake-quant build measures
    (`output_shift`, compiler/bias_correction.py), which builds subtract instead."""
    if method not in METHODS:
        raise InputError(f"unknown calibration method '{method}' (one of: {', '.join(METHODS)})")
    if not samples:
        raise InputError(f"{imported.source}: no calibration samples")
    mod = prepared(imported)
    points = quantizable(mod)
    unique = list(dict.fromkeys(var for _, var in points))  # a value may feed several ops
    if not points:
        raise InputError(f"{imported.source}: no quantizable op (conv2d or matmul with weights)")
    host = get_target("x86")
    target = host.tvm()
    outputs = anchor_outputs(mod) if empirical and bias_correction else []
    executable = tvm.compile(
        with_observers(mod, unique + [var for _, var, _ in outputs]),
        target=target,
        relax_pipeline=relax_pipeline(target, template_plan(host)),
    )
    vm = relax.VirtualMachine(executable, tvm.cpu())
    names = [i.name for i in imported.inputs]

    def observed(sample, with_outputs=True):
        """The observed op inputs and, `with_outputs`, the observed op outputs of a run."""
        out = vm["main"](*[tvm.runtime.tensor(sample[n]) for n in names])
        first = len(out) - len(unique) - len(outputs)  # after the model's own outputs
        stop = len(out) if with_outputs else first + len(unique)
        values = [out[i].numpy() for i in range(first, stop)]  # only these leave the runtime
        return values[: len(unique)], values[len(unique) :]

    ranges = [RangeObserver() for _ in unique]
    kind = {var: key.split(":")[0] for key, var in reversed(points)}  # first consumer's kind
    means = [ChannelMeanObserver(1 if kind[var] == "conv2d" else -1) for var in unique]
    out_means = {key: ChannelMeanObserver(output_axis(key)) for key, _, _ in outputs}
    for i, sample in enumerate(samples):
        inputs, outs = observed(sample)
        for r, m, value in zip(ranges, means, inputs, strict=True):
            r.observe(value)
            if bias_correction:
                m.observe(value)
        for m, value in zip(out_means.values(), outs, strict=True):
            m.observe(value)
        progress(f"calibrating ({method}): ranges {i + 1}/{len(samples)}")
    hists = None
    if method != "minmax":
        hists = [HistogramObserver(r.low, r.high, magnitude=method == "kl") for r in ranges]
        for i, sample in enumerate(samples):
            for h, value in zip(hists, observed(sample, with_outputs=False)[0], strict=True):
                h.observe(value)
            progress(f"calibrating ({method}): histograms {i + 1}/{len(samples)}")
    by_value = {}
    for k, (var, r) in enumerate(zip(unique, ranges, strict=True)):
        low, high = r.low, r.high
        if method == "percentile":
            low, high = percentile_range(hists[k], percentile)
        elif method == "kl":
            t = kl_threshold(hists[k].counts, hists[k].absmax)
            low, high = max(low, -t), min(high, t)
        qp = activation_qparams(low, high, symmetric)
        by_value[var] = {
            "scale": qp.scale,
            "zero_point": qp.zero_point,
            "observed": [r.low, r.high],
            "range": [low, high],
        }
        if bias_correction:
            by_value[var]["channel_mean"] = means[k].mean.tolist()
    activations = {key: dict(by_value[var]) for key, var in points}
    table = {
        "format": TABLE_FORMAT,
        "model_sha256": imported.source_sha256,
        "method": method,
        "percentile": percentile if method == "percentile" else None,
        "symmetric_activations": symmetric,
        "per_channel_weights": per_channel,
        "bias_correction": bias_correction,
        "samples": len(samples),
        "activations": activations,
    }
    if outputs:
        weight_max = get_target("x86").int8_weight_max
        fp32 = {key: m.mean for key, m in out_means.items()}
        inputs = [[s[n] for n in names] for s in samples]
        shifts = measure_output_shifts(mod, table, inputs, fp32, weight_max, progress)
        for key, shift in shifts.items():
            activations[key]["output_shift"] = shift.tolist()
        table["output_shift_weight_max"] = weight_max  # the rounding the shifts were measured at
    return table


def load_samples(folder: str | Path, imported: ImportedModel) -> list[dict[str, np.ndarray]]:
    """Calibration samples: every `.npz` in `folder`, each keyed by the model's input names,
    checked against the model's input shapes and dtypes."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such calibration folder")
    files = sorted(folder.glob("*.npz"))
    if not files:
        raise InputError(f"{folder}: no calibration samples (.npz files keyed by input name)")
    samples = []
    for path in files:
        with np.load(path) as data:
            sample = {}
            for info in imported.inputs:
                if info.name not in data:
                    raise InputError(f"{path}: no array named '{info.name}' (a model input)")
                value = np.asarray(data[info.name])
                if tuple(value.shape) != tuple(info.shape) or str(value.dtype) != info.dtype:
                    raise InputError(
                        f"{path}: '{info.name}' is {list(value.shape)} {value.dtype}, the model "
                        f"takes {list(info.shape)} {info.dtype}"
                    )
                sample[info.name] = value
            samples.append(sample)
    return samples


def read_table(table_path: str | Path, imported: ImportedModel) -> dict:
    """The quantization table at `table_path`, checked to be one, and for `imported`."""
    path = Path(table_path)
    try:
        table = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a quantization table ({exc})") from exc
    found = table.get("format") if isinstance(table, dict) else None
    if isinstance(found, str) and found.startswith("tilecc-quant-table-") and found != TABLE_FORMAT:
        raise InputError(
            f"{path}: a quantization table of format {found}; this tilecc reads {TABLE_FORMAT}"
            " (its ops are numbered differently): run `tilecc quantize` again"
        )
    if found != TABLE_FORMAT:
        raise InputError(f"{path}: not a quantization table (format {TABLE_FORMAT})")
    if table.get("model_sha256") != imported.source_sha256:
        raise InputError(f"{path}: calibrated for another model than {imported.source}")
    return table


def fake_quant_pipeline(
    table_path: str | Path, imported: ImportedModel, rest: str, weight_max: int = 127
) -> str:
    """The graph pipeline of a fake-quant build: the passes the table was calibrated after,
    `fake-quantize` with the table (weights rounded to [-weight_max, weight_max], as the
    target's int8 kernels take them), then `rest` (the target's pipeline)."""
    options = fake_quantize_options(table_path, read_table(table_path, imported), weight_max)
    return f"{QUANT_PIPELINE},fake-quantize{{{options}}},{rest}"


def fake_quantize_options(table_path: str | Path, table: dict, weight_max: int) -> str:
    """The `fake-quantize` options for `table` (read from `table_path`), weights rounded to
    [-weight_max, weight_max]."""
    per_channel = "true" if table.get("per_channel_weights", True) else "false"
    return f"table={Path(table_path).resolve()} per-channel={per_channel} weight-max={weight_max}"


def int8_pipeline(table_path: str | Path, imported: ImportedModel, rest: str, target) -> str:
    """The graph pipeline of an int8 build for `target` (a TargetSpec): `rest` (the target's
    pipeline, which numbers conv2d / matmul anchors as QUANT_PIPELINE does), then
    `quantize-int8` with the table and the target's int8 data type and weight range, and
    `sink-shuffles` (a quantize after a depth-to-space moves before it, into the conv's
    epilogue) ahead of the passes that fold the requantization."""
    if target.int8_data is None:
        raise InputError(f"target '{target.name}' has no int8 kernels; --quantize needs one")
    table = read_table(table_path, imported)
    per_channel = "true" if table.get("per_channel_weights", True) else "false"
    options = (
        f"table={Path(table_path).resolve()} data-dtype={target.int8_data} "
        f"weight-max={target.int8_weight_max} per-channel={per_channel}"
    )
    return (
        f"{rest},quantize-int8{{{options}}},sink-shuffles,multiply-by-reciprocal,"
        "fold-affine-chains,dce"
    )


QDQ = "qdq"  # `--quantize qdq`: the table comes from the model's own Q/DQ parameters


def import_qdq(model, input_shapes, table_path: Path) -> tuple[ImportedModel, Path]:
    """A pre-quantized (QDQ) ONNX model as its fp32 graph, and at `table_path` the quantization
    table of its own Q/DQ parameters (compiler/onnx_qdq.py)."""
    from .frontend_onnx import import_onnx, load_onnx
    from .onnx_qdq import is_qdq, qdq_table, qoperators_as_qdq, strip_qdq

    proto = qoperators_as_qdq(load_onnx(model))
    if not is_qdq(proto):
        raise InputError(f"{model}: --quantize qdq needs a QDQ model (it has no QuantizeLinear)")
    stripped, anchors = strip_qdq(proto, str(model))
    imported = import_onnx(model, input_shapes, model=stripped)
    table = qdq_table(prepared(imported), anchors, str(model), imported.source_sha256)
    save_table(table, table_path)
    return imported, table_path


def save_table(table: dict, path: Path) -> None:
    with atomic_output(Path(path), ".json") as tmp:
        tmp.write_text(json.dumps(table, indent=1, sort_keys=True))
