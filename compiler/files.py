"""Writing outputs so that nothing partial is ever left: check early, write a temp file in the
destination's folder, rename it into place only when complete."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import OutputError


def check_writable(out_path: str | Path) -> Path:
    """Fail before any long work if `out_path` cannot be created."""
    out = Path(out_path)
    parent = out.parent if str(out.parent) else Path(".")
    if out.is_dir():
        raise OutputError(f"{out}: is a directory")
    if not parent.is_dir():
        raise OutputError(f"{out}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{out}: directory {parent} is not writable")
    return out


@contextlib.contextmanager
def atomic_output(out_path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temp path beside `out_path`; on a normal exit it replaces `out_path`, on an
    exception it is removed and `out_path` is left as it was."""
    out = check_writable(out_path)
    fd, tmp_name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
