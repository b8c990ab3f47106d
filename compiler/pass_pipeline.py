"""Textual pass pipelines and the instruments that print, verify and time them.

Pipeline syntax (MLIR's `--pass-pipeline` textual form, without the op nesting):

    pipeline := pass ("," pass)*
    pass     := NAME ["{" option (" " option)* "}"]
    option   := KEY "=" VALUE | KEY          (a bare KEY means KEY=true)

Passes are separated by commas; options inside braces by spaces; a list value is a comma list
(commas inside braces belong to the value). Names and keys are kebab-case. Example:

    fold-constant,fuse-conv-act{acts=relu,hardswish max-depth=2},dce

Everything runs through TVM's pass machinery: the passes are one `tvm.transform.Sequential`
under a `PassContext` whose instruments do the printing, verification and timing. Instruments
also see the TVM passes that tilecc passes run inside (FoldConstant compiles TIR with dozens);
they act only on registered tilecc pass names.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass

import tvm
import tvm_ffi
from tvm import relax
from tvm.ir.instrument import PassTimingInstrument, pass_instrument
from tvm.relax.analysis import BaseCheckResult, type_base_check

from tilecc import passes as _passes  # noqa: F401  (registers every pass)
from tilecc.compiler.errors import TilecError
from tilecc.compiler.op_report import OpCountReport
from tilecc.passes.registry import all_passes, closest, get_pass_info, is_registered

_NAME = re.compile(r"[a-z][a-z0-9-]*\Z")
_PIPELINE_NAME = "tilecc-pipeline"


@dataclass(frozen=True)
class IROptions:
    """The command line's IR flags: which pipeline, and what to print, verify and time."""

    passes: str | None = None  # None: the target's default pipeline
    print_ir_before: tuple[str, ...] = ()
    print_ir_after: tuple[str, ...] = ()
    print_ir_after_all: bool = False
    print_ir_after_change: bool = False
    verify_each: bool = True
    pass_timing: bool = False
    report: bool = False

    def flags(self) -> dict:
        """Keyword arguments of `run_pipeline`."""
        return {
            "print_ir_before": self.print_ir_before,
            "print_ir_after": self.print_ir_after,
            "print_ir_after_all": self.print_ir_after_all,
            "print_ir_after_change": self.print_ir_after_change,
            "verify_each": self.verify_each,
            "timing": self.pass_timing,
            "report": self.report,
        }


class PipelineError(TilecError):
    """Malformed pipeline text, an unknown pass, or IR a pass left ill-formed."""


def _unknown_pass(name: str, where: str = "in pipeline") -> PipelineError:
    msg = f"unknown pass '{name}' {where}"
    if hint := closest(name, [info.name for info in all_passes()]):
        msg += f" (did you mean '{hint}'?)"
    return PipelineError(msg)


def _split_top_level(text: str) -> list[tuple[int, str]]:
    """Split at commas outside braces; returns (column, piece) pairs."""
    pieces, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "{":
            depth += 1
            if depth > 1:
                raise PipelineError(f"pipeline '{text}': nested '{{' at column {i + 1}")
        elif ch == "}":
            depth -= 1
            if depth < 0:
                raise PipelineError(f"pipeline '{text}': unmatched '}}' at column {i + 1}")
        elif ch == "," and depth == 0:
            pieces.append((start, text[start:i]))
            start = i + 1
    if depth:
        raise PipelineError(f"pipeline '{text}': missing '}}' at the end")
    pieces.append((start, text[start:]))
    return pieces


def parse_pipeline(text: str) -> list[tuple[str, dict[str, str]]]:
    """`a,b{k=v k2=x,y}` -> [("a", {}), ("b", {"k": "v", "k2": "x,y"})]; syntax only."""
    result = []
    for col, piece in _split_top_level(text):
        piece_stripped = piece.strip()
        name, _, rest = piece_stripped.partition("{")
        name = name.strip()
        if not name:
            raise PipelineError(f"pipeline '{text}': empty pass name at column {col + 1}")
        if not _NAME.match(name):
            raise PipelineError(f"pipeline '{text}': '{name}' is not a pass name (kebab-case)")
        options: dict[str, str] = {}
        if rest:
            if not rest.endswith("}"):
                raise PipelineError(f"pipeline '{text}': text after '}}' in '{piece_stripped}'")
            for item in rest[:-1].split():
                key, eq, value = item.partition("=")
                if not key:
                    raise PipelineError(f"pipeline '{text}': option without a name in '{name}'")
                if key in options:
                    raise PipelineError(f"pipeline '{text}': option '{key}' given twice to {name}")
                options[key] = value if eq else "true"
        result.append((name, options))
    return result


def build_pipeline(text: str) -> list[tvm.transform.Pass]:
    """Parse `text` and instantiate each pass with its typed options."""
    built = []
    for name, options in parse_pipeline(text):
        if not is_registered(name):
            raise _unknown_pass(name)
        built.append(get_pass_info(name).create(**options))
    return built


def _check_names(names, flag: str) -> frozenset[str]:
    for name in names:
        if not is_registered(name):
            raise _unknown_pass(name, f"in {flag}")
    return frozenset(names)


def _header(when: str, name: str) -> str:
    return f"// -----// IR Dump {when} {name} //----- //"


@pass_instrument
class _PrintIR:
    """MLIR-style IR dumps around registered passes (nested TVM passes are never printed)."""

    def __init__(self, before, after, after_all, after_change, out):
        self.before, self.after, self.out = before, after, out
        self.after_all, self.after_change = after_all, after_change
        self.inputs = []  # stack: a tilecc pass may run another one inside itself

    def _print(self, when, name, mod):
        print(_header(when, name), file=self.out)
        print(mod.script(), file=self.out)

    def run_before_pass(self, mod, info):
        if not is_registered(info.name):
            return
        self.inputs.append(mod)
        if info.name in self.before:
            self._print("Before", info.name, mod)

    def run_after_pass(self, mod, info):
        if not is_registered(info.name):
            return
        before = self.inputs.pop()
        changed = not tvm_ffi.structural_equal(before, mod)
        if self.after_all or info.name in self.after or (self.after_change and changed):
            self._print("After", info.name, mod)


def verify_ir(mod: tvm.IRModule) -> None:
    """Raise ValueError/TypeError describing the first inconsistency in `mod`'s Relax functions.

    `relax.analysis.well_formed` checks that every var is defined before use, every expression is
    typed and (in TVM 0.27) that an annotated call's type matches the one derived from its
    arguments. On top, independently of what well_formed covers in a given TVM version: each
    function's body must fit its declared return type, and each operator call's type is derived
    afresh from its arguments and checked against its binding's var.
    """
    relax.analysis.well_formed(mod)
    bb = relax.BlockBuilder()
    for gvar, func in mod.functions_items():
        if not isinstance(func, relax.Function):
            continue
        where = f"function '{gvar.name_hint}'"
        if type_base_check(func.ret_ty, func.body.ty) != BaseCheckResult.PASS:
            raise TypeError(f"{where}: body type {func.body.ty} is not its return {func.ret_ty}")
        for block in func.body.blocks:
            for binding in block.bindings:
                value = binding.value
                if not isinstance(value, relax.Call) or not isinstance(value.op, tvm.ir.Op):
                    continue
                fresh = relax.Call(value.op, value.args, value.attrs, value.ty_args)
                derived = bb.normalize(fresh).ty
                if type_base_check(binding.var.ty, derived) != BaseCheckResult.PASS:
                    raise TypeError(
                        f"{where}: '{binding.var.name}' is declared {binding.var.ty} but "
                        f"{value.op.name} of its arguments gives {derived}"
                    )


@pass_instrument
class _Verify:
    """Verify the IR after every registered pass; the first failure stops the pipeline.

    An exception raised in an instrument reaches Python as a bare RuntimeError, so the error is
    kept here and `should_run` skips every later pass; run_pipeline raises it afterwards.
    """

    def __init__(self):
        self.error: PipelineError | None = None

    def should_run(self, mod, info):
        return self.error is None

    def run_after_pass(self, mod, info):
        if self.error is None and is_registered(info.name):
            try:
                verify_ir(mod)
            except Exception as err:  # noqa: BLE001 - any failure to verify is ill-formed IR
                self.error = PipelineError(f"pass '{info.name}' produced ill-formed IR: {err}")


_TIMING_LINE = re.compile(r"(\t*)(.+): (\d+)us \[(\d+)us\]")


def timing_table(rendered: str) -> str:
    """`PassTimingInstrument.render()` text -> a table of tilecc passes, slowest first.

    Times are totals (including the TVM passes each one runs inside), summed over repeated runs
    of the same pass; % is of the whole pipeline.
    """
    totals: dict[str, int] = {}
    pipeline_us = 0
    for line in rendered.splitlines():
        if not (m := _TIMING_LINE.match(line)):
            continue
        name, total_us = m.group(2), int(m.group(3))
        if name == _PIPELINE_NAME:
            pipeline_us += total_us
        elif is_registered(name):
            totals[name] = totals.get(name, 0) + total_us
    pipeline_us = max(pipeline_us, sum(totals.values()), 1)
    width = max([len("pass"), *map(len, totals)])
    lines = [f"{'pass':<{width}}  {'ms':>10}  {'%':>6}"]
    for name, us in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(f"{name:<{width}}  {us / 1000:>10.3f}  {100 * us / pipeline_us:>6.2f}")
    lines.append(f"{'total':<{width}}  {pipeline_us / 1000:>10.3f}  {100:>6.2f}")
    return "\n".join(lines)


def run_pipeline(
    mod: tvm.IRModule,
    passes,
    print_ir_before=(),
    print_ir_after=(),
    print_ir_after_all: bool = False,
    print_ir_after_change: bool = False,
    verify_each: bool = True,
    timing: bool = False,
    report: bool = False,
    out=None,
) -> tvm.IRModule:
    """Run `passes` (pipeline text or a list of passes) on `mod` and return the result.

    Dumps and the timing table go to `out` (default: sys.stderr). Under `verify_each` the input is
    verified first, so a pass is never blamed for IR it was given.
    """
    out = sys.stderr if out is None else out
    if isinstance(passes, str):
        passes = build_pipeline(passes)
    before = _check_names(print_ir_before, "--print-ir-before")
    after = _check_names(print_ir_after, "--print-ir-after")
    if verify_each:
        try:
            verify_ir(mod)
        except Exception as err:  # noqa: BLE001 - any failure to verify is ill-formed IR
            raise PipelineError(f"input IR is ill-formed: {err}") from None
    instruments = []
    if before or after or print_ir_after_all or print_ir_after_change:
        instruments.append(_PrintIR(before, after, print_ir_after_all, print_ir_after_change, out))
    verifier = _Verify() if verify_each else None
    instruments += [verifier] if verifier else []
    timer = PassTimingInstrument() if timing else None
    instruments += [timer] if timer else []
    op_report = OpCountReport() if report else None
    instruments += [op_report] if op_report else []

    outer = tvm.transform.PassContext.current()
    ctx = tvm.transform.PassContext(
        opt_level=outer.opt_level,
        required_pass=list(outer.required_pass),
        disabled_pass=list(outer.disabled_pass),
        instruments=list(outer.instruments) + instruments,
        config=dict(outer.config),
    )
    with ctx:
        result = tvm.transform.Sequential(passes, opt_level=0, name=_PIPELINE_NAME)(mod)
        rendered = timer.render() if timer else ""  # profiles are dropped when ctx exits
    if verifier and verifier.error:
        raise verifier.error
    if timer:
        print(timing_table(rendered), file=out)
    if op_report:
        print(op_report.render(), file=out)
    return result
