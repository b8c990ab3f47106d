"""A zoo of lightweight networks, built here from code (onnx.helper) with seeded random weights.

Nothing is downloaded: each `ZooModel.build(seed)` returns a fresh opset-17 `onnx.ModelProto` whose
structure follows its paper (layer tables, activations, block shapes) and whose weights are drawn
from `numpy.random.default_rng(seed)`: He-normal convolutions, inference BatchNorm with random
positive variance, so that activations stay O(1) through the depth of the network.

    from tilecc.compiler import zoo
    zoo.MODELS["mobilenetv2"].build(seed=0)
    zoo.export("mobilenetv3-small", "m.onnx")
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .errors import ModelError
from .files import atomic_output

OPSET = 17
NUM_CLASSES = 1000


class GraphBuilder:
    """Appends ONNX nodes and seeded initializers, tracking every tensor's static shape."""

    def __init__(self, name: str, seed: int = 0):
        self.name = name
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.inputs: list[onnx.ValueInfoProto] = []
        self._count: dict[str, int] = {}

    # -- bookkeeping ---------------------------------------------------------------------------
    def fresh(self, prefix: str) -> str:
        n = self._count.get(prefix, 0)
        self._count[prefix] = n + 1
        return f"{prefix}_{n}"

    def input(self, name: str, shape: tuple[int, ...]) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)))
        self.shapes[name] = tuple(shape)
        return name

    def const(self, value: np.ndarray, prefix: str = "const") -> str:
        name = self.fresh(prefix)
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        self.shapes[name] = tuple(np.shape(value))
        return name

    def node(self, op: str, inputs: list[str], shape: tuple[int, ...], **attrs) -> str:
        out = self.fresh(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        self.shapes[out] = tuple(shape)
        return out

    def shape(self, x: str) -> tuple[int, ...]:
        return self.shapes[x]

    def model(self, outputs: list[str]) -> onnx.ModelProto:
        outs = [
            helper.make_tensor_value_info(o, TensorProto.FLOAT, list(self.shapes[o]))
            for o in outputs
        ]
        graph = helper.make_graph(self.nodes, self.name, self.inputs, outs, self.inits)
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="tilecc.zoo"
        )
        model.ir_version = 8
        return model

    # -- weights -------------------------------------------------------------------------------
    def normal(self, shape, std: float, prefix: str) -> str:
        return self.const((self.rng.standard_normal(shape) * std).astype(np.float32), prefix)

    # -- convolutional blocks ------------------------------------------------------------------
    def conv(
        self,
        x: str,
        cout: int,
        k: int,
        stride: int = 1,
        groups: int = 1,
        bias: bool = False,
        pad: int | None = None,
        gain: float = 2.0,
    ) -> str:
        n, cin, h, w = self.shape(x)
        pad = k // 2 if pad is None else pad
        fan_in = cin // groups * k * k
        weight = self.normal((cout, cin // groups, k, k), math.sqrt(gain / fan_in), "w")
        args = [x, weight]
        if bias:
            args.append(self.normal((cout,), 0.1, "b"))
        ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
        return self.node(
            "Conv",
            args,
            (n, cout, ho, wo),
            kernel_shape=[k, k],
            strides=[stride, stride],
            pads=[pad] * 4,
            group=groups,
        )

    def batchnorm(self, x: str) -> str:
        c = self.shape(x)[1]
        rng = self.rng
        f32 = np.float32
        scale = self.const(rng.uniform(0.5, 1.0, c).astype(f32), "bn_gamma")
        beta = self.const((rng.standard_normal(c) * 0.1).astype(f32), "bn_beta")
        mean = self.const((rng.standard_normal(c) * 0.1).astype(f32), "bn_mean")
        var = self.const(rng.uniform(0.5, 1.5, c).astype(f32), "bn_var")
        return self.node(
            "BatchNormalization", [x, scale, beta, mean, var], self.shape(x), epsilon=1e-5
        )

    def act(self, x: str, kind: str | None) -> str:
        shape = self.shape(x)
        if kind is None:
            return x
        if kind == "relu":
            return self.node("Relu", [x], shape)
        if kind == "relu6":  # Clip(0, 6), as TFLite and EfficientNet-lite write it
            lo = self.const(np.array(0.0, np.float32), "clip_min")
            hi = self.const(np.array(6.0, np.float32), "clip_max")
            return self.node("Clip", [x, lo, hi], shape)
        if kind == "hswish":
            return self.node("HardSwish", [x], shape)
        if kind == "hsigmoid":  # relu6(x + 3) / 6, as in MobileNetV3
            return self.node("HardSigmoid", [x], shape, alpha=1.0 / 6.0, beta=0.5)
        if kind == "gelu":  # x * 0.5 * (1 + erf(x / sqrt(2))), written out
            scaled = self.node("Div", [x, self.const(np.float32(math.sqrt(2.0)), "sqrt2")], shape)
            erf = self.node("Erf", [scaled], shape)
            one = self.node("Add", [erf, self.const(np.float32(1.0), "one")], shape)
            half = self.node("Mul", [x, self.const(np.float32(0.5), "half")], shape)
            return self.node("Mul", [half, one], shape)
        raise ValueError(f"unknown activation {kind!r}")

    def conv_bn_act(
        self, x: str, cout: int, k: int, stride: int = 1, groups: int = 1, act: str | None = None
    ) -> str:
        gain = 2.0 if act else 1.0
        return self.act(self.batchnorm(self.conv(x, cout, k, stride, groups, gain=gain)), act)

    def depthwise(self, x: str, k: int, stride: int = 1, act: str | None = None) -> str:
        c = self.shape(x)[1]
        return self.conv_bn_act(x, c, k, stride, groups=c, act=act)

    def maxpool(self, x: str, k: int, stride: int, pad: int = 0, ceil: bool = False) -> str:
        n, c, h, w = self.shape(x)

        def out(size):
            span = size + 2 * pad - k
            return (-(-span // stride) if ceil else span // stride) + 1

        return self.node(
            "MaxPool",
            [x],
            (n, c, out(h), out(w)),
            kernel_shape=[k, k],
            strides=[stride, stride],
            pads=[pad] * 4,
            ceil_mode=int(ceil),
        )

    def global_avg_pool(self, x: str) -> str:
        n, c, _, _ = self.shape(x)
        return self.node("GlobalAveragePool", [x], (n, c, 1, 1))

    def squeeze_excite(self, x: str, squeeze: int) -> str:
        """GlobalAveragePool → 1x1 conv → ReLU → 1x1 conv → HardSigmoid → Mul (MobileNetV3)."""
        c = self.shape(x)[1]
        s = self.act(self.conv(self.global_avg_pool(x), squeeze, 1, bias=True), "relu")
        gate = self.act(self.conv(s, c, 1, bias=True, gain=1.0), "hsigmoid")
        return self.mul(x, gate)

    def channel_shuffle(self, x: str, groups: int) -> str:
        n, c, h, w = self.shape(x)
        split = self.const(np.array([n, groups, c // groups, h, w], np.int64), "shape")
        y = self.node("Reshape", [x, split], (n, groups, c // groups, h, w))
        y = self.transpose(y, [0, 2, 1, 3, 4])
        return self.reshape(y, (n, c, h, w))

    # -- tensor ops ----------------------------------------------------------------------------
    def add(self, a: str, b: str) -> str:
        return self.node("Add", [a, b], np.broadcast_shapes(self.shape(a), self.shape(b)))

    def mul(self, a: str, b: str) -> str:
        return self.node("Mul", [a, b], np.broadcast_shapes(self.shape(a), self.shape(b)))

    def concat(self, xs: list[str], axis: int) -> str:
        shape = list(self.shape(xs[0]))
        shape[axis] = sum(self.shape(x)[axis] for x in xs)
        return self.node("Concat", xs, tuple(shape), axis=axis)

    def split(self, x: str, sizes: list[int], axis: int) -> list[str]:
        outs = [self.fresh("split") for _ in sizes]
        lengths = self.const(np.array(sizes, np.int64), "split_sizes")
        self.nodes.append(helper.make_node("Split", [x, lengths], outs, name=outs[0], axis=axis))
        for out, size in zip(outs, sizes, strict=True):
            shape = list(self.shape(x))
            shape[axis] = size
            self.shapes[out] = tuple(shape)
        return outs

    def reshape(self, x: str, shape: tuple[int, ...]) -> str:
        target = self.const(np.array(shape, np.int64), "shape")
        return self.node("Reshape", [x, target], tuple(shape))

    def transpose(self, x: str, perm: list[int]) -> str:
        shape = self.shape(x)
        return self.node("Transpose", [x], tuple(shape[p] for p in perm), perm=perm)

    def flatten(self, x: str) -> str:
        shape = self.shape(x)
        return self.node("Flatten", [x], (shape[0], int(np.prod(shape[1:]))), axis=1)

    def gemm(self, x: str, cout: int, gain: float = 1.0) -> str:
        n, cin = self.shape(x)
        weight = self.normal((cout, cin), math.sqrt(gain / cin), "fc_w")
        bias = self.normal((cout,), 0.1, "fc_b")
        return self.node("Gemm", [x, weight, bias], (n, cout), transB=1)

    def matmul(self, a: str, b: str) -> str:
        sa, sb = self.shape(a), self.shape(b)
        batch = np.broadcast_shapes(sa[:-2], sb[:-2])
        return self.node("MatMul", [a, b], (*batch, sa[-2], sb[-1]))

    def linear(self, x: str, cout: int, gain: float = 1.0) -> str:
        """MatMul + Add over the last axis (a transformer's dense layer)."""
        cin = self.shape(x)[-1]
        y = self.matmul(x, self.normal((cin, cout), math.sqrt(gain / cin), "w"))
        return self.add(y, self.normal((cout,), 0.02, "b"))

    def softmax(self, x: str, axis: int = -1) -> str:
        return self.node("Softmax", [x], self.shape(x), axis=axis)

    def layernorm(self, x: str) -> str:
        d = self.shape(x)[-1]
        gamma = self.const(self.rng.uniform(0.8, 1.2, d).astype(np.float32), "ln_gamma")
        beta = self.const((self.rng.standard_normal(d) * 0.05).astype(np.float32), "ln_beta")
        return self.node(
            "LayerNormalization", [x, gamma, beta], self.shape(x), axis=-1, epsilon=1e-5
        )

    def classifier(self, x: str, classes: int = NUM_CLASSES) -> str:
        return self.gemm(self.flatten(self.global_avg_pool(x)), classes)


def _divisible(v: float, divisor: int = 8) -> int:
    """Round channels as the MobileNet reference code does (`_make_divisible`)."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


# -- the networks ------------------------------------------------------------------------------


def mobilenet_v2(seed: int, resolution: int) -> onnx.ModelProto:
    """Sandler et al. 2018, width 1.0: inverted residuals (expansion 6), linear bottlenecks."""
    g = GraphBuilder("mobilenetv2", seed)
    x = g.conv_bn_act(g.input("input", (1, 3, resolution, resolution)), 32, 3, 2, act="relu6")
    cin = 32
    for t, c, n, s in [
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ]:
        for i in range(n):
            stride = s if i == 0 else 1
            y = x if t == 1 else g.conv_bn_act(x, cin * t, 1, act="relu6")
            y = g.depthwise(y, 3, stride, act="relu6")
            y = g.conv_bn_act(y, c, 1)  # linear bottleneck: no activation
            x = g.add(x, y) if stride == 1 and cin == c else y
            cin = c
    x = g.conv_bn_act(x, 1280, 1, act="relu6")
    return g.model([g.classifier(x)])


def mobilenet_v3_small(seed: int, resolution: int) -> onnx.ModelProto:
    """Howard et al. 2019, small, width 1.0: the bneck table with SE blocks and hard-swish."""
    g = GraphBuilder("mobilenetv3_small", seed)
    x = g.conv_bn_act(g.input("input", (1, 3, resolution, resolution)), 16, 3, 2, act="hswish")
    cin = 16
    # kernel, expansion size, out, SE, nonlinearity, stride
    for k, exp, out, se, nl, s in [
        (3, 16, 16, True, "relu", 2),
        (3, 72, 24, False, "relu", 2),
        (3, 88, 24, False, "relu", 1),
        (5, 96, 40, True, "hswish", 2),
        (5, 240, 40, True, "hswish", 1),
        (5, 240, 40, True, "hswish", 1),
        (5, 120, 48, True, "hswish", 1),
        (5, 144, 48, True, "hswish", 1),
        (5, 288, 96, True, "hswish", 2),
        (5, 576, 96, True, "hswish", 1),
        (5, 576, 96, True, "hswish", 1),
    ]:
        y = x if exp == cin else g.conv_bn_act(x, exp, 1, act=nl)
        y = g.depthwise(y, k, s, act=nl)
        if se:
            y = g.squeeze_excite(y, _divisible(exp / 4))
        y = g.conv_bn_act(y, out, 1)
        x = g.add(x, y) if s == 1 and cin == out else y
        cin = out
    x = g.conv_bn_act(x, 576, 1, act="hswish")
    x = g.act(g.gemm(g.flatten(g.global_avg_pool(x)), 1024, gain=2.0), "hswish")
    return g.model([g.gemm(x, NUM_CLASSES)])


def shufflenet_v2(seed: int, resolution: int) -> onnx.ModelProto:
    """Ma et al. 2018, 1.0x: units with channel split (Split), Concat and channel shuffle."""
    g = GraphBuilder("shufflenetv2", seed)
    x = g.conv_bn_act(g.input("input", (1, 3, resolution, resolution)), 24, 3, 2, act="relu")
    x = g.maxpool(x, 3, 2, pad=1)
    for repeats, c in [(4, 116), (8, 232), (4, 464)]:
        half = c // 2
        for i in range(repeats):
            if i == 0:  # downsampling unit: both branches see the whole input
                left = g.conv_bn_act(g.depthwise(x, 3, 2), half, 1, act="relu")
                right = x
                stride = 2
            else:
                left, right = g.split(x, [half, half], axis=1)
                stride = 1
            right = g.conv_bn_act(right, half, 1, act="relu")
            right = g.depthwise(right, 3, stride)
            right = g.conv_bn_act(right, half, 1, act="relu")
            x = g.channel_shuffle(g.concat([left, right], axis=1), 2)
    x = g.conv_bn_act(x, 1024, 1, act="relu")
    return g.model([g.classifier(x)])


def squeezenet_1_1(seed: int, resolution: int) -> onnx.ModelProto:
    """Iandola et al. 2016, v1.1: fire modules (squeeze 1x1, expand 1x1 ‖ 3x3, Concat)."""
    g = GraphBuilder("squeezenet1_1", seed)

    def conv_relu(x, cout, k, stride=1, pad=None):
        return g.act(g.conv(x, cout, k, stride, bias=True, pad=pad), "relu")

    def fire(x, squeeze, expand):
        s = conv_relu(x, squeeze, 1)
        return g.concat([conv_relu(s, expand, 1), conv_relu(s, expand, 3)], axis=1)

    x = conv_relu(g.input("input", (1, 3, resolution, resolution)), 64, 3, 2, pad=0)
    x = g.maxpool(x, 3, 2, ceil=True)
    x = fire(fire(x, 16, 64), 16, 64)
    x = g.maxpool(x, 3, 2, ceil=True)
    x = fire(fire(x, 32, 128), 32, 128)
    x = g.maxpool(x, 3, 2, ceil=True)
    x = fire(fire(fire(fire(x, 48, 192), 48, 192), 64, 256), 64, 256)
    x = conv_relu(x, NUM_CLASSES, 1)  # dropout is the identity at inference
    return g.model([g.flatten(g.global_avg_pool(x))])


def efficientnet_lite0(seed: int, resolution: int) -> onnx.ModelProto:
    """Tan & Le 2019, lite0 (B0 scaling, ReLU6, no SE, fixed stem/head): MBConv blocks."""
    g = GraphBuilder("efficientnet_lite0", seed)
    x = g.conv_bn_act(g.input("input", (1, 3, resolution, resolution)), 32, 3, 2, act="relu6")
    cin = 32
    # expansion, kernel, stride, out, repeats
    for e, k, s, c, n in [
        (1, 3, 1, 16, 1),
        (6, 3, 2, 24, 2),
        (6, 5, 2, 40, 2),
        (6, 3, 2, 80, 3),
        (6, 5, 1, 112, 3),
        (6, 5, 2, 192, 4),
        (6, 3, 1, 320, 1),
    ]:
        for i in range(n):
            stride = s if i == 0 else 1
            y = x if e == 1 else g.conv_bn_act(x, cin * e, 1, act="relu6")
            y = g.depthwise(y, k, stride, act="relu6")
            y = g.conv_bn_act(y, c, 1)
            x = g.add(x, y) if stride == 1 and cin == c else y
            cin = c
    x = g.conv_bn_act(x, 1280, 1, act="relu6")
    return g.model([g.classifier(x)])


def tiny_vit(
    seed: int,
    resolution: int,
    patch: int = 8,
    dim: int = 128,
    depth: int = 4,
    heads: int = 4,
    mlp_ratio: int = 4,
    classes: int = 10,
) -> onnx.ModelProto:
    """Dosovitskiy et al. 2020, tiny: 8x8 patches, class token, pre-norm encoder blocks whose
    multi-head attention is written out with MatMul/Transpose/Softmax; GELU in Erf form."""
    g = GraphBuilder("tiny_vit", seed)
    x = g.conv(
        g.input("input", (1, 3, resolution, resolution)),
        dim,
        patch,
        patch,
        bias=True,
        pad=0,
        gain=1.0,
    )
    n, _, h, w = g.shape(x)
    tokens = h * w + 1
    x = g.transpose(g.reshape(x, (n, dim, h * w)), [0, 2, 1])
    cls = g.normal((n, 1, dim), 0.5, "cls_token")
    x = g.concat([cls, x], axis=1)
    x = g.add(x, g.normal((1, tokens, dim), 0.5, "pos_embed"))
    hd = dim // heads
    scale = g.const(np.float32(1.0 / math.sqrt(hd)), "attn_scale")

    def split_heads(t):  # (n, tokens, dim) → (n, heads, tokens, hd)
        return g.transpose(g.reshape(t, (n, tokens, heads, hd)), [0, 2, 1, 3])

    for _ in range(depth):
        y = g.layernorm(x)
        q, k, v = (split_heads(g.linear(y, dim)) for _ in range(3))
        kt = g.transpose(k, [0, 1, 3, 2])
        scores = g.node("Mul", [g.matmul(q, kt), scale], (n, heads, tokens, tokens))
        attn = g.matmul(g.softmax(scores, axis=-1), v)
        attn = g.reshape(g.transpose(attn, [0, 2, 1, 3]), (n, tokens, dim))
        x = g.add(x, g.linear(attn, dim))
        y = g.act(g.linear(g.layernorm(x), dim * mlp_ratio, gain=2.0), "gelu")
        x = g.add(x, g.linear(y, dim))
    x = g.layernorm(x)
    index = g.const(np.array(0, np.int64), "cls_index")
    x = g.node("Gather", [x, index], (n, dim), axis=1)
    return g.model([g.gemm(x, classes)])


# -- the registry ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ZooModel:
    name: str
    summary: str
    resolution: int  # default input height = width
    builder: Callable[[int, int], onnx.ModelProto]
    channels: int = 3

    def input_shape(self, resolution: int | None = None) -> tuple[int, int, int, int]:
        r = resolution or self.resolution
        return (1, self.channels, r, r)

    def build(self, seed: int = 0, resolution: int | None = None) -> onnx.ModelProto:
        """A fresh ONNX model (opset 17) with weights drawn from `seed`; input "input"."""
        return self.builder(seed, resolution or self.resolution)


MODELS: dict[str, ZooModel] = {
    m.name: m
    for m in [
        ZooModel(
            "mobilenetv2",
            "MobileNetV2 1.0: inverted residuals (expansion 6), linear bottlenecks, ReLU6",
            224,
            mobilenet_v2,
        ),
        ZooModel(
            "mobilenetv3-small",
            "MobileNetV3-small 1.0: bneck table, SE (HardSigmoid gate), hard-swish",
            224,
            mobilenet_v3_small,
        ),
        ZooModel(
            "shufflenetv2",
            "ShuffleNetV2 1.0x: channel split, Concat, channel shuffle (Reshape/Transpose)",
            224,
            shufflenet_v2,
        ),
        ZooModel(
            "squeezenet1.1",
            "SqueezeNet 1.1: fire modules (squeeze 1x1, expand 1x1 + 3x3, Concat)",
            224,
            squeezenet_1_1,
        ),
        ZooModel(
            "efficientnet-lite0",
            "EfficientNet-lite0: MBConv with ReLU6, no SE",
            224,
            efficientnet_lite0,
        ),
        ZooModel(
            "vit-tiny",
            "Tiny ViT: 64x64 input, 8x8 patches, 4 layers, dim 128, 4 heads, GELU, LayerNorm",
            64,
            tiny_vit,
        ),
    ]
}


def get(name: str) -> ZooModel:
    try:
        return MODELS[name]
    except KeyError:
        raise ModelError(
            f"unknown zoo model {name!r} (known: {', '.join(sorted(MODELS))})"
        ) from None


def export(name: str, path: str | Path, seed: int = 0, resolution: int | None = None) -> Path:
    """Build zoo model `name` and write it to `path` atomically (temp file + os.replace)."""
    model = get(name).build(seed, resolution)
    with atomic_output(path, ".onnx") as tmp:
        tmp.write_bytes(model.SerializeToString())
    return Path(path)


def stats(model: onnx.ModelProto) -> tuple[dict[str, int], int]:
    """(op type → node count, number of float parameters) of a model."""
    ops: dict[str, int] = {}
    for node in model.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    params = sum(
        int(np.prod(t.dims)) for t in model.graph.initializer if t.data_type == TensorProto.FLOAT
    )
    return ops, params
