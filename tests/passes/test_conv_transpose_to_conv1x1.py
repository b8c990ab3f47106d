import numpy as np
import pytest
import tvm
from tvm import relax
from tvm.script import ir as I
from tvm.script import relax as R

from tilecc.passes.conv_transpose_to_conv1x1 import ConvTransposeToConv1x1


def check(before, expected):
    after = ConvTransposeToConv1x1()(before)
    relax.analysis.well_formed(after)
    tvm.ir.assert_structural_equal(after, expected)


def test_stride_equal_to_kernel_becomes_conv1x1_and_depth_to_space():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 24, 8, 8), "float32"), w: R.Tensor((24, 6, 2, 2), "float32")):
            with R.dataflow():
                y = R.nn.conv2d_transpose(x, w, strides=[2, 2])
                R.output(y)
            return y

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((1, 24, 8, 8), "float32"), w: R.Tensor((24, 6, 2, 2), "float32")):
            with R.dataflow():
                v = R.permute_dims(w, [2, 3, 1, 0])
                c = R.reshape(v, (24, 24, 1, 1))
                d = R.nn.conv2d(x, c)
                e = R.reshape(d, (1, 2, 2, 6, 8, 8))
                f = R.permute_dims(e, [0, 3, 4, 1, 5, 2])
                y = R.reshape(f, (1, 6, 16, 16))
                R.output(y)
            return y

    check(Before, Expected)


def test_no_change_for_overlapping_windows():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 4, 8, 8), "float32"), w: R.Tensor((4, 4, 3, 3), "float32")):
            with R.dataflow():
                y = R.nn.conv2d_transpose(x, w, strides=[2, 2])
                R.output(y)
            return y

    check(Before, Before)


def test_no_change_with_padding():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 4, 8, 8), "float32"), w: R.Tensor((4, 4, 2, 2), "float32")):
            with R.dataflow():
                y = R.nn.conv2d_transpose(x, w, strides=[2, 2], padding=[1, 1, 1, 1])
                R.output(y)
            return y

    check(Before, Before)


@pytest.mark.parametrize(
    "shape, kernel", [((2, 5, 3, 7), (5, 3, 2, 2)), ((1, 4, 6, 5), (4, 2, 3, 1))]
)
def test_same_values_as_conv_transpose(shape, kernel):
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal(shape).astype("float32")
    w_np = rng.standard_normal(kernel).astype("float32")
    bb = relax.BlockBuilder()
    x = relax.Var("x", R.Tensor(shape, "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit_output(
                R.nn.conv2d_transpose(x, relax.const(w_np), strides=list(kernel[2:]))
            )
        bb.emit_func_output(y)
    results = []
    for mod in (bb.get(), ConvTransposeToConv1x1()(bb.get())):
        ex = tvm.compile(mod, target=tvm.target.Target({"kind": "llvm"}))
        results.append(
            relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x_np)).numpy()
        )
    assert "conv2d_transpose" not in ConvTransposeToConv1x1()(bb.get()).script()
    np.testing.assert_allclose(results[1], results[0], rtol=1e-5, atol=1e-5)
