"""facelab: celebrity face recognition from a raw URL list to a bias-checked CNN.

One module per stage of the data flow; a pandas manifest (``manifest.csv``) is the
contract between stages.  Importing ``facelab`` is cheap: no stage module and no
TensorFlow is imported until it is used (``facelab.pipeline`` etc. load on first access).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = (
    "manifest", "sources", "demo", "demoweb", "collect", "dedup", "faces", "vision", "labels",
    "split", "balance", "pipeline", "augment", "model", "train", "analysis", "fit",
    "runner", "doctor", "cli",
)
__all__ = ["__version__", *_SUBMODULES]


def __getattr__(name: str) -> Any:
    """Import stage modules lazily so ``import facelab`` never pulls in TensorFlow."""
    if name in _SUBMODULES:
        return importlib.import_module(f"facelab.{name}")
    raise AttributeError(f"module 'facelab' has no attribute {name!r}")
