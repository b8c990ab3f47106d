"""Build one template for one workload and configuration, run it, compare with its reference.

Shared by tests/schedules/test_<template>.py. Kernels run on this host (x86, LLVM) unless a
test passes another target.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tvm
from tvm import s_tir, te

from tilecc.schedules import int8_dot
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


def dtypes(workload) -> tuple[str, str, str]:
    """(data, weight, output) dtypes: fp32 throughout, or 8-bit data by int8 weights into int32."""
    return workload.dtype, workload.weight_dtype, workload.out_dtype


def build(template: Template, workload, cfg, lanes: int, epilogue=None, target=None):
    """(weight-transform function, scheduled kernel function), both compiled; the schedule
    runs under `target`, as in the build (int8 templates pick their instruction from it)."""
    target = target or host_target()
    weight = te.placeholder(workload.weight_shape(), dtypes(workload)[1], name="weight")
    packed = template.weight_transform(weight, workload, cfg)
    transform = tvm.compile(
        tvm.IRModule({"main": te.create_prim_func([weight, packed])}), target=target
    )
    data = te.placeholder(workload.data_shape(), workload.dtype, name="data")
    packed_in = te.placeholder(packed.shape, packed.dtype, name="packed_weight")
    out = template.compute(data, packed_in, workload, cfg)
    args = [data, packed_in]
    if epilogue is not None:
        bias = te.placeholder((_channels(workload),), dtypes(workload)[2], name="bias")
        out = EPILOGUES[epilogue][0](out, bias)
        args.append(bias)
    func = te.create_prim_func([*args, out])
    sch = s_tir.Schedule(tvm.IRModule({"main": func}))
    (block,) = template_blocks(sch)
    with target:
        template.schedule(sch, block, workload, cfg, lanes)
    return transform, tvm.compile(sch.mod, target=target), packed.shape


def check(template: Template, workload, cfg, lanes: int = 16, epilogue=None, rtol=1e-4, atol=1e-4):
    """Run the scheduled kernel on seeded random data and assert it matches `reference`
    (8-bit workloads: bit for bit, on data over the whole 8-bit range and weights over the
    range the target's dot-product instruction takes, int8_dot.weight_max)."""
    target = host_target()
    transform, kernel, packed_shape = build(template, workload, cfg, lanes, epilogue, target)
    data_dtype, weight_dtype, out_dtype = dtypes(workload)
    rng = np.random.default_rng(0)
    plain_shape = _plain(workload.data_shape())
    if data_dtype == "float32":
        data = rng.uniform(-1, 1, plain_shape).astype(data_dtype)
        weight = rng.uniform(-1, 1, workload.weight_shape()).astype(weight_dtype)
    else:
        info = np.iinfo(data_dtype)
        data = rng.integers(info.min, info.max, plain_shape, endpoint=True).astype(data_dtype)
        most = int8_dot.weight_max(data_dtype, int8_dot.target_features(target))
        weight = rng.integers(-most, most, workload.weight_shape(), endpoint=True).astype("int8")
        rtol = atol = 0
    dev = tvm.cpu()
    packed = tvm.runtime.empty(packed_shape, weight_dtype, dev)
    transform(tvm.runtime.tensor(weight, dev), packed)
    data_in = pack_nchwc(data, workload.in_block) if len(plain_shape) == 4 else data
    args = [tvm.runtime.tensor(data_in, dev), packed]
    if data_dtype == "float32":
        expected = template.reference(data.astype("float64"), weight.astype("float64"), workload)
    else:
        expected = template.reference(data, weight, workload)
    if epilogue is not None:
        bias = rng.uniform(-1, 1, (_channels(workload),)).astype(out_dtype)
        args.append(tvm.runtime.tensor(bias, dev))
        expected = EPILOGUES[epilogue][1](expected, bias.astype("float64"))
    if len(plain_shape) == 4:
        expected = pack_nchwc(expected, workload.out_block)
    out = tvm.runtime.empty(workload.out_shape(), out_dtype, dev)
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


def check_pad_value_reference(reference, workload) -> None:
    """A template's `reference` with `workload.pad_value` equals the same reference over data
    padded with that value beforehand and no padding: what a folded zero-point pad means."""
    rng = np.random.default_rng(2)
    x = rng.integers(-100, 100, (1, workload.in_channels, workload.height, workload.width))
    w = rng.integers(-100, 100, workload.weight_shape())
    pads = (workload.pad_top, workload.pad_bottom), (workload.pad_left, workload.pad_right)
    padded = np.pad(x, ((0, 0), (0, 0), *pads), constant_values=workload.pad_value)
    unpadded = dataclasses.replace(
        workload, height=padded.shape[2], width=padded.shape[3], pad_value=0,
        pad_top=0, pad_left=0, pad_bottom=0, pad_right=0,
    )  # fmt: skip
    np.testing.assert_array_equal(reference(x, w, workload), reference(padded, w, unpadded))
