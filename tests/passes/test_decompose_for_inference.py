import numpy as np
import tvm
from tvm import relax

from tilecc.passes.decompose_for_inference import DecomposeForInference

RNG = np.random.default_rng(0)


def bn_module(training: bool = False):
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 16, 5, 6), "float32"))
    gamma, beta, mean = (relax.const(RNG.standard_normal(16).astype("float32")) for _ in range(3))
    var = relax.const(RNG.random(16).astype("float32") + 0.5)
    with bb.function("main", [x]):
        with bb.dataflow():
            clamped = bb.emit(relax.op.clip(x, -1.0, 1.0))  # what keeps fold-batchnorm out
            bn = bb.emit(
                relax.op.nn.batch_norm(clamped, gamma, beta, mean, var, axis=1, training=training)
            )
            y = bb.emit_output(relax.TupleGetItem(bn, 0))
        bb.emit_func_output(y)
    return bb.get()


def ops(mod) -> set[str]:
    found = set()
    relax.analysis.post_order_visit(
        mod["main"].body,
        lambda e: (
            found.add(e.op.name) if isinstance(e, relax.Call) and hasattr(e.op, "name") else None
        ),
    )
    return found


def run(mod, x):
    ex = tvm.compile(mod, target=tvm.target.Target({"kind": "llvm"}))
    return relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()


def test_inference_batch_norm_becomes_elementwise_ops_with_the_same_values():
    before = bn_module()
    after = DecomposeForInference()(before)
    relax.analysis.well_formed(after)
    assert "relax.nn.batch_norm" not in ops(after)
    assert {"relax.multiply", "relax.add"} <= ops(after)
    x = RNG.standard_normal((1, 16, 5, 6)).astype("float32")
    np.testing.assert_allclose(run(after, x), run(before, x), rtol=1e-5, atol=1e-5)


def test_training_batch_norm_is_left_alone():
    before = bn_module(training=True)
    assert "relax.nn.batch_norm" in ops(DecomposeForInference()(before))


def test_decomposed_value_is_read_directly_not_through_a_tuple():
    """What reads batch_norm's output then reads the last elementwise op itself, the op a
    layout pass looks for, not (y, mean, var)[0]."""
    after = DecomposeForInference()(bn_module())
    found = []
    relax.analysis.post_order_visit(
        after["main"].body,
        lambda e: found.append(e) if isinstance(e, relax.TupleGetItem) else None,
    )
    assert not found  # the tuple itself is left unused, for dce
