"""`--report`: Relax op counts of a module before the graph pipeline, after each pass, and after
the pipeline, so a user sees what each pass did to the graph."""

from __future__ import annotations

from collections import Counter

import tvm
from tvm import relax
from tvm.ir.instrument import pass_instrument

from tilecc.passes.registry import is_registered


def count_ops(mod: tvm.IRModule) -> Counter:
    """Calls per Relax operator (`nn.conv2d`: 62) over every Relax function of `mod`."""
    counts: Counter = Counter()

    def visit(expr):
        if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op):
            counts[expr.op.name.removeprefix("relax.")] += 1

    for _, func in mod.functions_items():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func.body, visit)
    return counts


@pass_instrument
class OpCountReport:
    """Records `count_ops` before the first and after every registered tilecc pass."""

    def __init__(self):
        self.before: Counter | None = None
        self.after_pass: list[tuple[str, Counter]] = []

    def run_before_pass(self, mod, info):
        if self.before is None and is_registered(info.name):
            self.before = count_ops(mod)

    def run_after_pass(self, mod, info):
        if is_registered(info.name):
            self.after_pass.append((info.name, count_ops(mod)))

    def render(self, title: str = "") -> str:
        if self.before is None:
            return f"op report{': ' + title if title else ''}: no passes ran"
        final = self.after_pass[-1][1] if self.after_pass else self.before
        lines = [f"op report{': ' + title if title else ''}"]
        lines.append(f"  {'op':28s} {'before':>7s} {'after':>7s}")
        for op in sorted(set(self.before) | set(final), key=lambda o: (-self.before[o], o)):
            lines.append(f"  {op:28s} {self.before[op]:7d} {final[op]:7d}")
        lines.append(f"  {'total':28s} {sum(self.before.values()):7d} {sum(final.values()):7d}")
        lines.append("  per pass:")
        previous = self.before
        for name, counts in self.after_pass:
            delta = counts.copy()
            delta.subtract(previous)
            changes = ", ".join(
                f"{op} {n:+d}" for op, n in sorted(delta.items(), key=lambda kv: kv[1]) if n
            )
            lines.append(f"    {name:24s} {sum(counts.values()):6d} ops  {changes or 'no change'}")
            previous = counts
        return "\n".join(lines)
