"""NPU codegen: each partitioned Relax function -> C that drives the simulated NPU core.

For one partitioned function the codegen
  1. inlines its composite functions into one list of ops;
  2. groups them into NPU kernels: an anchor (conv2d / matmul on the cube unit; depthwise conv,
     pooling, mean, softmax on the vector unit) followed by the elementwise ops that only feed
     each other, which become the kernel's vector program on each output tile in UB (a group
     may also start with an elementwise op);
  3. plans each kernel's tiles so that they fit L1, UB, L0A, L0B and L0C (`plan_*` below);
  4. converts constants at compile time: conv / matmul weights to the cube's FRACTAL_Z layout
     and depthwise weights to [C1][taps][16], all fp16; biases stay fp32 (added in L0C -> UB);
  5. emits C: fp32 NCHW inputs -> fp16 5HD (npu_to_5hd), the kernels, 5HD -> fp32 outputs.
The simulator and kernel library (runtime/npu_sim.c) is compiled into the same translation
unit, so the `.so` needs nothing else. Tensor views: NCHW as is; [M, K] as (1, K, M, 1) and
[B, M, K] as (B, K, M, 1), so the last axis is the channel axis and matmul is a 1x1 conv over
M rows of one pixel (an L1 slab then holds a few rows, however large M is).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tvm
from tvm import relax

from tilecc.targets.accelerator import CSource

from .config import NpuConfig, NpuConfigError
from .patterns import BINARY, UNARY, constant, operand_kind, static_shape

RUNTIME = Path(__file__).parent / "runtime"
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
    call: relax.Call


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
                    ops.append(Op(value.op.name.removeprefix("relax."), value.attrs, args, out,
                                  value))  # fmt: skip
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

    def values(self) -> list[relax.Var]:
        return ([self.anchor.out] if self.anchor else []) + [o.out for o in self.ops]


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
    k.anchor = Op(k.anchor.name, k.anchor.attrs, k.anchor.args, add.out, k.anchor.call)
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
                kind, bval, imm = "NPU_B_IMM", 0, _cfloat(float(b.reshape(())))
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


def _cfloat(x: float) -> str:
    if math.isinf(x):
        return "INFINITY" if x > 0 else "-INFINITY"
    text = f"{np.float32(x).item():.9g}"
    return text + ("f" if any(ch in text for ch in ".en") else ".0f")


# ---- tiling plans -----------------------------------------------------------------------


def _fits(cfg: NpuConfig, **need: int) -> bool:
    size = cfg.buffer_bytes()
    return all(need[b] <= size[b] for b in need)


def plan_conv(cfg: NpuConfig, g: dict, slots: int, where: str) -> dict:
    """m_tile (pixels), n_tile (output channel blocks), c1_tile (input blocks per L1 slab),
    k_tile (k blocks per L0 load), by least estimated cycles among those that fit."""
    m_total = g["oh"] * g["ow"]
    taps = g["kh"] * g["kw"]
    best = None
    m_cands = sorted({min(16 * c1(m_total), m) for m in (16, 32, 64, 128, 256, 512, 1024, 2048)})
    for m_tile in m_cands:
        m1 = m_tile // 16
        rows = min(
            g["h"], ((m_tile + g["ow"] - 1) // g["ow"] + 1) * g["sh"] + (g["kh"] - 1) * g["dh"]
        )
        for n_tile in range(g["c1_out"], 0, -1):
            if n_tile * m_tile * 64 > cfg.l0c_bytes:
                continue
            if (slots * n_tile * m_tile * 16 * 2 + n_tile * 64) > cfg.ub_bytes:
                continue
            for c1_tile in range(g["c1_in"], 0, -1):
                l1 = c1_tile * rows * g["w"] * 32 + c1_tile * taps * n_tile * 512
                if l1 > cfg.l1_bytes:
                    continue
                k_tile = min(c1_tile * taps, cfg.l0a_bytes // (m1 * 512),
                             cfg.l0b_bytes // (n_tile * 512))  # fmt: skip
                if k_tile < 1:
                    continue
                cost = _conv_cost(cfg, g, m_tile, n_tile, c1_tile, k_tile, rows)
                if best is None or cost < best[0]:
                    best = (
                        cost,
                        dict(m_tile=m_tile, n_tile=n_tile, c1_tile=c1_tile, k_tile=k_tile),
                    )
                break  # the largest c1_tile that fits
    if best is None:
        raise NpuConfigError(f"{where}: no tiling fits this NPU's buffers ({_sizes(cfg)})")
    return best[1]


def _conv_cost(cfg, g, m_tile, n_tile, c1_tile, k_tile, rows) -> float:
    taps = g["kh"] * g["kw"]
    mt = -(-g["oh"] * g["ow"] // m_tile)
    nt = -(-g["c1_out"] // n_tile)
    cc = -(-g["c1_in"] // c1_tile)
    slab = g["c1_in"] * rows * g["w"] * 32 * (nt if cc > 1 else 1)
    weights = g["c1_in"] * taps * g["c1_out"] * 512
    transfers = mt * (g["c1_in"] * (nt if cc > 1 else 1) + nt * g["c1_in"] * taps)
    dma = mt * (slab + weights) / cfg.dma_bytes_per_cycle + transfers * cfg.dma_latency
    steps = mt * nt * cc * -(-c1_tile * taps // k_tile)
    cube = steps * cfg.issue_cycles + mt * (m_tile // 16) * g["c1_in"] * taps * g["c1_out"]
    return g["n"] * max(dma, cube)


def plan_window(cfg: NpuConfig, g: dict, slots: int, where: str) -> dict:
    ub = cfg.ub_bytes
    taps = g["kh"] * g["kw"]

    def need(rows_tile, c1_tile, in_rows):
        ne = c1_tile * rows_tile * g["ow"] * 16
        extra = (c1_tile * taps * 32 if g["weights"] else 0) + (c1_tile * 64 if g["bias"] else 0)
        return slots * ne * 2 + ne * 4 + c1_tile * in_rows * g["w"] * 32 + extra

    for rows_tile in range(g["oh"], 0, -1):
        full = min(g["h"], (rows_tile - 1) * g["sh"] + (g["kh"] - 1) * g["dh"] + 1)
        for c1_tile in range(g["c1"], 0, -1):
            if need(rows_tile, c1_tile, full) <= ub:
                return dict(rows_tile=rows_tile, in_rows_tile=full, c1_tile=c1_tile)
    for in_rows in range(g["h"], 0, -1):  # a window larger than UB: read it in row chunks
        if need(1, 1, in_rows) <= ub:
            return dict(rows_tile=1, in_rows_tile=in_rows, c1_tile=1)
    raise NpuConfigError(f"{where}: no tiling fits this NPU's buffers ({_sizes(cfg)})")


def plan_eltwise(cfg: NpuConfig, shape: tuple[int, int, int], slots: int, where: str) -> dict:
    n1, p = shape[1], shape[2]
    for n_tile in range(n1, 0, -1):
        m_tile = min(p, cfg.ub_bytes // (slots * n_tile * 32))
        if m_tile >= min(p, 16):
            return dict(n_tile=n_tile, m_tile=m_tile)
    raise NpuConfigError(f"{where}: no tiling fits this NPU's buffers ({_sizes(cfg)})")


def _sizes(cfg: NpuConfig) -> str:
    return ", ".join(f"{b} {v} B" for b, v in cfg.buffer_bytes().items())


# ---- C emission ---------------------------------------------------------------------------


def fp16_literal(values: np.ndarray) -> str:
    """A C string literal holding `values` as little-endian fp16 (octal escapes)."""
    data = np.ascontiguousarray(values, dtype="<f2").tobytes()
    lines = []
    for start in range(0, len(data), 32):
        lines.append('"' + "".join(f"\\{b:03o}" for b in data[start : start + 32]) + '"')
    return "\n    ".join(lines) if lines else '""'


def fractal_z(weight: np.ndarray) -> np.ndarray:
    """OIHW conv weights -> [C1in * KH * KW][C1out][16 k0][16 n0]."""
    o, i, kh, kw = weight.shape
    w = np.zeros((c1(o) * 16, c1(i) * 16, kh, kw), np.float32)
    w[:o, :i] = weight
    w = w.reshape(c1(o), 16, c1(i), 16, kh, kw).transpose(2, 4, 5, 0, 3, 1)
    return w.reshape(c1(i) * kh * kw, c1(o), 16, 16)


def depthwise_weights(weight: np.ndarray) -> np.ndarray:
    """[C, 1, KH, KW] -> [C1][KH * KW][16]."""
    c, _, kh, kw = weight.shape
    w = np.zeros((c1(c) * 16, kh * kw), np.float32)
    w[:c] = weight.reshape(c, kh * kw)
    return w.reshape(c1(c), 16, kh * kw).transpose(0, 2, 1)


class FunctionEmitter:
    """C for one partitioned function (subgraph `index`)."""

    def __init__(self, func: relax.Function, index: int, cfg: NpuConfig):
        self.name = str(func.attrs["global_symbol"])
        self.index = index
        self.cfg = cfg
        self.params = list(func.params)
        self.ops, self.outputs = flatten(func)
        self.consts: list[str] = []  # C declarations of constants
        self.body: list[str] = []
        self.tensor: dict = {}  # relax.Var -> C name of its 5HD buffer
        self.shape: dict = {}

    def cname(self, prefix: str) -> str:
        return f"{prefix}{self.index}_{len(self.consts)}"

    def const16(self, values: np.ndarray) -> str:
        name = self.cname("k")
        self.consts.append(
            f"static const char {name}_bytes[] __attribute__((aligned(64))) =\n"
            f"    {fp16_literal(values)};\n"
            f"#define {name} ((const uint16_t*){name}_bytes)"
        )
        return name

    def const32(self, values: np.ndarray) -> str:
        name = self.cname("b")
        body = ", ".join(_cfloat(float(v)) for v in np.asarray(values, np.float32).reshape(-1))
        self.consts.append(f"static const float {name}[] = {{{body}}};")
        return name

    def emit(self) -> str:
        kernels = group(self.ops, self.outputs)
        last = self._last_uses(kernels)
        for i, p in enumerate(self.params):
            self._input(p, i)
        for i, k in enumerate(kernels):
            self._kernel(k, i)
            for v in last.get(i, ()):
                if v in self.tensor and v not in self.outputs:
                    self.body.append(f"  free({self.tensor[v]}); {self.tensor[v]} = NULL;")
        for i, o in enumerate(self.outputs):
            self._output(o, len(self.params) + i)
        return self._function()

    def _last_uses(self, kernels) -> dict[int, list]:
        last: dict = {}
        for p in self.params:
            last[p] = -1
        for i, k in enumerate(kernels):
            ops = ([k.anchor] if k.anchor else []) + k.ops
            for op in ops:
                for a in op.args:
                    if isinstance(a, relax.Var):
                        last[a] = i
        by_kernel: dict = {}
        for v, i in last.items():
            by_kernel.setdefault(i, []).append(v)
        return by_kernel

    def _alloc(self, var: relax.Var) -> str:
        shape = static_shape(var)
        (n, c, h, w), _ = view(shape)
        name = f"t{len(self.tensor)}"
        self.tensor[var] = name
        self.shape[var] = shape
        self.body.append(
            f"  {name} = (uint16_t*)calloc({n * c1(c) * h * w * 16}, 2);"
            f' if (!{name}) return npu_fail(core, "out of host memory");'
        )
        return name

    def _dims(self, var) -> str:
        dims, strides = view(static_shape(var))
        return (
            f"static const int64_t shape[4] = {{{', '.join(map(str, dims))}}}; "
            f"static const int64_t strides[4] = {{{', '.join(map(str, strides))}}};"
        )

    def _input(self, param, i):
        t = self._alloc(param)
        self.body.append(
            f"  {{ {self._dims(param)}\n"
            f"    if (npu_to_5hd(core, (const float*)tilecc_npu_data(&args[{i}]), shape, strides,"
            f" {t})) return -1; }}"
        )

    def _output(self, var, i):
        self.body.append(
            f"  {{ {self._dims(var)}\n"
            f"    if (npu_from_5hd(core, {self.tensor[var]}, shape, strides,"
            f" (float*)tilecc_npu_data(&args[{i}]))) return -1; }}"
        )

    def _program(self, k: Kernel, tag: str) -> tuple[str, Program]:
        prog = program(k)
        channels = view(static_shape(k.out))[0][1]
        chan = [self.const16(t) for t in prog.chan]
        lines = [f"    /* {tag} */"]
        if prog.ops:
            lines.append(f"    static const npu_vop ops[] = {{{', '.join(prog.ops)}}};")
        lines.append(
            "    static const uint16_t* const chan[] = {" + (", ".join(chan) or "NULL") + "};"
        )
        operands = ", ".join(self.tensor[v] for v in prog.operands) or "NULL"
        lines.append(f"    const uint16_t* operands[] = {{{operands}}};")
        lines.append(
            f"    npu_program prog = {{{'ops' if prog.ops else 'NULL'}, {len(prog.ops)}, "
            f"{prog.num_slots}, {prog.result}, chan, operands, {channels}}};"
        )
        return "\n".join(lines), prog

    def _kernel(self, k: Kernel, i: int):
        names = " + ".join(([k.anchor.name] if k.anchor else []) + [o.name for o in k.ops])
        where = f"{self.name} kernel {i} ({names} -> {list(static_shape(k.out))})"
        head, prog = self._program(k, names)
        inputs = [
            self.tensor[a] for a in (k.anchor.args if k.anchor else []) if isinstance(a, relax.Var)
        ]
        out = None
        if k.anchor is None:
            (n, c, h, w), _ = view(static_shape(k.out))
            shape = (n, c1(c), h * w)
            t = plan_eltwise(self.cfg, shape, prog.num_slots, where)
            call = (
                f"    static const npu_eltwise_desc d = {{{{{n}, {c1(c)}, {h * w}}}, "
                f"{t['m_tile']}, {t['n_tile']}}};\n"
                f"    if (npu_eltwise(core, &d, &prog, OUT)) return -1;"
            )
        elif k.anchor.name in ("nn.conv2d", "matmul") and not self._depthwise(k.anchor):
            call = self._conv(k, prog, inputs[0], where)
        elif k.anchor.name == "nn.softmax":
            (n, c, h, w), _ = view(static_shape(k.out))
            ub = self.cfg.ub_bytes
            m_tile = min(h * w, ub // ((prog.num_slots + 1) * c1(c) * 32))
            if m_tile < 1:
                raise NpuConfigError(f"{where}: softmax over {c} channels does not fit UB")
            call = (
                f"    static const npu_softmax_desc d = "
                f"{{{{{n}, {c1(c)}, {h * w}}}, {c}, {m_tile}}};\n"
                f"    if (npu_softmax(core, &d, {inputs[0]}, &prog, OUT)) return -1;"
            )
        else:
            call = self._window(k, prog, inputs[0], where)
        out = self._alloc(k.out)
        self.body.append("  {\n" + head + "\n" + call.replace("OUT", out) + "\n  }")

    def _depthwise(self, op: Op) -> bool:
        return op.name == "nn.conv2d" and int(op.attrs.groups) > 1

    def _conv(self, k: Kernel, prog: Program, src: str, where: str) -> str:
        a = k.anchor
        if a.name == "matmul":
            (n, cin, h, w), _ = view(static_shape(a.args[0]))
            weight = np.asarray(a.args[1], np.float32).T[:, :, None, None]  # [N, K, 1, 1]
            kh = kw = sh = sw = dh = dw = 1
            ph = pw = 0
        else:
            n, cin, h, w = static_shape(a.args[0])
            weight = np.asarray(a.args[1], np.float32)
            kh, kw = weight.shape[2:]
            sh, sw = (int(s) for s in a.attrs.strides)
            dh, dw = (int(s) for s in a.attrs.dilation)
            ph, pw = int(a.attrs.padding[0]), int(a.attrs.padding[1])
        (_, cout, oh, ow), _ = view(static_shape(k.anchor.out))
        g = dict(n=n, c1_in=c1(cin), h=h, w=w, c1_out=c1(cout), oh=oh, ow=ow, kh=kh, kw=kw,
                 sh=sh, sw=sw, ph=ph, pw=pw, dh=dh, dw=dw)  # fmt: skip
        t = plan_conv(self.cfg, g, prog.num_slots, where)
        wname = self.const16(fractal_z(weight))
        bias = self.const32(_padded(k.bias, cout)) if k.bias is not None else "NULL"
        macs = n * oh * ow * cout * cin * kh * kw
        fields = [g[f] for f in ("n", "c1_in", "h", "w", "c1_out", "oh", "ow", "kh", "kw", "sh",
                                 "sw", "ph", "pw", "dh", "dw")]  # fmt: skip
        fields += [t["m_tile"], t["n_tile"], t["c1_tile"], t["k_tile"], f"{macs}LL"]
        return (
            f"    static const npu_conv_desc d = {{{', '.join(map(str, fields))}}};\n"
            f"    if (npu_conv2d(core, &d, {src}, {wname}, {bias}, &prog, OUT)) return -1;"
        )

    def _window(self, k: Kernel, prog: Program, src: str, where: str) -> str:
        a = k.anchor
        n, c, h, w = static_shape(a.args[0])
        _, _, oh, ow = static_shape(a.out)
        weights = bias = "NULL"
        if a.name == "mean":
            kind, (kh, kw), (sh, sw), (dh, dw), (ph, pw) = (
                "NPU_WIN_AVG",
                (h, w),
                (1, 1),
                (1, 1),
                (0, 0),
            )
        else:
            at = a.attrs
            if a.name == "nn.conv2d":
                weight = np.asarray(a.args[1], np.float32)
                kh, kw = weight.shape[2:]
                kind = "NPU_WIN_DEPTHWISE"
                weights = self.const16(depthwise_weights(weight))
                if k.bias is not None:
                    bias = self.const32(_padded(k.bias, c))
            else:
                kh, kw = (int(s) for s in at.pool_size)
                if a.name == "nn.max_pool2d":
                    kind = "NPU_WIN_MAX"
                else:
                    kind = "NPU_WIN_AVG" if at.count_include_pad else "NPU_WIN_AVG_NOPAD"
            sh, sw = (int(s) for s in at.strides)
            dh, dw = (int(s) for s in at.dilation)
            ph, pw = int(at.padding[0]), int(at.padding[1])
        g = dict(n=n, c1=c1(c), h=h, w=w, oh=oh, ow=ow, kh=kh, kw=kw, sh=sh, sw=sw, dh=dh, dw=dw,
                 weights=weights != "NULL", bias=bias != "NULL")  # fmt: skip
        t = plan_window(self.cfg, g, prog.num_slots, where)
        fields = [kind, n, c1(c), h, w, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw,
                  t["rows_tile"], t["in_rows_tile"], t["c1_tile"]]  # fmt: skip
        return (
            f"    static const npu_window_desc d = {{{', '.join(map(str, fields))}}};\n"
            f"    if (npu_window(core, &d, {src}, {weights}, {bias}, &prog, OUT)) return -1;"
        )

    def _function(self) -> str:
        decls = "".join(f"  uint16_t* {t} = NULL;\n" for t in self.tensor.values())
        frees = "".join(f"  free({t});\n" for t in self.tensor.values())
        body = "\n".join(self.body)
        n_args = len(self.params) + len(self.outputs)
        return f"""
{chr(10).join(self.consts)}

static int {self.name}_body(npu_core* core, const TVMFFIAny* args) {{
{decls}{body}
{frees}  return 0;
}}

TILECC_NPU_EXPORT int __tvm_ffi_{self.name}(void* self, const TVMFFIAny* args, int32_t num_args,
                                            TVMFFIAny* ret) {{
  (void)self;
  return tilecc_npu_call({self.index}, "{self.name}", {self.name}_body, args, num_args,
                         {n_args}, ret);
}}
"""


def _padded(values: np.ndarray, channels: int) -> np.ndarray:
    out = np.zeros(c1(channels) * 16, np.float32)
    out[:channels] = np.asarray(values, np.float32).reshape(-1)[:channels]
    return out


def generate(functions: list[relax.Function], cfg: NpuConfig) -> CSource:
    """One translation unit: the simulator, the shared glue and every function."""
    emitted = [FunctionEmitter(f, i, cfg) for i, f in enumerate(functions)]
    bodies = [e.emit() for e in emitted]
    names = [e.name for e in emitted]
    sim_h = (RUNTIME / "npu_sim.h").read_text()
    sim_c = (RUNTIME / "npu_sim.c").read_text().replace('#include "npu_sim.h"\n', "")
    glue = (RUNTIME / "npu_glue.c").read_text()
    name_list = ", ".join(f'"{n}"' for n in names)
    header = (
        f"#define TILECC_NPU_NUM_SUBGRAPHS {len(names)}\n"
        f"static const char* const tilecc_npu_names[] = {{{name_list}}};\n"
        f"static const npu_config tilecc_npu_config = {cfg.c_initializer()};\n"
    )
    code = "\n".join([sim_h, sim_c, header, glue, *bodies])
    return CSource(code, names + ["tilecc_npu_report", "tilecc_npu_reset"])
