"""Fold an ONNX graph's constant and shape-computation subgraphs once input shapes are static.

PP-OCR's cls and rec compute Reshape targets at run time (Shape -> Cast -> Slice -> Concat ->
Reshape); TVM's importer folds only part of such chains. With every input dim bound, these values
are constants: this module evaluates them with ONNX's reference evaluator (an independent
implementation of each op) and replaces them by initializers, repeating shape inference until
nothing more folds. Folding works on the ONNX graph, before Relax exists, so every importer sees
static shapes.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference
from onnx.reference import ReferenceEvaluator

# Ops whose value differs from run to run, or that carry subgraphs: never folded.
_NEVER_FOLD = {
    "RandomNormal",
    "RandomNormalLike",
    "RandomUniform",
    "RandomUniformLike",
    "Multinomial",
    "Bernoulli",
    "If",
    "Loop",
    "Scan",
    "SequenceConstruct",
    "SequenceEmpty",
}
# A folded value larger than this many elements stays computed at run time (Expand, Tile and
# ConstantOfShape can turn a few constants into a large tensor the binary would have to carry).
_MAX_FOLDED_ELEMENTS = 1 << 22


def _static_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """Names whose inferred shape is fully static, with that shape."""
    shapes = {}
    graph = model.graph
    for info in list(graph.input) + list(graph.value_info) + list(graph.output):
        tensor_type = info.type.tensor_type
        if not tensor_type.HasField("shape"):
            continue
        dims = tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            shapes[info.name] = tuple(int(d.dim_value) for d in dims)
    return shapes


def _opset(model: onnx.ModelProto) -> dict[str, int]:
    return {o.domain: o.version for o in model.opset_import}


def _fold_once(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    try:
        inferred = shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # inference is a help, not a requirement: fold what is already known
        inferred = model
    shapes = _static_shapes(inferred)
    consts = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    opsets = _opset(model)
    kept, folded = [], 0
    for node in model.graph.node:
        value = _try_fold(node, consts, shapes, opsets)
        if value is None:
            kept.append(node)
            continue
        consts.update(zip(node.output, value, strict=False))
        folded += 1
    if not folded:
        return model, 0
    needed = {name for node in kept for name in node.input} | {o.name for o in model.graph.output}
    new = onnx.ModelProto()
    new.CopyFrom(model)
    del new.graph.node[:]
    new.graph.node.extend(kept)
    del new.graph.initializer[:]
    new.graph.initializer.extend(
        numpy_helper.from_array(np.asarray(v), name) for name, v in consts.items() if name in needed
    )
    return new, folded


def _try_fold(node, consts, shapes, opsets) -> list[np.ndarray] | None:
    if node.domain not in ("", "ai.onnx") or node.op_type in _NEVER_FOLD:
        return None
    if node.op_type == "Shape" and node.input[0] in shapes:
        shape = shapes[node.input[0]]
        attrs = {a.name: a.i for a in node.attribute}
        start, end = attrs.get("start", 0), attrs.get("end", len(shape))
        return [np.array(shape[start:end], dtype=np.int64)]
    if node.op_type == "Size" and node.input[0] in shapes:
        return [np.array(int(np.prod(shapes[node.input[0]])), dtype=np.int64)]
    inputs = [name for name in node.input if name]
    if not all(name in consts for name in inputs):
        return None
    subgraph_kinds = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
    if any(a.type in subgraph_kinds for a in node.attribute):
        return None
    try:
        evaluator = ReferenceEvaluator(node, opsets={"": opsets.get("", opsets.get("ai.onnx", 13))})
        outputs = evaluator.run(None, {name: consts[name] for name in inputs})
    except Exception:  # an op the reference cannot evaluate stays for the importer to judge
        return None
    if any(np.asarray(o).size > _MAX_FOLDED_ELEMENTS for o in outputs):
        return None
    return [np.asarray(o) for o in outputs]


def fold_constants(model: onnx.ModelProto, max_rounds: int = 16) -> tuple[onnx.ModelProto, int]:
    """Fold constant subgraphs and shape computations; return the new model and the node count
    folded. The input model is not modified."""
    total = 0
    for _ in range(max_rounds):
        model, folded = _fold_once(model)
        total += folded
        if not folded:
            break
    return model, total
