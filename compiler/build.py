"""Compile an imported model for a target and export a deployable `.so`, atomically.

The `.so` carries the weights, the Relax VM bytecode and its kernels, and a `tilecc_metadata`
VM function that returns JSON: the ONNX input/output names, shapes and dtypes and the target, so
that `tilecc run` and the C++ runner need nothing but the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path

import tvm
from tvm import relax

from tilecc.targets import TargetSpec
from tilecc.targets.accelerator import codegen_errors, partition

from .errors import ToolError
from .files import atomic_output
from .frontend_onnx import ImportedModel
from .pass_pipeline import IROptions, run_pipeline
from .pipeline import relax_pipeline
from .templates import TemplatePlan

METADATA_FUNC = "tilecc_metadata"
METADATA_FORMAT = "tilecc-model-1"


def metadata(imported: ImportedModel, target: TargetSpec) -> dict:
    return {
        "format": METADATA_FORMAT,
        "model": Path(imported.source).name,
        # Where the ONNX file was, and its digest: `tilecc run --compare-ort` finds it again.
        "source": str(Path(imported.source).resolve()),
        "source_sha256": imported.source_sha256,
        "target": target.name,
        "inputs": [i.to_json() for i in imported.inputs],
        "outputs": [o.to_json() for o in imported.outputs],
        "tvm": tvm.__version__,
    }


def bind_params(imported: ImportedModel) -> tvm.IRModule:
    """Weights back into "main" as constants, by position after the graph inputs."""
    main = imported.mod["main"]
    num_input = int(main.attrs["num_input"])
    weights = {
        var: tvm.runtime.tensor(value)
        for var, value in zip(main.params[num_input:], imported.params.values(), strict=True)
    }
    return relax.transform.BindParams("main", weights)(imported.mod)


def with_metadata(mod: tvm.IRModule, meta: dict) -> tvm.IRModule:
    """Add the `tilecc_metadata` function returning `meta` as a JSON string."""
    builder = relax.BlockBuilder()
    with builder.function(METADATA_FUNC, []):
        builder.emit_func_output(relax.expr.String(json.dumps(meta, sort_keys=True)))
    mod = mod.clone() if hasattr(mod, "clone") else tvm.IRModule(dict(mod.functions_items()))
    mod[METADATA_FUNC] = builder.get()[METADATA_FUNC]
    return mod


def optimize(
    imported: ImportedModel, target: TargetSpec, ir: IROptions | None = None
) -> tvm.IRModule:
    """Weights bound as constants, then the graph pipeline (`ir.passes`, else the target's)."""
    ir = ir or IROptions()
    return run_pipeline(bind_params(imported), ir.passes or target.graph_pipeline, **ir.flags())


def template_plan(target: TargetSpec, records=None) -> TemplatePlan:
    """Which kernel template and configuration each conv / dense gets: `records`' best, else
    the template's default for this target."""
    return TemplatePlan(lanes=target.vector_lanes, records=records, target_key=target.tuning_key)


def compile_imported(
    imported: ImportedModel,
    target: TargetSpec,
    threads: int | None = None,
    ir: IROptions | None = None,
    plan: TemplatePlan | None = None,
    codegen_options: dict[str, str] | None = None,
    on_partition=None,
):
    """Relax -> graph passes -> VM executable for `target` (weights embedded); kernels from
    `plan` (default: template defaults, no records). An accelerator target first partitions
    the graph (`on_partition(report)` hears how) and compiles its subgraphs with its codegen
    (`codegen_options`)."""
    tvm_target = target.tvm(threads)
    plan = plan or template_plan(target)
    mod = optimize(imported, target, ir)
    codegen = None
    if target.accelerator is not None:
        mod, report = partition(mod, target.accelerator)
        if on_partition is not None:
            on_partition(report)
        codegen = relax.transform.RunCodegen({target.accelerator.name: codegen_options or {}})
    mod = with_metadata(mod, metadata(imported, target))
    with codegen_errors():
        return tvm.compile(
            mod, target=tvm_target, relax_pipeline=relax_pipeline(tvm_target, plan, codegen)
        )


def export(executable, target: TargetSpec, out_path: str | Path) -> Path:
    """Link `executable` into `out_path` (cross-linked for foreign targets); nothing partial is
    ever left under `out_path` or beside it."""
    out = Path(out_path)
    kwargs = {"options": list(target.export_options)} if target.export_options else {}
    if target.cross_compiler:
        # Name the triple: cross_compiler("...-g++") otherwise asks the host's g++, and a module
        # with no LLVM kernels (everything offloaded) would get its imports packed for x86.
        cc = tvm.support.cc
        kwargs["fcompile"] = cc.cross_compiler(
            target.cross_compiler,
            get_target_triple=cc.get_target_by_dump_machine(target.cross_compiler),
        )
    with atomic_output(out, ".so") as tmp:
        try:
            with _drop_stderr_lines("Scope Saving:"):
                executable.export_library(str(tmp), **kwargs)
        except FileNotFoundError as exc:
            raise ToolError(
                f"{out}: linker '{target.cross_compiler or 'g++'}' not found ({exc}); "
                "run .ci/setup to install it"
            ) from exc
        except RuntimeError as exc:
            raise ToolError(f"{out}: linking for {target.name} failed:\n{exc}") from exc
        os.chmod(tmp, 0o755)
    return out


@contextlib.contextmanager
def _drop_stderr_lines(prefix_marker: str):
    """TVM 0.27's executable serializer logs a debug line per memory scope ("Scope Saving:")
    to the process's stderr; keep everything else it prints."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode(errors="replace").splitlines():
                if prefix_marker not in line:
                    print(line, file=sys.stderr)
