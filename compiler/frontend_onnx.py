"""ONNX -> Relax: load and check the file, bind static input shapes, fold shape subgraphs,
list every unsupported op at once, then convert with TVM's Relax ONNX importer.

The result keeps weights as parameters (`ImportedModel.params`) so that IR text printed by tilecc
stays readable; `build` binds them back as constants.
"""

from __future__ import annotations

import re
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import external_data_helper

from .assets import sha256
from .errors import ModelError, ShapeError, UnsupportedOpsError
from .onnx_canonicalize import clip_bounds_as_constants, clip_converter, initializers_as_constants
from .onnx_fold import fold_constants
from .onnx_qdq import qoperators_as_qdq


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    dtype: str

    def to_json(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @staticmethod
    def from_json(data: dict) -> TensorInfo:
        return TensorInfo(data["name"], tuple(data["shape"]), data["dtype"])


@dataclass
class ImportedModel:
    """A model in Relax, with the ONNX graph's input and output signature."""

    mod: object  # tvm.IRModule; weights are parameters of "main" listed in `params`
    params: dict[str, np.ndarray]
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    source: str
    folded_nodes: int = 0
    source_sha256: str = ""
    onnx_model: onnx.ModelProto | None = field(default=None, repr=False)


def _dtype_name(elem_type: int) -> str:
    return str(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)))


# ---------------------------------------------------------------------------------------------
# Loading and checking


def load_onnx(path: str | Path) -> onnx.ModelProto:
    """Load an ONNX file; external data may live only inside the model's folder."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"{path}: no such file")
    if not path.is_file():
        raise ModelError(f"{path}: not a file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ModelError(f"{path}: not a valid ONNX model ({_first_line(exc)})") from exc
    if not model.graph.node and not model.graph.output:
        raise ModelError(f"{path}: not a valid ONNX model (no graph)")
    _load_external_data(model, path)
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        raise ModelError(f"{path}: ONNX checker: {_first_line(exc)}") from exc
    return model


def _load_external_data(model: onnx.ModelProto, path: Path) -> None:
    folder = path.resolve().parent
    for tensor in external_data_helper._get_all_tensors(model):
        if not external_data_helper.uses_external_data(tensor):
            continue
        info = external_data_helper.ExternalDataInfo(tensor)
        target = (folder / info.location).resolve()
        if not target.is_relative_to(folder):
            raise ModelError(
                f"{path}: initializer '{tensor.name}' points to external data "
                f"'{info.location}' outside the model's folder {folder}"
            )
        if not target.is_file():
            raise ModelError(
                f"{path}: initializer '{tensor.name}': external data file '{info.location}' "
                "is missing"
            )
    try:
        external_data_helper.load_external_data_for_model(model, str(folder))
    except Exception as exc:
        raise ModelError(f"{path}: cannot read external data ({_first_line(exc)})") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


# ---------------------------------------------------------------------------------------------
# Input shapes


def parse_input_shapes(specs: list[str] | None) -> dict[str, list[int]]:
    """Parse tvmc-style `name:[d0,d1,...]` items (repeatable, or comma-joined between items)."""
    shapes: dict[str, list[int]] = {}
    for spec in specs or []:
        for match_text in re.findall(r"[^\s,][^:]*:\s*\[[^\]]*\]", spec) or [spec]:
            match = re.fullmatch(r"\s*([^:]+?)\s*:\s*\[([^\]]*)\]\s*", match_text)
            if not match:
                raise ShapeError(f"bad --input-shapes '{spec}': expected NAME:[d0,d1,...]")
            name, dims = match.group(1), match.group(2)
            try:
                shapes[name] = [int(d) for d in dims.split(",") if d.strip()]
            except ValueError as exc:
                raise ShapeError(
                    f"bad --input-shapes '{spec}': dims of '{name}' must be integers"
                ) from exc
            if any(d <= 0 for d in shapes[name]):
                raise ShapeError(f"bad --input-shapes '{spec}': dims of '{name}' must be > 0")
    return shapes


def graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """The true inputs: graph inputs that are not initializers (old exporters list both)."""
    inits = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def bind_input_shapes(
    model: onnx.ModelProto, shapes: dict[str, list[int]], source: str
) -> list[TensorInfo]:
    """Fix every input dim: from `shapes`, else the model's own static dims. Edits `model`."""
    inputs = graph_inputs(model)
    names = [i.name for i in inputs]
    if unknown := sorted(set(shapes) - set(names)):
        raise ShapeError(
            f"{source}: --input-shapes names unknown input(s) {', '.join(unknown)} "
            f"(inputs: {', '.join(names)})"
        )
    bound = []
    for info in inputs:
        tensor_type = info.type.tensor_type
        dims = tensor_type.shape.dim
        given = shapes.get(info.name)
        if given is not None and len(given) != len(dims):
            raise ShapeError(
                f"{source}: input '{info.name}' has rank {len(dims)}, "
                f"--input-shapes gives rank {len(given)} {given}"
            )
        final = []
        for axis, dim in enumerate(dims):
            # Some exporters (Paddle2ONNX) write -1 for a dynamic dim.
            static = dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else None
            if given is not None:
                if static is not None and static != given[axis]:
                    raise ShapeError(
                        f"{source}: input '{info.name}' dim {axis} is {static} in the model, "
                        f"--input-shapes gives {given[axis]}"
                    )
                final.append(given[axis])
            elif static is not None:
                final.append(static)
            else:
                symbol = dim.dim_param or "?"
                shown = ",".join(
                    str(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else "N"
                    for d in dims
                )
                raise ShapeError(
                    f"{source}: input '{info.name}' dim {axis} ('{symbol}') is dynamic; "
                    f'give --input-shapes "{info.name}:[{shown}]"'
                )
        for dim, value in zip(dims, final, strict=True):
            dim.Clear()
            dim.dim_value = value
        bound.append(TensorInfo(info.name, tuple(final), _dtype_name(tensor_type.elem_type)))
    return bound


# ---------------------------------------------------------------------------------------------
# Import


def supported_ops() -> set[str]:
    from tvm.relax.frontend.onnx import onnx_frontend

    return set(onnx_frontend._get_convert_map()) | {"Constant", "If"}


def find_unsupported(model: onnx.ModelProto) -> dict[str, list[str]]:
    """op type -> names of the nodes using it, for every op the importer lacks."""
    known = supported_ops()
    missing: dict[str, list[str]] = {}
    for index, node in enumerate(model.graph.node):
        domain_ok = node.domain in ("", "ai.onnx")
        if not domain_ok or node.op_type not in known:
            op = node.op_type if domain_ok else f"{node.domain}.{node.op_type}"
            missing.setdefault(op, []).append(node.name or f"#{index}")
    return missing


def import_onnx(
    path: str | Path,
    input_shapes: dict[str, list[int]] | None = None,
    model: onnx.ModelProto | None = None,
) -> ImportedModel:
    """Load `path` (or take `model`) and convert it to Relax with static shapes."""
    source = str(path)
    if model is None:
        model = load_onnx(path)
    else:
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        model = copy
    model = qoperators_as_qdq(model)
    inputs = bind_input_shapes(model, input_shapes or {}, source)
    model, folded = fold_constants(model)
    if missing := find_unsupported(model):
        raise UnsupportedOpsError(source, missing)
    mod, params = _to_relax(model, inputs, source)
    outputs = _output_infos(mod, model)
    digest = sha256(Path(path)) if Path(path).is_file() else ""
    return ImportedModel(mod, params, inputs, outputs, source, folded, digest, model)


# Integer initializers are shapes, axes, repeats and indices, not weights.
_INDEX_DTYPES = (onnx.TensorProto.INT32, onnx.TensorProto.INT64)


def integer_initializers_as_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """Turn int32/int64 initializers into Constant nodes. TVM's importer, which keeps
    initializers as parameters, reads a shape argument from a parameter only where its converter
    looks it up; Expand does not, and takes the dynamic path instead: a symbolic output shape, and
    a 1 in the target shape read as 1 instead of "keep this dim". Constants reach every converter.
    """
    moved = {i.name for i in model.graph.initializer if i.data_type in _INDEX_DTYPES}
    return initializers_as_constants(model, moved)


def _to_relax(model, inputs, source):
    from tvm.relax.frontend import detach_params
    from tvm.relax.frontend.onnx import from_onnx

    model = clip_bounds_as_constants(integer_initializers_as_constants(model))
    shape_dict = {i.name: list(i.shape) for i in inputs}
    dtype_dict = {i.name: i.dtype for i in inputs}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with clip_converter():
                mod = from_onnx(
                    model, shape_dict=shape_dict, dtype_dict=dtype_dict, keep_params_in_input=True
                )
    except Exception as exc:
        node = _failing_node(sys.exc_info()[2])
        where = f'node "{node.name}" ({node.op_type})' if node is not None else "import"
        raise ModelError(f"{source}: {where}: {_first_line(exc)}") from exc
    mod, params = detach_params(mod)
    return mod, _param_dict(mod, params.get("main", []))


def _param_dict(mod, values) -> dict[str, np.ndarray]:
    """Key the detached weights by the names of the parameters of "main" after the inputs, in
    order (`build` binds them by position, so a repeated name cannot mix two weights up)."""
    main = mod["main"]
    num_input = int(main.attrs["num_input"])
    params = {}
    for var, value in zip(main.params[num_input:], values, strict=True):
        name = var.name
        while name in params:
            name += "_"
        params[name] = value.numpy()
    return params


def _failing_node(tb):
    """The ONNX node TVM's importer was converting when it raised, read from its frame."""
    node = None
    while tb is not None:
        if tb.tb_frame.f_code.co_name == "_construct_nodes":
            node = tb.tb_frame.f_locals.get("node", node)
        tb = tb.tb_next
    return node


def _output_infos(mod, model) -> list[TensorInfo]:
    """Output names come from ONNX; static shapes and dtypes from the Relax signature."""
    ret = mod["main"].ret_ty
    fields = list(ret.fields) if hasattr(ret, "fields") else [ret]
    names = [o.name for o in model.graph.output]
    infos = []
    for name, ty in zip(names, fields, strict=True):
        shape = tuple(int(d) for d in ty.shape) if getattr(ty, "shape", None) is not None else ()
        infos.append(TensorInfo(name, shape, str(ty.dtype)))
    return infos
