import numpy as np
import tvm
from tvm import relax
from tvm.script import ir as I
from tvm.script import relax as R

from tilecc.passes.expand_clip import ExpandClip

T_NEG_INF = float("-inf")


def check(before, expected):
    after = ExpandClip()(before)
    relax.analysis.well_formed(after)
    tvm.ir.assert_structural_equal(after, expected)


def test_clip_becomes_maximum_then_minimum():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 8, 4, 4), "float32")):
            with R.dataflow():
                y = R.clip(x, 0, 6)
                R.output(y)
            return y

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((1, 8, 4, 4), "float32")):
            with R.dataflow():
                a = R.maximum(x, R.const(0.0, "float32"))
                y = R.minimum(a, R.const(6.0, "float32"))
                R.output(y)
            return y

    check(Before, Expected)


def test_infinite_bound_is_dropped():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((4,), "float32")):
            with R.dataflow():
                y = R.clip(x, R.prim_value(T_NEG_INF), 1)
                R.output(y)
            return y

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((4,), "float32")):
            with R.dataflow():
                y = R.minimum(x, R.const(1.0, "float32"))
                R.output(y)
            return y

    check(Before, Expected)


def test_no_change_without_clip():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((4,), "float32")):
            with R.dataflow():
                y = R.nn.relu(x)
                R.output(y)
            return y

    check(Before, Before)


def test_same_values_as_clip():
    x = np.linspace(-10, 10, 41, dtype="float32")
    bb = relax.BlockBuilder()
    var = relax.Var("x", R.Tensor((41,), "float32"))
    with bb.function("main", [var]):
        with bb.dataflow():
            y = bb.emit_output(R.clip(var, -1.5, 2.25))
        bb.emit_func_output(y)
    mod = ExpandClip()(bb.get())
    ex = tvm.compile(mod, target=tvm.target.Target({"kind": "llvm"}))
    vm = relax.VirtualMachine(ex, tvm.cpu())
    np.testing.assert_array_equal(vm["main"](tvm.runtime.tensor(x)).numpy(), np.clip(x, -1.5, 2.25))
