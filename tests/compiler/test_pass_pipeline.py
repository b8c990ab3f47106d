import io

import pytest
from tvm import relax
from tvm.script import ir as I
from tvm.script import relax as R

from tilecc.compiler.errors import PassOptionError
from tilecc.compiler.pass_pipeline import (
    PipelineError,
    build_pipeline,
    parse_pipeline,
    run_pipeline,
    timing_table,
)
from tilecc.passes.registry import register_pass, unregister_pass


def _module():
    @I.ir_module
    class Module:
        @R.function
        def main(x: R.Tensor((2, 3), "float32")):
            with R.dataflow():
                c = R.add(R.const(1, "float32"), R.const(2, "float32"))
                y = R.add(x, c)
                R.output(y)
            return y

    return Module


def test_parse_options_space_separated_lists_comma_separated():
    text = "fold-constant,fuse-conv-act{acts=relu,hardswish max-depth=2},dce{strict}"
    assert parse_pipeline(text) == [
        ("fold-constant", {}),
        ("fuse-conv-act", {"acts": "relu,hardswish", "max-depth": "2"}),
        ("dce", {"strict": "true"}),
    ]


@pytest.mark.parametrize(
    "text, message",
    [
        ("dce{entry-functions=main", "missing '}' at the end"),
        ("dce},fold-constant", "unmatched '}' at column 4"),
        ("dce,,fold-constant", "empty pass name at column 5"),
        ("Fold_Constant", "not a pass name"),
        ("dce{a=1 a=2}", "option 'a' given twice"),
    ],
)
def test_malformed_pipeline_is_refused(text, message):
    with pytest.raises(PipelineError, match=message):
        parse_pipeline(text)


def test_unknown_pass_suggests_closest_name():
    with pytest.raises(PipelineError) as err:
        build_pipeline("fold-constnat,dce")
    assert str(err.value) == (
        "unknown pass 'fold-constnat' in pipeline (did you mean 'fold-constant'?)"
    )


def test_unknown_option_names_pass_and_its_options():
    with pytest.raises(
        PassOptionError, match="pass 'dce' has no option 'entry'; its options: entry-functions"
    ):
        build_pipeline("dce{entry=main}")


def test_option_value_reaches_the_pass():
    [dce] = build_pipeline("dce{entry-functions=main,init}")
    assert dce.entry_functions == ["main", "init"]
    assert dce.info.name == "dce"


def test_print_ir_after_shows_header_and_ir():
    out = io.StringIO()
    run_pipeline(_module(), "fold-constant,dce", print_ir_after=["fold-constant"], out=out)
    text = out.getvalue()
    assert text.startswith("// -----// IR Dump After fold-constant //----- //\n")
    assert 'R.add(x, R.const(3.0, "float32"))' in text
    assert "IR Dump After dce" not in text
    assert "FoldConstant" not in text  # TVM's inner passes are not printed


def test_print_ir_before_shows_input():
    out = io.StringIO()
    run_pipeline(_module(), "fold-constant", print_ir_before=["fold-constant"], out=out)
    assert "// -----// IR Dump Before fold-constant //----- //" in out.getvalue()
    assert 'R.const(1.0, "float32")' in out.getvalue()


def test_print_ir_after_all_prints_each_tilecc_pass():
    out = io.StringIO()
    run_pipeline(_module(), "fold-constant,dce", print_ir_after_all=True, out=out)
    headers = [line for line in out.getvalue().splitlines() if line.startswith("// -----//")]
    assert headers == [
        "// -----// IR Dump After fold-constant //----- //",
        "// -----// IR Dump After dce //----- //",
    ]


def test_print_ir_after_change_skips_passes_that_change_nothing():
    out = io.StringIO()
    # fold-constant already drops the folded binding, so dce finds nothing to remove.
    run_pipeline(_module(), "fold-constant,dce", print_ir_after_change=True, out=out)
    assert "IR Dump After fold-constant" in out.getvalue()
    assert "IR Dump After dce" not in out.getvalue()


def test_print_ir_after_unknown_pass_is_refused():
    with pytest.raises(PipelineError, match=r"in --print-ir-after \(did you mean 'dce'\?\)"):
        run_pipeline(_module(), "dce", print_ir_after=["dcee"])


@pytest.fixture
def breaking_pass():
    @register_pass("test-break-ir", scope="function")
    class TestBreakIr:
        """Return a function that uses a variable nothing defines (verifier test)."""

        def transform_function(self, func, mod, ctx):
            ghost = relax.Var("ghost", func.params[0].ty)
            return relax.Function(func.params, ghost, func.ret_ty)

    yield
    unregister_pass("test-break-ir")


def test_verify_each_names_the_pass_that_broke_the_ir(breaking_pass):
    out = io.StringIO()
    with pytest.raises(PipelineError, match="pass 'test-break-ir' produced ill-formed IR: .*ghost"):
        run_pipeline(_module(), "fold-constant,test-break-ir,dce", print_ir_after_all=True, out=out)
    assert "IR Dump After dce" not in out.getvalue()  # later passes do not run


def test_no_verification_when_verify_each_is_off(breaking_pass):
    run_pipeline(_module(), "test-break-ir", verify_each=False)


@pytest.fixture
def mistyping_pass():
    @register_pass("test-mistype", scope="function")
    class TestMistype:
        """Rebuild add(x, c) as add(x, x) with the old result type, wrong on purpose."""

        def transform_function(self, func, mod, ctx):
            x = func.params[0]
            bad = relax.Call(
                relax.op.add(x, x).op, [x, x], ret_ty=relax.TensorType((3, 3), "float32")
            )
            var = relax.Var("y", relax.TensorType((3, 3), "float32"))
            body = relax.SeqExpr([relax.BindingBlock([relax.VarBinding(var, bad)])], var)
            return relax.Function(func.params, body, relax.TensorType((3, 3), "float32"))

    yield
    unregister_pass("test-mistype")


def test_verify_each_rederives_operator_types(mistyping_pass):
    with pytest.raises(
        PipelineError, match=r"pass 'test-mistype' produced ill-formed IR: .*\(3, 3\)"
    ):
        run_pipeline(_module(), "test-mistype")


def test_ill_formed_input_is_not_blamed_on_a_pass():
    broken = relax.transform.function_pass(opt_level=0)(
        lambda f, m, c: relax.Function(f.params, relax.Var("ghost", f.params[0].ty), f.ret_ty)
    )(_module())
    with pytest.raises(PipelineError, match="input IR is ill-formed"):
        run_pipeline(broken, "dce")


def test_timing_table_lists_passes_slowest_first():
    out = io.StringIO()
    run_pipeline(_module(), "dce,fold-constant", timing=True, out=out)
    rows = [line.split() for line in out.getvalue().splitlines()]
    assert rows[0] == ["pass", "ms", "%"]
    names = [row[0] for row in rows[1:]]
    assert sorted(names[:-1]) == ["dce", "fold-constant"] and names[-1] == "total"
    ms = [float(row[1]) for row in rows[1:-1]]
    assert ms == sorted(ms, reverse=True)


def test_timing_table_sums_repeats_and_ignores_inner_tvm_passes():
    rendered = (
        "tilecc-pipeline: 1000us [10us] (100.00%; 100.00%)\n"
        "\tdce: 100us [100us] (10.00%; 10.00%)\n"
        "\tfold-constant: 600us [100us] (60.00%; 60.00%)\n"
        "\t\tFoldConstant: 500us [500us] (50.00%; 83.33%)\n"
        "\tdce: 290us [290us] (29.00%; 29.00%)\n"
    )
    assert timing_table(rendered).splitlines() == [
        "pass                   ms       %",
        "fold-constant       0.600   60.00",
        "dce                 0.390   39.00",
        "total               1.000  100.00",
    ]
