"""tilecc as an ONNX backend (`onnx.backend.base.Backend`), so that ONNX's backend test suite and
any code written against that interface (onnx_tf, caffe2 style) runs models through tilecc.

A backend sees the input arrays only at `run()`, while tilecc compiles for static shapes: a model
whose inputs are all static is compiled by `prepare`; one with a dynamic dim is compiled on the
first `run()` with the shapes of the actual inputs, and once more for every new set of shapes.
The same holds for a graph input that ONNX defines as a shape, axes, sizes, counts or another
attribute-like parameter (the target shape of Reshape, the pads of Pad, the axes of ReduceSum):
tilecc needs it at compile time, as it needs input shapes, so its value from `run()` is bound as
a constant (in exported models these are initializers, or shape computations tilecc folds).
Every compile is tilecc's own path (`import_onnx` -> `compile_imported` for x86); the executable
runs in memory on the Relax VM, never exported as a `.so`. TilecError propagates unchanged.

    from tilecc.compiler import backend
    outputs = backend.run_model(model_proto, [x])        # outputs in graph-output order
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.backend.base import Backend, BackendRep, Device, DeviceType, namedtupledict

from tilecc.targets import get_target

from .build import compile_imported
from .errors import InputError, TargetError
from .frontend_onnx import graph_inputs, import_onnx
from .runtime import flatten_outputs

_TARGET = "x86"

_REDUCTIONS = ("L1", "L2", "LogSum", "LogSumExp", "Max", "Mean", "Min", "Prod", "Sum", "SumSquare")
# op type -> positions of its inputs that fix the output shape or act as an attribute (most were
# attributes in earlier opsets); a graph input used there is compiled in as a constant. Not Range:
# its start, limit and delta are data that TVM handles at run time (bound, onnx_fold would
# evaluate the whole node with ONNX's reference instead of compiling it).
COMPILE_TIME_INPUTS: dict[str, tuple[int, ...]] = {
    "Reshape": (1,),  # shape
    "Expand": (1,),  # shape
    "ConstantOfShape": (0,),  # shape
    "Tile": (1,),  # repeats
    "Slice": (1, 2, 3, 4),  # starts, ends, axes, steps
    "Squeeze": (1,),  # axes
    "Unsqueeze": (1,),  # axes
    "Split": (1,),  # split
    "Pad": (1, 2, 3),  # pads, constant_value, axes
    "Resize": (1, 2, 3),  # roi, scales, sizes (Resize-10: scales)
    "TopK": (1,),  # k
    "CumSum": (1,),  # axis
    "Trilu": (1,),  # k
    **{f"Reduce{kind}": (1,) for kind in _REDUCTIONS},  # axes
}


def _static_shape(info: onnx.ValueInfoProto) -> tuple[int, ...] | None:
    """The declared shape when every dim is a known value (>= 0), else None."""
    tensor_type = info.type.tensor_type
    if not tensor_type.HasField("shape"):
        return None
    dims = []
    for dim in tensor_type.shape.dim:
        if not dim.HasField("dim_value") or dim.dim_value < 0:
            return None
        dims.append(int(dim.dim_value))
    return tuple(dims)


def compile_time_inputs(model: onnx.ModelProto) -> set[str]:
    """Graph inputs that some node reads at a COMPILE_TIME_INPUTS position."""
    names = {i.name for i in graph_inputs(model)}
    found = set()
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx"):
            continue
        for index in COMPILE_TIME_INPUTS.get(node.op_type, ()):
            if index < len(node.input) and node.input[index] in names:
                found.add(node.input[index])
    return found


def _with_constants(model: onnx.ModelProto, values: dict[str, np.ndarray]) -> onnx.ModelProto:
    """`model` with the graph inputs in `values` turned into initializers."""
    if not values:
        return model
    bound = onnx.ModelProto()
    bound.CopyFrom(model)
    kept = [i for i in bound.graph.input if i.name not in values]
    del bound.graph.input[:]
    bound.graph.input.extend(kept)
    bound.graph.initializer.extend(
        numpy_helper.from_array(value, name) for name, value in values.items()
    )
    return bound


class TileccBackendRep(BackendRep):
    """A prepared model: one compiled executable per distinct set of input shapes (and values
    of COMPILE_TIME_INPUTS)."""

    def __init__(self, model: onnx.ModelProto, source: str):
        self.model = model
        self.source = source
        self.input_names = [i.name for i in graph_inputs(model)]
        self.output_names = [o.name for o in model.graph.output]
        self.constant_inputs = compile_time_inputs(model)
        self._vms: dict[tuple, Any] = {}
        static = [_static_shape(i) for i in graph_inputs(model)]
        if not self.constant_inputs and all(shape is not None for shape in static):
            self._vm(dict(zip(self.input_names, static, strict=True)), {})

    def _vm(self, shapes: dict[str, tuple[int, ...]], constants: dict[str, np.ndarray]):
        key = (
            tuple(shapes.items()),
            tuple(
                (name, value.dtype.str, value.shape, value.tobytes())
                for name, value in constants.items()
            ),
        )
        if key not in self._vms:
            import tvm
            from tvm import relax

            input_shapes = {n: list(shape) for n, shape in shapes.items() if n not in constants}
            model = _with_constants(self.model, constants)
            imported = import_onnx(self.source, input_shapes, model=model)
            executable = compile_imported(imported, get_target(_TARGET))
            self._vms[key] = relax.VirtualMachine(executable, tvm.cpu())
        return self._vms[key]

    def _ordered(self, inputs) -> list[np.ndarray]:
        if isinstance(inputs, dict):
            if missing := [n for n in self.input_names if n not in inputs]:
                raise InputError(f"{self.source}: missing input(s) {', '.join(missing)}")
            inputs = [inputs[n] for n in self.input_names]
        elif isinstance(inputs, np.ndarray):
            inputs = [inputs]
        inputs = list(inputs)
        if len(inputs) != len(self.input_names):
            raise InputError(
                f"{self.source}: got {len(inputs)} input(s), the model takes "
                f"{len(self.input_names)} ({', '.join(self.input_names)})"
            )
        # np.ascontiguousarray would turn a scalar into shape (1,)
        return [np.asarray(value, order="C") for value in inputs]

    def run(self, inputs, **kwargs) -> tuple[np.ndarray, ...]:
        """Outputs, in graph-output order, as a namedtuple that also takes output names."""
        import tvm

        arrays = dict(zip(self.input_names, self._ordered(inputs), strict=True))
        constants = {n: a for n, a in arrays.items() if n in self.constant_inputs}
        vm = self._vm({n: tuple(int(d) for d in a.shape) for n, a in arrays.items()}, constants)
        args = [tvm.runtime.tensor(a) for n, a in arrays.items() if n not in constants]
        results = flatten_outputs(vm["main"](*args))
        return namedtupledict("Outputs", self.output_names)(*results)


class TileccBackend(Backend):
    """ONNX backend that compiles with tilecc for this host's CPU."""

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs) -> TileccBackendRep:
        if not cls.supports_device(device):
            raise TargetError(f"tilecc's ONNX backend runs on CPU only, not on '{device}'")
        super().prepare(model, device, **kwargs)  # the ONNX checker
        source = f"<onnx-backend:{model.graph.name or 'model'}>"
        return TileccBackendRep(model, source)

    @classmethod
    def run_model(cls, model: onnx.ModelProto, inputs, device: str = "CPU", **kwargs):
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(cls, node: onnx.NodeProto, inputs, device: str = "CPU", outputs_info=None, **kw):
        """Run one node: wrap it in a one-node model typed from `inputs` (a list in node-input
        order, or a dict by input name) and compile that."""
        super().run_node(node, inputs, device=device, outputs_info=outputs_info, **kw)
        names = [name for name in node.input if name]
        values = [inputs[n] for n in names] if isinstance(inputs, dict) else list(inputs)
        graph_inputs_ = [
            onnx.helper.make_tensor_value_info(
                name,
                onnx.helper.np_dtype_to_tensor_dtype(np.asarray(value).dtype),
                np.asarray(value).shape,
            )
            for name, value in zip(names, values, strict=True)
        ]
        graph_outputs = [onnx.helper.make_empty_tensor_value_info(o) for o in node.output if o]
        graph = onnx.helper.make_graph([node], f"{node.op_type}_node", graph_inputs_, graph_outputs)
        opset = kw.get("opset_version", onnx.defs.onnx_opset_version())
        model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)])
        model = onnx.shape_inference.infer_shapes(model)
        return cls.run_model(model, values, device)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        try:
            return Device(device).type == DeviceType.CPU
        except (AttributeError, ValueError):  # not a device type ONNX knows ("GPU", "CPU:x")
            return False


prepare = TileccBackend.prepare
run_model = TileccBackend.run_model
run_node = TileccBackend.run_node
supports_device = TileccBackend.supports_device
