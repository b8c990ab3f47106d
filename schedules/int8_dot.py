"""The int8 dot-product instruction an int8 template tensorizes its innermost loops into.

Every int8 template reduces input channels four at a time: `lanes` int32 accumulators
(output channels) each gain the dot product of the same 4 data bytes with their own 4 weight
bytes, C[i] += sum_k A[k] * B[i, k] (A: 4 data bytes, B: [lanes, 4] int8, C: [lanes] int32).
An instruction or two does that on each ISA:

    x86 AVX2      vpmaddubsw (u8 x s8, pairs summed to s16) + vpmaddwd by 1 (to s32): 8 lanes
    x86 AVX-512   the same on zmm: 16 lanes
    x86 VNNI      vpdpbusd (one instruction, s32 sums): 16 lanes on zmm (AVX512-VNNI), 8 on
                  ymm (AVX512-VNNI with VL, or AVX-VNNI)
    aarch64       sdot (s8 x s8 to s32, +dotprod): 4 lanes

A vector may also span `pixels` output pixels (x86: 2 pixels x 8 channels on zmm, for NCHW8c
outputs): lanes [p * channels, (p + 1) * channels) take pixel p's 4 data bytes, so each weight
vector holds the channels' weights once per pixel. A[p, k] is then a [pixels, 4] region whose
rows lie one input block apart, and the data operand is built from one broadcast per pixel.

vpmaddubsw saturates its s16 pair sums (255 * 127 * 2 overflows), so where a template could
tensorize into it, weights are quantized to [-63, 63] (`weight_max`), the trade oneDNN makes on
AVX2: then no sum saturates and the kernel equals its integer reference bit for bit. VNNI and
sdot sum in s32 and take [-127, 127]; a template with no instruction for its lanes keeps plain
int32 loops, exact at any weight. The intrinsics are written here rather than imported from
tvm.s_tir.tensor_intrin, whose package import also builds every CUDA intrinsic (about a minute).
"""

from __future__ import annotations

import tvm
from tvm.s_tir import TensorIntrin
from tvm.script import tirx as T


def _desc(pixels: int, channels: int, data_dtype: str):
    if pixels == 1:  # no pixel loop: a template's unit pixel loop is simplified away
        return _desc_one_pixel(channels, data_dtype)

    @T.prim_func(s_tir=True)
    def desc(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (pixels, 4), data_dtype, offset_factor=1, strides=[T.int32(), 1])
        B = T.match_buffer(b, (pixels, channels, 4), "int8", offset_factor=1)
        C = T.match_buffer(c, (pixels, channels), "int32", offset_factor=1)
        with T.sblock("root"):
            T.reads(C[0:pixels, 0:channels], A[0:pixels, 0:4], B[0:pixels, 0:channels, 0:4])
            T.writes(C[0:pixels, 0:channels])
            for p, i, k in T.grid(pixels, channels, 4):
                with T.sblock("update"):
                    vp, vi, vk = T.axis.remap("SSR", [p, i, k])
                    C[vp, vi] = C[vp, vi] + T.cast(A[vp, vk], "int32") * T.cast(
                        B[vp, vi, vk], "int32"
                    )

    return desc


def _desc_one_pixel(lanes: int, data_dtype: str):
    @T.prim_func(s_tir=True)
    def desc(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (4,), data_dtype, offset_factor=1)
        B = T.match_buffer(b, (lanes, 4), "int8", offset_factor=1)
        C = T.match_buffer(c, (lanes,), "int32", offset_factor=1)
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:4], B[0:lanes, 0:4])
            T.writes(C[0:lanes])
            for i, k in T.grid(lanes, 4):
                with T.sblock("update"):
                    vi, vk = T.axis.remap("SR", [i, k])
                    C[vi] = C[vi] + T.cast(A[vk], "int32") * T.cast(B[vi, vk], "int32")

    return desc


def _impl(pixels: int, channels: int, data_dtype: str, combine):
    """`combine(acc, data, weights)`: the new int32 accumulators from the old ones, each pixel's
    4 data bytes broadcast to its lanes (as 4 * lanes bytes) and the [lanes, 4] weight bytes."""
    lanes = pixels * channels

    def word(A, p):
        index = [0] if pixels == 1 else [p, 0]
        return T.reinterpret(A.vload(index, f"{data_dtype}x4"), dtype="int32")

    def broadcast_data(A):
        words = [T.broadcast(word(A, p), channels) for p in range(pixels)]
        width = channels
        while len(words) > 1:  # concatenate, pairwise
            width *= 2
            pairs = zip(words[::2], words[1::2], strict=True)
            words = [T.vectorcombine(f"int32x{width}", w, x) for w, x in pairs]
        return T.reinterpret(words[0], dtype=f"{data_dtype}x{4 * lanes}")

    if pixels == 1:

        @T.prim_func(s_tir=True)
        def impl_one_pixel(a: T.handle, b: T.handle, c: T.handle) -> None:
            A = T.match_buffer(a, (4,), data_dtype, offset_factor=1)
            B = T.match_buffer(b, (lanes, 4), "int8", offset_factor=1)
            C = T.match_buffer(c, (lanes,), "int32", offset_factor=1)
            with T.sblock("root"):
                T.reads(C[0:lanes], A[0:4], B[0:lanes, 0:4])
                T.writes(C[0:lanes])
                C[T.ramp(T.int32(0), 1, lanes)] = combine(
                    C.vload([0], f"int32x{lanes}"),
                    broadcast_data(A),
                    B.vload([0, 0], f"int8x{4 * lanes}"),
                )

        return impl_one_pixel

    @T.prim_func(s_tir=True)
    def impl(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (pixels, 4), data_dtype, offset_factor=1, strides=[T.int32(), 1])
        B = T.match_buffer(b, (pixels, channels, 4), "int8", offset_factor=1)
        C = T.match_buffer(c, (pixels, channels), "int32", offset_factor=1)
        with T.sblock("root"):
            T.reads(C[0:pixels, 0:channels], A[0:pixels, 0:4], B[0:pixels, 0:channels, 0:4])
            T.writes(C[0:pixels, 0:channels])
            C[0, T.ramp(T.int32(0), 1, lanes)] = combine(
                C.vload([0, 0], f"int32x{lanes}"),
                broadcast_data(A),
                B.vload([0, 0, 0], f"int8x{4 * lanes}"),
            )

    return impl


def _llvm(name: str, dtype: str, *args):
    return T.call_llvm_pure_intrin(T.llvm_lookup_intrinsic_id(name), *args, dtype=dtype)


def _pmadd(bits: int, lanes: int):
    """vpmaddubsw then vpmaddwd against ones (AVX2: bits 256, AVX-512: 512)."""
    suffix = "avx2" if bits == 256 else "avx512"
    ubsw, wd = ("pmadd.ub.sw", "pmadd.wd") if bits == 256 else ("pmaddubs.w.512", "pmaddw.d.512")

    def combine(acc, data, weights):
        pairs = _llvm(f"llvm.x86.{suffix}.{ubsw}", f"int16x{2 * lanes}", data, weights)
        ones = T.broadcast(T.int16(1), 2 * lanes)
        return acc + _llvm(f"llvm.x86.{suffix}.{wd}", f"int32x{lanes}", pairs, ones)

    return combine


# LLVM 21 retyped vpdpbusd's byte operands from <16 x i32> to <64 x i8>
_VNNI_TAKES_BYTES = tvm.target.codegen.llvm_version_major() >= 21


def _vnni(lanes: int):
    """vpdpbusd on zmm (16 lanes) or ymm (8: AVX512-VL, or AVX-VNNI's VEX form)."""

    def combine(acc, data, weights):
        if not _VNNI_TAKES_BYTES:
            data = T.reinterpret(data, dtype=f"int32x{lanes}")
            weights = T.reinterpret(weights, dtype=f"int32x{lanes}")
        name = f"llvm.x86.avx512.vpdpbusd.{32 * lanes}"
        return _llvm(name, f"int32x{lanes}", acc, data, weights)

    return combine


def _sdot(acc, data, weights):
    return _llvm("llvm.aarch64.neon.sdot.v4i32.v16i8", "int32x4", acc, data, weights)


# name -> (data dtype, lanes, CPU features it needs, combine); later entries win
_INTRINSICS = {
    "tilecc_dot_8x4_u8i8i32_avx2": ("uint8", 8, {"avx2"}, _pmadd(256, 8)),
    "tilecc_dot_16x4_u8i8i32_avx512": ("uint8", 16, {"avx512bw"}, _pmadd(512, 16)),
    "tilecc_dot_8x4_u8i8i32_avxvnni": ("uint8", 8, {"avxvnni"}, _vnni(8)),
    "tilecc_dot_8x4_u8i8i32_vnni": ("uint8", 8, {"avx512vnni", "avx512vl"}, _vnni(8)),
    "tilecc_dot_16x4_u8i8i32_vnni": ("uint8", 16, {"avx512vnni"}, _vnni(16)),
    "tilecc_dot_4x4_i8i8i32_sdot": ("int8", 4, {"dotprod"}, _sdot),
}
_SATURATING = {"tilecc_dot_8x4_u8i8i32_avx2", "tilecc_dot_16x4_u8i8i32_avx512"}
PIXELS = (1, 2, 4)  # pixels per vector an instruction may span (lanes / pixels channels each)


def _registered_name(name: str, pixels: int) -> str:
    return name if pixels == 1 else name.replace("tilecc_dot_", f"tilecc_dot_{pixels}px_")


for _name, (_dtype, _lanes, _, _combine) in _INTRINSICS.items():
    for _pixels in PIXELS:
        if _lanes % _pixels == 0 and _lanes // _pixels >= 4:
            TensorIntrin.register(
                _registered_name(_name, _pixels),
                _desc(_pixels, _lanes // _pixels, _dtype),
                _impl(_pixels, _lanes // _pixels, _dtype, _combine),
            )


def target_features(target) -> frozenset[str]:
    """LLVM CPU features of `target`: its mattr, and what its mcpu has (avx2, dotprod, ...)."""
    if target is None:
        return frozenset()
    features = {str(f).lstrip("+") for f in (target.attrs.get("mattr") or [])}
    try:
        features |= {str(k) for k in tvm.target.codegen.llvm_get_cpu_features(target)}
    except Exception:  # noqa: BLE001 - an LLVM that cannot say: mattr alone
        pass
    return frozenset(features)


# CPUs (LLVM -mcpu names) that issue a 512-bit vector instruction as two 256-bit halves (AMD
# Zen 4): a zmm vpdpbusd does no more multiply-adds per cycle there than a ymm one.
_HALF_RATE_512 = frozenset({"znver4"})


def full_rate_512(target) -> bool:
    """Whether `target`'s CPU runs 512-bit instructions at full width (True when there is no
    target or it names no CPU known to split them)."""
    if target is None:
        return True
    return str(target.attrs.get("mcpu") or "") not in _HALF_RATE_512


def intrinsic(data_dtype: str, lanes: int, features, pixels: int = 1) -> str | None:
    """The tensor intrinsic for `lanes` int32 accumulators (over `pixels` output pixels) over
    `data_dtype` data on a CPU with `features` (LLVM feature names: avx2, avx512bw, avx512vnni,
    avxvnni, dotprod), else None (the template's loops stay plain). VNNI comes before
    pmaddubsw where both apply."""
    fits = [
        name
        for name, (dtype, width, needs, _) in _INTRINSICS.items()
        if dtype == data_dtype and width == lanes and needs <= set(features)
    ]
    if not fits or lanes % pixels or lanes // pixels < 4:
        return None
    return _registered_name(fits[-1], pixels)


def weight_max(data_dtype: str, features) -> int:
    """The largest |weight| every dot product a template may pick on a CPU with `features`
    takes without saturating: 63 where some lane count would tensorize into vpmaddubsw."""
    picked = {intrinsic(data_dtype, lanes, features) for lanes in (4, 8, 16)}
    return 63 if picked & _SATURATING else 127
