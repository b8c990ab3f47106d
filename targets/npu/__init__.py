"""npu: an Ascend-like NPU core (simulated in C) through BYOC, with a host CPU for the rest.

The one registration point of the target: its pattern table (patterns.py), its codegen
(codegen.py, emitting C against the simulator in runtime/), and the host it runs beside.
`tilecc compile --target npu` builds for this x86 host; `--host arm-cpu` for an aarch64 one.
"""

from __future__ import annotations

import dataclasses
import json

from ..accelerator import Accelerator, CSource, accelerator_target
from ..x86 import TARGET as X86
from .codegen import generate
from .config import NpuConfig
from .patterns import ANCHORS, NAME, pattern_table, support

# The NPU does its own layout (5HD / fractal), so the graph stays NCHW: no NCHW[x]c pass.
GRAPH_PIPELINE = (
    "fold-constant,fold-batchnorm,simplify-reshape,conv-transpose-to-conv1x1,fold-constant,expand-clip,"
    "scalarize-constants,cse,dce"
)


def read_config(path) -> dict[str, str]:
    return {"config": json.dumps(dataclasses.asdict(NpuConfig.from_file(path)))}


def codegen(functions, options) -> CSource:
    config = NpuConfig(**json.loads(options["config"])) if "config" in options else NpuConfig()
    return generate(functions, config.validate())


NPU = Accelerator(
    name=NAME,
    patterns=pattern_table,
    codegen=codegen,
    why_not=support,
    supports=(
        "conv2d [+bias] [+relu/relu6] (cube unit, fp16 x fp16 -> fp32)",
        "matmul with constant weights [+bias] [+relu/relu6] (cube unit)",
        "depthwise conv2d, max / average pooling, global average pooling (vector unit)",
        "softmax over the last axis of 2-D / 3-D tensors (vector unit)",
        "add, subtract, multiply, divide, maximum, minimum, relu, sigmoid, tanh, exp",
    ),
    compile_options=("-O2", "-ffp-contract=off", "-fvisibility=hidden"),
    read_config=read_config,
    anchors=ANCHORS,
)

TARGET = accelerator_target(
    "npu",
    "Ascend-like NPU core (simulated, fp16) + host CPU for the rest (BYOC)",
    NPU,
    host=X86,
    graph_pipeline=GRAPH_PIPELINE,
)

__all__ = ["NPU", "TARGET", "NpuConfig"]
