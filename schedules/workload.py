"""Workloads: the shape facts a template is compiled and tuned for, with a canonical key.

The key (op, shapes, layout blocks, dtype) is what tuning records are filed under: the same
conv layer in two models shares its records. `dtype` is the data's: float32, or uint8 / int8 for
int8 kernels, whose weights are int8 and outputs int32 (`weight_dtype`, `out_dtype`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass


class _Dtypes:
    """The weight and output dtypes that follow from a workload's data `dtype`."""

    dtype: str

    @property
    def weight_dtype(self) -> str:
        """fp32 weights for fp32 data; int8 weights for 8-bit (uint8 / int8) data."""
        return "float32" if self.dtype == "float32" else "int8"

    @property
    def out_dtype(self) -> str:
        """fp32 out of fp32; int32 accumulators out of 8-bit data."""
        return "float32" if self.dtype == "float32" else "int32"


@dataclass(frozen=True)
class Conv2dWorkload(_Dtypes):
    """conv2d over data in NCHW[in_block]c, weights OIHW, output NCHW[out_block]c.

    in_block / out_block are the graph's layouts (1 = plain NCHW); a template may compute in
    another block internally and convert in its own stages.
    """

    batch: int
    in_channels: int
    height: int
    width: int
    out_channels: int
    kernel_h: int
    kernel_w: int
    stride_h: int = 1
    stride_w: int = 1
    pad_top: int = 0
    pad_left: int = 0
    pad_bottom: int = 0
    pad_right: int = 0
    dilation_h: int = 1
    dilation_w: int = 1
    groups: int = 1
    in_block: int = 1
    out_block: int = 1
    dtype: str = "float32"
    # what the padding holds: 0, or for 8-bit data the zero point (the real value 0.0), when
    # the template takes in the graph's pad (compiler/templates.py: fold_zero_point_pad)
    pad_value: int = 0

    op = "conv2d"

    @property
    def out_height(self) -> int:
        span = (self.kernel_h - 1) * self.dilation_h + 1
        return (self.height + self.pad_top + self.pad_bottom - span) // self.stride_h + 1

    @property
    def out_width(self) -> int:
        span = (self.kernel_w - 1) * self.dilation_w + 1
        return (self.width + self.pad_left + self.pad_right - span) // self.stride_w + 1

    @property
    def is_depthwise(self) -> bool:
        return self.groups > 1 and self.groups == self.in_channels == self.out_channels

    def data_shape(self) -> tuple[int, ...]:
        return _blocked(self.batch, self.in_channels, self.height, self.width, self.in_block)

    def weight_shape(self) -> tuple[int, ...]:
        return (self.out_channels, self.in_channels // self.groups, self.kernel_h, self.kernel_w)

    def out_shape(self) -> tuple[int, ...]:
        return _blocked(
            self.batch, self.out_channels, self.out_height, self.out_width, self.out_block
        )

    def flops(self) -> int:
        per_output = 2 * (self.in_channels // self.groups) * self.kernel_h * self.kernel_w
        return per_output * self.batch * self.out_channels * self.out_height * self.out_width

    def key(self) -> str:
        return _key(self)

    def describe(self) -> str:
        """Short human name: `conv2d 1x96x160x160 -> 24 3x3 s1` (+ `g96` when grouped)."""
        text = (
            f"{self.op} {self.batch}x{self.in_channels}x{self.height}x{self.width} -> "
            f"{self.out_channels} {self.kernel_h}x{self.kernel_w} s{self.stride_h}"
        )
        return text + (f" g{self.groups}" if self.groups > 1 else "")


@dataclass(frozen=True)
class DenseWorkload(_Dtypes):
    """out[m, n] = sum_k data[m, k] * weight[n, k] (ONNX MatMul / Gemm with constant weight)."""

    m: int
    n: int
    k: int
    dtype: str = "float32"

    op = "dense"

    def data_shape(self) -> tuple[int, ...]:
        return (self.m, self.k)

    def weight_shape(self) -> tuple[int, ...]:
        return (self.n, self.k)

    def out_shape(self) -> tuple[int, ...]:
        return (self.m, self.n)

    def flops(self) -> int:
        return 2 * self.m * self.n * self.k

    def key(self) -> str:
        return _key(self)

    def describe(self) -> str:
        return f"dense {self.m}x{self.k} -> {self.n}"


WORKLOADS = {cls.op: cls for cls in (Conv2dWorkload, DenseWorkload)}


def workload_from_key(text: str):
    fields = json.loads(text)
    return WORKLOADS[fields.pop("op")](**fields)


def _blocked(n, c, h, w, block):
    return (n, c, h, w) if block == 1 else (n, c // block, h, w, block)


def _key(workload) -> str:
    fields = asdict(workload)
    if not fields.get("pad_value", 1):  # zero padding, as before pad_value: keys unchanged
        del fields["pad_value"]
    return json.dumps({"op": workload.op, **fields}, sort_keys=True, separators=(",", ":"))
