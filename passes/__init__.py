"""Graph passes, one per file; importing this package registers them all (see registry.py)."""

from . import dce, fold_constant  # noqa: F401  (imported to register)
from .registry import PassInfo, PassOption, all_passes, get_pass_info, register_pass

__all__ = ["PassInfo", "PassOption", "all_passes", "get_pass_info", "register_pass"]
