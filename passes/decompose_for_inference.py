"""decompose-for-inference: batch_norm (inference mode) as elementwise ops."""

from __future__ import annotations

import tvm
from tvm import relax

from .registry import register_pass


@register_pass("decompose-for-inference", scope="function")
class DecomposeForInference:
    """Rewrite each inference-mode batch_norm that fold-batchnorm could not fold into a conv
    (a QDQ model's clamp sits between them; a batch_norm after an add) as
    (x - mean) / sqrt(var + eps) * gamma + beta: elementwise ops that convert-layout-nchwc
    carries in a blocked layout, where batch_norm itself would stay NCHW between two layout
    transforms. Wraps `relax.transform.DecomposeOpsForInference` (then CanonicalizeBindings,
    so the decomposed value is used directly, not through batch_norm's result tuple);
    fold-constant afterwards folds the constant part to one multiply and one add.

    Options: none.
    Example (Relax TVMScript, x: (1, 16, 8, 8)):
        before:  bn = R.nn.batch_norm(x, g, b, m, v, axis=1, epsilon=1e-5)
                 y = bn[0]
        after:   y = R.add(R.multiply(R.subtract(x, m'), s), b')   # m', s, b': (1, 16, 1, 1)
    Leaves alone: a function with a batch_norm in training mode (TVM's pass would compute
    it with the moving statistics); every other op (layer_norm included).
    """

    def transform_function(self, func, mod, ctx):
        norms = _batch_norms(func)
        if not norms or any(bool(n.attrs.training) for n in norms):
            return func
        mod = relax.transform.DecomposeOpsForInference()(tvm.IRModule({"f": func}))
        # TVM leaves (y, mean, var)[0] behind: read y itself, so that passes matching on y's
        # consumers (convert-layout-nchwc's reblocking) see the elementwise op that makes it
        return relax.transform.CanonicalizeBindings()(mod)["f"]


def _batch_norms(func: relax.Function) -> list[relax.Call]:
    found = []
    relax.analysis.post_order_visit(
        func.body,
        lambda e: (
            found.append(e)
            if isinstance(e, relax.Call) and getattr(e.op, "name", None) == "relax.nn.batch_norm"
            else None
        ),
    )
    return found
