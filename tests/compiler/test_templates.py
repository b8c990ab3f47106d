"""Kernel templates in the build: workloads read from Relax, template choice, records, and
small models (regular, depthwise, squeeze-excite broadcast, transposed conv) vs ONNX Runtime."""

import dataclasses
import json

import numpy as np
import onnx
import pytest
import tvm
from numpy.lib.stride_tricks import sliding_window_view
from onnx import TensorProto, helper, numpy_helper
from tvm import relax
from tvm.script import relax as R

from tilecc.compiler import api
from tilecc.compiler.build import compile_imported, template_plan
from tilecc.compiler.pipeline import relax_pipeline
from tilecc.compiler.reference import ort_run
from tilecc.compiler.templates import conv2d_workload, default_template, fold_pads
from tilecc.schedules.registry import templates_for
from tilecc.schedules.tune import Records
from tilecc.schedules.tune.records import Record
from tilecc.schedules.workload import Conv2dWorkload, workload_from_key
from tilecc.targets import get_target


def _conv_call(data_shape, weight_shape, **attrs):
    x = relax.Var("x", R.Tensor(data_shape, "float32"))
    w = relax.Var("w", R.Tensor(weight_shape, "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x, w]):
        call = bb.normalize(relax.op.nn.conv2d(x, w, **attrs))
        bb.emit_func_output(call)
    return call


def test_workload_of_blocked_conv():
    call = _conv_call(
        (1, 12, 20, 20, 8), (3, 12, 3, 3, 8, 8), strides=[2, 2], padding=[1, 0, 1, 2],
        data_layout="NCHW8c", kernel_layout="OIHW8i8o", out_layout="NCHW8c",
    )  # fmt: skip
    wl = conv2d_workload(call)
    assert (wl.in_channels, wl.out_channels, wl.height, wl.kernel_h) == (96, 24, 20, 3)
    assert (wl.stride_h, wl.pad_top, wl.pad_left, wl.pad_bottom, wl.pad_right) == (2, 1, 0, 1, 2)
    assert wl.in_block == wl.out_block == 8


def test_workload_of_depthwise_blocked_conv():
    call = _conv_call(
        (1, 4, 9, 9, 4), (4, 1, 5, 5, 1, 4), groups=16, padding=[2, 2, 2, 2],
        data_layout="NCHW4c", kernel_layout="OIHW1i4o", out_layout="NCHW4c",
    )  # fmt: skip
    wl = conv2d_workload(call)
    assert wl.is_depthwise and wl.out_channels == 16 and wl.kernel_w == 5


def test_default_template_choice():
    def choose(**kw):
        wl = Conv2dWorkload(batch=1, height=20, width=20, **kw)
        return default_template(wl, templates_for(wl)).name

    assert choose(in_channels=64, out_channels=64, kernel_h=3, kernel_w=3) == "conv2d_winograd"
    assert choose(in_channels=96, out_channels=24, kernel_h=3, kernel_w=3) == "conv2d_winograd"
    assert choose(in_channels=16, out_channels=16, kernel_h=3, kernel_w=3) == "conv2d_direct"
    assert choose(in_channels=64, out_channels=64, kernel_h=1, kernel_w=1) == "conv2d_direct"
    dw = {"in_channels": 32, "out_channels": 32, "kernel_h": 3, "kernel_w": 3, "groups": 32}
    assert choose(**dw) == "depthwise"
    assert choose(in_channels=64, out_channels=64, kernel_h=3, kernel_w=3, stride_h=2,
                  stride_w=2) == "conv2d_direct"  # fmt: skip


def se_block_model():
    """conv 3x3 -> depthwise -> squeeze-excite (mean, 1x1 convs, hard-sigmoid, broadcast
    multiply) -> 2x2 stride-2 ConvTranspose (a 1x1 conv and a shuffle) -> MatMul: each
    kernel template and the SE broadcast."""
    rng = np.random.default_rng(0)

    def weight(name, shape):
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32), name)

    inits = [
        weight("w0", (32, 32, 3, 3)), weight("b0", (32,)), weight("wd", (32, 1, 3, 3)),
        weight("ws1", (8, 32, 1, 1)), weight("ws2", (32, 8, 1, 1)), weight("wt", (32, 4, 2, 2)),
        weight("wm", (20, 20)),
    ]  # fmt: skip
    nodes = [
        helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c0"], ["r0"]),
        helper.make_node("Conv", ["r0", "wd"], ["d0"], pads=[1, 1, 1, 1], group=32),
        helper.make_node("GlobalAveragePool", ["d0"], ["p0"]),
        helper.make_node("Conv", ["p0", "ws1"], ["s1"]),
        helper.make_node("Relu", ["s1"], ["s1r"]),
        helper.make_node("Conv", ["s1r", "ws2"], ["s2"]),
        helper.make_node("HardSigmoid", ["s2"], ["s2h"], alpha=0.2, beta=0.5),
        helper.make_node("Mul", ["d0", "s2h"], ["m0"]),
        helper.make_node("ConvTranspose", ["m0", "wt"], ["t0"], strides=[2, 2]),
        helper.make_node("MatMul", ["t0", "wm"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "se", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 32, 10, 10])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 20, 20])], inits,
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@pytest.fixture(scope="module")
def se_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("se") / "se.onnx"
    onnx.save(se_block_model(), path)
    return path


def test_small_model_on_templates_matches_ort(se_path):
    spec = get_target("x86")
    plan = template_plan(spec)
    imported = api.import_model(se_path)
    compiled = compile_imported(imported, spec, plan=plan)
    used = sorted({c.template.name for c in plan.choices.values()})
    assert used == ["conv2d_direct", "conv2d_winograd", "dense", "depthwise"]
    assert plan.fallbacks == []
    vm = relax.VirtualMachine(compiled, __import__("tvm").cpu())
    x = np.random.default_rng(1).standard_normal((1, 32, 10, 10)).astype(np.float32)
    got = vm["main"](__import__("tvm").runtime.tensor(x))
    got = (got[0] if isinstance(got, tuple | list) else got).numpy()
    want = ort_run(str(se_path), {"x": x})["y"]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_records_choose_the_configuration(se_path, tmp_path):
    spec = get_target("x86")
    imported = api.import_model(se_path)
    plan = template_plan(spec)
    compile_imported(imported, spec, plan=plan)
    choice = next(c for c in plan.choices.values() if c.template.name == "conv2d_direct")
    space = choice.template.space(choice.workload, spec.vector_lanes)
    other = next(cfg for cfg in space if cfg != choice.config)
    records = Records(tmp_path / "r.json")
    records.append(
        Record(
            template="conv2d_direct", workload=choice.workload.key(), target=spec.tuning_key,
            config=other, status="ok", seconds=1e-6, gflops=1.0,
        )
    )  # fmt: skip
    tuned = template_plan(spec, Records(tmp_path / "r.json"))
    compile_imported(imported, spec, plan=tuned)
    picked = tuned.choices[choice.workload.key()]
    assert picked.source == "records" and picked.config == other
    line = json.loads((tmp_path / "r.json").read_text().splitlines()[0])
    assert line["template"] == "conv2d_direct"


def _one_op_kernel(shape, op):
    """(TIR of the one fused kernel, its runner) of main(x) = op(x) on x86 with templates."""
    import tvm

    from tilecc.compiler.pipeline import legalize_passes

    spec = get_target("x86")
    bb = relax.BlockBuilder()
    x = relax.Var("x", R.Tensor(shape, "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit_output(op(bb, x))
        bb.emit_func_output(y)
    plan = template_plan(spec)
    with spec.tvm(2):
        lowered = tvm.transform.Sequential(legalize_passes(plan))(bb.get())
    (kernel,) = [f for _, f in lowered.functions_items() if isinstance(f, tvm.tirx.PrimFunc)]
    ex = tvm.compile(bb.get(), target=spec.tvm(2), relax_pipeline=relax_pipeline(spec.tvm(2), plan))
    vm = relax.VirtualMachine(ex, tvm.cpu())
    return kernel.script(), lambda data: vm["main"](tvm.runtime.tensor(data)).numpy()


def test_kernels_without_template_get_parallel_vectorized_loops():
    def op(bb, x):
        t = bb.emit(relax.op.permute_dims(x, [0, 2, 3, 1]))
        return relax.op.nn.relu(relax.op.add(t, relax.const(1.0)))

    text, run = _one_op_kernel((2, 32, 8, 16), op)
    assert "T.parallel" in text and "T.vectorized" in text
    assert text.count("T.sblock(") == 2  # root and one block: the chain was inlined
    data = np.random.default_rng(0).standard_normal((2, 32, 8, 16)).astype(np.float32)
    np.testing.assert_array_equal(run(data), np.maximum(data.transpose(0, 2, 3, 1) + 1, 0))


def test_reductions_run_rows_in_parallel_and_softmax_takes_each_exp_once():
    text, run = _one_op_kernel((40, 6625), lambda bb, x: relax.op.nn.softmax(x, axis=-1))
    # exp (compiler/fast_math.py) computed once, not again in the sum and the division
    assert text.count('T.sblock("T_fast_exp")') == 1 and "T.exp(" not in text
    assert text.count("T.parallel(") == 4  # max, exp, sum, division: one row per task
    data = np.random.default_rng(0).standard_normal((40, 6625)).astype(np.float32) * 4
    e = np.exp(data.astype(np.float64) - data.max(axis=-1, keepdims=True))
    # float32 sums of 6625 terms, serial per row: about 1e-5 relative
    np.testing.assert_allclose(run(data), e / e.sum(axis=-1, keepdims=True), rtol=1e-4, atol=1e-9)


def test_pool_over_a_blocked_layout_sums_channel_vectors():
    shape = (1, 3, 20, 24, 8)  # NCHW8c
    text, run = _one_op_kernel(shape, lambda bb, x: relax.op.mean(x, axis=[2, 3], keepdims=True))
    assert "in T.parallel(T.int64(3))" in text  # channel blocks in parallel
    # each block's sum reads a vector of 8 channels per pixel, in memory order
    assert "in T.grid(T.int64(20), T.int64(24), T.int64(8))" in text
    data = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    np.testing.assert_allclose(
        run(data), data.mean(axis=(2, 3), keepdims=True), rtol=1e-5, atol=1e-6
    )


def _padded_int8_conv(zero_point, weight: np.ndarray, width=(0, 0, 0, 0, 1, 1, 1, 1, 0, 0)):
    """uint8 NCHW8c data padded (by default: one row and column each side, with `zero_point`,
    as quantize-int8 pads), then a 3x3 int8 conv into int32."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 2, 9, 11, 8), "uint8"))
    with bb.function("main", [x]):
        with bb.dataflow():
            pad = bb.emit(relax.op.nn.pad(x, list(width), pad_value=float(zero_point)))
            conv = relax.op.nn.conv2d(
                pad, relax.const(weight), data_layout="NCHW8c", out_layout="NCHW8c",
                out_dtype="int32",
            )  # fmt: skip
            out = bb.emit_output(conv)
        bb.emit_func_output(out)
    return bb.get()


def _ops(mod) -> set[str]:
    ops = set()
    relax.analysis.post_order_visit(
        mod["main"].body,
        lambda e: ops.add(getattr(e.op, "name", "")) if isinstance(e, relax.Call) else None,
    )
    return ops


def test_a_zero_point_pad_folds_into_the_int8_template():
    rng = np.random.default_rng(0)
    weight = rng.integers(-127, 127, (16, 16, 3, 3), endpoint=True).astype("int8")
    mod = _padded_int8_conv(131, weight)
    spec = get_target("x86")
    plan = template_plan(spec)
    ops = _ops(fold_pads(plan)(mod))
    assert "relax.nn.pad" not in ops and "relax.nn.conv2d" not in ops
    (choice,) = plan.choices.values()
    assert choice.template.name == "conv2d_int8" and choice.workload.pad_value == 131
    assert (choice.workload.height, choice.workload.pad_top) == (9, 1)  # the pad taken in

    target = spec.tvm()
    exe = tvm.compile(mod, target=target, relax_pipeline=relax_pipeline(target, plan))
    data = rng.integers(0, 255, (1, 16, 9, 11), endpoint=True).astype("uint8")
    blocked = data.reshape(1, 2, 8, 9, 11).transpose(0, 1, 3, 4, 2)
    got = relax.VirtualMachine(exe, tvm.cpu())["main"](tvm.runtime.tensor(blocked)).numpy()
    padded = np.pad(data.astype(np.int64), ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=131)
    windows = sliding_window_view(padded, (3, 3), axis=(2, 3))  # [1, C, 9, 11, 3, 3]
    want = np.einsum("nchwij,ocij->nohw", windows, weight.astype(np.int64))
    np.testing.assert_array_equal(got, want.reshape(1, 2, 8, 9, 11).transpose(0, 1, 3, 4, 2))


@pytest.mark.parametrize(
    "value,width,in_channels",
    [
        (131.5, (0, 0, 0, 0, 1, 1, 1, 1, 0, 0), 16),  # not a uint8 value
        (300, (0, 0, 0, 0, 1, 1, 1, 1, 0, 0), 16),  # out of uint8's range
        (131, (0, 0, 0, 1, 1, 1, 1, 1, 0, 0), 24),  # pads channel blocks too
    ],
    ids=["fraction", "range", "channels"],
)
def test_other_pads_stay(value, width, in_channels):
    mod = _padded_int8_conv(value, np.zeros((16, in_channels, 3, 3), "int8"), width)
    ops = _ops(fold_pads(template_plan(get_target("x86")))(mod))
    assert {"relax.nn.pad", "relax.nn.conv2d"} <= ops


def test_workload_key_names_the_pad_value_only_when_not_zero():
    wl = Conv2dWorkload(1, 16, 8, 8, 16, 3, 3, 1, 1, 1, 1, 1, 1, in_block=8, dtype="uint8")
    assert "pad_value" not in wl.key()  # records filed before pad_value still match
    folded = dataclasses.replace(wl, pad_value=131)
    assert '"pad_value":131' in folded.key() and workload_from_key(folded.key()) == folded
