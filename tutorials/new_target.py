"""Add a new target: a toy accelerator that runs relu and add as C loops, in < 100 lines of code.

An accelerator is one `Accelerator` record (targets/accelerator.py); tilecc does the rest:

    ONNX --import--> Relax --partition (the toy's patterns)--> toy subgraphs + the rest
    toy subgraphs --the toy's codegen--> C ------------+--> one .so (g++ links both)
    the rest --x86 host target (LLVM)--> object code --+

  1. The pattern table (Relax DPL): the ops the toy takes, and `why_not(call)`: why an op
     stays on the host CPU (the partition report prints it).
  2. The codegen: each partitioned function becomes a C function with the TVM FFI calling
     convention (`__tvm_ffi_<name>`, the input tensors, then the output tensors to fill).
  3. The target: `accelerator_target` puts the toy beside the x86 host and registers the
     codegen as `relax.ext.toy`.
  4. Compile MobileNetV3-small for it, print what went where, run the .so, and compare it
     with ONNX Runtime.

Run it with `.venv/bin/python tutorials/new_target.py`. "Lines of code": non-blank lines after
this docstring (tests/tutorials/test_new_target.py counts them). A real target lives in a folder
of its own (targets/npu/ is the worked example), where `tilecc compile --target <name>` finds
it; this one is built in-process, so the Python API's `compile_model` is handed the target.
"""

import tempfile
from pathlib import Path

import numpy as np
import tvm_ffi
from tvm import relax
from tvm.relax.dpl import is_op, wildcard
from tvm.relax.transform import FusionPattern

from tilecc.compiler import api, zoo
from tilecc.compiler.reference import compare, ort_run
from tilecc.targets import get_target
from tilecc.targets.accelerator import Accelerator, CSource, accelerator_target

# 1. What the toy computes: an element of an op's result from its operands' elements {0}, {1}.
OPS = {"relax.nn.relu": "{0} > 0.0f ? {0} : 0.0f", "relax.add": "{0} + {1}"}


def why_not(call: relax.Call) -> str | None:
    """None if the toy runs `call`, else why it stays on the host CPU."""
    if call.op.name not in OPS:
        return "not in the toy's pattern table"
    if not all(isinstance(a, relax.Var) for a in call.args):
        return "a constant operand (the toy reads only the tensors the host hands it)"
    if call.ty.dtype != "float32":
        return f"dtype {call.ty.dtype} (the toy computes in float32)"
    if not all(tvm_ffi.structural_equal(a.ty, call.ty) for a in call.args):
        return "operands of other shapes (the toy does not broadcast)"
    return None


def patterns() -> list[FusionPattern]:
    def accept(context):  # FuseOpsByPattern takes a match only if this says yes
        return why_not(context.matched_expr) is None

    relu = FusionPattern("toy.relu", is_op("relax.nn.relu")(wildcard()), check=accept)
    add = FusionPattern("toy.add", is_op("relax.add")(wildcard(), wildcard()), check=accept)
    return [relu, add]


# 2. The codegen: C for each partitioned function (`export` uses g++, hence `extern "C"`).
PRELUDE = """#include <tvm/ffi/c_api.h>
static float* toy_data(const TVMFFIAny* arg) { /* a DLTensor* or a tensor object */
  DLTensor* t = arg->type_index == kTVMFFIDLTensorPtr
                    ? (DLTensor*)arg->v_ptr
                    : (DLTensor*)((char*)arg->v_obj + sizeof(TVMFFIObject));
  return (float*)((char*)t->data + t->byte_offset);
}
"""


def emit(func: relax.Function) -> str:
    """A partitioned function calls local "Composite" functions, an op each. why_not keeps its
    tensors one shape, so its C is one loop: read the inputs, compute the ops, write outputs."""
    name, result = func.attrs["global_symbol"], func.body.body
    outputs = list(result.fields) if isinstance(result, relax.Tuple) else [result]
    tensors = [*func.params, *outputs]  # the VM passes the inputs, then the outputs to fill
    value = {param: f"a{j}[i]" for j, param in enumerate(func.params)}
    bindings = [b for block in func.body.blocks for b in block.bindings]
    composites = {b.var: b.value for b in bindings if isinstance(b.value, relax.Function)}
    body = []
    for binding in (b for b in bindings if b.var not in composites):
        inner = composites[binding.value.op]  # its params stand for the call's arguments
        operand = dict(zip(inner.params, binding.value.args, strict=True))
        call = inner.body.blocks[0].bindings[0].value
        value[binding.var] = f"t{len(body)}"
        expr = OPS[call.op.name].format(*(value[operand[a]] for a in call.args))
        body.append(f"    float {value[binding.var]} = {expr};")
    body += [f"    a{j}[i] = {value[out]};" for j, out in enumerate(outputs, len(func.params))]
    pointers = "".join(f"  float* a{j} = toy_data(&args[{j}]);\n" for j in range(len(tensors)))
    size = int(np.prod([int(d) for d in outputs[0].ty.shape]))
    return f"""
extern "C" TVM_FFI_DLL_EXPORT int __tvm_ffi_{name}(void* self, const TVMFFIAny* args,
                                                  int32_t num_args, TVMFFIAny* ret) {{
  if (num_args != {len(tensors)}) {{
    TVMFFIErrorSetRaisedFromCStr("ValueError", "{name}: wrong number of arguments");
    return -1;
  }}
{pointers}  for (int64_t i = 0; i < {size}; ++i) {{
{chr(10).join(body)}
  }}
  ret->type_index = kTVMFFINone; ret->zero_padding = 0; ret->v_int64 = 0; /* returns None */
  return 0;
}}
"""


def codegen(functions: list[relax.Function], options: dict[str, str]) -> CSource:
    names = [str(f.attrs["global_symbol"]) for f in functions]
    return CSource(PRELUDE + "".join(emit(f) for f in functions), names)


# 3. The target: the toy, with this host's x86 CPU for everything it does not take.
TOY = Accelerator("toy", patterns, codegen, why_not, supports=("relu", "add, same shapes"))
TARGET = accelerator_target("toy", "relu and add as C loops", TOY, host=get_target("x86"))


# 4. Compile a model for the toy target, run the .so, compare with ONNX Runtime.
def check(onnx_path: Path, inputs: dict[str, np.ndarray], out_dir: Path):
    """(partition report, max abs error vs ONNX Runtime) of `onnx_path` on the toy target."""
    reports = []
    so_path = api.compile_model(
        onnx_path, TARGET, out_dir / f"{onnx_path.stem}.so", on_partition=reports.append
    )
    print(reports[0].text())
    outputs = api.load(so_path).run(inputs)
    error = max(d.max_abs for d in compare(outputs, ort_run(onnx_path, inputs)))
    print(f"{so_path}: max abs error {error:.1e} vs ONNX Runtime")
    return reports[0], error


def main(out_dir: Path | None = None):
    """MobileNetV3-small (seeded weights and input) on the toy target: check()'s result."""
    out_dir = out_dir or Path(tempfile.mkdtemp(prefix="tilecc-tutorial-"))
    onnx_path = zoo.export("mobilenetv3-small", out_dir / "mobilenetv3-small.onnx")
    inputs = {"input": np.random.default_rng(0).standard_normal((1, 3, 224, 224), np.float32)}
    return check(onnx_path, inputs, out_dir)


if __name__ == "__main__":
    main()
