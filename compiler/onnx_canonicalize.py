"""Make constant-bound ONNX Clip import as graph ops instead of two opaque kernels.

TVM 0.27 converts every Clip to `call_tir` of topi maximum/minimum kernels, and ONNX Max/Min to
stack-and-reduce. Graph passes cannot see through a call_tir: relu6 and hard-swish
(x * clip(x + 3, 0, 6) / 6, all over PP-OCR and MobileNetV3) would block layout propagation and
activation fusion. Two steps fix it:
- `clip_bounds_as_constants` turns a Clip's initializer bounds into Constant nodes (the
  importer keeps float initializers as parameters, whose values a converter cannot read);
- `clip_converter` is used for Clip while importing: constant bounds give
  `R.minimum(R.maximum(x, lo), hi)` with scalar constants, anything else goes to TVM's own
  converter. Not `R.clip`: TVM 0.27's ConvertLayout has no layout rule for clip, while binary
  ops against a scalar keep a blocked layout (see passes/convert_layout_nchwc.py).
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import onnx
from onnx import numpy_helper


def initializers_as_constants(model: onnx.ModelProto, names) -> onnx.ModelProto:
    """A copy of `model` in which the initializers named in `names` are Constant nodes (placed
    first) instead, and no longer graph inputs (old exporters list initializers as both)."""
    names = set(names)
    if not names:
        return model
    new = onnx.ModelProto()
    new.CopyFrom(model)
    graph = new.graph
    moved = [i for i in graph.initializer if i.name in names]
    kept = [i for i in graph.initializer if i.name not in names]
    kept_inputs = [i for i in graph.input if i.name not in names]
    nodes = [onnx.helper.make_node("Constant", [], [i.name], value=i) for i in moved]
    nodes.extend(graph.node)
    del graph.initializer[:]
    graph.initializer.extend(kept)
    del graph.input[:]
    graph.input.extend(kept_inputs)
    del graph.node[:]
    graph.node.extend(nodes)
    return new


def clip_bounds_as_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """Move the scalar initializers that Clip nodes use as bounds into Constant nodes."""
    inits = {i.name: i for i in model.graph.initializer}
    bounds = {
        name
        for node in model.graph.node
        if node.op_type == "Clip"
        for name in node.input[1:]
        if name in inits and numpy_helper.to_array(inits[name]).size == 1
    }
    return initializers_as_constants(model, bounds)


@contextlib.contextmanager
def clip_converter():
    """While active, TVM's ONNX importer converts constant-bound Clip to maximum / minimum."""
    from tvm.relax.frontend.onnx import onnx_frontend

    original = onnx_frontend._get_convert_map

    def convert_map():
        table = dict(original())
        table["Clip"] = _make_clip(table["Clip"])
        return table

    onnx_frontend._get_convert_map = convert_map
    try:
        yield
    finally:
        onnx_frontend._get_convert_map = original


def _make_clip(tvm_clip):
    from tvm import relax

    class Clip(tvm_clip):
        """Constant (or absent) bounds -> R.maximum / R.minimum; otherwise TVM's converter."""

        @classmethod
        def get_converter(cls, opset):
            fallback = tvm_clip.get_converter(opset)

            def convert(bb, inputs, attr, params):
                if opset < 11:
                    low, high = attr.get("min", -math.inf), attr.get("max", math.inf)
                else:
                    low, high = (
                        _scalar(inputs, k, default)
                        for k, default in ((1, -math.inf), (2, math.inf))
                    )
                if low is None or high is None:
                    return fallback(bb, inputs, attr, params)
                x, dtype = inputs[0], inputs[0].ty.dtype
                if low != -math.inf:
                    x = bb.normalize(relax.op.maximum(x, relax.const(low, dtype)))
                if high != math.inf:
                    x = bb.normalize(relax.op.minimum(x, relax.const(high, dtype)))
                return x

            return convert

    return Clip


def _scalar(inputs, position, default):
    """A bound's value as float; `default` when absent or NaN; None when computed at run time."""
    import tvm

    if len(inputs) <= position or inputs[position] is None:
        return default
    bound = inputs[position]
    if not isinstance(bound, tvm.ir.GenericConst):
        return None
    value = bound.value.numpy()
    if value.size != 1 or value.dtype.kind != "f":
        return None
    value = float(np.asarray(value).reshape(()))
    return default if math.isnan(value) else value
