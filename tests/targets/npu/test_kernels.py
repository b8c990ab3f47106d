"""Each NPU kernel vs NumPy: one-op (or op + epilogue) ONNX models on the simulated core.

Shapes have channel counts (3, 17, 40) and pixel counts that are not multiples of 16, and
tensors larger than the small buffers of `npu_harness.SMALL` (e.g. 40 x 33 x 17 in fp16 5HD is
53 KiB against 16 KiB of L1 and 8 KiB of UB), so every kernel runs many output tiles, channel
tiles and input slabs. Each case also checks that the partition put all ops on the NPU (a case
that silently fell back to the host CPU fails) and that the buffer peaks stayed within SMALL.

Reference: NumPy in float64 on the inputs and initializers rounded to fp16 (how the NPU stores
them; the NPU keeps conv / matmul biases and scalar operands in fp32, the reference rounds
them too, which moves it by at most one more rounding of the bias).

Tolerance: max |got - want| <= r * u * max(1, max |want|), u = 2^-11 (fp16 unit roundoff), r
counting the fp16 roundings on the kernel's path plus one for the reference's rounding of
biases and constants:
  - conv / matmul / depthwise / pooling: products of fp16 values are exact in fp32 and an fp32
    sum of K <= 1000 terms errs by K * 2^-24 of the sum of |terms| (< u / 16 here); one rounding
    of the result to fp16: r = 2. Each epilogue op that rounds (add, subtract, multiply,
    divide, sigmoid) or fp16 intermediate in DDR adds one; relu, maximum, minimum are exact.
  - softmax: rounding x - max errs u * t in the exponent, at most u / e on an output
    e^-t / sum (t e^-t <= 1 / e); exp and the quotient round once each; the sum carries the
    exps' errors, u * (1 + the softmax-weighted mean of t) relative, < 3 u here: r = 6.
Measured errors stay under 1.5 u * scale. A wrong tap, tile offset, channel block or padding
moves an output by about one input times one weight (~0.1 .. 3 here), far beyond these bounds.
"""

from __future__ import annotations

import numpy as np
import pytest
from npu_harness import (
    check_close,
    check_on_npu,
    conv2d_ref,
    f16,
    pool_ref,
    rng,
    run_on_npu,
    softmax_ref,
)
from onnx import helper

# ---- conv2d (cube unit) ---------------------------------------------------------------------

# Epilogue: ONNX nodes from "c" to "y", the NumPy function, the Relax ops it imports as, and
# how many fp16 roundings it adds. Clip(0, 6) and hardswish read scalar initializers.
EPILOGUES = {
    None: ([helper.make_node("Identity", ["c"], ["y"])], lambda y: y, {}, 0),
    "relu": (
        [helper.make_node("Relu", ["c"], ["y"])],
        lambda y: np.maximum(y, 0),
        {"nn.relu": 1},
        0,
    ),
    "relu6": (
        [helper.make_node("Clip", ["c", "zero", "six"], ["y"])],
        lambda y: np.clip(y, 0, 6),
        {"maximum": 1, "minimum": 1},
        0,
    ),
    "hardswish": (
        [
            helper.make_node("Add", ["c", "three"], ["c3"]),
            helper.make_node("Clip", ["c3", "zero", "six"], ["r6"]),
            helper.make_node("Mul", ["c", "r6"], ["m"]),
            helper.make_node("Div", ["m", "six"], ["y"]),
        ],
        lambda y: y * np.clip(y + 3, 0, 6) / 6,
        {"add": 1, "maximum": 1, "minimum": 1, "multiply": 1, "divide": 1},
        3,
    ),
}
SCALARS = {"zero": np.float32(0), "three": np.float32(3), "six": np.float32(6)}


def conv_case(cin, hw, cout, kernel, strides=(1, 1), pads=(0, 0, 0, 0), dil=(1, 1), bias=True,
              epilogue=None, n=1):  # fmt: skip
    tag = (
        f"{n}x{cin}x{hw[0]}x{hw[1]}-{cout}-k{kernel[0]}x{kernel[1]}-s{strides[0]}{strides[1]}"
        f"-p{''.join(map(str, pads))}-d{dil[0]}{'-bias' if bias else ''}-{epilogue}"
    )
    return pytest.param(n, cin, hw, cout, kernel, strides, pads, dil, bias, epilogue, id=tag)


@pytest.mark.parametrize(
    "n, cin, hw, cout, kernel, strides, pads, dil, bias, epilogue",
    [
        conv_case(17, (20, 20), 40, (1, 1)),
        conv_case(3, (7, 9), 17, (1, 1), bias=False),
        conv_case(40, (33, 17), 3, (1, 1), strides=(2, 2), epilogue="relu"),
        conv_case(3, (20, 20), 17, (3, 3), pads=(1, 1, 1, 1), epilogue="relu", n=2),
        conv_case(17, (33, 17), 40, (3, 3), (2, 2), (1, 1, 1, 1), epilogue="relu6"),
        conv_case(17, (20, 20), 17, (3, 3), dil=(2, 2), pads=(2, 2, 2, 2)),
        conv_case(40, (7, 9), 3, (3, 5), (2, 1), (1, 2, 1, 2), bias=False),
        conv_case(17, (33, 17), 17, (3, 3), (2, 2), (0, 0, 1, 1), epilogue="relu6"),
        conv_case(40, (20, 20), 40, (3, 3), pads=(1, 1, 1, 1), epilogue="hardswish"),
    ],
)
def test_conv2d(tmp_path, n, cin, hw, cout, kernel, strides, pads, dil, bias, epilogue):
    r = rng(1)
    x = 3 * r.standard_normal((n, cin, *hw))
    w = r.standard_normal((cout, cin, *kernel)) / np.sqrt(cin * kernel[0] * kernel[1])
    b = r.standard_normal(cout) if bias else None
    nodes, act, act_ops, act_roundings = EPILOGUES[epilogue]
    conv = helper.make_node(
        "Conv",
        ["x", "w"] + (["b"] if bias else []),
        ["c"],
        kernel_shape=list(kernel),
        strides=list(strides),
        pads=list(pads),
        dilations=list(dil),
    )
    weights = {"w": w, **({"b": b} if bias else {}), **SCALARS}
    want = act(conv2d_ref(f16(x), f16(w), None if b is None else f16(b), strides, pads, dil))
    run = run_on_npu(tmp_path, [conv, *nodes], {"x": x}, weights, want.shape)
    ops = {"nn.conv2d": 1, **act_ops}
    ops["add"] = ops.get("add", 0) + bias
    check_on_npu(run, ops)
    check_close(run.out, want, roundings=2 + act_roundings)


# ---- depthwise conv2d (vector unit) ---------------------------------------------------------


@pytest.mark.parametrize(
    "c, hw, k, stride, pads, dil, bias",
    [
        pytest.param(17, (20, 20), 3, 1, (1, 1, 1, 1), 1, True, id="17x20x20-k3-s1"),
        pytest.param(40, (33, 17), 3, 2, (1, 1, 1, 1), 1, True, id="40x33x17-k3-s2"),
        pytest.param(3, (7, 9), 5, 1, (2, 2, 2, 2), 1, True, id="3x7x9-k5-s1"),
        pytest.param(40, (20, 20), 5, 2, (2, 2, 2, 2), 1, False, id="40x20x20-k5-s2-nobias"),
        pytest.param(17, (33, 17), 3, 2, (0, 0, 1, 1), 1, True, id="17x33x17-k3-s2-same"),
        pytest.param(17, (20, 20), 3, 1, (2, 2, 2, 2), 2, True, id="17x20x20-k3-d2"),
        # 5 rows of 33 pixels do not fit UB beside the tile: the window is read in row chunks
        pytest.param(17, (20, 33), 5, 1, (2, 2, 2, 2), 1, True, id="17x20x33-k5-row-chunks"),
    ],
)
def test_depthwise_conv2d(tmp_path, c, hw, k, stride, pads, dil, bias):
    r = rng(2)
    x = 3 * r.standard_normal((2, c, *hw))
    w = r.standard_normal((c, 1, k, k)) / k
    b = r.standard_normal(c) if bias else None
    conv = helper.make_node(
        "Conv",
        ["x", "w"] + (["b"] if bias else []),
        ["y"],
        kernel_shape=[k, k],
        strides=[stride, stride],
        pads=list(pads),
        dilations=[dil, dil],
        group=c,
    )
    strides, dils = (stride, stride), (dil, dil)
    want = conv2d_ref(f16(x), f16(w), None if b is None else f16(b), strides, pads, dils, c)
    run = run_on_npu(tmp_path, [conv], {"x": x}, {"w": w, **({"b": b} if bias else {})}, want.shape)
    check_on_npu(run, {"nn.conv2d": 1, "add": int(bias)})
    check_close(run.out, want, roundings=2)


# ---- pooling (vector unit) ------------------------------------------------------------------


@pytest.mark.parametrize(
    "op, c, hw, kernel, stride, pads, dil, include_pad",
    [
        pytest.param("MaxPool", 17, (33, 17), 3, 2, (1,) * 4, 1, 0, id="max-17x33x17-k3-s2-p1"),
        pytest.param("MaxPool", 40, (20, 20), 2, 2, (0,) * 4, 1, 0, id="max-40x20x20-k2-s2"),
        pytest.param("MaxPool", 3, (7, 9), 3, 1, (2,) * 4, 2, 0, id="max-3x7x9-k3-p2-d2"),
        pytest.param("AveragePool", 17, (20, 20), 3, 1, (1,) * 4, 1, 0, id="avg-17x20x20-nopad"),
        pytest.param("AveragePool", 40, (33, 17), 3, 2, (1,) * 4, 1, 1, id="avg-40x33x17-pad"),
        pytest.param("AveragePool", 3, (7, 9), 2, 2, (0,) * 4, 1, 0, id="avg-3x7x9-k2-s2"),
        pytest.param("AveragePool", 17, (7, 9), 5, 2, (2,) * 4, 1, 0, id="avg-17x7x9-k5-nopad"),
        # as depthwise 17x20x33-k5 above: row chunks, each counting its taps
        pytest.param("AveragePool", 17, (20, 33), 5, 1, (2,) * 4, 1, 0, id="avg-17x20x33-k5-nopad"),
    ],
)
def test_pool(tmp_path, op, c, hw, kernel, stride, pads, dil, include_pad):
    x = 3 * rng(3).standard_normal((2, c, *hw))
    attrs = dict(kernel_shape=[kernel, kernel], strides=[stride, stride], pads=list(pads))
    kind = "max" if op == "MaxPool" else "avg"
    if kind == "avg":
        attrs["count_include_pad"] = include_pad
    else:
        attrs["dilations"] = [dil, dil]
    want = pool_ref(f16(x), kind, (kernel, kernel), (stride, stride), pads, include_pad, dil)
    run = run_on_npu(tmp_path, [helper.make_node(op, ["x"], ["y"], **attrs)], {"x": x}, {},
                     want.shape)  # fmt: skip
    check_on_npu(run, {"nn.max_pool2d" if kind == "max" else "nn.avg_pool2d": 1})
    check_close(run.out, want, roundings=2)


@pytest.mark.parametrize(
    "op, shape",
    [
        pytest.param("GlobalAveragePool", (1, 40, 33, 17), id="gap-40x33x17"),
        pytest.param("GlobalAveragePool", (2, 3, 7, 9), id="gap-3x7x9"),
        pytest.param("ReduceMean", (1, 17, 20, 20), id="reducemean-17x20x20"),
    ],
)
def test_global_average_pool(tmp_path, op, shape):
    x = 3 * rng(4).standard_normal(shape)
    attrs = {"axes": [2, 3], "keepdims": 1} if op == "ReduceMean" else {}
    want = f16(x).mean(axis=(2, 3), keepdims=True)
    run = run_on_npu(tmp_path, [helper.make_node(op, ["x"], ["y"], **attrs)], {"x": x}, {},
                     want.shape)  # fmt: skip
    check_on_npu(run, {"mean": 1})
    check_close(run.out, want, roundings=2)


# ---- matmul (cube unit) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "x_shape, n, bias, relu",
    [
        pytest.param((7, 17), 40, True, False, id="7x17-40-bias"),
        pytest.param((33, 40), 3, False, False, id="33x40-3"),
        pytest.param((50, 40), 33, True, True, id="50x40-33-bias-relu"),
        pytest.param((2, 20, 17), 17, True, False, id="2x20x17-17-bias"),
        pytest.param((3, 9, 40), 24, False, True, id="3x9x40-24-relu"),
        pytest.param((300, 40), 24, True, False, id="300x40-24-bias"),
        # 600 rows of a 16-channel block are 19 KiB, more than L1: rows are tiled
        pytest.param((600, 17), 40, False, False, id="600x17-40"),
    ],
)
def test_matmul(tmp_path, x_shape, n, bias, relu):
    r = rng(5)
    k = x_shape[-1]
    x = 3 * r.standard_normal(x_shape)
    w = r.standard_normal((k, n)) / np.sqrt(k)
    b = r.standard_normal(n)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["mm"])]
    want = f16(x) @ f16(w)
    if bias:
        nodes.append(helper.make_node("Add", ["mm", "b"], ["mb"]))
        want = want + f16(b)
    if relu:
        nodes.append(helper.make_node("Relu", [nodes[-1].output[0]], ["y"]))
        want = np.maximum(want, 0)
    nodes[-1].output[0] = "y"
    run = run_on_npu(tmp_path, nodes, {"x": x}, {"w": w, **({"b": b} if bias else {})},
                     want.shape)  # fmt: skip
    check_on_npu(run, {"matmul": 1, "add": int(bias), "nn.relu": int(relu)})
    check_close(run.out, want, roundings=2)


def test_gemm_imports_as_matmul(tmp_path):
    r = rng(6)
    x = 3 * r.standard_normal((20, 33))
    w = r.standard_normal((17, 33)) / np.sqrt(33)  # transB=1: [N, K]
    b = r.standard_normal(17)
    gemm = helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)
    want = f16(x) @ f16(w).T + f16(b)
    run = run_on_npu(tmp_path, [gemm], {"x": x}, {"w": w, "b": b}, want.shape)
    check_on_npu(run, {"matmul": 1})
    check_close(run.out, want, roundings=2)


# ---- softmax (vector unit) ------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape", [(7, 17), (33, 40), (20, 3), (5, 300), (2, 9, 17)], ids=lambda s: "x".join(map(str, s))
)
def test_softmax(tmp_path, shape):
    x = 2 * rng(7).standard_normal(shape)
    want = softmax_ref(f16(x))
    node = helper.make_node("Softmax", ["x"], ["y"], axis=-1)
    run = run_on_npu(tmp_path, [node], {"x": x}, {}, want.shape)
    check_on_npu(run, {"nn.softmax": 1})
    check_close(run.out, want, roundings=6)


# ---- elementwise (vector unit) --------------------------------------------------------------
# The partitioner leaves an elementwise op on the CPU unless an offloaded op feeds it, so each
# operand under test comes through an NPU op that passes it on unchanged: a 1x1 max pool (4-D)
# or a matmul by the identity (2-D), both exact on fp16 values. The op then runs in that
# kernel's vector program; `test_standalone_vector_program` covers programs with no anchor.

BINARY = {
    "Add": ("add", np.add),
    "Sub": ("subtract", np.subtract),
    "Mul": ("multiply", np.multiply),
    "Div": ("divide", np.divide),
}


def through_npu(name: str, shape: tuple[int, ...]) -> tuple[list, dict, str, str]:
    """ONNX nodes passing input `name` through an NPU op unchanged: (nodes, initializers,
    output name, Relax op)."""
    out = f"{name}_npu"
    if len(shape) == 4:
        return (
            [helper.make_node("MaxPool", [name], [out], kernel_shape=[1, 1])],
            {},
            out,
            ("nn.max_pool2d"),
        )
    eye = np.eye(shape[-1], dtype=np.float32)
    return (
        [helper.make_node("MatMul", [name, f"{name}_eye"], [out])],
        {f"{name}_eye": eye},
        out,
        ("matmul"),
    )


def away_from_zero(values: np.ndarray) -> np.ndarray:
    """Magnitudes in [0.5, 2] with the sign of `values`: divisors that do not amplify errors."""
    return np.where(values < 0, -1, 1) * (0.5 + 1.5 * np.abs(np.tanh(values)))


def shape_id(v):
    return "x".join(map(str, v)) if isinstance(v, tuple) else v


@pytest.mark.parametrize(
    "op, shape, fed_first",
    [
        ("Add", (1, 17, 20, 20), True),
        ("Sub", (2, 3, 7, 9), False),
        ("Mul", (1, 40, 33, 17), True),
        ("Div", (1, 17, 7, 9), False),
        ("Sub", (33, 40), True),
    ],
    ids=lambda v: {True: "fed-first", False: "fed-second"}.get(v, v) if isinstance(v, bool)
    else shape_id(v),
)  # fmt: skip
def test_binary_same_shape(tmp_path, op, shape, fed_first):
    """op(a, b) of two inputs; one comes through an NPU op, the other is read from DDR."""
    r = rng(8)
    a = 3 * r.standard_normal(shape)
    b = 3 * r.standard_normal(shape)
    if op == "Div":
        (a, b) = (away_from_zero(a), b) if fed_first else (a, away_from_zero(b))
    feed, weights, fed, anchor = through_npu("a" if fed_first else "b", shape)
    names = [fed, "b"] if fed_first else ["a", fed]
    relax_op, fn = BINARY[op]
    want = fn(f16(a), f16(b))
    run = run_on_npu(tmp_path, [*feed, helper.make_node(op, names, ["y"])], {"a": a, "b": b},
                     weights, want.shape)  # fmt: skip
    check_on_npu(run, {anchor: 1, relax_op: 1})
    check_close(run.out, want, roundings=2)


@pytest.mark.parametrize(
    "op, const, const_first",
    [
        ("Mul", "scalar", False),
        ("Sub", "scalar", True),
        ("Div", "scalar", False),
        ("Add", "channel", False),
        ("Sub", "channel", True),
        ("Div", "channel", False),
    ],
    ids=lambda v: {True: "const-first", False: "const-second"}.get(v, v),
)
def test_binary_with_constant(tmp_path, op, const, const_first):
    """x (1, 17, 20, 20) with a scalar or a per-channel [1, C, 1, 1] initializer."""
    r = rng(9)
    x = 3 * r.standard_normal((1, 17, 20, 20))
    k = 3 * r.standard_normal(() if const == "scalar" else (1, 17, 1, 1))
    k = np.asarray(away_from_zero(k) if op == "Div" else k, np.float32)
    feed, _, fed, anchor = through_npu("x", x.shape)
    relax_op, fn = BINARY[op]
    want = fn(f16(k), f16(x)) if const_first else fn(f16(x), f16(k))
    node = helper.make_node(op, ["k", fed] if const_first else [fed, "k"], ["y"])
    run = run_on_npu(tmp_path, [*feed, node], {"x": x}, {"k": k}, want.shape)
    check_on_npu(run, {anchor: 1, relax_op: 1})
    check_close(run.out, want, roundings=2)


@pytest.mark.parametrize(
    "op, shape",
    [("Sigmoid", (1, 17, 20, 20)), ("Relu", (2, 40, 7, 9)), ("Sigmoid", (7, 40))],
    ids=shape_id,
)
def test_unary(tmp_path, op, shape):
    x = 4 * rng(11).standard_normal(shape)
    xr = f16(x)
    want = 1 / (1 + np.exp(-xr)) if op == "Sigmoid" else np.maximum(xr, 0)
    feed, weights, fed, anchor = through_npu("x", shape)
    run = run_on_npu(tmp_path, [*feed, helper.make_node(op, [fed], ["y"])], {"x": x}, weights,
                     want.shape)  # fmt: skip
    check_on_npu(run, {anchor: 1, "sigmoid" if op == "Sigmoid" else "nn.relu": 1})
    check_close(run.out, want, roundings=2)


@pytest.mark.parametrize("shape", [(1, 17, 33, 17), (2, 3, 7, 9)], ids=shape_id)
def test_hardswish_chain(tmp_path, shape):
    """x * clip(x + 3, 0, 6) / 6 as separate ONNX ops: a vector program of five ops."""
    x = 4 * rng(12).standard_normal(shape)
    feed, _, fed, anchor = through_npu("x", shape)
    nodes, act, act_ops, act_roundings = EPILOGUES["hardswish"]
    nodes = [*feed, helper.make_node("Identity", [fed], ["c"]), *nodes]
    want = act(f16(x))
    run = run_on_npu(tmp_path, nodes, {"x": x}, SCALARS, want.shape)
    check_on_npu(run, {anchor: 1, **act_ops})
    check_close(run.out, want, roundings=2 + act_roundings)


@pytest.mark.parametrize(
    "op, shape, s_first",
    [
        ("Mul", (2, 160, 5, 7), False),  # 10 channel blocks: 2 tiles of them fit UB
        ("Add", (1, 17, 33, 17), True),
        ("Sub", (2, 3, 7, 9), True),
        ("Div", (1, 17, 7, 9), False),
    ],
    ids=lambda v: {True: "s-first", False: "s-second"}.get(v, v) if isinstance(v, bool)
    else shape_id(v),
)  # fmt: skip
def test_broadcast_runtime_tensor(tmp_path, op, shape, s_first):
    """op(x, s) with s = GlobalAveragePool(t) of shape (N, C, 1, 1), a runtime tensor, as
    squeeze-excite scales a feature map. The op's shape is not s's, so it does not join the
    pooling kernel: it is a vector program of its own (npu_eltwise, no anchor)."""
    r = rng(10)
    x = 3 * r.standard_normal(shape)
    t = 1 + r.random((*shape[:2], 5, 5))  # s in [1, 2]: a well-conditioned divisor
    s = f16(t).mean(axis=(2, 3), keepdims=True)
    relax_op, fn = BINARY[op]
    want = fn(s, f16(x)) if s_first else fn(f16(x), s)
    nodes = [
        helper.make_node("GlobalAveragePool", ["t"], ["s"]),
        helper.make_node(op, ["s", "x"] if s_first else ["x", "s"], ["y"]),
    ]
    run = run_on_npu(tmp_path, nodes, {"x": x, "t": t}, {}, want.shape)
    check_on_npu(run, {"mean": 1, relax_op: 1})
    check_close(run.out, want, roundings=3)  # s is stored in fp16, then op rounds


@pytest.mark.parametrize("shape", [(1, 160, 9, 7), (2, 3, 7, 9)], ids=shape_id)
def test_vector_program_of_every_operand_kind(tmp_path, shape):
    """y = (x * s + q) * k - 0.5: one npu_eltwise program that reads a runtime (N, C, 1, 1)
    tensor (s = GlobalAveragePool(t)), two same-shape tensors from DDR (x, q), a per-channel
    constant (k) and a scalar, in two UB slots. 160 channels: the tiles split the channel
    blocks (10 blocks x 2 slots of 16-pixel rows exceed UB)."""
    r = rng(13)
    x = 3 * r.standard_normal(shape)
    q = 3 * r.standard_normal(shape)
    t = 1 + r.random((*shape[:2], 5, 5))
    k = r.standard_normal((1, shape[1], 1, 1))
    nodes = [
        helper.make_node("GlobalAveragePool", ["t"], ["s"]),
        helper.make_node("Mul", ["x", "s"], ["xs"]),
        helper.make_node("Add", ["xs", "q"], ["xq"]),
        helper.make_node("Mul", ["xq", "k"], ["xk"]),
        helper.make_node("Sub", ["xk", "half"], ["y"]),
    ]
    s = f16(t).mean(axis=(2, 3), keepdims=True)
    want = (f16(x) * s + f16(q)) * f16(k) - 0.5
    weights = {"k": k, "half": np.float32(0.5)}
    run = run_on_npu(tmp_path, nodes, {"x": x, "q": q, "t": t}, weights, want.shape)
    check_on_npu(run, {"mean": 1, "multiply": 2, "add": 1, "subtract": 1})
    check_close(run.out, want, roundings=6)  # s in fp16, four ops, the reference's k
