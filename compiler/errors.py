"""Errors a user can act on.

Every error tilecc raises for bad input subclasses `TilecError`; the CLI prints its message as one
line (`error: ...`) and exits non-zero, with a traceback only under `-v`. Messages name the file,
ONNX node and op type, shape/dtype, pass or target that is at fault.
"""

from __future__ import annotations


class TilecError(Exception):
    """Base class for errors caused by what the user gave tilecc (as opposed to bugs)."""

    exit_code = 1


class ModelError(TilecError):
    """The model file is missing, unreadable, malformed or unsupported."""


class UnsupportedOpsError(ModelError):
    """The model uses ONNX ops that tilecc cannot import; all of them are listed at once."""

    def __init__(self, path: str, unsupported: dict[str, list[str]]):
        self.unsupported = unsupported
        parts = []
        for op, nodes in sorted(unsupported.items()):
            shown = ", ".join(f'"{n}"' for n in nodes[:3])
            more = f", +{len(nodes) - 3} more" if len(nodes) > 3 else ""
            parts.append(f"{op} x{len(nodes)} ({shown}{more})")
        super().__init__(f"{path}: {len(unsupported)} unsupported op type(s): " + "; ".join(parts))


class ShapeError(TilecError):
    """An input shape is missing, dynamic where it must be static, or does not fit the model."""


class InputError(TilecError):
    """Run-time inputs do not match the compiled model (names, shapes, dtypes)."""


class TargetError(TilecError):
    """Unknown target, bad target option, or a target's tool (cross compiler, qemu) failed."""


class OutputError(TilecError):
    """An output path cannot be written."""


class PassOptionError(TilecError):
    """A pass was given an unknown option or an option value it cannot take."""

    def __init__(self, pass_name: str, option: str, value, known=None):
        msg = f"pass {pass_name}: bad value {value!r} for option '{option}'"
        if known is not None:
            msg += f" (known: {', '.join(map(str, known))})"
        super().__init__(msg)


class ToolError(TilecError):
    """An external tool (compiler, linker, emulator) failed; the message shows the exact command."""
