"""NPU codegen: each partitioned Relax function -> C that drives the simulated NPU core.

For one partitioned function the codegen
  1. inlines its composite functions into one list of ops (kernels.py);
  2. groups them into NPU kernels, each an anchor and its vector program (kernels.py);
  3. plans each kernel's tiles so that they fit L1, UB, L0A, L0B and L0C (tiling.py);
  4. converts constants at compile time: conv / matmul weights to the cube's FRACTAL_Z layout
     and depthwise weights to [C1][taps][16], all fp16; biases stay fp32 (added in L0C -> UB);
  5. emits C: fp32 NCHW inputs -> fp16 5HD (npu_to_5hd), the kernels, 5HD -> fp32 outputs.
The simulator and kernel library (runtime/npu_sim.c) is compiled into the same translation
unit, so the `.so` needs nothing else.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tvm import relax

from tilecc.targets.accelerator import CSource

from .config import NpuConfig
from .kernels import Kernel, Op, Program, c1, cfloat, flatten, group, program, view
from .patterns import static_shape
from .tiling import plan_conv, plan_eltwise, plan_softmax, plan_window

RUNTIME = Path(__file__).parent / "runtime"


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
        body = ", ".join(cfloat(float(v)) for v in np.asarray(values, np.float32).reshape(-1))
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
            for op in k.all_ops:
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
        names = " + ".join(op.name for op in k.all_ops)
        where = f"{self.name} kernel {i} ({names} -> {list(static_shape(k.out))})"
        head, prog = self._program(k, names)
        inputs = [
            self.tensor[a] for a in (k.anchor.args if k.anchor else []) if isinstance(a, relax.Var)
        ]
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
            m_tile = plan_softmax(self.cfg, c, h * w, prog.num_slots, where)
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
