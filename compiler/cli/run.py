"""`tilecc run MODEL(.onnx|.so)`: run a model on its target, optionally against ONNX Runtime."""

from __future__ import annotations

import tempfile
from pathlib import Path

from tilecc.compiler import api
from tilecc.compiler.assets import sha256
from tilecc.compiler.errors import InputError, TilecError
from tilecc.compiler.reference import compare, ort_run
from tilecc.compiler.runtime import CompiledModel, random_inputs
from tilecc.targets.npu.report import format_report

from .common import (
    add_accelerator_args,
    add_model_args,
    add_quant_args,
    input_shapes,
    load_npz,
    partition_printer,
    progress,
    save_npz,
)


class ToleranceError(TilecError):
    """Outputs differ from ONNX Runtime by more than --atol."""


def add_parser(sub) -> None:
    parser = sub.add_parser("run", help="run a .so (or compile and run an .onnx)")
    add_model_args(parser, target_default=None)
    parser.add_argument("--inputs", metavar="IN.npz", help="inputs keyed by graph input name")
    parser.add_argument("--save-outputs", metavar="OUT.npz", help="write outputs keyed by name")
    parser.add_argument("--compare-ort", action="store_true", help="check against ONNX Runtime")
    parser.add_argument(
        "--onnx", metavar="MODEL.onnx", help="ONNX file for --compare-ort when MODEL is a .so"
    )
    parser.add_argument("--atol", type=float, default=1e-4, help="max abs error (default 1e-4)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    parser.add_argument(
        "--npu-report",
        action="store_true",
        help="print the simulated NPU's cycles, cube utilisation, buffer peaks and DMA bytes",
    )
    add_accelerator_args(parser)
    add_quant_args(parser)
    parser.set_defaults(drive=drive_run)


def drive_run(args) -> int:
    path = Path(args.model)
    with tempfile.TemporaryDirectory(prefix="tilecc-run-") as tmp:
        if path.suffix == ".onnx":
            target = args.target or "x86"
            progress(f"compiling {path} for {target}")
            so = api.compile_model(
                path,
                target,
                Path(tmp) / "model.so",
                input_shapes(args),
                host=args.host,
                accel_config=args.accel_config,
                on_partition=partition_printer(args),
                fake_quant=args.fake_quant,
                quantize=args.quantize,
            )
            onnx_path = path
        else:
            so, onnx_path = path, None
        compiled = CompiledModel(so)
        if args.target and compiled.target.name != args.target and path.suffix != ".onnx":
            progress(f"note: {so} is built for {compiled.target.name}; --target ignored")
        inputs = load_npz(args.inputs) if args.inputs else random_inputs(compiled.inputs, args.seed)
        if compiled.target.runner is not None:
            progress(f"running {so.name} on {compiled.target.name} (emulated)")
        outputs = compiled.run(inputs)
    for info in compiled.outputs:
        value = outputs[info.name]
        print(
            f"output {info.name}: {list(value.shape)} {value.dtype} "
            f"min {value.min():.6g} max {value.max():.6g} mean {value.mean():.6g}"
        )
    if args.npu_report:
        if compiled.npu_report is None:
            raise InputError(f"{so}: --npu-report needs a model compiled for --target npu")
        print(format_report(compiled.npu_report))
    if args.save_outputs:
        save_npz(args.save_outputs, outputs)
    if args.compare_ort:
        reference_model = onnx_path or _find_onnx(args, compiled)
        expected = ort_run(reference_model, inputs)
        return _report(compare(outputs, expected), args.atol)
    return 0


def _find_onnx(args, compiled: CompiledModel) -> Path:
    if args.onnx:
        return Path(args.onnx)
    source = Path(compiled.meta.get("source", ""))
    if source.is_file() and sha256(source) == compiled.meta.get("source_sha256"):
        return source
    raise InputError(
        f"{compiled.path}: --compare-ort needs the ONNX model; give --onnx MODEL.onnx "
        f"(compiled from {compiled.meta.get('model')}, not found unchanged at {source})"
    )


def _report(diffs, atol: float) -> int:
    worst = []
    for d in diffs:
        verdict = "ok" if d.within(atol) else "MISMATCH"
        print(f"vs ORT {d.name}: max abs {d.max_abs:.3g}  max rel {d.max_rel:.3g}  {verdict}")
        if not d.within(atol):
            worst.append(d.name)
    if worst:
        raise ToleranceError(
            f"output(s) {', '.join(worst)} differ from ONNX Runtime by more than atol={atol}"
        )
    return 0
