"""A stage package's API, imported on first use (PEP 562 module `__getattr__`).

`gencompress.export` and `gencompress.benchmarks` name their API in `__init__`, but importing
one of their light modules (the timing children: `python -m gencompress.export.ort_pair`)
must not drag in PyTorch and modelopt through the package's `__init__`: each child would pay
seconds of imports before it times a millisecond graph.
"""
from __future__ import annotations

import importlib
import sys
from typing import Callable


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """`__getattr__` and `__dir__` for `package`: exports maps a public name to "module" (the
    same name in that submodule) or "module:attr" (another name there)."""

    def __getattr__(name: str) -> object:
        if name not in exports:
            # also how `from package import submodule` falls back to importing the submodule
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, _, attr = exports[name].partition(":")
        value = getattr(importlib.import_module(f"{package}.{module}"), attr or name)
        setattr(sys.modules[package], name, value)  # later lookups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
