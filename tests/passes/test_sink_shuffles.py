"""sink-shuffles: elementwise ops after a reshape / permute chain move before it; IR in / IR out,
and the numbers of det's depth-to-space tail before and after."""

import numpy as np
import tvm
from relax_helpers import op_names
from tvm import relax
from tvm.script import ir as I
from tvm.script import relax as R

from tilecc.passes.sink_shuffles import SinkShuffles

RNG = np.random.default_rng(0)


def run(mod, x):
    ex = tvm.compile(mod, target=tvm.target.Target({"kind": "llvm"}))
    return relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()


def test_a_transpose_sinks_below_an_add_and_a_quantize_with_the_constant_transposed():
    c = np.arange(3, dtype="float32").reshape(1, 3, 1)

    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 2, 3), "float32")):
            with R.dataflow():
                s = R.permute_dims(x, [0, 2, 1])
                z = R.add(s, R.const(c))
                q = R.quantize(z, R.const(0.5, "float32"), R.const(1, "int8"), out_dtype="int8")
                R.output(q)
            return q

    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((1, 2, 3), "float32")):
            with R.dataflow():
                t = R.add(x, R.const(c.reshape(1, 1, 3)))
                u = R.quantize(t, R.const(0.5, "float32"), R.const(1, "int8"), out_dtype="int8")
                q = R.permute_dims(u, [0, 2, 1])
                R.output(q)
            return q

    after = relax.transform.DeadCodeElimination()(SinkShuffles()(Before))  # the old shuffle
    relax.analysis.well_formed(after)
    tvm.ir.assert_structural_equal(after, Expected)


def test_a_chain_that_does_not_narrow_stays_after_the_shuffle():
    """fp32 in, fp32 out: moved into a conv's epilogue it would run in the conv's blocks and
    save no bytes (det's final sigmoid)."""

    @I.ir_module
    class Wide:
        @R.function
        def main(x: R.Tensor((1, 2, 3), "float32")):
            with R.dataflow():
                s = R.permute_dims(x, [0, 2, 1])
                z = R.sigmoid(R.add(s, R.const(1.0, "float32")))
                R.output(z)
            return z

    before = relax.transform.Normalize()(Wide)
    tvm.ir.assert_structural_equal(SinkShuffles()(before), before)


def depth_to_space_tail():
    """det's head after quantize-int8: a 1x1 conv's requantized output (NCHW8c, 4 x 2 blocks)
    shuffled 2x2 depth-to-space into 2 blocks, then batch norm (a per-channel multiply and
    add), ReLU and the next conv's quantize."""
    scale = RNG.uniform(0.5, 2.0, (1, 2, 1, 1, 8)).astype("float32")
    shift = RNG.uniform(-1.0, 1.0, (1, 2, 1, 1, 8)).astype("float32")

    @I.ir_module
    class Head:
        @R.function
        def main(y: R.Tensor((1, 8, 5, 6, 8), "float32")):
            with R.dataflow():
                a = R.reshape(y, R.shape([1, 2, 2, 2, 5, 6, 8]))
                b = R.permute_dims(a, [0, 3, 4, 1, 5, 2, 6])
                s = R.reshape(b, R.shape([1, 2, 10, 12, 8]))
                m = R.multiply(s, R.const(scale))
                n = R.add(m, R.const(shift))
                r = R.nn.relu(n)
                q = R.quantize(r, R.const(0.05, "float32"), R.const(3, "uint8"), out_dtype="uint8")
                R.output(q)
            return q

    return Head


def test_det_head_the_shuffle_moves_8bit_data_and_the_numbers_do_not_change():
    before = depth_to_space_tail()
    after = relax.transform.DeadCodeElimination()(SinkShuffles()(before))
    relax.analysis.well_formed(after)
    names = op_names(after)
    # every elementwise op first, the shuffle last, on the quantized bytes
    assert names[:4] == ["relax.multiply", "relax.add", "relax.nn.relu", "relax.quantize"]
    assert names[4:] == ["relax.reshape", "relax.permute_dims", "relax.reshape"]
    shuffled = after["main"].body.body
    assert str(shuffled.ty.dtype) == "uint8"
    (first_reshape,) = [b.value for b in after["main"].body.blocks[0].bindings][4:5]
    assert str(first_reshape.args[0].ty.dtype) == "uint8"
    y = RNG.uniform(-4.0, 4.0, (1, 8, 5, 6, 8)).astype("float32")
    np.testing.assert_array_equal(run(after, y), run(before, y))


def test_a_shuffle_with_another_use_stays_where_it_is():
    @I.ir_module
    class Shared:
        @R.function
        def main(x: R.Tensor((1, 2, 3), "float32")):
            with R.dataflow():
                s = R.permute_dims(x, [0, 2, 1])
                z = R.nn.relu(s)
                w = R.add(z, s)
                q = R.quantize(w, R.const(0.5, "float32"), R.const(1, "int8"), out_dtype="int8")
                R.output(q)
            return q

    tvm.ir.assert_structural_equal(SinkShuffles()(Shared), Shared)


def test_an_op_of_two_computed_values_stays_after_the_shuffle():
    @I.ir_module
    class Two:
        @R.function
        def main(x: R.Tensor((1, 2, 3), "float32"), y: R.Tensor((1, 3, 2), "float32")):
            with R.dataflow():
                s = R.permute_dims(x, [0, 2, 1])
                z = R.add(s, y)
                q = R.quantize(z, R.const(0.5, "float32"), R.const(1, "int8"), out_dtype="int8")
                R.output(q)
            return q

    tvm.ir.assert_structural_equal(SinkShuffles()(Two), Two)
