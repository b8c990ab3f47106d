"""schedule_rest: the plain schedule of fused kernels no template holds."""

import numpy as np
import tvm
from tvm import s_tir, te, tirx

from tilecc.schedules.template import schedule_rest

LANES = 16


def scheduled(*tensors) -> tvm.IRModule:
    sch = s_tir.Schedule(tvm.IRModule({"main": te.create_prim_func(list(tensors))}))
    schedule_rest(sch, None, LANES)
    return sch.mod


def run(mod, *arrays):
    lib = tvm.compile(mod, target=tvm.target.Target({"kind": "llvm"}))
    args = [tvm.runtime.tensor(a) for a in arrays]
    lib["main"](*args)
    return args[-1].numpy()


def test_planes_packed_into_words_are_vectorized():
    """Each output word reads the same pixel of 3 channel planes (indices affine in the
    block's variables): vectorized over the row, like an elementwise op."""
    x = te.placeholder((1, 3, 4, 32), "int32", name="x")
    word = te.compute(
        (1, 1, 4, 32),
        lambda n, _c, h, w: x[n, 0, h, w] | (x[n, 1, h, w] << 8) | (x[n, 2, h, w] << 16),
        name="word",
    )
    mod = scheduled(x, word)
    assert "T.vectorized" in mod.script()
    data = np.random.default_rng(0).integers(0, 256, (1, 3, 4, 32)).astype("int32")
    want = data[:, :1] | data[:, 1:2] << 8 | data[:, 2:3] << 16
    np.testing.assert_array_equal(run(mod, data, np.zeros((1, 1, 4, 32), "int32")), want)


def test_a_gather_by_computed_index_is_left_alone():
    """A nearest-neighbour upsample computes its source pixel in float arithmetic: its loops
    are kept as they are."""
    x = te.placeholder((1, 1, 4, 4), "float32", name="x")

    def source(i):
        return tirx.Cast("int32", tirx.floor(tirx.Cast("float32", i) * tirx.const(0.5, "float32")))

    up = te.compute((1, 1, 8, 8), lambda n, c, h, w: x[n, c, source(h), source(w)], name="up")
    assert "T.vectorized" not in scheduled(x, up).script()
