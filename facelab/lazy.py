"""Lazy attribute exports for the stage packages (``facelab.collect.collect`` and the like).

A stage package names its public functions once, by module; the module is imported only
when one of its names is first used, so ``import facelab.collect`` stays cheap (no pandas,
no TensorFlow, no Ray) and a worker process that needs one module loads only that one.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def lazy_exports(package: str,
                 exports: Mapping[str, Sequence[str]]) -> tuple[Callable[[str], Any], list[str]]:
    """Build a package's ``__getattr__`` and ``__all__`` from ``{module: names}``.

    Also gives the package a module ``__dir__`` that lists the exported names, so ``dir()``
    and tab completion (``facelab.analysis.<Tab>`` in JupyterLab) show them before first use.

    Args:
        package: The package's ``__name__``.
        exports: Module name (relative to the package) -> the public names it provides.

    Returns:
        ``(__getattr__, __all__)`` for the package's ``__init__``.
    """
    where = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:  # noqa: N807 - the module-level hook's name
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{where[name]}"), name)

    module = sys.modules.get(package)
    if module is not None:      # called from the package's __init__, while it is imported

        def __dir__() -> list[str]:  # noqa: N807 - the module-level hook's name
            return sorted(set(vars(module)) | set(where))

        module.__dir__ = __dir__
    return __getattr__, sorted(where)
