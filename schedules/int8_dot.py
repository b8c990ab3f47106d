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


def _desc(lanes: int, data_dtype: str):
    @T.prim_func(s_tir=True)
    def desc(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (4,), data_dtype, offset_factor=1)
        B = T.match_buffer(b, (lanes, 4), "int8", offset_factor=1)
        C = T.match_buffer(c, (lanes,), "int32", offset_factor=1)
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:4], B[0:lanes, 0:4])
            T.writes(C[0:lanes])
            for i in T.serial(0, lanes):
                for k in T.serial(0, 4):
                    with T.sblock("update"):
                        vi, vk = T.axis.remap("SR", [i, k])
                        C[vi] = C[vi] + T.cast(A[vk], "int32") * T.cast(B[vi, vk], "int32")

    return desc


def _impl(lanes: int, data_dtype: str, combine):
    """`combine(acc, data, weights)`: the new int32 accumulators from the old ones, the 4 data
    bytes broadcast to every lane (as 4 * lanes bytes) and the [lanes, 4] weight bytes."""

    @T.prim_func(s_tir=True)
    def impl(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (4,), data_dtype, offset_factor=1)
        B = T.match_buffer(b, (lanes, 4), "int8", offset_factor=1)
        C = T.match_buffer(c, (lanes,), "int32", offset_factor=1)
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:4], B[0:lanes, 0:4])
            T.writes(C[0:lanes])
            word = T.reinterpret(A.vload([0], f"{data_dtype}x4"), dtype="int32")
            data = T.reinterpret(T.broadcast(word, lanes), dtype=f"{data_dtype}x{4 * lanes}")
            C[T.ramp(T.int32(0), 1, lanes)] = combine(
                C.vload([0], f"int32x{lanes}"), data, B.vload([0, 0], f"int8x{4 * lanes}")
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
for _name, (_dtype, _lanes, _, _combine) in _INTRINSICS.items():
    TensorIntrin.register(_name, _desc(_lanes, _dtype), _impl(_lanes, _dtype, _combine))


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


def intrinsic(data_dtype: str, lanes: int, features) -> str | None:
    """The tensor intrinsic for `lanes` int32 accumulators over `data_dtype` data on a CPU with
    `features` (LLVM feature names: avx2, avx512bw, avx512vnni, avxvnni, dotprod), else None
    (the template's loops stay plain). VNNI comes before pmaddubsw where both apply."""
    fits = [
        name
        for name, (dtype, width, needs, _) in _INTRINSICS.items()
        if dtype == data_dtype and width == lanes and needs <= set(features)
    ]
    return fits[-1] if fits else None


def weight_max(data_dtype: str, features) -> int:
    """The largest |weight| every dot product a template may pick on a CPU with `features`
    takes without saturating: 63 where some lane count would tensorize into vpmaddubsw."""
    picked = {intrinsic(data_dtype, lanes, features) for lanes in (4, 8, 16)}
    return 63 if picked & _SATURATING else 127
