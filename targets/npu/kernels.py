"""From a partitioned function to NPU kernels and their vector programs.

`flatten` inlines the composite functions into one list of ops. `group` makes kernels: an
anchor (conv2d / matmul on the cube unit; depthwise conv, pooling, mean, softmax on the vector
unit) followed by the elementwise ops that read only each other's values, which become the
kernel's vector program, run on each output tile in UB (a kernel may also start with an
elementwise op). `program` gives that program UB slots, reusing a slot once its value is dead.
Tensor views: NCHW as is; [M, K] as (1, K, M, 1) and [B, M, K] as (B, K, M, 1), so the last axis
is the channel axis and matmul is a 1x1 conv over M rows of one pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import tvm
from tvm import relax

from .patterns import BINARY, UNARY, constant, operand_kind, static_shape

_VOP = {
    "add": "NPU_V_ADD", "subtract": "NPU_V_SUB", "multiply": "NPU_V_MUL", "divide": "NPU_V_DIV",
    "maximum": "NPU_V_MAX", "minimum": "NPU_V_MIN", "nn.relu": "NPU_V_RELU",
    "sigmoid": "NPU_V_SIGMOID", "tanh": "NPU_V_TANH", "exp": "NPU_V_EXP",
}  # fmt: skip


# ---- the ops of a partitioned function -----------------------------------------------------


@dataclass
class Op:
    name: str  # relax op name without "relax."
    attrs: object
    args: list  # relax.Var (a value) or np.ndarray (a constant)
    out: relax.Var


def flatten(func: relax.Function) -> tuple[list[Op], list[relax.Var]]:
    """The function's ops in order, composite bodies inlined, and its output values."""
    ops: list[Op] = []
    subst: dict = {}

    def resolve(expr):
        while isinstance(expr, relax.Var) and expr in subst:
            expr = subst[expr]
        return expr

    def walk(body: relax.SeqExpr, local: dict):
        for block in body.blocks:
            for binding in block.bindings:
                value = binding.value
                if isinstance(value, relax.Function):
                    local[binding.var] = value
                elif isinstance(value, relax.Call) and isinstance(
                    value.op, relax.Var | relax.Function
                ):
                    inner = local.get(value.op, value.op)
                    for param, arg in zip(inner.params, value.args, strict=True):
                        subst[param] = resolve(arg)
                    subst[binding.var] = walk(inner.body, {})
                elif isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op):
                    args = []
                    for a in value.args:
                        a = resolve(a)
                        c = constant(a)
                        args.append(c if c is not None else a)
                    # A composite called twice shares its body: each call gets fresh values.
                    out = relax.Var(binding.var.name, binding.var.ty)
                    subst[binding.var] = out
                    ops.append(Op(value.op.name.removeprefix("relax."), value.attrs, args, out))
                elif isinstance(value, relax.Var):
                    subst[binding.var] = resolve(value)
                else:
                    raise NotImplementedError(f"npu codegen: binding {type(value).__name__}")
        return resolve(body.body)

    result = walk(func.body, {})
    outputs = list(result.fields) if isinstance(result, relax.Tuple) else [result]
    return ops, [resolve(o) for o in outputs]


def view(shape: tuple[int, ...]) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
    """(N, C, H, W) the NPU sees for a tensor, and the fp32 strides of that view."""
    if len(shape) == 4:
        n, c, h, w = shape
        return (n, c, h, w), (c * h * w, h * w, w, 1)
    if len(shape) == 3:
        b, m, k = shape
        return (b, k, m, 1), (m * k, 1, k, 0)
    if len(shape) == 2:
        m, k = shape
        return (1, k, m, 1), (0, 1, k, 0)
    raise ValueError(f"npu codegen: rank-{len(shape)} tensor")


def c1(channels: int) -> int:
    return -(-channels // 16)


# ---- kernels: an anchor and its vector program ----------------------------------------------


@dataclass
class Kernel:
    anchor: Op | None  # None: a vector program alone
    ops: list[Op] = field(default_factory=list)  # elementwise, in order
    bias: np.ndarray | None = None

    @property
    def out(self) -> relax.Var:
        return (self.ops[-1] if self.ops else self.anchor).out

    @property
    def all_ops(self) -> list[Op]:
        """The anchor (if any), then the vector program's ops."""
        return ([self.anchor] if self.anchor else []) + self.ops


def is_elementwise(op: Op) -> bool:
    return op.name in BINARY or op.name in UNARY


def group(ops: list[Op], outputs: list[relax.Var]) -> list[Kernel]:
    """Anchors with the elementwise ops that follow them and read only their values."""
    users: dict = {}
    for i, op in enumerate(ops):
        for a in op.args:
            if isinstance(a, relax.Var):
                users.setdefault(a, set()).add(i)
    for o in outputs:
        users.setdefault(o, set()).add(len(ops))  # used outside the function

    kernels, i = [], 0
    while i < len(ops):
        first = ops[i]
        members = [i]
        produced = {first.out}
        shape = static_shape(first.out)
        j = i + 1
        while j < len(ops) and is_elementwise(ops[j]) and static_shape(ops[j].out) == shape:
            if not any(isinstance(a, relax.Var) and a in produced for a in ops[j].args):
                break
            members.append(j)
            produced.add(ops[j].out)
            j += 1
        # The longest prefix whose inner values nobody outside it reads.
        while len(members) > 1:
            inside = set(members)
            inner = [ops[m].out for m in members[:-1]]
            if all(users.get(v, set()) <= inside for v in inner):
                break
            members.pop()
        anchor = None if is_elementwise(first) else first
        kernel = Kernel(anchor, [ops[m] for m in members[1:]] if anchor else
                        [ops[m] for m in members])  # fmt: skip
        kernels.append(kernel)
        i = members[-1] + 1
    return [_fold_bias(k) for k in kernels]


def _same(a, b) -> bool:
    return isinstance(a, relax.Var) and isinstance(b, relax.Var) and a.same_as(b)


def _fold_bias(k: Kernel) -> Kernel:
    """conv2d / matmul followed by a per-channel constant add: the add happens in fp32 as the
    cube's result leaves L0C (Ascend's bias)."""
    if k.anchor is None or k.anchor.name not in ("nn.conv2d", "matmul") or not k.ops:
        return k
    add = k.ops[0]
    if add.name != "add" or len(add.args) != 2:
        return k
    x, b = add.args
    if isinstance(x, np.ndarray):
        x, b = b, x
    if not _same(x, k.anchor.out) or not isinstance(b, np.ndarray) or b.size == 1:
        return k
    uses = sum(1 for o in k.ops for a in o.args if _same(a, k.anchor.out))
    if uses != 1:
        return k
    channels = view(static_shape(k.anchor.out))[0][1]
    if b.size != channels:
        return k
    k.bias = np.asarray(b, dtype=np.float32).reshape(-1)
    k.ops = k.ops[1:]
    # the anchor now produces the add's value
    k.anchor = Op(k.anchor.name, k.anchor.attrs, k.anchor.args, add.out)
    return k


# ---- vector programs ----------------------------------------------------------------------


@dataclass
class Program:
    ops: list[str]  # C initializers of npu_vop
    num_slots: int
    result: int
    chan: list[np.ndarray]  # per-channel constants (fp16 tables)
    operands: list[relax.Var]  # tensors the LOADs read


def program(k: Kernel) -> Program:
    """Slots with liveness (a slot is reused once its value is dead)."""
    out_shape = static_shape(k.out)
    channels = view(out_shape)[0][1]
    last_use: dict = {}
    for i, op in enumerate(k.ops):
        for a in op.args:
            if isinstance(a, relax.Var):
                last_use[a] = i
    slot_of: dict = {}
    free: list[int] = []
    used = [0]
    ops, chan, operands = [], [], []

    def take() -> int:
        if free:
            return free.pop(free.index(min(free)))
        used[0] += 1
        return used[0] - 1

    def release(i):
        for v, slot in list(slot_of.items()):
            if last_use.get(v, -1) == i and not _same(v, k.out):
                free.append(slot)
                del slot_of[v]

    if k.anchor is not None:
        slot_of[k.anchor.out] = take()
    for i, op in enumerate(k.ops):
        refs = []
        for a in op.args:
            if isinstance(a, np.ndarray):
                refs.append(a)
            elif a in slot_of:
                refs.append(("slot", slot_of[a]))
            else:  # a tensor from DDR
                kind = operand_kind(a, out_shape)
                slot = take()
                operands.append(a)
                code = "NPU_V_LOAD" if kind == "tensor" else "NPU_V_LOAD_BCAST"
                ops.append(f"{{{code}, {slot}, 0, NPU_B_NONE, {len(operands) - 1}, 0, 0.0f}}")
                slot_of[a] = slot
                refs.append(("slot", slot))
        code = _VOP[op.name]
        if op.name in UNARY:
            a = refs[0][1]
            release(i)
            dst = take()
            ops.append(f"{{{code}, {dst}, {a}, NPU_B_NONE, 0, 0, 0.0f}}")
        else:
            swap = 0
            if isinstance(refs[0], np.ndarray):
                refs = [refs[1], refs[0]]
                swap = 1
            a = refs[0][1]
            b = refs[1]
            if isinstance(b, np.ndarray) and b.size == 1:
                kind, bval, imm = "NPU_B_IMM", 0, cfloat(float(b.reshape(())))
            elif isinstance(b, np.ndarray):
                table = np.zeros(c1(channels) * 16, np.float16)
                table[:channels] = np.asarray(b, np.float32).reshape(-1)
                chan.append(table)
                kind, bval, imm = "NPU_B_CHAN", len(chan) - 1, "0.0f"
            else:
                kind, bval, imm = "NPU_B_SLOT", b[1], "0.0f"
            release(i)
            dst = take()
            ops.append(f"{{{code}, {dst}, {a}, {kind}, {bval}, {swap}, {imm}}}")
        slot_of[op.out] = dst
    result = slot_of[k.out] if k.ops else 0
    return Program(ops, max(used[0], 1), result, chan, operands)


def cfloat(x: float) -> str:
    if math.isinf(x):
        return "INFINITY" if x > 0 else "-INFINITY"
    text = f"{np.float32(x).item():.9g}"
    return text + ("f" if any(ch in text for ch in ".en") else ".0f")
