"""The plug-in surface for an accelerator target (BYOC): a pattern table and a C codegen.

An accelerator is one `Accelerator` record. tilecc partitions a model with its pattern table
(TVM's `FuseOpsByPattern` + `MergeCompositeFunctions`), hands every partitioned function to its
`codegen` through TVM's BYOC hook (`relax.ext.<name>`, run by `RunCodegen`), and links the C
that comes back into the same `.so` as the host code. Ops outside the table stay on the host CPU.

    ACCEL = Accelerator(name="toy", patterns=..., codegen=..., why_not=...)
    TARGET = accelerator_target("toy", "a toy accelerator", ACCEL, host=x86.TARGET)

`targets/npu/` is the worked example; `tutorials/new_target.py` adds one in under 100 lines.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import tvm
from tvm import relax
from tvm.relax.transform import FusionPattern

from tilecc.compiler.errors import TilecError

from .spec import TargetSpec


@dataclass(frozen=True)
class Accelerator:
    """One accelerator's BYOC plug-in.

    name: the codegen name; partitioned functions carry `Codegen=<name>`, and the codegen is
        registered as the TVM global `relax.ext.<name>`.
    patterns: `() -> [FusionPattern]`, the pattern table (Relax DPL), most specific first.
    codegen: `(functions, options) -> CSource`: C for every partitioned function, one
        translation unit; `options` are the target's codegen options (strings). Each function
        holds calls of composite functions (attribute "Composite", one per pattern match);
        their constants are bound inside them (weights, biases, scalars).
    why_not: `(call) -> str | None`: why an op the table does not take stays on the CPU
        (None: the op is supported; it stayed for its operands or neighbours).
    supports: what the accelerator runs, one phrase each, for `tilecc targets`.
    compile_options: C compiler flags for the generated code.
    read_config: `(path) -> options`: validates a configuration file (`--accel-config`) and
        turns it into codegen options; None: the accelerator takes no configuration.
    anchors: ops worth offloading on their own (conv, matmul, ...). When given, any other op
        is offloaded only if an offloaded op feeds it: an elementwise op alone between CPU ops
        would cost more in layout conversions at the boundary than it saves.
    """

    name: str
    patterns: Callable[[], Sequence[FusionPattern]]
    codegen: Callable[[list[relax.Function], dict[str, str]], CSource]
    why_not: Callable[[relax.Call], str | None]
    supports: tuple[str, ...] = ()
    compile_options: tuple[str, ...] = ("-O2",)
    read_config: Callable[[Path], dict[str, str]] | None = None
    anchors: tuple[str, ...] = ()


@dataclass(frozen=True)
class CSource:
    """What a codegen returns: one C translation unit and the functions it exports.

    `functions` are the partitioned functions' `global_symbol`s (plus any helper the code
    exports). Each is exported as `__tvm_ffi_<name>` with TVM FFI's calling convention,
    `int(void* self, const TVMFFIAny* args, int32_t num_args, TVMFFIAny* ret)`: the args are
    the function's inputs, then its outputs (destination-passing; tuple outputs flattened),
    each a DLTensor* or a tensor object; `ret` is set to None. `export` compiles the unit with
    g++, so the code must also be valid C++ and declare the exports `extern "C"`."""

    code: str
    functions: list[str] = field(default_factory=list)


def accelerator_target(
    name: str, summary: str, accelerator: Accelerator, host: TargetSpec, **fields
) -> TargetSpec:
    """A target that offloads to `accelerator` and runs everything else on `host`."""
    _register_codegen(accelerator)
    fields.setdefault("graph_pipeline", host.graph_pipeline)
    # An int8 graph would keep its convs from the accelerator's patterns and put them on the
    # host: no int8 build unless the accelerator target declares one.
    fields.setdefault("int8_data", None)
    return dataclasses.replace(
        host,
        name=name,
        summary=summary,
        accelerator=accelerator,
        host=host.name,
        export_options=host.export_options + accelerator.compile_options,
        **fields,
    )


def on_host(spec: TargetSpec, host: TargetSpec) -> TargetSpec:
    """`spec`'s accelerator with `host` as its CPU (`--target npu --host arm-cpu`)."""
    if spec.accelerator is None:
        raise ValueError(f"target '{spec.name}' has no accelerator; --host applies to one")
    return accelerator_target(
        spec.name,
        spec.summary,
        spec.accelerator,
        host,
        graph_pipeline=spec.graph_pipeline,
        int8_data=spec.int8_data,
    )


_codegen_errors: list[TilecError] = []


def _register_codegen(accelerator: Accelerator) -> None:
    def codegen(functions, options, _constant_names):
        try:
            source = accelerator.codegen(
                list(functions), {str(k): str(v) for k, v in options.items()}
            )
        except TilecError as exc:  # crosses TVM's FFI as a RuntimeError; keep the original
            _codegen_errors.append(exc)
            raise
        create = tvm.get_global_func("runtime.CSourceModuleCreate")
        return [create(source.code, "c", source.functions, [])]

    tvm.register_global_func(f"relax.ext.{accelerator.name}", codegen, override=True)


@contextlib.contextmanager
def codegen_errors():
    """Re-raise a codegen's own error (a TilecError naming the subgraph and kernel) when it
    comes back from TVM's RunCodegen as an opaque RuntimeError."""
    _codegen_errors.clear()
    try:
        yield
    except Exception:
        if _codegen_errors:
            raise _codegen_errors.pop() from None
        raise
    finally:
        _codegen_errors.clear()


# ---- partitioning --------------------------------------------------------------------------


@dataclass
class PartitionReport:
    """Which ops went to the accelerator (by subgraph) and which stayed on the CPU, and why."""

    accelerator: str
    subgraphs: dict[str, Counter] = field(default_factory=dict)
    host_ops: dict[str, Counter] = field(default_factory=dict)  # op -> Counter(reason)

    @property
    def offloaded(self) -> int:
        return sum(sum(c.values()) for c in self.subgraphs.values())

    @property
    def on_host(self) -> int:
        return sum(sum(c.values()) for c in self.host_ops.values())

    def summary(self) -> str:
        total = self.offloaded + self.on_host
        if not self.offloaded:
            return (
                f"notice: no op of this model runs on {self.accelerator} "
                f"({total} ops stay on the host CPU; the partition report says why)"
            )
        return (
            f"{self.accelerator}: {self.offloaded} of {total} ops in "
            f"{len(self.subgraphs)} subgraph(s); {self.on_host} on the host CPU"
        )

    def text(self) -> str:
        lines = [self.summary(), ""]
        for name, ops in self.subgraphs.items():
            body = ", ".join(f"{op} x{n}" for op, n in sorted(ops.items()))
            lines.append(f"  {name}: {body}")
        if self.host_ops:
            lines += ["", "on the host CPU:"]
            for op, reasons in sorted(self.host_ops.items()):
                for reason, n in reasons.most_common():
                    lines.append(f"  {op} x{n}: {reason}")
        return "\n".join(lines) + "\n"


def partition(mod: tvm.IRModule, accelerator: Accelerator) -> tuple[tvm.IRModule, PartitionReport]:
    """Group the ops `accelerator`'s table matches into composite functions, merge neighbours
    into subgraphs marked `Codegen=<name>`; the rest stays in `main` for the host."""
    patterns = list(accelerator.patterns())
    if accelerator.anchors:
        patterns = _fed_by_anchors(patterns, mod["main"], accelerator)
    mod = relax.transform.FuseOpsByPattern(patterns, bind_constants=True, annotate_codegen=False)(
        mod
    )
    mod = relax.transform.MergeCompositeFunctions()(mod)
    mod = _number_subgraphs(mod, accelerator.name)
    return mod, partition_report(mod, accelerator)


NOT_FED = "no offloaded op feeds it (alone, the layout conversions would cost more)"


def _fed_by_anchors(patterns, main: relax.Function, accelerator: Accelerator):
    """`patterns` whose checks also refuse a non-anchor op that no offloaded op feeds.

    Ops are named by the variable they bind: FuseOpsByPattern rewrites the function after each
    pattern, so later checks see new call nodes, but the bindings keep their names."""
    producer = {}
    offloaded: set[str] = set()
    for block in main.body.blocks:
        for binding in block.bindings:
            call = binding.value
            if not (isinstance(call, relax.Call) and isinstance(call.op, tvm.ir.Op)):
                continue
            producer[binding.var] = binding.var.name
            if accelerator.why_not(call) is not None:
                continue
            if _op_name(call) in accelerator.anchors or any(
                producer.get(a) in offloaded for a in call.args if isinstance(a, relax.Var)
            ):
                offloaded.add(binding.var.name)

    def wrap(pattern: FusionPattern) -> FusionPattern:
        def check(context) -> bool:
            root = context.annotated_expr.get("root", context.matched_expr)
            bound = context.value_to_bound_var.get(root)
            if bound is None or bound.name not in offloaded:
                return False
            return pattern.check is None or pattern.check(context)

        return FusionPattern(pattern.name, pattern.pattern, pattern.annotation_patterns, check)

    return [wrap(p) for p in patterns]


def _number_subgraphs(mod: tvm.IRModule, name: str) -> tvm.IRModule:
    """Subgraphs `<name>_0`, `<name>_1`, ... in the order `main` calls them (MergeComposite
    names them after every op they hold)."""
    order = []
    for call in _op_calls(mod["main"]):
        if isinstance(call.op, tvm.ir.GlobalVar) and call.op not in order:
            func = mod[call.op]
            if isinstance(func, relax.Function) and _codegen_of(func) == name:
                order.append(call.op)
    if not order:
        return mod
    builder = relax.BlockBuilder()
    renamed = {
        old: builder.add_func(mod[old].with_attr("global_symbol", f"{name}_{i}"), f"{name}_{i}")
        for i, old in enumerate(order)
    }

    @relax.expr_functor.mutator
    class Rename(relax.PyExprMutator):
        def visit_call_(self, call):
            call = super().visit_call_(call)
            if isinstance(call.op, tvm.ir.GlobalVar) and call.op in renamed:
                return relax.Call(renamed[call.op], call.args, call.attrs, call.ty_args)
            return call

    for gvar, func in mod.functions_items():
        if gvar in renamed:
            continue
        if gvar.name_hint == "main":
            func = Rename().visit_expr(func)
        builder.add_func(func, gvar.name_hint)
    return builder.get().with_attrs(mod.attrs) if mod.attrs else builder.get()


def partition_report(mod: tvm.IRModule, accelerator: Accelerator) -> PartitionReport:
    """Ops per subgraph, counted at every call site in `main` (MergeCompositeFunctions shares
    one function between identical subgraphs), in call order; host ops with their reasons."""
    report = PartitionReport(accelerator.name)
    ops_of = {
        gvar: _ops_inlined(func)
        for gvar, func in mod.functions_items()
        if isinstance(func, relax.Function) and _codegen_of(func) == accelerator.name
    }
    for call in _op_calls(mod["main"]):
        if isinstance(call.op, tvm.ir.GlobalVar) and call.op in ops_of:
            report.subgraphs.setdefault(call.op.name_hint, Counter()).update(ops_of[call.op])
        elif isinstance(call.op, tvm.ir.Op):
            reason = accelerator.why_not(call) or (
                NOT_FED if accelerator.anchors else "supported, but not matched here"
            )
            report.host_ops.setdefault(_op_name(call), Counter())[reason] += 1
    return report


def _ops_inlined(func: relax.Function) -> Counter:
    """Op counts of a subgraph, each call of a (shared) composite function counted."""
    local: dict = {}
    counts: Counter = Counter()
    for block in func.body.blocks:
        for binding in block.bindings:
            value = binding.value
            if isinstance(value, relax.Function):
                local[binding.var] = _ops_inlined(value)
            elif isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op):
                counts[_op_name(value)] += 1
            elif isinstance(value, relax.Call) and value.op in local:
                counts.update(local[value.op])
    return counts


def _codegen_of(func: relax.Function) -> str | None:
    return func.attrs["Codegen"] if func.attrs and "Codegen" in func.attrs else None


def _op_name(call: relax.Call) -> str:
    return call.op.name.removeprefix("relax.")


def _op_calls(func: relax.Function) -> list[relax.Call]:
    calls = []

    def visit(expr):
        if isinstance(expr, relax.Call):
            calls.append(expr)

    relax.analysis.post_order_visit(func.body, visit)
    return calls
