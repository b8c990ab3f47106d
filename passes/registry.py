"""The pass registry: one kebab-case name per pass, options read from `__init__`'s signature.

`@register_pass("name", scope="function"|"module")` turns a class into a TVM pass named `name`
(`relax.transform.function_pass` / `tvm.transform.module_pass`, opt_level 0), so PassContext
instruments and `PassTimingInstrument` see the same name the pipeline text uses. Like MLIR's
`Passes.td`, one record drives registration and docs: the summary is the docstring's first
paragraph, the options are `__init__`'s keyword parameters (type from the annotation, default
required).

Option values arrive as text (`dce{entry-functions=main,init}`); `PassInfo.create` converts them
to the declared type: int, float, bool (true/false/1/0/yes/no/on/off), str, or tuple[str|int|float,
...] written as a comma list. Option names are kebab-case in text and snake_case in Python.
"""

from __future__ import annotations

import difflib
import inspect
import typing
from dataclasses import dataclass

import tvm
from tvm import relax

from tilecc.compiler.errors import PassOptionError, TilecError

_SCALARS = (int, float, bool, str)
_BOOLS = {"true": True, "1": True, "yes": True, "on": True}
_BOOLS |= {"false": False, "0": False, "no": False, "off": False}


class UnknownPassError(TilecError):
    """No pass is registered under the given name."""

    def __init__(self, name: str, known):
        msg = f"unknown pass '{name}'"
        if hint := closest(name, known):
            msg += f" (did you mean '{hint}'?)"
        super().__init__(msg)


class OptionValueError(PassOptionError):
    """An option's text does not convert to the option's declared type."""

    def __init__(self, pass_name: str, option: str, value, expected: str):
        super().__init__(pass_name, option, value)
        self.args = (f"{self.args[0]}: expected {expected}",)


class UnknownOptionError(PassOptionError):
    """A pass was given an option it does not declare; the message lists the ones it has."""

    def __init__(self, pass_name: str, option: str, known: list[str]):
        super().__init__(pass_name, option, None)
        msg = f"pass '{pass_name}' has no option '{option}'"
        if hint := closest(option.replace("_", "-"), known):
            msg += f" (did you mean '{hint}'?)"
        msg += f"; its options: {', '.join(known)}" if known else "; it takes no options"
        self.args = (msg,)


def closest(name: str, candidates) -> str | None:
    """The candidate spelled most like `name`, or None when none is close."""
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


def _type_name(tp) -> str:
    if typing.get_origin(tp) is tuple:
        return f"tuple[{typing.get_args(tp)[0].__name__}, ...]"
    return tp.__name__


@dataclass(frozen=True)
class PassOption:
    name: str  # kebab-case, as written in pipeline text
    py_name: str  # snake_case, as `__init__` takes it
    type: type
    default: object

    @property
    def type_name(self) -> str:
        return _type_name(self.type)

    def convert(self, pass_name: str, text: str):
        """Text from a pipeline -> a value of this option's type (OptionValueError if not)."""
        if typing.get_origin(self.type) is tuple:
            item = typing.get_args(self.type)[0]
            parts = [p.strip() for p in text.split(",")] if text.strip() else []
            return tuple(self._scalar(pass_name, item, p, text) for p in parts)
        return self._scalar(pass_name, self.type, text.strip(), text)

    def _scalar(self, pass_name, tp, part, text):
        if tp is str:
            return part
        if tp is bool:
            if part.lower() in _BOOLS:
                return _BOOLS[part.lower()]
            raise OptionValueError(pass_name, self.name, text, "true or false")
        try:
            return tp(part)
        except ValueError:
            raise OptionValueError(pass_name, self.name, text, f"{self.type_name}") from None


@dataclass(frozen=True)
class PassInfo:
    name: str
    scope: str
    summary: str
    doc: str
    options: tuple[PassOption, ...]
    cls: type  # the TVM pass class: cls(**python_values) is a tvm.transform.Pass

    def option(self, name: str) -> PassOption:
        """Look an option up by its kebab or snake name (PassOptionError naming the known ones)."""
        for opt in self.options:
            if name in (opt.name, opt.py_name):
                return opt
        raise UnknownOptionError(self.name, name, [opt.name for opt in self.options])

    def create(self, **texts: str) -> tvm.transform.Pass:
        """Build the pass from option texts keyed by option name (kebab or snake)."""
        values = {}
        for key, text in texts.items():
            opt = self.option(key)
            values[opt.py_name] = opt.convert(self.name, text)
        return self.cls(**values)


_PASSES: dict[str, PassInfo] = {}


def _options(cls, pass_name: str) -> tuple[PassOption, ...]:
    init = cls.__dict__.get("__init__")
    if init is None:
        return ()
    hints = typing.get_type_hints(init)
    options = []
    for param in list(inspect.signature(init).parameters.values())[1:]:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"pass {pass_name}: options must be named parameters, not *{param}")
        tp = hints.get(param.name)
        item = typing.get_args(tp)[0] if typing.get_origin(tp) is tuple else tp
        if item not in _SCALARS or param.default is param.empty:
            raise TypeError(
                f"pass {pass_name}: option '{param.name}' needs a default and a type among "
                "int, float, bool, str, tuple[<one of those>, ...]"
            )
        options.append(PassOption(param.name.replace("_", "-"), param.name, tp, param.default))
    return tuple(options)


def register_pass(name: str, scope: str = "function"):
    """Class decorator: register `cls` under `name` and return it as a TVM pass class.

    scope="function": `cls.transform_function(func, mod, ctx)` runs on each Relax function
    (`relax.transform.function_pass`); scope="module": `cls.transform_module(mod, ctx)`
    (`tvm.transform.module_pass`).
    """
    wrappers = {"function": relax.transform.function_pass, "module": tvm.transform.module_pass}
    if scope not in wrappers:
        raise ValueError(f"pass {name}: scope must be 'function' or 'module', not {scope!r}")

    def wrap(cls):
        method = f"transform_{scope}"
        if not callable(getattr(cls, method, None)):
            raise TypeError(f"pass {name}: a {scope}-scope pass defines {method}")
        if name in _PASSES:
            raise ValueError(f"pass {name} is registered twice ({_PASSES[name].cls.__module__})")
        doc = inspect.cleandoc(cls.__doc__ or "")
        if not doc:
            raise TypeError(f"pass {name}: the class docstring is its documentation; add one")
        options = _options(cls, name)
        tvm_cls = wrappers[scope](opt_level=0, name=name)(cls)
        summary = " ".join(doc.split("\n\n")[0].split())  # the first paragraph, one line
        _PASSES[name] = PassInfo(name, scope, summary, doc, options, tvm_cls)
        return tvm_cls

    return wrap


def unregister_pass(name: str) -> None:
    """Forget a pass (for passes registered by tests or plugins)."""
    _PASSES.pop(name, None)


def get_pass_info(name: str) -> PassInfo:
    if name not in _PASSES:
        raise UnknownPassError(name, _PASSES)
    return _PASSES[name]


def is_registered(name: str) -> bool:
    return name in _PASSES


def all_passes() -> list[PassInfo]:
    """Every registered pass, sorted by name."""
    return [_PASSES[n] for n in sorted(_PASSES)]
