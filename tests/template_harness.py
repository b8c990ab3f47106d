"""Build one template for one workload and configuration, run it, compare with its reference.

Shared by tests/schedules/test_<template>.py. Kernels run on this host (x86, LLVM) unless a
test passes another target.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import s_tir, te

from tilecc.schedules.template import Template, pack_nchwc, template_blocks
from tilecc.targets import get_target

EPILOGUES = {
    None: (lambda y, b: y, lambda y, b: y),
    "bias_relu": (
        lambda y, b: te.compute(
            y.shape, lambda *i: te.max(y(*i) + b(*_bias_index(y, i)), 0.0), name="bias_relu"
        ),
        lambda y, b: np.maximum(y + (b.reshape(1, -1, 1, 1) if y.ndim == 4 else b), 0.0),
    ),
}


def _bias_index(y, i):
    # bias is per output channel: [C] indexed by channel; NCHW[b]c splits it into (i[1], i[4])
    if len(y.shape) == 5:
        return (i[1] * int(y.shape[4]) + i[4],)
    if len(y.shape) == 4:
        return (i[1],)
    return (i[-1],)  # dense: [m, n]


def host_target():
    return get_target("x86").tvm(2)


def build(template: Template, workload, cfg, lanes: int, epilogue=None, target=None):
    """(weight-transform function, scheduled kernel function), both compiled."""
    target = target or host_target()
    weight = te.placeholder(workload.weight_shape(), workload.dtype, name="weight")
    packed = template.weight_transform(weight, workload, cfg)
    transform = tvm.compile(
        tvm.IRModule({"main": te.create_prim_func([weight, packed])}), target=target
    )
    data = te.placeholder(workload.data_shape(), workload.dtype, name="data")
    packed_in = te.placeholder(packed.shape, packed.dtype, name="packed_weight")
    out = template.compute(data, packed_in, workload, cfg)
    args = [data, packed_in]
    if epilogue is not None:
        bias = te.placeholder((_channels(workload),), workload.dtype, name="bias")
        out = EPILOGUES[epilogue][0](out, bias)
        args.append(bias)
    func = te.create_prim_func([*args, out])
    sch = s_tir.Schedule(tvm.IRModule({"main": func}))
    (block,) = template_blocks(sch)
    template.schedule(sch, block, workload, cfg, lanes)
    return transform, tvm.compile(sch.mod, target=target), packed.shape


def check(template: Template, workload, cfg, lanes: int = 16, epilogue=None, rtol=1e-4, atol=1e-4):
    """Run the scheduled kernel on seeded random data and assert it matches `reference`."""
    transform, kernel, packed_shape = build(template, workload, cfg, lanes, epilogue)
    rng = np.random.default_rng(0)
    plain_shape = _plain(workload.data_shape())
    data = rng.uniform(-1, 1, plain_shape).astype(workload.dtype)
    weight = rng.uniform(-1, 1, workload.weight_shape()).astype(workload.dtype)
    dev = tvm.cpu()
    packed = tvm.runtime.empty(packed_shape, workload.dtype, dev)
    transform(tvm.runtime.tensor(weight, dev), packed)
    data_in = pack_nchwc(data, workload.in_block) if len(plain_shape) == 4 else data
    args = [tvm.runtime.tensor(data_in, dev), packed]
    expected = template.reference(data.astype("float64"), weight.astype("float64"), workload)
    if epilogue is not None:
        bias = rng.uniform(-1, 1, (_channels(workload),)).astype(workload.dtype)
        args.append(tvm.runtime.tensor(bias, dev))
        expected = EPILOGUES[epilogue][1](expected, bias.astype("float64"))
    if len(plain_shape) == 4:
        expected = pack_nchwc(expected, workload.out_block)
    out = tvm.runtime.empty(workload.out_shape(), workload.dtype, dev)
    kernel(*args, out)
    got = out.numpy()
    assert got.shape == expected.shape, (got.shape, expected.shape)
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol, err_msg=f"{workload} {cfg}")


def _plain(shape):
    if len(shape) == 5:
        n, cb, h, w, b = shape
        return (n, cb * b, h, w)
    return shape


def _channels(workload):
    return workload.out_shape()[1] if workload.op == "dense" else workload.out_channels
