"""Pre-quantized ONNX (QDQ) into tilecc's int8 path.

A QDQ model (onnxruntime.quantization's quantize_static, TensorRT / PyTorch exports) carries its
int8 parameters as QuantizeLinear -> DequantizeLinear pairs on activations and DequantizeLinear
on int8 weights. `strip_qdq` takes them out: an activation pair becomes a Clip to the range it
represents (its saturation is part of the model: ONNX Runtime's quantizer drops a ReLU6 for it),
weights become their int8-rounded fp32 values, and the scale and zero point of each conv /
matmul input are kept. `qdq_table` turns
those into a quantization table like `tilecc quantize` writes, so `compile --quantize qdq` runs
the same quantize-int8 pass (and the same int8 kernels) on the model's own parameters.

Without `--quantize qdq`, a QDQ model compiles as it is: TVM's importer computes Q/DQ in fp32,
which reproduces ONNX Runtime's int8 answer (tests/compiler/test_quantize.py).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from .errors import InputError

_ANCHORS = ("Conv", "MatMul", "Gemm")


def qoperators_as_qdq(model: onnx.ModelProto) -> onnx.ModelProto:
    """ONNX's quantized operators (QOperator format) as the QDQ graph they stand for, which
    TVM's importer and `strip_qdq` take (TVM 0.27 has no QLinearConv or QLinearMatMul
    converter):
        QLinearConv(x, xs, xz, w, ws, wz, ys, yz, B)
            -> Q(Conv(DQ(x, xs, xz), DQ(w, ws, wz), DQ(B, xs * ws, 0)), ys, yz)
        QLinearMatMul(a, as, az, b, bs, bz, ys, yz) -> Q(MatMul(DQ(a), DQ(b)), ys, yz)
    Other nodes are kept as they are; a model without these ops is returned unchanged."""
    kinds = {"QLinearConv", "QLinearMatMul"}
    if not any(n.op_type in kinds for n in model.graph.node):
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    nodes, extra = [], []
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type in kinds:
            new_nodes, new_inits = _expand_qoperator(node, inits)
            nodes.extend(new_nodes)
            extra.extend(new_inits)
        else:
            nodes.append(node)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    out.graph.initializer.extend(extra)
    return out


def _expand_qoperator(node, inits):
    """The QDQ nodes (and new initializers) one QLinearConv / QLinearMatMul is."""
    name, ins = node.name or node.output[0], list(node.input)
    attrs = list(node.attribute)
    made, new_inits = [], []

    def dq(value, scale, zero, tag, axis=None):
        out = f"{name}_{tag}_dq"
        inputs = [value, scale] + ([zero] if zero else [])
        kwargs = {"axis": axis} if axis is not None else {}
        made.append(onnx.helper.make_node("DequantizeLinear", inputs, [out], **kwargs))
        return out

    def const(value, tag):
        init = numpy_helper.from_array(np.asarray(value), f"{name}_{tag}")
        new_inits.append(init)
        return init.name

    x = dq(ins[0], ins[1], ins[2], "x")
    w_scale = inits.get(ins[4])
    per_channel = w_scale is not None and np.size(w_scale) > 1
    axis = (0 if node.op_type == "QLinearConv" else 1) if per_channel else None
    w = dq(ins[3], ins[4], ins[5], "w", axis)
    args = [x, w]
    if node.op_type == "QLinearConv" and len(ins) > 8 and ins[8]:
        x_scale = inits.get(ins[1])
        if x_scale is None or w_scale is None:
            raise InputError(f'node "{name}" (QLinearConv): a bias needs constant scales')
        scale = (np.asarray(x_scale, np.float32) * np.asarray(w_scale, np.float32)).ravel()
        args.append(dq(ins[8], const(scale, "bias_scale"), "", "b", 0 if scale.size > 1 else None))
    kind = "Conv" if node.op_type == "QLinearConv" else "MatMul"
    core = onnx.helper.make_node(kind, args, [f"{name}_fp32"], name=name)
    if kind == "Conv":
        core.attribute.extend(attrs)
    quant = onnx.helper.make_node(
        "QuantizeLinear", [core.output[0], ins[6], ins[7]], list(node.output)
    )
    return [*made, core, quant], new_inits


def is_qdq(model: onnx.ModelProto) -> bool:
    return any(n.op_type == "QuantizeLinear" for n in model.graph.node)


def strip_qdq(model: onnx.ModelProto, source: str) -> tuple[onnx.ModelProto, list[tuple]]:
    """(the fp32 model, [(fp32 weight, activation scale, zero point on the int8 scale)]) for
    every Conv / MatMul / Gemm with a quantized input and a constant weight."""
    graph = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:  # Constant nodes hold weights too (PaddlePaddle exports)
        if node.op_type == "Constant" and node.attribute[0].name == "value":
            inits[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    nodes = list(graph.node)
    producer = {out: i for i, node in enumerate(nodes) for out in node.output}
    # an activation pair -> a Clip to its range (ONNX Runtime drops a Relu / Clip whose range the
    # quantization's saturation gives), keeping the DequantizeLinear's output name
    clips: dict[int, tuple[onnx.NodeProto, list]] = {}
    activation: dict[str, tuple[float, int]] = {}  # that name -> (scale, int8 zero point)
    weights: dict[str, np.ndarray] = {}  # a DequantizeLinear output -> its fp32 weight
    dropped = set()  # node indices
    for index, node in enumerate(nodes):
        if node.op_type != "DequantizeLinear":
            continue
        quant = producer.get(node.input[0])
        quantize = nodes[quant] if quant is not None else None
        if node.input[0] in inits:  # an int8 weight
            weights[node.output[0]] = _dequantize(node, inits[node.input[0]], inits)
            dropped.add(index)
        elif quantize is None or quantize.op_type != "QuantizeLinear":
            continue
        elif quantize.input[0] in inits:  # an fp32 weight, rounded by the pair
            q = _quantize(quantize, inits[quantize.input[0]], inits)
            weights[node.output[0]] = _dequantize(node, q, inits)
            dropped.update((index, quant))
        else:  # an activation: saturation is all that stays of the pair
            scale, zero, low, high = _activation(quantize, inits, source)
            activation[node.output[0]] = (scale, zero)
            clips[index] = _clip(quantize.input[0], node.output[0], low, high)
            dropped.add(quant)
    if not clips and not weights:
        raise InputError(f"{source}: no QuantizeLinear / DequantizeLinear pairs to take")
    anchors = []  # every conv / matmul with a constant weight, in graph order
    for node in nodes:
        if node.op_type in _ANCHORS and len(node.input) > 1:
            data, weight = node.input[0], node.input[1]
            value = weights.get(weight, inits.get(weight))
            if value is not None:
                if data in activation:
                    anchors.append((value, *activation[data]))
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    for index, node in enumerate(nodes):
        if index in clips:
            clip, bounds = clips[index]
            out.graph.node.append(clip)
            out.graph.initializer.extend(bounds)
        elif index not in dropped:
            out.graph.node.append(node)
    for name, value in weights.items():
        out.graph.initializer.append(numpy_helper.from_array(value, name))
    return out, anchors


def _clip(x: str, out: str, low: float, high: float):
    """Clip(x, low, high) -> `out`, with its bounds as initializers."""
    names = [f"{out}_low", f"{out}_high"]
    bounds = [
        numpy_helper.from_array(np.array(v, np.float32), n)
        for v, n in zip((low, high), names, strict=True)
    ]
    return onnx.helper.make_node("Clip", [x, *names], [out], name=f"{out}_clip"), bounds


def _params(node, inits, ndim: int):
    """(scale, zero point) of a Q/DQ node, shaped to broadcast along its axis when per channel."""
    scale = inits[node.input[1]].astype(np.float64)
    zero = inits[node.input[2]] if len(node.input) > 2 else np.zeros((), np.uint8)
    axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
    if scale.ndim == 1 and scale.size > 1:  # per channel along `axis`
        shape = [1] * ndim
        shape[axis] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return scale, zero


def _quantize(node, x: np.ndarray, inits) -> np.ndarray:
    """ONNX QuantizeLinear: round half to even, saturate to the zero point's type."""
    scale, zero = _params(node, inits, x.ndim)
    info = np.iinfo(zero.dtype)
    q = np.rint(x.astype(np.float64) / scale) + zero.astype(np.float64)
    return np.clip(q, info.min, info.max).astype(zero.dtype)


def _dequantize(node, q: np.ndarray, inits) -> np.ndarray:
    scale, zero = _params(node, inits, q.ndim)
    return ((q.astype(np.float64) - zero.astype(np.float64)) * scale).astype(np.float32)


def _activation(node, inits, source) -> tuple[float, int, float, float]:
    """(scale, zero point on the int8 scale, lowest and highest value it represents) of a
    per-tensor QuantizeLinear."""
    scale = inits.get(node.input[1])
    zero = inits.get(node.input[2]) if len(node.input) > 2 else np.zeros((), np.uint8)
    if scale is None or np.size(scale) != 1 or zero is None or np.size(zero) != 1:
        raise InputError(
            f'{source}: node "{node.name}" (QuantizeLinear): only per-tensor constant scale and '
            "zero point are taken for activations"
        )
    info = np.iinfo(zero.dtype)
    scale, zero = float(scale), int(zero)
    low, high = scale * (info.min - zero), scale * (info.max - zero)
    return scale, zero - 128 if info.min == 0 else zero, low, high


def qdq_table(prepared_mod, anchors: list[tuple], source: str, digest: str) -> dict:
    """The quantization table of the stripped model: each anchor of `prepared_mod` (as
    compiler/quantize.py numbers them) gets the parameters of the QDQ conv / matmul whose
    weight it is. The graph passes may have folded a BatchNorm into it (each output channel
    scaled) or transposed it (Gemm), so a weight is matched by shape and by rows proportional
    to the original's; every QDQ anchor must be found once."""
    from tilecc.passes.fake_quantize import anchor_key, is_anchor

    from .quantize import TABLE_FORMAT

    calls = [
        binding.value
        for block in prepared_mod["main"].body.blocks
        for binding in block.bindings
        if is_anchor(binding.value)
    ]
    activations, unmatched = {}, list(range(len(anchors)))
    for index, call in enumerate(calls):
        w = call.args[1].value.numpy()
        for i in unmatched:
            weight, scale, zero = anchors[i]
            if _same_weight(w, weight, call.op.name == "relax.matmul"):
                activations[anchor_key(call, index)] = {"scale": scale, "zero_point": zero}
                unmatched.remove(i)
                break
    if unmatched:
        shapes = ", ".join(str(list(anchors[i][0].shape)) for i in unmatched[:5])
        raise InputError(
            f"{source}: {len(unmatched)} quantized conv / matmul not found after the import "
            f"(weights {shapes})"
        )
    return {
        "format": TABLE_FORMAT,
        "model_sha256": digest,
        "method": "qdq",
        "per_channel_weights": True,
        "samples": 0,
        "activations": activations,
    }


def _same_weight(got: np.ndarray, original: np.ndarray, matmul: bool) -> bool:
    """`got` is `original` (a matmul's [k, n] may be the ONNX [n, k] transposed) with each output
    channel scaled by one factor (a folded BatchNorm), to float32 rounding."""
    if matmul and got.shape != original.shape and got.shape == original.T.shape:
        original = original.T
    if got.shape != original.shape:
        return False
    axis = 1 if matmul else 0  # output channels: conv OIHW rows, matmul [k, n] columns
    g = np.moveaxis(got, axis, 0).reshape(got.shape[axis], -1).astype(np.float64)
    o = np.moveaxis(original, axis, 0).reshape(got.shape[axis], -1).astype(np.float64)
    factor = (g * o).sum(axis=1) / np.maximum((o * o).sum(axis=1), 1e-30)
    error = np.abs(g - factor[:, None] * o).max(initial=0.0)
    return bool(error <= 1e-5 * max(np.abs(g).max(initial=0.0), 1e-30))
