"""Lazy package exports: names resolve to their module on first use.

Packages whose ``cli`` module the command-line parser imports (eval, lifting, synth) export their API
this way, so that building the parser pulls in no numpy, Open3D or torch and ``scener1 --help`` stays
instant.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` resolving ``exports`` (name -> submodule of ``package``) on demand."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    return __getattr__
