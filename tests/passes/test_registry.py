import pytest
from tvm import relax

from tilecc.compiler.errors import PassOptionError
from tilecc.passes import all_passes, get_pass_info
from tilecc.passes.registry import UnknownPassError, register_pass, unregister_pass


@pytest.fixture
def demo_pass():
    @register_pass("test-demo", scope="function")
    class TestDemo:
        """Return every function unchanged (registry test).

        More text.
        """

        def __init__(
            self,
            depth: int = 2,
            scale: float = 1.0,
            strict: bool = False,
            mode: str = "fast",
            acts: tuple[str, ...] = ("relu",),
        ):
            self.values = (depth, scale, strict, mode, acts)

        def transform_function(self, func, mod, ctx):
            return func

    yield get_pass_info("test-demo")
    unregister_pass("test-demo")


def test_builtin_passes_are_registered_with_summary():
    names = [info.name for info in all_passes()]
    assert {"dce", "fold-constant"} <= set(names)
    assert names == sorted(names)
    dce = get_pass_info("dce")
    assert dce.summary.startswith("Remove unused bindings")
    [opt] = dce.options
    assert (opt.name, opt.py_name, opt.default) == ("entry-functions", "entry_functions", ("main",))
    assert opt.type_name == "tuple[str, ...]"


def test_info_reads_signature_and_docstring(demo_pass):
    assert demo_pass.summary == "Return every function unchanged (registry test)."
    assert "More text." in demo_pass.doc
    assert [o.name for o in demo_pass.options] == ["depth", "scale", "strict", "mode", "acts"]
    assert [o.default for o in demo_pass.options] == [2, 1.0, False, "fast", ("relu",)]


def test_pass_is_a_tvm_pass_with_the_kebab_name(demo_pass):
    built = demo_pass.create()
    assert isinstance(built, relax.transform.FunctionPass)
    assert built.info.name == "test-demo"


def test_option_texts_convert_to_declared_types(demo_pass):
    built = demo_pass.create(depth="3", scale="0.5", strict="true", mode="slow", acts="relu,gelu")
    assert built.values == (3, 0.5, True, "slow", ("relu", "gelu"))


@pytest.mark.parametrize(
    "option, text, expected",
    [
        ("depth", "two", "expected int"),
        ("scale", "x", "expected float"),
        ("strict", "maybe", "true or false"),
    ],
)
def test_bad_option_value_names_pass_option_and_type(demo_pass, option, text, expected):
    with pytest.raises(
        PassOptionError,
        match=f"pass test-demo: bad value '{text}' for option '{option}'.*{expected}",
    ):
        demo_pass.create(**{option: text})


def test_unknown_option_lists_options(demo_pass):
    with pytest.raises(
        PassOptionError,
        match=r"no option 'dept' \(did you mean 'depth'\?\); its options: depth, scale",
    ):
        demo_pass.create(dept="1")


def test_unknown_pass_suggests_closest():
    with pytest.raises(
        UnknownPassError, match=r"unknown pass 'fold-constnat' \(did you mean 'fold-constant'\?\)"
    ):
        get_pass_info("fold-constnat")


def test_option_without_default_is_refused():
    with pytest.raises(TypeError, match="option 'n' needs a default"):

        @register_pass("test-no-default")
        class NoDefault:
            """Bad."""

            def __init__(self, n: int):
                pass

            def transform_function(self, func, mod, ctx):
                return func
