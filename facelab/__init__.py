"""facelab: celebrity face recognition from a raw URL list to a bias-checked CNN.

One sub-package per stage of the data flow, in order: ``collect`` -> ``faces`` -> ``data``
(labels and split, balancing, tf.data pipeline, augmentation) -> ``learn`` (model and
training) -> ``analysis`` (bias); ``demo`` makes the offline demo data.  A pandas manifest
(``manifest.csv``, :mod:`facelab.manifest`) is the contract between stages.  Importing
``facelab`` is cheap: no stage and no TensorFlow is imported until it is used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = (
    "io", "manifest", "demo", "collect", "faces", "data", "learn", "analysis", "recognize",
    "notebook_runner", "doctor", "cli",
)
__all__ = ["__version__", *_SUBMODULES]


def __getattr__(name: str) -> Any:
    """Import stage modules lazily so ``import facelab`` never pulls in TensorFlow."""
    if name in _SUBMODULES:
        return importlib.import_module(f"facelab.{name}")
    raise AttributeError(f"module 'facelab' has no attribute {name!r}")
