"""Graph passes, one per file; importing this package registers them all (see registry.py)."""

from . import (  # noqa: F401  (imported to register)
    cancel_inverse_pairs,
    conv_transpose_to_conv1x1,
    convert_layout_nchwc,
    cse,
    dce,
    decompose_for_inference,
    expand_clip,
    fake_quantize,
    fold_affine_chains,
    fold_batchnorm,
    fold_constant,
    fuse_conv_act,
    multiply_by_reciprocal,
    pad_channels,
    quantize_int8,
    scalarize_constants,
    simplify_reshape,
    sink_shuffles,
)
from .registry import PassInfo, PassOption, all_passes, get_pass_info, register_pass

__all__ = ["PassInfo", "PassOption", "all_passes", "get_pass_info", "register_pass"]
