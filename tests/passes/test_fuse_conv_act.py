import numpy as np
import pytest
import tvm
from onnx import TensorProto, helper, numpy_helper
from tvm import relax
from tvm.script import ir as I
from tvm.script import relax as R

from tilecc.compiler.build import bind_params
from tilecc.compiler.errors import PassOptionError
from tilecc.compiler.frontend_onnx import import_onnx
from tilecc.compiler.pass_pipeline import run_pipeline
from tilecc.passes.fuse_conv_act import FuseConvAct

RNG = np.random.default_rng(0)
X, WT, B = (1, 3, 8, 8), (4, 3, 3, 3), (1, 4, 1, 1)


def check(before, expected, **options):
    after = FuseConvAct(**options)(before)
    relax.analysis.well_formed(after)
    tvm.ir.assert_structural_equal(after, expected)


def composites(mod) -> list[str]:
    return sorted(
        str(f.attrs["Composite"])
        for _, f in mod.functions_items()
        if isinstance(f, relax.Function) and f.attrs is not None and "Composite" in f.attrs
    )


def run(mod, *inputs):
    ex = tvm.compile(mod, target=tvm.target.Target({"kind": "llvm"}))
    out = relax.VirtualMachine(ex, tvm.cpu())["main"](*[tvm.runtime.tensor(a) for a in inputs])
    return out.numpy()


def test_conv_bias_relu_is_grouped():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor(X, "float32"), w: R.Tensor(WT, "float32"), b: R.Tensor(B, "float32")):
            with R.dataflow():
                c = R.nn.conv2d(x, w)
                a = R.add(c, b)
                y = R.nn.relu(a)
                R.output(y)
            return y

    @I.ir_module
    class Expected:
        @R.function(private=True)
        def fused_relax_nn_conv2d_relax_add_relax_nn_relu(
            x: R.Tensor(X, "float32"), w: R.Tensor(WT, "float32"), b: R.Tensor(B, "float32")
        ) -> R.Tensor((1, 4, 6, 6), "float32"):
            R.func_attr({"Composite": "tilecc.conv2d_bias_relu", "Primitive": True})
            with R.dataflow():
                c = R.nn.conv2d(x, w)
                a = R.add(c, b)
                y = R.nn.relu(a)
                R.output(y)
            return y

        @R.function
        def main(x: R.Tensor(X, "float32"), w: R.Tensor(WT, "float32"), b: R.Tensor(B, "float32")):
            cls = Expected
            with R.dataflow():
                y = cls.fused_relax_nn_conv2d_relax_add_relax_nn_relu(x, w, b)
                R.output(y)
            return y

    check(Before, Expected)
    args = [RNG.standard_normal(s).astype("float32") for s in (X, WT, B)]
    np.testing.assert_allclose(run(FuseConvAct()(Before), *args), run(Before, *args), atol=1e-5)


def _conv_with_second_consumer(of: str):
    """conv2d + bias + relu where `of` ("c" or "a") also feeds a sigmoid that is returned."""

    @I.ir_module
    class Module:
        @R.function
        def main(x: R.Tensor(X, "float32"), w: R.Tensor(WT, "float32"), b: R.Tensor(B, "float32")):
            with R.dataflow():
                c = R.nn.conv2d(x, w)
                a = R.add(c, b)
                y = R.nn.relu(a)
                s = R.sigmoid({"c": c, "a": a}[of])
                z = R.add(y, s)
                R.output(z)
            return z

    return Module


def test_no_fusion_when_conv_output_has_two_consumers():
    before = _conv_with_second_consumer("c")
    check(before, before)


def test_bias_add_with_two_consumers_is_grouped_without_the_activation():
    after = FuseConvAct()(_conv_with_second_consumer("a"))
    relax.analysis.well_formed(after)
    assert composites(after) == ["tilecc.conv2d_bias"]
    assert "R.nn.relu" in after["main"].script()  # the relu stays outside the group


def test_unknown_act_is_refused():
    with pytest.raises(PassOptionError, match="gelu"):
        FuseConvAct(acts=("relu", "gelu"))


def _onnx_conv_act(act: str):
    """ONNX Conv(+bias) followed by the activation `act`, as exporters write it."""
    nodes = {
        "relu": [helper.make_node("Relu", ["c"], ["y"])],
        "hardswish": [helper.make_node("HardSwish", ["c"], ["y"])],
        "hardsigmoid": [helper.make_node("HardSigmoid", ["c"], ["y"])],
        "sigmoid": [helper.make_node("Sigmoid", ["c"], ["y"])],
        "swish": [
            helper.make_node("Sigmoid", ["c"], ["s"]),
            helper.make_node("Mul", ["c", "s"], ["y"]),
        ],
        "leakyrelu": [helper.make_node("LeakyRelu", ["c"], ["y"], alpha=0.1)],
        "prelu": [helper.make_node("PRelu", ["c", "slope"], ["y"])],
    }[act]
    arrays = {
        "W": RNG.standard_normal(WT),
        "B": RNG.standard_normal(4),
        "slope": RNG.random((4, 1, 1)),
    }
    inits = [numpy_helper.from_array(a.astype("float32"), n) for n, a in arrays.items()]
    if act != "prelu":
        inits.pop()
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "W", "B"], ["c"]), *nodes],
        act,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(X))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 6, 6])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])


@pytest.mark.parametrize(
    "act", ["relu", "hardswish", "hardsigmoid", "sigmoid", "swish", "leakyrelu", "prelu"]
)
def test_onnx_activation_is_grouped_and_matches_numerically(act):
    imported = import_onnx(f"{act}.onnx", model=_onnx_conv_act(act))
    before = run_pipeline(bind_params(imported), "fold-constant,dce")
    after = FuseConvAct()(before)
    relax.analysis.well_formed(after)
    assert composites(after) == [f"tilecc.conv2d_bias_{act}"]
    x = RNG.standard_normal(X).astype("float32")
    np.testing.assert_allclose(run(after, x), run(before, x), rtol=1e-5, atol=1e-5)


def test_acts_relu_only_leaves_sigmoid_outside():
    before = run_pipeline(
        bind_params(import_onnx("sigmoid.onnx", model=_onnx_conv_act("sigmoid"))), "fold-constant"
    )
    after = FuseConvAct(acts=("relu",))(before)
    assert composites(after) == ["tilecc.conv2d_bias"]
