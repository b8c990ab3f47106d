"""Which ONNX backend node tests tilecc runs: the op set of mobile CNNs (MobileNet, ShuffleNet,
YOLO-style detectors), PP-OCR (det, cls, rec) and small transformers (BERT/ViT-style encoders).

A test is selected when its name is `test_<stem>…_cpu` for a stem below (followed by `_` or the end,
so `conv` selects `test_conv_with_strides_padding` but not `test_convinteger`), and no
OUT_OF_SCOPE pattern matches it. Each op's function-expanded variants (`…_expanded`) are part of
its tests and are selected with it. Ops outside this set (quantized, recurrent, attention fused
ops, signal processing, loss functions, string, sequence and optional types, random, training)
are not selected at all.
"""

from __future__ import annotations

import re

# group -> test-name stems (regexes), space-separated. Casts only between the float types models
# carry: float8, int4 and int2 are quantization formats.
_GROUPS = {
    "conv family": "conv basic_conv convtranspose",
    "pooling": "averagepool maxpool globalaveragepool globalmaxpool",
    "normalization": "batchnorm instancenorm layer_normalization",
    "activations": """relu leakyrelu prelu sigmoid hardsigmoid hardswish tanh clip elu selu gelu
        erf softplus softsign mish""",
    "elementwise math": """add sub mul div pow sqrt exp log abs neg reciprocal floor ceil round
        sign max min sum mean sin cos equal greater less not and(2d|3d|4d)? or(2d|3d|4d)? where
        cast_(FLOAT|FLOAT16|DOUBLE)_to_(FLOAT|FLOAT16|DOUBLE)
        castlike_(FLOAT|FLOAT16|DOUBLE)_to_(FLOAT|FLOAT16|DOUBLE)""",
    "matmul / gemm": "matmul gemm",
    "shape and indexing": """reshape flatten transpose squeeze unsqueeze concat split slice
        gather gathernd scatternd scatter_elements shape size expand tile constant constantofshape
        range identity dropout constant_pad edge_pad reflect_pad wrap_pad depthtospace
        spacetodepth argmax argmin top_k tril triu cumsum""",
    "resize": "resize",
    "reductions": "reduce",
    "softmax / logsoftmax": "softmax logsoftmax",
}
SELECTED_OPS: dict[str, list[str]] = {group: stems.split() for group, stems in _GROUPS.items()}

# Matched anywhere in a test name: whole categories tilecc does not target, even for a
# selected op (an inference compiler; tensors only).
OUT_OF_SCOPE: dict[str, str] = {
    "training": "training mode (BatchNormalization statistics, Dropout masks): inference only",
    "sequence": "sequence types (SplitToSequence, Identity on a sequence)",
    "_opt_": "optional types",
    "string": "string tensors",
}


def include_patterns() -> list[str]:
    """One regex per stem, for `BackendTest.include` (searched in `test_<name>_cpu`); a name
    with an OUT_OF_SCOPE part is refused by a lookahead."""
    refused = "|".join(OUT_OF_SCOPE)
    return [
        rf"^(?!.*(?:{refused}))test_(?:{stem})(?:_.*)?_cpu$"
        for stems in SELECTED_OPS.values()
        for stem in stems
    ]


def is_selected(test_name: str) -> bool:
    """`test_name` with its device suffix (`test_relu_cpu`)."""
    return any(re.search(pattern, test_name) for pattern in include_patterns())


def group_of(test_name: str) -> str | None:
    """The SELECTED_OPS group a selected test belongs to."""
    for group, stems in SELECTED_OPS.items():
        for stem in stems:
            if re.search(rf"^test_(?:{stem})(?:_.*)?_cpu$", test_name):
                return group
    return None


_TVM = "TVM 0.27 Relax ONNX importer"
# Selected tests tilecc fails, each with the reason found by running it. `BackendTest.exclude`
# skips them; the session summary lists them and counts them as failures.
EXPECTED_FAILURES: dict[str, str] = {
    # conv family, pooling
    r"^test_convtranspose_output_shape_cpu$": (
        f"{_TVM} ignores ConvTranspose's output_shape attribute (gives 1x2x9x7, not 1x2x10x8)"
    ),
    r"^test_maxpool_with_argmax_": f"{_TVM} does not produce MaxPool's second output, Indices",
    # normalization
    r"^test_layer_normalization_(?!.*_expanded).*_cpu$": (
        f"{_TVM} returns the constant 0 for LayerNormalization's Mean and InvStdDev outputs "
        "(only Y is computed; inference graphs do not use them, these cases check all three)"
    ),
    # activations
    r"^test_mish(_expanded)?_cpu$": (
        f"{_TVM} computes softplus as log(1 + exp(x)) in float32: near x = -10 one element of "
        "10000 is off by 1.3e-3 relative, over the case's rtol of 1e-3"
    ),
    # elementwise math
    r"^test_pow_types_(float32_u?int|u?int(32|64)_float32)": (
        f"{_TVM} refuses Pow with base and exponent of different dtypes"
    ),
    r"^test_pow_types_int(32|64)_int(32|64)_cpu$": "TVM 0.27 R.power only applies to float types",
    # shape and indexing
    r"^test_dropout_default_mask(_ratio)?_cpu$": (
        "TVM 0.27 relax.nn.dropout returns Dropout's mask output as float32 ones, not bool"
    ),
    r"^test_range_.*_expanded_cpu$": (
        f"Range's function expansion uses Loop, which the {_TVM} does not convert"
    ),
    r"^test_spacetodepth_crd_mode_example_cpu$": (
        f"{_TVM} ignores SpaceToDepth's mode attribute (opset 28) and always uses DCR order"
    ),
    r"^test_split_zero_size_splits_": (
        "TVM 0.27 split refuses zero-size parts (split_indices must be sorted)"
    ),
    r"^test_top_k_uint64_cpu$": "TVM 0.27 topk: unsupported input dtype uint64",
    # resize
    r"^test_resize_downsample_scales_(linear|cubic(_align_corners|_A_n0p5_exclude_outside)?)_cpu": (
        f"{_TVM} turns scales into output sizes and resamples by the size ratio; ONNX maps "
        "coordinates with the given scale (0.6, 0.8 here; tilecc matches ONNX's reference run "
        "with those sizes)"
    ),
    r"^test_resize_downsample_scales_linear_align_corners_cpu$": (
        "TVM 0.27 resize2d with align_corners and an output size of 1 divides by zero"
    ),
    r"^test_resize_.*_antialias_cpu$": f"{_TVM} ignores Resize's antialias attribute",
    r"^test_resize_.*(_axes_[23]_[23]|_not_larger|_not_smaller)_cpu$": (
        f"{_TVM} ignores Resize's axes attribute (and keep_aspect_ratio_policy), reading "
        "scales/sizes as if they covered every axis"
    ),
    r"^test_resize_.*_half_pixel_symmetric_cpu$": (
        "TVM 0.27 topi resize: unsupported coordinate_transformation_mode half_pixel_symmetric"
    ),
    # reductions
    r"^test_reduce_(max|min)_(bool_inputs|empty_set_bool)_cpu$": (
        "TVM 0.27 max/min reductions have no initial value for bool"
    ),
    r"^test_reduce_(max|min)_empty_set_cpu$": (
        "TVM 0.27 max/min over a zero-size axis returns uninitialized memory, not -inf/+inf"
    ),
}
