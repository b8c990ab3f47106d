"""Partitioning for the NPU on IR text: what must go to the NPU, what must stay on the CPU, and
the reason the partition report gives for it."""

import numpy as np
import tvm
from tvm import relax
from tvm.script import ir as I
from tvm.script import relax as R

from tilecc.targets.accelerator import partition
from tilecc.targets.npu import NPU

RNG = np.random.default_rng(0)


def bind(mod, **weights):
    """Bind `weights` (name -> shape) as constants, as tilecc binds ONNX initializers."""
    params = {
        k: tvm.runtime.tensor(RNG.standard_normal(v).astype("float32")) for k, v in weights.items()
    }
    return relax.transform.BindParams("main", params)(mod)


def offload(mod):
    mod, report = partition(mod, NPU)
    relax.analysis.well_formed(mod)
    return mod, report


def subgraph_ops(report) -> dict[str, int]:
    total: dict[str, int] = {}
    for ops in report.subgraphs.values():
        for op, n in ops.items():
            total[op] = total.get(op, 0) + n
    return total


def test_conv_bias_relu_becomes_one_subgraph_named_and_marked_for_the_codegen():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 3, 16, 16), "float32"), w: R.Tensor((8, 3, 3, 3), "float32"),
                 b: R.Tensor((1, 8, 1, 1), "float32")):  # fmt: skip
            R.func_attr({"num_input": 1})
            with R.dataflow():
                y = R.nn.conv2d(x, w, padding=[1, 1, 1, 1])
                z = R.add(y, b)
                out = R.nn.relu(z)
                R.output(out)
            return out

    mod, report = offload(bind(Before, w=(8, 3, 3, 3), b=(1, 8, 1, 1)))
    assert list(report.subgraphs) == ["tilecc_npu_0"]
    assert subgraph_ops(report) == {"nn.conv2d": 1, "add": 1, "nn.relu": 1}
    assert report.host_ops == {}
    func = mod["tilecc_npu_0"]
    assert func.attrs["Codegen"] == "tilecc_npu"
    assert func.attrs["global_symbol"] == "tilecc_npu_0"
    main_calls = [b.value.op for b in mod["main"].body.blocks[0].bindings]
    assert [g.name_hint for g in main_calls] == ["tilecc_npu_0"]


def test_grouped_and_runtime_weight_convs_stay_on_the_cpu_with_reasons():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 8, 8, 8), "float32"), k: R.Tensor((8, 8, 1, 1), "float32"),
                 w: R.Tensor((8, 4, 3, 3), "float32")):  # fmt: skip
            R.func_attr({"num_input": 2})
            with R.dataflow():
                grouped = R.nn.conv2d(x, w, padding=[1, 1, 1, 1], groups=2)
                runtime = R.nn.conv2d(grouped, k)
                R.output(runtime)
            return runtime

    _, report = offload(bind(Before, w=(8, 4, 3, 3)))
    assert report.subgraphs == {}
    reasons = {op: list(r) for op, r in report.host_ops.items()}
    assert reasons == {
        "nn.conv2d": [
            "grouped conv (groups=2); the NPU runs groups=1 and depthwise",
            "weights computed at run time",
        ]
    }
    assert report.summary().startswith("notice: no op of this model runs on tilecc_npu")


def test_depthwise_pooling_mean_softmax_go_to_the_npu():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 16, 12, 12), "float32"), w: R.Tensor((16, 1, 3, 3), "float32"),
                 fc: R.Tensor((16, 10), "float32")):  # fmt: skip
            R.func_attr({"num_input": 1})
            with R.dataflow():
                d = R.nn.conv2d(x, w, padding=[1, 1, 1, 1], groups=16)
                p = R.nn.max_pool2d(d, pool_size=[2, 2], strides=[2, 2])
                g = R.mean(p, axis=[2, 3], keepdims=True)
                f = R.reshape(g, (1, 16))
                y = R.matmul(f, fc)
                s = R.nn.softmax(y, axis=-1)
                R.output(s)
            return s

    _, report = offload(bind(Before, w=(16, 1, 3, 3), fc=(16, 10)))
    assert subgraph_ops(report) == {
        "nn.conv2d": 1, "nn.max_pool2d": 1, "mean": 1, "matmul": 1, "nn.softmax": 1
    }  # fmt: skip
    assert {op: list(r) for op, r in report.host_ops.items()} == {
        "reshape": ["not in the NPU's pattern table"]
    }
    assert len(report.subgraphs) == 2  # the reshape on the CPU splits them


def test_broadcasts_the_vector_unit_cannot_read_stay_on_the_cpu():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 8, 6, 6), "float32"), se: R.Tensor((1, 8, 1, 1), "float32"),
                 row: R.Tensor((1, 1, 6, 6), "float32"),
                 w: R.Tensor((8, 8, 1, 1), "float32")):  # fmt: skip
            R.func_attr({"num_input": 3})
            with R.dataflow():
                y = R.nn.conv2d(x, w)
                a = R.multiply(y, se)  # N x C x 1 x 1 tensor: the squeeze-excite broadcast
                b = R.add(a, row)  # broadcast along C: not readable per tile
                c = R.mean(b, axis=[1], keepdims=True)  # not over H, W
                R.output(c)
            return c

    _, report = offload(bind(Before, w=(8, 8, 1, 1)))
    assert subgraph_ops(report) == {"nn.conv2d": 1, "multiply": 1}
    reasons = {op: list(r) for op, r in report.host_ops.items()}
    assert reasons == {
        "add": ["broadcast of [1, 8, 6, 6] and [1, 1, 6, 6] to [1, 8, 6, 6]"],
        "mean": ["mean other than over H and W with keepdims (global average pooling)"],
    }


def test_elementwise_ops_no_npu_op_feeds_stay_on_the_cpu():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 8, 6, 6), "float32"), w: R.Tensor((8, 8, 1, 1), "float32")):
            R.func_attr({"num_input": 1})
            with R.dataflow():
                a = R.sigmoid(x)  # alone: converting to and from 5HD costs more than it saves
                y = R.nn.conv2d(a, w)
                b = R.nn.relu(y)  # fed by the conv: offloaded with it
                R.output(b)
            return b

    _, report = offload(bind(Before, w=(8, 8, 1, 1)))
    assert subgraph_ops(report) == {"nn.conv2d": 1, "nn.relu": 1}
    assert {op: list(r) for op, r in report.host_ops.items()} == {
        "sigmoid": ["no offloaded op feeds it (alone, the layout conversions would cost more)"]
    }


def test_non_float32_and_4d_softmax_stay_on_the_cpu():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 4, 5, 5), "float16"), y: R.Tensor((1, 4, 5, 5), "float32")):
            R.func_attr({"num_input": 2})
            with R.dataflow():
                a = R.add(x, x)
                s = R.nn.softmax(y, axis=-1)
                R.output(a, s)
            return (a, s)

    _, report = offload(Before)
    assert report.subgraphs == {}
    reasons = {op: list(r) for op, r in report.host_ops.items()}
    assert reasons == {
        "add": ["dtype float16 (the NPU takes float32 graphs, computed in fp16)"],
        "nn.softmax": ["softmax other than over the last axis of a 2-D / 3-D tensor"],
    }


def test_an_unsupported_op_between_npu_ops_splits_the_subgraph():
    @I.ir_module
    class Before:
        @R.function
        def main(x: R.Tensor((1, 8, 8, 8), "float32"), w: R.Tensor((8, 8, 1, 1), "float32"),
                 k: R.Tensor((8, 8, 1, 1), "float32")):  # fmt: skip
            R.func_attr({"num_input": 1})
            with R.dataflow():
                a = R.nn.conv2d(x, w)
                r = R.image.resize2d(a, size=(16, 16), layout="NCHW", method="nearest_neighbor")
                c = R.nn.conv2d(r, k)
                b = R.sigmoid(c)
                R.output(b)
            return b

    mod, report = offload(bind(Before, w=(8, 8, 1, 1), k=(8, 8, 1, 1)))
    assert list(report.subgraphs) == ["tilecc_npu_0", "tilecc_npu_1"]
    assert report.subgraphs["tilecc_npu_0"] == {"nn.conv2d": 1}
    assert report.subgraphs["tilecc_npu_1"] == {"nn.conv2d": 1, "sigmoid": 1}
    assert list(report.host_ops) == ["image.resize2d"]
    assert "3 of 4 ops in 2 subgraph(s); 1 on the host CPU" in report.summary()
