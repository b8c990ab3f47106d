"""dense_int8 bit for bit against its NumPy integer reference: GEMV, tails in m and n, uint8 and
int8 data, fused epilogue, and the dot-product instruction it tensorizes into."""

import numpy as np
import pytest
import tvm
from template_harness import check
from tvm import s_tir, te

from tilecc.schedules.dense_int8 import TEMPLATE, space
from tilecc.schedules.template import template_blocks
from tilecc.schedules.workload import DenseWorkload
from tilecc.targets import get_target

SHAPES = [
    DenseWorkload(m=25, n=96, k=24, dtype="uint8"),  # det's head: 24 -> 96, m tail
    DenseWorkload(m=1, n=40, k=64, dtype="uint8"),  # GEMV, n tail
    DenseWorkload(m=13, n=37, k=120, dtype="uint8"),  # odd n, rec's width
    DenseWorkload(m=9, n=20, k=8, dtype="int8"),  # aarch64's form
]


@pytest.mark.parametrize("wl", SHAPES, ids=[f"{w.describe()} {w.dtype}" for w in SHAPES])
def test_bit_exact_over_space(wl):
    sp = space(wl, 16)
    for cfg in [sp.default(), *sp.sample(3, seed=0)]:
        check(TEMPLATE, wl, cfg, lanes=16)


def test_eight_lanes():
    wl = SHAPES[0]
    check(TEMPLATE, wl, space(wl, 8).default(), lanes=8)


def test_requantizing_epilogue_runs_on_the_tile():
    """max(float(acc) * scale[n] + bias[n], 0), as quantize-int8 leaves it for FuseOps."""
    wl = SHAPES[2]
    cfg = space(wl, 16).default()
    target = get_target("x86").tvm(2)
    data = te.placeholder(wl.data_shape(), wl.dtype, name="data")
    weight = te.placeholder(wl.weight_shape(), "int8", name="weight")
    packed = TEMPLATE.weight_transform(weight, wl, cfg)
    packed_in = te.placeholder(packed.shape, "int8", name="packed")
    acc = TEMPLATE.compute(data, packed_in, wl, cfg)
    scale = te.placeholder((wl.n,), "float32", name="scale")
    bias = te.placeholder((wl.n,), "float32", name="bias")
    out = te.compute(
        acc.shape,
        lambda i, j: te.max(acc[i, j].astype("float32") * scale[j] + bias[j], 0.0),
        name="requantize",
    )
    sch = s_tir.Schedule(
        tvm.IRModule({"main": te.create_prim_func([data, packed_in, scale, bias, out])})
    )
    (block,) = template_blocks(sch)
    with target:
        TEMPLATE.schedule(sch, block, wl, cfg, 16)
    # the requantization is inlined into the crop, which runs under the tile loop
    assert "requantize[" in sch.mod.script() and len(sch.get_loops("dense_int8_slice")) > 2
    kernel = tvm.compile(sch.mod, target=target)
    pack = tvm.compile(tvm.IRModule({"main": te.create_prim_func([weight, packed])}), target=target)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, wl.data_shape(), endpoint=True).astype("uint8")
    w = rng.integers(-127, 127, wl.weight_shape(), endpoint=True).astype("int8")
    s, b = rng.uniform(0, 1e-3, wl.n).astype("float32"), rng.uniform(-1, 1, wl.n).astype("float32")
    packed_w = tvm.runtime.empty(packed.shape, "int8")
    pack(tvm.runtime.tensor(w), packed_w)
    got = tvm.runtime.empty(wl.out_shape(), "float32")
    kernel(tvm.runtime.tensor(x), packed_w, tvm.runtime.tensor(s), tvm.runtime.tensor(b), got)
    acc_ref = TEMPLATE.reference(x, w, wl).astype(np.float64)  # exact: the int32 sums agree
    want = np.maximum(acc_ref * s + b, 0)  # LLVM may contract * + into one rounding (FMA)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-6, atol=1e-6)


def test_vnni_tensorizes_into_vpdpbusd():
    wl = SHAPES[0]
    cfg = space(wl, 16).default()
    data = te.placeholder(wl.data_shape(), wl.dtype, name="data")
    packed = TEMPLATE.weight_transform(te.placeholder(wl.weight_shape(), "int8"), wl, cfg)
    weight = te.placeholder(packed.shape, "int8", name="w")
    out = TEMPLATE.compute(data, weight, wl, cfg)
    sch = s_tir.Schedule(tvm.IRModule({"main": te.create_prim_func([data, weight, out])}))
    (block,) = template_blocks(sch)
    with tvm.target.Target({"kind": "llvm", "mcpu": "icelake-server"}):
        TEMPLATE.schedule(sch, block, wl, cfg, 16)
    assert "llvm.x86.avx512.vpdpbusd.512" in sch.mod.script()


def test_applies():
    assert TEMPLATE.applies(SHAPES[0])
    assert not TEMPLATE.applies(DenseWorkload(m=4, n=8, k=6, dtype="uint8"))  # k not in 4s
    assert not TEMPLATE.applies(DenseWorkload(m=4, n=8, k=8))  # float32
