import numpy as np
import tvm
from tvm import relax
from tvm.script import ir as I
from tvm.script import relax as R
from tvm.script import tirx as T

from tilecc.passes.registry import get_pass_info
from tilecc.passes.simplify_reshape import SimplifyReshape


def check(before, expected, **options):
    after = SimplifyReshape(**options)(before)
    relax.analysis.well_formed(after)  # raises on the first violation (0.27)
    tvm.ir.assert_structural_equal(after, expected)


def run(mod, x):
    exe = tvm.compile(mod, target=tvm.target.Target({"kind": "llvm"}))
    vm = relax.VirtualMachine(exe, tvm.cpu())
    return vm["main"](tvm.runtime.tensor(x)).numpy()


def test_reshape_like_chain_becomes_one_reshape():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((2, 3, 4), "float32")):
            with R.dataflow():
                a = R.reshape(x, (6, 4))
                f = R.flatten(a)
                b = R.expand_dims(f, [0])
                y = R.nn.relu(b)
                R.output(y)
            return y

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((2, 3, 4), "float32")):
            with R.dataflow():
                b = R.reshape(x, (1, 24))
                y = R.nn.relu(b)
                R.output(y)
            return y

    check(Before, Expected)


def test_squeeze_then_expand_dims_of_same_axis_is_removed():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((2, 1, 4), "float32")):
            with R.dataflow():
                a = R.squeeze(x, [1])
                b = R.expand_dims(a, [1])
                y = R.nn.relu(b)
                R.output(y)
            return y

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((2, 1, 4), "float32")):
            with R.dataflow():
                y = R.nn.relu(x)
                R.output(y)
            return y

    check(Before, Expected)


def test_reshape_to_own_shape_is_removed():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor(("n", 4), "float32")):
            n = T.int64()
            with R.dataflow():
                a = R.reshape(x, (n, 4))
                y = R.nn.relu(a)
                R.output(y)
            return y

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor(("n", 4), "float32")):
            with R.dataflow():
                y = R.nn.relu(x)
                R.output(y)
            return y

    check(Before, Expected)


def test_permute_pair_is_composed():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 3, 8, 5), "float32")):
            with R.dataflow():
                a = R.permute_dims(x, [0, 2, 3, 1])
                b = R.permute_dims(a, [0, 2, 3, 1])
                y = R.nn.relu(b)
                R.output(y)
            return y

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((1, 3, 8, 5), "float32")):
            with R.dataflow():
                b = R.permute_dims(x, [0, 3, 1, 2])
                y = R.nn.relu(b)
                R.output(y)
            return y

    check(Before, Expected)


def test_permute_pair_composing_to_identity_is_removed():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 3, 8, 5), "float32")):
            with R.dataflow():
                a = R.permute_dims(x, [0, 2, 3, 1])
                b = R.permute_dims(a, [0, 3, 1, 2])
                y = R.nn.relu(b)
                R.output(y)
            return y

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((1, 3, 8, 5), "float32")):
            with R.dataflow():
                y = R.nn.relu(x)
                R.output(y)
            return y

    check(Before, Expected)


def test_no_compose_when_option_off():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 3, 8, 5), "float32")):
            with R.dataflow():
                a = R.permute_dims(x, [0, 2, 3, 1])
                b = R.permute_dims(a, [0, 3, 1, 2])
                R.output(b)
            return b

    check(Before, Before, compose_permutes=False)
    built = get_pass_info("simplify-reshape").create(compose_permutes="false")
    assert built.info.name == "simplify-reshape"
    tvm.ir.assert_structural_equal(built(Before), Before)


def _channel_shuffle(groups_list, channels=8, hw=4):
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, channels, hw, hw), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            y = x
            for g in groups_list:
                y = bb.emit(relax.op.reshape(y, (1, g, channels // g, hw, hw)))
                y = bb.emit(relax.op.permute_dims(y, [0, 2, 1, 3, 4]))
                y = bb.emit(relax.op.reshape(y, (1, channels, hw, hw)))
            out = bb.emit_output(relax.op.nn.relu(y))
        bb.emit_func_output(out)
    return bb.get()


def _shuffle_reference(x, g):
    n, c, h, w = x.shape
    return x.reshape(n, g, c // g, h, w).transpose(0, 2, 1, 3, 4).reshape(n, c, h, w)


def test_no_change_to_channel_shuffle():
    before = _channel_shuffle([2])
    check(before, before)


def test_channel_shuffle_numerically_equal_after_pass():
    # Wrapped in foldable chains so the pass really rewrites the module around the shuffle.
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 8, 4, 4), "float32")):
            with R.dataflow():
                e = R.expand_dims(x, [0])
                s = R.squeeze(e, [0])
                a = R.reshape(s, (1, 2, 4, 4, 4))
                t = R.permute_dims(a, [0, 2, 1, 3, 4])
                b = R.reshape(t, (1, 8, 4, 4))
                f = R.flatten(b)
                y = R.reshape(f, (1, 8, 16))
                R.output(y)
            return y

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((1, 8, 4, 4), "float32")):
            with R.dataflow():
                a = R.reshape(x, (1, 2, 4, 4, 4))
                t = R.permute_dims(a, [0, 2, 1, 3, 4])
                y = R.reshape(t, (1, 8, 16))
                R.output(y)
            return y

    check(Before, Expected)
    x = np.random.default_rng(0).standard_normal((1, 8, 4, 4)).astype("float32")
    want = _shuffle_reference(x, 2).reshape(1, 8, 16)
    after = SimplifyReshape()(Before)
    np.testing.assert_array_equal(run(after, x), want)  # data movement only: exact
    np.testing.assert_array_equal(run(Before, x), want)


def test_shuffle_by_g_then_by_c_over_g_is_removed():
    # Shuffling with g groups transposes a (g, c/g) channel grid; shuffling with c/g groups
    # transposes it back. Rules: inner reshape pair -> identity, permute pair -> identity,
    # outer reshape pair -> identity.
    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((1, 8, 4, 4), "float32")):
            with R.dataflow():
                y = R.nn.relu(x)
                R.output(y)
            return y

    before = _channel_shuffle([2, 4])
    x = np.random.default_rng(1).standard_normal((1, 8, 4, 4)).astype("float32")
    np.testing.assert_array_equal(run(before, x), np.maximum(x, 0))
    check(before, Expected)


def test_no_removal_of_shuffle_by_g_twice():
    # g=2 twice with c=8 is not the inverse (that needs c/g = 4 groups): only the middle
    # reshape pair collapses; both permutes stay apart and are kept.
    before = _channel_shuffle([2, 2])
    after = SimplifyReshape()(before)
    relax.analysis.well_formed(after)
    assert after.script().count("R.permute_dims") == 2
    x = np.random.default_rng(2).standard_normal((1, 8, 4, 4)).astype("float32")
    want = np.maximum(_shuffle_reference(_shuffle_reference(x, 2), 2), 0)
    np.testing.assert_array_equal(run(after, x), want)


def test_shared_inner_kept():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((2, 3, 4), "float32")):
            with R.dataflow():
                a = R.reshape(x, (6, 4))
                b = R.reshape(a, (24,))
                y = R.nn.relu(b)
                z = R.nn.relu(a)
                R.output(y, z)
            return (y, z)

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((2, 3, 4), "float32")):
            with R.dataflow():
                a = R.reshape(x, (6, 4))
                b = R.reshape(x, (24,))
                y = R.nn.relu(b)
                z = R.nn.relu(a)
                R.output(y, z)
            return (y, z)

    check(Before, Expected)


def test_no_change_to_single_shape_changing_ops():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((2, 1, 4), "float32")):
            with R.dataflow():
                a = R.squeeze(x, [1])
                y = R.nn.relu(a)
                b = R.expand_dims(y, [0])
                z = R.nn.relu(b)
                w = R.reshape(z, (8,))
                R.output(w)
            return w

    check(Before, Before)
