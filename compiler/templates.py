"""Kernel templates in the lowering pipeline.

`TemplatePlan` picks, for every conv2d and dense (matmul with a constant weight) of a model,
a template from schedules/ and a configuration: the fastest tuning record for that workload
on this target, else the template's default. Then:
- `legalize_map()` plugs into `LegalizeOps(customize_legalize_map=...)`: each op becomes the
  template's TE compute, its weight transform a separate call that FoldConstant evaluates at
  compile time;
- `schedule_templates` runs after FuseOps/FuseTIR: every fused PrimFunc holding a template's
  block (found by its annotations) gets that template's schedule, epilogue included; every
  other kernel (layout transforms, elementwise chains) gets a plain parallel / vectorized one.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from dataclasses import dataclass, field

import tvm
from tvm import relax, s_tir, te, topi

from tilecc.schedules.registry import get_template, templates_for
from tilecc.schedules.space import Config, ConfigError
from tilecc.schedules.template import (
    Template,
    read_annotations,
    schedule_rest,
    template_blocks,
)
from tilecc.schedules.workload import Conv2dWorkload, DenseWorkload, workload_from_key

_BLOCKED = re.compile(r"^NCHW(\d+)c$")


@dataclass
class Choice:
    template: Template
    workload: object
    config: Config
    source: str  # "records" or "default"


@dataclass
class TemplatePlan:
    """Template and configuration per workload for one target.

    lanes: the target's fp32 SIMD width; records: a tuning `Records` (or None);
    target_key: the records' target key for this target.
    """

    lanes: int
    records: object = None
    target_key: str = ""
    choices: dict[str, Choice] = field(default_factory=dict)
    fallbacks: list[str] = field(default_factory=list)

    def choose(self, workload) -> Choice | None:
        key = workload.key()
        if key in self.choices:
            return self.choices[key]
        choice = self._from_records(workload) or self._default(workload)
        if choice is not None:
            self.choices[key] = choice
        return choice

    def _from_records(self, workload) -> Choice | None:
        if self.records is None:
            return None
        best = self.records.best(workload.key(), self.target_key)
        if best is None:
            return None
        name, cfg, _seconds = best
        template = get_template(name)
        try:
            cfg = template.space(workload, self.lanes).check(cfg)
        except ConfigError as exc:  # a record from an older version of the template
            print(f"warning: ignoring record for {workload.describe()}: {exc}", file=sys.stderr)
            return None
        return Choice(template, workload, cfg, "records")

    def _default(self, workload) -> Choice | None:
        candidates = templates_for(workload)
        if not candidates:
            return None
        template = default_template(workload, candidates)
        return Choice(template, workload, template.space(workload, self.lanes).default(), "default")

    def legalize_map(self) -> dict:
        return {"relax.nn.conv2d": self._legalize_conv2d, "relax.matmul": self._legalize_matmul}

    def _legalize_conv2d(self, bb: relax.BlockBuilder, call: relax.Call):
        workload = conv2d_workload(call)
        choice = self.choose(workload) if workload is not None else None
        if choice is None:
            return _tvm_legalize(bb, call)
        weight = call.args[1]
        if call.attrs.kernel_layout != "OIHW":
            weight = bb.emit_te(_kernel_to_oihw, weight, str(call.attrs.kernel_layout))
        return _emit_template(bb, choice, call.args[0], weight)

    def _legalize_matmul(self, bb: relax.BlockBuilder, call: relax.Call):
        workload = dense_workload(call)
        choice = self.choose(workload) if workload is not None else None
        if choice is None:
            return _tvm_legalize(bb, call)
        data, weight = call.args
        out_shape = [int(d) for d in call.ty.shape]
        if len(data.ty.shape) != 2:
            data = bb.emit(relax.op.reshape(data, [workload.m, workload.k]))
        weight = bb.emit_te(topi.transpose, weight, [1, 0])  # [k, n] -> [n, k]
        out = _emit_template(bb, choice, data, weight)
        if len(out_shape) != 2:
            out = bb.emit(relax.op.reshape(out, out_shape))
        return out


def default_template(workload, candidates: list[Template]) -> Template:
    """Without records: depthwise for depthwise convs, Winograd for stride-1 3x3 convs with at
    least 32 input and 16 output channels (where its arithmetic saving outweighs the transforms:
    measured 1.35-1.5x over direct at 96 -> 24, 2.4-2.9x at 64 channels and up), else direct
    conv / dense."""
    by_name = {t.name: t for t in candidates}
    if workload.op == "conv2d":
        if workload.is_depthwise and "depthwise" in by_name:
            return by_name["depthwise"]
        if (
            "conv2d_winograd" in by_name
            and workload.in_channels >= 32
            and workload.out_channels >= 16
        ):
            return by_name["conv2d_winograd"]
        if "conv2d_direct" in by_name:
            return by_name["conv2d_direct"]
    return candidates[0]


def _emit_template(bb, choice: Choice, data, weight):
    # call_te passes only tensors and plain values through: bind workload and config here.
    template, workload, cfg = choice.template, choice.workload, choice.config
    packed = bb.emit_te(
        lambda w: template.weight_transform(w, workload, cfg),
        weight,
        primfunc_name_hint="weight_transform",
    )
    return bb.call_te(
        lambda d, w: template.compute(d, w, workload, cfg),
        data,
        packed,
        primfunc_name_hint=template.name,
    )


def _tvm_legalize(bb, call):
    return tvm.ir.Op.get(call.op.name).get_attr("FLegalize")(bb, call)


def _static(shape) -> list[int] | None:
    if shape is None:
        return None
    try:
        return [int(d) for d in shape]
    except TypeError:
        return None


def _block_of(layout: str) -> int | None:
    if layout == "NCHW":
        return 1
    match = _BLOCKED.match(layout)
    return int(match.group(1)) if match else None


def conv2d_workload(call: relax.Call) -> Conv2dWorkload | None:
    """The workload of a relax conv2d from and to NCHW or NCHW[b]c (the two blocks may differ:
    a stem reads NCHW and writes blocks) with static shapes, else None."""
    attrs = call.attrs
    block, out_block = _block_of(str(attrs.data_layout)), _block_of(str(attrs.out_layout))
    data, weight = _static(call.args[0].ty.shape), _static(call.args[1].ty.shape)
    dtype = str(call.args[0].ty.dtype)
    if None in (block, out_block, data, weight):
        return None
    dtypes = (dtype, str(call.args[1].ty.dtype), str(attrs.out_dtype or "") or dtype)
    if dtypes not in _CONV_DTYPES:
        return None
    oihw = _oihw_shape(weight, str(attrs.kernel_layout))
    if oihw is None:
        return None
    channels = data[1] * block
    pad = [int(p) for p in attrs.padding]
    return Conv2dWorkload(
        batch=data[0], in_channels=channels, height=data[2], width=data[3],
        out_channels=oihw[0], kernel_h=oihw[2], kernel_w=oihw[3],
        stride_h=int(attrs.strides[0]), stride_w=int(attrs.strides[1]),
        pad_top=pad[0], pad_left=pad[1], pad_bottom=pad[2], pad_right=pad[3],
        dilation_h=int(attrs.dilation[0]), dilation_w=int(attrs.dilation[1]),
        groups=int(attrs.groups), in_block=block, out_block=out_block, dtype=dtype,
    )  # fmt: skip


def fold_zero_point_pad(call: relax.Call, producer) -> tuple[Conv2dWorkload, relax.Expr] | None:
    """An 8-bit conv2d whose data is `producer`, a constant pad of the rows and columns only
    (quantize-int8 pads with the zero point, which the conv op cannot hold): the conv's
    workload with that padding and its value taken in, and the pad's input. Its template then
    pads the data itself, in the same kernel (depthwise: tile by tile, in cache), and the
    padded copy is never written out. None for any other conv."""
    workload = conv2d_workload(call)
    if workload is None or workload.dtype == "float32" or workload.pad_value != 0:
        return None
    if not (isinstance(producer, relax.Call) and producer.op == _PAD_OP):
        return None
    attrs = producer.attrs
    width = [int(w) for w in attrs.pad_width]
    value = float(attrs.pad_value)
    low, high = (0, 255) if workload.dtype == "uint8" else (-128, 127)
    spatial = width[4:8]  # (before, after) of H, then of W
    if str(attrs.pad_mode) != "constant" or any(width[:4]) or any(width[8:]):
        return None
    if min(spatial) < 0 or value != int(value) or not low <= value <= high:
        return None
    source = producer.args[0]
    shape = _static(source.ty.shape)
    if shape is None:
        return None
    top, bottom, left, right = spatial
    return dataclasses.replace(
        workload,
        height=shape[2], width=shape[3],
        pad_top=workload.pad_top + top, pad_bottom=workload.pad_bottom + bottom,
        pad_left=workload.pad_left + left, pad_right=workload.pad_right + right,
        pad_value=int(value),
    ), source  # fmt: skip


def fold_pads(plan: TemplatePlan) -> tvm.transform.Pass:
    """Module pass, before LegalizeOps: every 8-bit conv2d over a zero-point pad
    (`fold_zero_point_pad`) becomes its template's call on the unpadded data now; the pad,
    left without users, goes."""

    @tvm.transform.module_pass(opt_level=0, name="tilecc-fold-zero-point-pads")
    def _pass(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        folder = _PadFolder(plan, mod)
        for gvar, func in mod.functions_items():
            if isinstance(func, relax.Function):
                new = relax.analysis.remove_all_unused(folder.visit_expr(func))
                folder.builder_.update_func(gvar, new)
        return folder.builder_.get()

    return _pass


@relax.expr_functor.mutator
class _PadFolder(relax.PyExprMutator):
    def __init__(self, plan: TemplatePlan, mod: tvm.IRModule):
        super().__init__(mod)
        self.plan = plan

    def visit_call_(self, call):
        call = super().visit_call_(call)
        if call.op != _CONV2D_OP or not isinstance(call.args[0], relax.Var):
            return call
        folded = fold_zero_point_pad(call, self.lookup_binding(call.args[0]))
        choice = self.plan.choose(folded[0]) if folded is not None else None
        if choice is None:
            return call
        weight = call.args[1]
        if call.attrs.kernel_layout != "OIHW":
            weight = self.builder_.emit_te(_kernel_to_oihw, weight, str(call.attrs.kernel_layout))
        return _emit_template(self.builder_, choice, folded[1], weight)


_PAD_OP = tvm.ir.Op.get("relax.nn.pad")
_CONV2D_OP = tvm.ir.Op.get("relax.nn.conv2d")


# (data, weight, output) dtypes the templates compute: fp32, and 8-bit data by int8 weights
# into int32 (passes/quantize_int8.py)
_CONV_DTYPES = {
    ("float32", "float32", "float32"),
    ("uint8", "int8", "int32"),
    ("int8", "int8", "int32"),
}

_KERNEL_LAYOUT = re.compile(r"^OIHW(?:(\d+)i)?(\d+)o$")


def _oihw_shape(shape: list[int], layout: str) -> list[int] | None:
    if layout == "OIHW":
        return shape
    match = _KERNEL_LAYOUT.match(layout)
    if not match:
        return None
    in_block = int(match.group(1) or 1)
    return [shape[0] * shape[5 if match.group(1) else 4], shape[1] * in_block, shape[2], shape[3]]


def _kernel_to_oihw(weight: te.Tensor, layout: str) -> te.Tensor:
    """OIHW[i]i[o]o (or OIHW[o]o) -> OIHW; runs at compile time on a constant."""
    match = _KERNEL_LAYOUT.match(layout)
    blocked_in = match.group(1) is not None
    ib = int(match.group(1) or 1)
    ob = int(weight.shape[5] if blocked_in else weight.shape[4])
    shape = (
        weight.shape[0] * ob, weight.shape[1] * ib, weight.shape[2], weight.shape[3]
    )  # fmt: skip

    def value(o, i, h, w):
        if blocked_in:
            return weight[o // ob, i // ib, h, w, i % ib, o % ob]
        return weight[o // ob, i, h, w, o % ob]

    return te.compute(shape, value, name="kernel_oihw")


# (data, weight, output) dtypes of a matmul a dense template computes
_DENSE_DTYPES = {
    ("float32", "float32", "float32"): "float32",
    ("uint8", "int8", "int32"): "uint8",  # quantize-int8's matmuls (x86)
    ("int8", "int8", "int32"): "int8",  # (aarch64)
}


def dense_workload(call: relax.Call) -> DenseWorkload | None:
    """matmul(x, W) with W a constant [k, n] and static shapes, float32 or 8-bit data by int8
    weights into int32, as a dense workload."""
    data, weight = call.args
    if not isinstance(weight, tvm.ir.Constant):
        return None
    dshape, wshape = _static(data.ty.shape), _static(weight.ty.shape)
    if dshape is None or wshape is None or len(wshape) != 2 or len(dshape) < 2:
        return None
    dtypes = (str(data.ty.dtype), str(weight.ty.dtype), str(call.ty.dtype))
    if dtypes not in _DENSE_DTYPES or dshape[-1] != wshape[0]:
        return None
    m = 1
    for d in dshape[:-1]:
        m *= d
    return DenseWorkload(m=m, n=wshape[1], k=wshape[0], dtype=_DENSE_DTYPES[dtypes])


def schedule_templates(plan: TemplatePlan) -> tvm.transform.Pass:
    """Module pass (after FuseTIR): each PrimFunc holding a template's block gets the
    template's schedule, every other one `schedule_rest`'s plain one."""

    @tvm.transform.module_pass(opt_level=0, name="tilecc-schedule-templates")
    def _pass(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        updates = {}
        for gvar, func in mod.functions_items():
            if not isinstance(func, tvm.tirx.PrimFunc):
                continue
            sch = s_tir.Schedule(tvm.IRModule({"main": func}))
            blocks = template_blocks(sch)
            if not blocks:
                schedule_rest(sch, None, plan.lanes)
                updates[gvar] = sch.mod["main"]
                continue
            if len(blocks) != 1:  # FuseOps never fuses two reductions; leave such a kernel be
                continue
            name, workload_key, cfg = read_annotations(sch, blocks[0])
            template, workload = get_template(name), workload_from_key(workload_key)
            try:
                template.schedule(sch, blocks[0], workload, cfg, plan.lanes)
                main = template_blocks(sch)[0]  # with its init block, if decomposed
                schedule_rest(sch, sch.get_loops(main)[0], plan.lanes)
            except Exception as exc:  # noqa: BLE001 - keep compiling, unscheduled, and say so
                plan.fallbacks.append(f"{gvar.name_hint} ({name}, {workload.describe()}): {exc}")
                print(
                    f"warning: {name} could not schedule {workload.describe()} "
                    f"({type(exc).__name__}); it runs unscheduled",
                    file=sys.stderr,
                )
                continue
            updates[gvar] = sch.mod["main"]
        if not updates:
            return mod
        functions = dict(mod.functions_items())
        functions.update(updates)
        return tvm.IRModule(functions, attrs=mod.attrs)

    return _pass
