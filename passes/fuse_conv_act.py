"""fuse-conv-act: group conv2d (+ bias add) (+ activation) into one composite Relax function."""

from __future__ import annotations

from tvm import relax
from tvm.relax.dpl import is_const, is_op, wildcard

from tilecc.compiler.errors import PassOptionError

from .registry import register_pass


def _scalar(expr) -> float | None:
    """The value of a scalar constant or PrimValue (R.clip's bounds), else None."""
    value = getattr(expr, "value", None)
    while value is not None and not isinstance(value, (int, float)):
        if hasattr(value, "numpy"):  # a tensor constant
            array = value.numpy()
            return float(array.reshape(())) if array.size == 1 else None
        value = getattr(value, "value", None)  # PrimValue -> IntImm/FloatImm -> number
    return None if value is None else float(value)


def _acts():
    """name -> build(y, checks) -> pattern; build appends the constants the match must have to
    `checks` as (pattern, arg index or None for the pattern itself, value)."""

    def clip(x, lo, hi, checks):
        pat = is_op("relax.clip")(x, wildcard(), wildcard())
        checks += [(pat, 1, lo), (pat, 2, hi)]
        return pat

    def const(value, checks):
        pat = is_const()
        checks.append((pat, None, value))
        return pat

    def relu(y, c):
        return is_op("relax.nn.relu")(y)

    def relu6(y, c):
        return clip(y, 0.0, 6.0, c)

    def hardswish(y, c):  # ONNX HardSwish: y * (clip(y + 3, 0, 6) / 6)
        gate = is_op("relax.divide")(
            clip(is_op("relax.add")(y, const(3.0, c)), 0.0, 6.0, c), const(6.0, c)
        )
        return is_op("relax.multiply")(y, gate)

    def hardsigmoid(y, c):  # ONNX HardSigmoid(alpha, beta): clip(alpha * y + beta, 0, 1)
        return clip(
            is_op("relax.add")(is_op("relax.multiply")(is_const(), y), is_const()), 0.0, 1.0, c
        )

    def sigmoid(y, c):
        return is_op("relax.sigmoid")(y)

    def swish(y, c):  # x * Sigmoid(x), as exported for SiLU
        return is_op("relax.multiply")(y, is_op("relax.sigmoid")(y))

    def leakyrelu(y, c):
        return is_op("relax.nn.leakyrelu")(y)

    def prelu(y, c):
        return is_op("relax.nn.prelu")(y, wildcard())

    return {
        f.__name__: f
        for f in (relu, relu6, hardswish, hardsigmoid, sigmoid, swish, leakyrelu, prelu)
    }


_ACTS = _acts()
ALL_ACTS = tuple(_ACTS)


def _no_leak(ctx: relax.transform.PatternCheckContext) -> bool:
    """True when no value inside the group is used outside it (only the root may escape)."""
    root = ctx.value_to_bound_var[ctx.matched_expr]
    inside = set(ctx.matched_bindings.keys())
    for var in inside:
        if var.same_as(root):
            continue
        if not isinstance(var, relax.DataflowVar):
            return False  # a dataflow output is used after the block
        if any(user not in inside for user in ctx.var_usages.get(var, [])):
            return False
    return True


@register_pass("fuse-conv-act", scope="module")  # FuseOpsByPattern adds functions to the module
class FuseConvAct:
    """Group conv2d (+ bias add) (+ activation) into one composite function per match.

    Each match becomes a private function with attrs {"Composite": "tilecc.conv2d[_bias][_<act>]",
    "Primitive": True}, called from where the ops were (`relax.transform.FuseOpsByPattern` with
    annotate_codegen=False). TVM's default pipeline legalizes it and FuseTIR turns it into one
    PrimFunc: the conv loop nest plus an elementwise epilogue, the unit kernel templates schedule.
    Activations, as TVM's ONNX importer emits them:
        relu         R.nn.relu(y)                 relu6       R.clip(y, 0, 6)
        hardswish    y * (clip(y + 3, 0, 6) / 6)  hardsigmoid clip(a * y + b, 0, 1)
        sigmoid      R.sigmoid(y)                 swish       y * R.sigmoid(y)
        leakyrelu    R.nn.leakyrelu(y)            prelu       R.nn.prelu(y, slope)
    where y = R.nn.conv2d(x, W) or R.add(R.nn.conv2d(x, W), b).
    Options:
        acts (tuple[str, ...]) = all of the above: activations to fuse.
            Text form: fuse-conv-act{acts=relu,hardswish}
    Example (Relax TVMScript):
        before:  c = R.nn.conv2d(x, w)      after:  y = cls.fused_..._relu(x, w, b)
                 a = R.add(c, b)                    where fused_..._relu has Composite
                 y = R.nn.relu(a)                   "tilecc.conv2d_bias_relu" and these 3 ops
    Leaves alone: a group whose intermediate value (conv or bias add) has another user or is a
    dataflow output; Clip as the importer emits it for ONNX Clip (call_tir of topi maximum/minimum,
    not R.clip); activations not in `acts` (the conv2d + bias is still grouped).
    """

    def __init__(self, acts: tuple[str, ...] = ALL_ACTS):
        if unknown := sorted(set(acts) - set(_ACTS)):
            raise PassOptionError("fuse-conv-act", "acts", unknown, known=ALL_ACTS)
        self.patterns = []
        for with_bias in (True, False):
            conv = is_op("relax.nn.conv2d")(wildcard(), wildcard())
            pre = is_op("relax.add")(conv, wildcard()) if with_bias else conv
            stem = "tilecc.conv2d_bias" if with_bias else "tilecc.conv2d"
            for act in [a for a in ALL_ACTS if a in acts]:
                checks = []
                pattern = _ACTS[act](pre, checks)
                self.patterns.append(self._pattern(f"{stem}_{act}", pattern, checks))
        # Bare conv2d + bias last: a longer match with the activation wins.
        self.patterns.append(
            self._pattern(
                "tilecc.conv2d_bias",
                is_op("relax.add")(is_op("relax.nn.conv2d")(wildcard(), wildcard()), wildcard()),
                [],
            )
        )

    @staticmethod
    def _pattern(name, pattern, checks):
        keys = {f"c{i}": pat for i, (pat, _, _) in enumerate(checks)}

        def check(ctx):
            for key, (_, index, value) in zip(keys, checks, strict=True):
                expr = _resolve(ctx.annotated_expr[key], ctx.matched_bindings)
                if _scalar(expr if index is None else expr.args[index]) != value:
                    return False
            return _no_leak(ctx)

        return relax.transform.FusionPattern(name, pattern, keys, check)

    def transform_module(self, mod, ctx):
        fuse = relax.transform.FuseOpsByPattern(
            self.patterns, bind_constants=False, annotate_codegen=False
        )
        return fuse(mod)


def _resolve(expr, bindings):
    while isinstance(expr, relax.Var) and expr in bindings:
        expr = bindings[expr]
    return expr
