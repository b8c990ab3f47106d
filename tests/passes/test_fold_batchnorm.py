import numpy as np
import onnx
import tvm
from onnx import TensorProto, helper, numpy_helper
from tvm import relax
from tvm.script import ir as I
from tvm.script import relax as R

from tilecc.compiler.build import bind_params
from tilecc.compiler.frontend_onnx import import_onnx
from tilecc.passes.fold_batchnorm import FoldBatchnorm

RNG = np.random.default_rng(0)
W = RNG.standard_normal((4, 3, 3, 3)).astype("float32")
BIAS = RNG.standard_normal((1, 4, 1, 1)).astype("float32")
GAMMA, BETA, MEAN = (RNG.standard_normal(4).astype("float32") for _ in range(3))
VAR = (RNG.random(4) + 0.5).astype("float32")
EPS = 1e-3


def folded(bias):
    """W', b' written from the BatchNorm definition: y = (z - mean) / sqrt(var + eps) * g + b."""
    inv_std = 1.0 / np.sqrt(VAR.astype("float64") + EPS)
    scale = GAMMA.astype("float64") * inv_std
    new_w = (W.astype("float64") * scale[:, None, None, None]).astype("float32")
    new_b = (bias.reshape(4).astype("float64") - MEAN) * scale + BETA
    return new_w, new_b.astype("float32").reshape(1, 4, 1, 1)


def check(before, expected, **options):
    after = FoldBatchnorm(**options)(before)
    relax.analysis.well_formed(after)
    tvm.ir.assert_structural_equal(after, expected)


def run(mod, *inputs):
    ex = tvm.compile(mod, target=tvm.target.Target({"kind": "llvm"}))
    out = relax.VirtualMachine(ex, tvm.cpu())["main"](*[tvm.runtime.tensor(a) for a in inputs])
    return out.numpy()


def test_conv_batchnorm_is_folded():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 3, 8, 8), "float32")):
            with R.dataflow():
                c = R.nn.conv2d(x, R.const(W))
                bn = R.nn.batch_norm(
                    c, R.const(GAMMA), R.const(BETA), R.const(MEAN), R.const(VAR),
                    axis=1, epsilon=EPS, training=False,
                )  # fmt: skip
                y = bn[0]
                R.output(y)
            return y

    new_w, new_b = folded(np.zeros(4, "float32"))

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((1, 3, 8, 8), "float32")):
            with R.dataflow():
                c = R.nn.conv2d(x, R.const(new_w))
                y = R.add(c, R.const(new_b))
                R.output(y)
            return y

    check(Before, Expected)
    x = RNG.standard_normal((1, 3, 8, 8)).astype("float32")
    np.testing.assert_allclose(
        run(FoldBatchnorm()(Before), x), run(Before, x), rtol=1e-5, atol=1e-5
    )


def _conv_bias_bn(extra_user: str, training: bool = False):
    """conv2d + add(bias) + batch_norm whose `extra_user` ("c", "a" or "y") also feeds a relu."""

    @I.ir_module
    class Module:
        @R.function
        def main(x: R.Tensor((1, 3, 8, 8), "float32")):
            with R.dataflow():
                c = R.nn.conv2d(x, R.const(W))
                a = R.add(c, R.const(BIAS))
                bn = R.nn.batch_norm(
                    a, R.const(GAMMA), R.const(BETA), R.const(MEAN), R.const(VAR),
                    axis=1, epsilon=EPS, training=training,
                )  # fmt: skip
                y = bn[0]
                z = R.add(y, R.nn.relu({"c": c, "a": a, "y": y}[extra_user]))
                R.output(z)
            return z

    return Module


def test_conv_bias_batchnorm_is_folded():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 3, 8, 8), "float32")):
            with R.dataflow():
                c = R.nn.conv2d(x, R.const(W))
                a = R.add(c, R.const(BIAS))
                bn = R.nn.batch_norm(
                    a, R.const(GAMMA), R.const(BETA), R.const(MEAN), R.const(VAR),
                    axis=1, epsilon=EPS, training=False,
                )  # fmt: skip
                y = bn[0]
                R.output(y)
            return y

    new_w, new_b = folded(BIAS)

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((1, 3, 8, 8), "float32")):
            with R.dataflow():
                c = R.nn.conv2d(x, R.const(new_w))
                y = R.add(c, R.const(new_b))
                R.output(y)
            return y

    check(Before, Expected)


def test_no_fold_when_conv_has_another_user():
    before = _conv_bias_bn(extra_user="c")
    check(before, before)


def test_no_fold_when_bias_add_has_another_user():
    before = _conv_bias_bn(extra_user="a")
    check(before, before)


def test_no_fold_in_training_mode():
    before = _conv_bias_bn(extra_user="y", training=True)
    check(before, before)


def test_no_fold_with_a_weight_parameter():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 3, 8, 8), "float32"), w: R.Tensor((4, 3, 3, 3), "float32")):
            with R.dataflow():
                c = R.nn.conv2d(x, w)
                bn = R.nn.batch_norm(
                    c, R.const(GAMMA), R.const(BETA), R.const(MEAN), R.const(VAR),
                    axis=1, epsilon=EPS, training=False,
                )  # fmt: skip
                y = bn[0]
                R.output(y)
            return y

    check(Before, Before)


def _onnx_conv_bn(groups: int) -> onnx.ModelProto:
    """ONNX Conv(+bias) -> BatchNormalization -> Relu, the form exported CNNs use."""
    w = RNG.standard_normal((4, 4 // groups, 3, 3)).astype("float32")
    inits = [numpy_helper.from_array(a, n) for a, n in [(w, "W"), (BIAS.reshape(4), "B")]]
    stats = [GAMMA, BETA, MEAN, VAR]
    inits += [numpy_helper.from_array(a, n) for a, n in zip(stats, "gbmv", strict=True)]
    nodes = [
        helper.make_node("Conv", ["x", "W", "B"], ["c"], group=groups, pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["n"], epsilon=EPS),
        helper.make_node("Relu", ["n"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "conv_bn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        inits,
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])


def test_onnx_conv_bias_batchnorm_folds_and_matches_numerically():
    for groups in (1, 4):  # dense and depthwise: W's axis 0 is the output channel in both
        before = bind_params(import_onnx(f"conv_bn_g{groups}.onnx", model=_onnx_conv_bn(groups)))
        after = FoldBatchnorm()(before)
        relax.analysis.well_formed(after)
        assert "batch_norm" in before.script() and "batch_norm" not in after.script()
        x = RNG.standard_normal((1, 4, 8, 8)).astype("float32")
        np.testing.assert_allclose(run(after, x), run(before, x), rtol=1e-5, atol=1e-5)
