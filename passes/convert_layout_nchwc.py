"""convert-layout-nchwc: blocked NCHW[x]c layout for convolutions and the ops between them."""

from __future__ import annotations

import tvm
from tvm import relax
from tvm.sym import Analyzer

from tilecc.compiler.errors import PassOptionError

from .conv_transpose_to_conv1x1 import SHUFFLE_AXES
from .registry import register_pass

_CONV = "relax.nn.conv2d"
_CONV_TRANSPOSE = "relax.nn.conv2d_transpose"
_LAYOUT = "relax.layout_transform"
# A smaller block converts more convs but fills less of each vector: take the largest block
# that still converts this share of the multiply-adds the best block would.
_KEEP = 0.9


def _convs(func: relax.Function) -> list[relax.Call]:
    found = []

    def visit(expr):
        if isinstance(expr, relax.Call) and getattr(expr.op, "name", "") == _CONV:
            found.append(expr)

    relax.analysis.post_order_visit(func.body, visit)
    return found


def _channels(call) -> tuple[int, int, int] | None:
    """(in channels, out channels, groups) of an NCHW/OIHW conv2d with static shapes."""
    attrs = call.attrs
    if (attrs.data_layout, attrs.kernel_layout, attrs.out_layout) != ("NCHW", "OIHW", "NCHW"):
        return None
    data, weight = call.args[0].ty, call.args[1].ty
    if data.shape is None or weight.shape is None:
        return None
    try:
        return int(data.shape[1]), int(weight.shape[0]), int(attrs.groups)
    except TypeError:  # a symbolic channel count
        return None


def _blockable(call, block: int) -> bool:
    shape = _channels(call)
    if shape is None:
        return False
    cin, cout, groups = shape
    depthwise = groups == cin == cout
    return (groups == 1 or depthwise) and cin % block == 0 and cout % block == 0


def _blocked_out(call, block: int) -> bool:
    """A plain conv whose output channels the block divides though its inputs are not (3 image
    channels): it reads NCHW and writes NCHW[b]c itself, without a layout transform after it."""
    shape = _channels(call)
    return shape is not None and shape[2] == 1 and shape[1] % block == 0


def _macs(call) -> int:
    """Multiply-adds of a conv; 0 when a dim is symbolic (it then weighs nothing in the choice)."""
    out, weight = call.ty.shape, call.args[1].ty.shape
    try:
        return _prod(out) * _prod(list(weight)[1:])
    except TypeError:
        return 0


def _prod(dims) -> int:
    result = 1
    for d in dims:
        result *= int(d)
    return result


@register_pass("convert-layout-nchwc", scope="module")
class ConvertLayoutNCHWc:
    """Convert conv2d to NCHW[b]c (weights OIHW[b]i[b]o, depthwise OIHW1i[b]o) and propagate
    the blocked layout through the elementwise, pooling and reduction ops around them, so that
    data stays blocked from one conv to the next; the kernel templates read this layout and
    vectorize over the channel block.

    Options:
        block (int) = 16: the largest channel block; the target's fp32 SIMD width (16 on
            AVX-512, 4 on aarch64 NEON). Text form: convert-layout-nchwc{block=4}
        min-block (int) = 4: the smallest block worth converting to.
    The block of a function is the largest of block, block/2, ..., min-block whose convs (those
    whose channel counts it divides) hold at least 90 % of the multiply-adds the best of them
    converts: a smaller block converts more convs but fills less of each vector.
    TVM 0.27's ConvertLayout cannot convert between two blocked layouts, so a function uses one
    block; it leaves resize2d, concat and reshapes in NCHW, so this pass then moves into the
    blocked layout itself: a resize2d, or a concat along channels, whose inputs were
    unblocked (an FPN's upsampling and merge); an elementwise op with scalars or per-channel
    constants (a batch norm after a resize or a shuffle); conv-transpose-to-conv1x1's
    depth-to-space shuffle where the block divides its output channels (whole blocks move);
    and the leading channels of a one-block value (a conv pad-channels padded), taken as a
    slice of its lanes that TVM fuses with the consumer.
    A conv whose output channels the block divides but not its input channels (a stem on 3
    image channels) reads NCHW and writes NCHW[b]c. A conv whose output channels the block
    does not divide (see pad-channels), a grouped (not depthwise) conv and conv2d_transpose
    stay NCHW, with layout_transforms at the boundary.
    Example (Relax TVMScript, block=16, x: (1, 32, 8, 8)):
        before:  a = R.nn.conv2d(x, w, padding=[1, 1, 1, 1])
                 y = R.nn.relu(a)
        after:   lv = R.layout_transform(x, index_map=(n, c, h, w) -> (n, c // 16, h, w, c % 16))
                 lv1 = R.layout_transform(w, ...)                       # OIHW16i16o
                 a = R.nn.conv2d(lv, lv1, data_layout="NCHW16c", kernel_layout="OIHW16i16o",
                                 out_layout="NCHW16c", padding=[1, 1, 1, 1])
                 lv2 = R.nn.relu(a)
                 y = R.layout_transform(lv2, index_map=(n, c, h, w, b) -> (n, c * 16 + b, h, w))
    Leaves alone: functions with no blockable conv; convs described above. Back-to-back
    transforms that undo each other are removed by cancel-inverse-pairs (run it after).
    """

    def __init__(self, block: int = 16, min_block: int = 4):
        for option, value in (("block", block), ("min-block", min_block)):
            if value < 2 or value & (value - 1):
                raise PassOptionError(
                    "convert-layout-nchwc", option, value, known=["a power of two >= 2"]
                )
        if min_block > block:
            raise PassOptionError(
                "convert-layout-nchwc", "min-block", min_block, known=[f"<= block ({block})"]
            )
        self.block, self.min_block = block, min_block

    def choose_block(self, func: relax.Function) -> int | None:
        """The block for `func`, or None when no conv in it can be blocked."""
        coverage = self.coverage(func)
        most = max(coverage.values(), default=0)
        if most == 0:
            return None
        return max(b for b, macs in coverage.items() if macs >= _KEEP * most)

    def coverage(self, func: relax.Function) -> dict[int, int]:
        """block -> multiply-adds of the convs of `func` that block can convert."""
        convs = _convs(func)
        out, block = {}, self.block
        while block >= self.min_block:
            out[block] = sum(_macs(c) for c in convs if _blockable(c, block))
            block //= 2
        return out

    def transform_module(self, mod, ctx):
        updates = {}
        for gvar, func in mod.functions_items():
            if not isinstance(func, relax.Function):
                continue
            block = self.choose_block(func)
            if block is None:
                continue
            single = tvm.IRModule({gvar: func})
            converted = relax.transform.ConvertLayout({}, _layout_callback(block))(single)
            updates[gvar] = _reblock(converted[gvar.name_hint])
        if not updates:
            return mod
        functions = dict(mod.functions_items())
        functions.update(updates)
        return tvm.IRModule(functions, attrs=mod.attrs)


def _layout_callback(block: int):
    def desired(call):
        op = getattr(call.op, "name", "")
        if op == _CONV_TRANSPOSE:  # TVM cannot infer its layout from a blocked input: pin NCHW
            return {_CONV_TRANSPOSE: ["NCHW", "IOHW"]}
        if op != _CONV:
            return {}
        if not _blockable(call, block):
            if _blocked_out(call, block):  # a model's stem: image channels in, blocks out
                return {_CONV: ["NCHW", "OIHW", f"NCHW{block}c"]}
            return {_CONV: ["NCHW", "OIHW"]}
        _, _, groups = _channels(call)
        kernel = f"OIHW1i{block}o" if groups > 1 else f"OIHW{block}i{block}o"
        return {_CONV: [f"NCHW{block}c", kernel]}

    return desired


def _reblock(func: relax.Function) -> relax.Function:
    """resize2d(unblock(x)) -> unblock(resize2d(x) in NCHW[b]c), concat(unblock(x_i),
    axis=1) -> unblock(concat(x_i, axis=1)), f(unblock(x), c) -> unblock(f(x, c')) for an
    elementwise f and scalar or per-channel constants c, depth-to-space(unblock(x)) ->
    unblock(depth-to-space on blocks(x)): the unblock then meets the next blocked op's
    transform, and cancel-inverse-pairs removes both. slice(unblock(x)) of a one-block x's
    leading channels -> a permute of its lanes."""
    return _Reblock().visit_expr(func)


@relax.expr_functor.mutator
class _Reblock(relax.PyExprMutator):
    def visit_call_(self, call):
        call = super().visit_call_(call)
        name = getattr(call.op, "name", "")
        if name == "relax.image.resize2d" and str(call.attrs.layout) == "NCHW":
            unblock, block = self._unblocked(call.args[0])
            if unblock is not None:
                return self._resize(call, unblock, block)
        if name in _ELEMENTWISE and call.args:
            unblock, block = self._unblocked(call.args[0])
            others = [_blocked_operand(a, block) for a in call.args[1:]] if block else []
            if unblock is not None and all(a is not None for a in others):
                inner = self.builder_.emit(
                    relax.Call(call.op, [unblock.args[0], *others], call.attrs)
                )
                return relax.Call(unblock.op, [inner], unblock.attrs)
        if name == "relax.strided_slice":
            narrowed = self._leading_channels(call)
            if narrowed is not None:
                return narrowed
        if name == "relax.reshape":
            shuffled = self._depth_to_space(call)
            if shuffled is not None:
                return shuffled
        if name == "relax.concat" and call.attrs.axis is not None and int(call.attrs.axis) == 1:
            fields = call.args[0].fields if isinstance(call.args[0], relax.Tuple) else []
            unblocks = [self._unblocked(f) for f in fields]
            if fields and len({block for _, block in unblocks}) == 1 and unblocks[0][0] is not None:
                joined = self.builder_.emit(
                    relax.op.concat([u.args[0] for u, _ in unblocks], axis=1)
                )
                first = unblocks[0][0]
                return relax.Call(first.op, [joined], first.attrs)
        return call

    def _unblocked(self, expr):
        """(the unblocking layout_transform bound to `expr`, its block), or (None, None)."""
        value = self.lookup_binding(expr) if isinstance(expr, relax.Var) else None
        if isinstance(value, relax.Call) and getattr(value.op, "name", "") == _LAYOUT:
            block = _unblock_factor(value)
            if block is not None:
                return value, block
        return None, None

    def _depth_to_space(self, call):
        """reshape(permute_dims(reshape(unblock(x)))) moving channels (a, b, o) of an NCHW
        tensor to pixel (h * A + a, w * B + b) of channel o (conv-transpose-to-conv1x1's
        shuffle), with the block dividing O: the same shuffle on the blocked x, whole channel
        blocks moved, then the unblock."""
        permute = self._bound(call.args[0], "relax.permute_dims")
        split = self._bound(permute.args[0], "relax.reshape") if permute is not None else None
        axes = permute.attrs.axes if permute is not None else None  # None: reversed
        if split is None or axes is None or [int(a) for a in axes] != SHUFFLE_AXES:
            return None
        unblock, block = self._unblocked(split.args[0])
        try:
            n, kh, kw, o, h, w = (int(d) for d in split.ty.shape)
            out = [int(d) for d in call.ty.shape]
        except TypeError:
            return None
        if unblock is None or o % block or out != [n, o, h * kh, w * kw]:
            return None
        emit = self.builder_.emit
        x = emit(relax.op.reshape(unblock.args[0], (n, kh, kw, o // block, h, w, block)))
        x = emit(relax.op.permute_dims(x, [0, 3, 4, 1, 5, 2, 6]))
        x = emit(relax.op.reshape(x, (n, o // block, h * kh, w * kw, block)))
        return relax.Call(unblock.op, [x], unblock.attrs)

    def _leading_channels(self, call):
        """strided_slice(unblock(x), channels [0, C)) for an x of one channel block (a conv whose
        output channels pad-channels padded up to the block): a permute of x's first C lanes,
        an injective op TVM fuses with its consumers, where layout_transform runs alone."""
        unblock, block = self._unblocked(call.args[0])
        if unblock is None or len(call.args) != 4:  # no strides
            return None
        x = unblock.args[0]
        try:
            axes, begin, end = ([int(v.value) for v in t.fields] for t in call.args[1:])
            blocks = int(x.ty.shape[1])
        except (TypeError, AttributeError):
            return None
        if axes != [1] or begin != [0] or blocks != 1 or not 0 < end[0] <= block:
            return None
        end = end[0]
        lanes = self.builder_.emit(relax.op.strided_slice(x, axes=[4], begin=[0], end=[end]))
        n, _, h, w, _ = x.ty.shape
        lanes = self.builder_.emit(relax.op.permute_dims(lanes, [0, 4, 2, 3, 1]))
        return relax.op.reshape(lanes, (n, end, h, w))

    def _bound(self, expr, op: str):
        """The call of `op` bound to `expr`, or None."""
        value = self.lookup_binding(expr) if isinstance(expr, relax.Var) else None
        if isinstance(value, relax.Call) and getattr(value.op, "name", "") == op:
            return value
        return None

    def _resize(self, call, unblock, block: int):
        attrs = call.attrs
        resized = self.builder_.emit(
            relax.op.image.resize2d(
                unblock.args[0], call.args[1], [float(r) for r in attrs.roi], f"NCHW{block}c",
                attrs.method, attrs.coordinate_transformation_mode, attrs.rounding_method,
                float(attrs.cubic_alpha), int(attrs.cubic_exclude),
                float(attrs.extrapolation_value), attrs.out_dtype,
            )
        )  # fmt: skip
        return relax.Call(unblock.op, [resized], unblock.attrs)  # the same unblock, after


# ops that compute each element alone from it and scalars or per-channel constants: they
# commute with a change of layout that regroups those constants alike (a QDQ model's clamps
# after a resize, a batch norm after a shuffle)
_ELEMENTWISE = {
    "relax.maximum", "relax.minimum", "relax.add", "relax.subtract", "relax.multiply",
    "relax.divide", "relax.clip", "relax.nn.relu", "relax.sigmoid", "relax.tanh",
}  # fmt: skip


def _blocked_operand(expr, block: int):
    """`expr` as the other operand of an elementwise op on NCHW[block]c data: a scalar as it
    is, a constant of shape (1, C, 1, 1) (a per-channel scale or shift) regrouped to
    (1, C / block, 1, 1, block); else None."""
    if _scalar(expr):
        return expr
    value = getattr(expr, "value", None) if isinstance(expr, tvm.ir.Constant) else None
    if not isinstance(value, tvm.runtime.Tensor):
        return None
    value = value.numpy()
    if value.ndim != 4 or value.shape[0] != 1 or value.shape[2:] != (1, 1):
        return None
    channels = value.shape[1]
    if channels % block:
        return None
    return relax.const(value.reshape(1, channels // block, block, 1, 1).transpose(0, 1, 3, 4, 2))


def _scalar(expr) -> bool:
    """A scalar: a constant tensor of one element, or a number (clip's bounds)."""
    if not isinstance(expr, tvm.ir.Constant):  # FloatImm / IntImm are Constants too
        return False
    shape = getattr(expr.value, "shape", ())
    return all(int(d) == 1 for d in shape)


def _unblock_factor(call) -> int | None:
    """b when `call` is layout_transform NCHW[b]c -> NCHW, (n, C, h, w, c) -> (n, C*b + c, h, w)."""
    data = call.args[0].ty
    index_map = call.attrs.index_map
    if data.shape is None or len(data.shape) != 5 or len(index_map.final_indices) != 4:
        return None
    try:
        block = int(data.shape[4])
    except TypeError:
        return None
    n, c, h, w, inner = (tvm.tirx.Var(name, "int64") for name in ("n", "c", "h", "w", "inner"))
    analyzer = Analyzer()
    for var, extent in zip((n, c, h, w, inner), data.shape, strict=True):
        analyzer.bind(var, tvm.ir.Range(0, extent))
    got = index_map.map_indices([n, c, h, w, inner])
    want = [n, c * block + inner, h, w]
    if all(analyzer.can_prove_equal(g, e) for g, e in zip(got, want, strict=True)):
        return block
    return None
