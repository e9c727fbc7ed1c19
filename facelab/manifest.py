"""The manifest: the pandas table that is the contract between stages.

Every stage reads the previous stage's ``manifest.csv`` from disk and writes its own
``DIR/manifest.csv``.  Conventions shared by all stages:

* one row per photo (collection) or per face (face stage onwards);
* ``person`` (the name as given), ``status`` and ``reason`` on every row: ``status`` is
  ``"ok"`` for rows that go on, a short stage-specific word otherwise, and ``reason`` is a
  human-readable sentence for every row that was dropped;
* ``path`` is relative to the folder that holds the ``manifest.csv`` (so a stage folder
  can be moved or archived whole); :func:`absolute_paths` resolves it.

Files are written atomically (temporary name, then rename), so a killed run never leaves
a half-written manifest behind.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from facelab.io import atomic_write_bytes

if TYPE_CHECKING:   # pandas loads on first use: the collection's worker processes never need it
    import pandas as pd

OK = "ok"
MANIFEST_NAME = "manifest.csv"   # every stage folder: one row per photo or face
LABELS_NAME = "labels.json"      # split and model folders: class names, list index = label
METRICS_NAME = "metrics.json"    # model folders: the scores of the held-out split
FACE_SETTINGS_NAME = "face_settings.json"  # face, split and model folders: how faces were cut
REQUIRED_COLUMNS = ("person", "status", "reason")
_RECT = re.compile(r"^\s*-?\d+\s*,\s*-?\d+\s*,\s*-?\d+\s*,\s*-?\d+\s*$")


def write_manifest(df: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write a manifest CSV atomically.

    Args:
        df: The manifest; must have the ``person``, ``status`` and ``reason`` columns.
        path: A ``.csv`` file, or a stage folder (then ``manifest.csv`` inside it).

    Returns:
        The path of the written file.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"manifest lacks required column(s) {missing}; every stage keeps "
                         f"{list(REQUIRED_COLUMNS)}")
    path = Path(path)
    if path.suffix != ".csv":
        path = path / MANIFEST_NAME
    atomic_write_bytes(path, df.to_csv(index=False).encode("utf-8"))
    return path


def read_manifest(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a manifest written by :func:`write_manifest`.

    Args:
        path: A ``manifest.csv`` file or the stage folder that holds one.

    Returns:
        The manifest, with ``reason`` as strings (empty for kept rows).

    Raises:
        FileNotFoundError: With the stage that should have written it.
    """
    path = Path(path)
    if path.is_dir() or path.suffix != ".csv":
        path = path / MANIFEST_NAME
    if not path.exists():
        raise FileNotFoundError(
            f"no manifest at {path}: run the stage that writes it first (or pass the folder "
            "that holds its manifest.csv)")
    import pandas as pd

    df = pd.read_csv(path, keep_default_na=False, na_values=[""],
                     dtype={"person": str, "reason": str})
    if "reason" in df.columns:
        df["reason"] = df["reason"].fillna("").astype(str)
    return df


def absolute_paths(df: pd.DataFrame, root: str | os.PathLike[str],
                   column: str = "path") -> pd.Series:
    """Resolve a manifest's relative ``path`` column against its stage folder.

    Args:
        df: The manifest.
        root: The folder that holds the manifest (or the manifest file itself).
        column: The column of relative paths.

    Returns:
        Absolute paths as strings (empty where the row has no file).
    """
    root = Path(root)
    if root.suffix == ".csv":
        root = root.parent
    return df[column].map(lambda p: str((root / p).resolve()) if isinstance(p, str) and p
                          else "")


def kept(df: pd.DataFrame) -> pd.DataFrame:
    """Rows whose ``status`` is ``ok``."""
    return df[df["status"] == OK]


def status_counts(df: pd.DataFrame) -> pd.Series:
    """Count of rows per status, most frequent first."""
    return df["status"].value_counts()


def parse_rect(rect: str) -> tuple[int, int, int, int] | None:
    """Parse PubFig's ``x0,y0,x1,y1`` rect; ``None`` for an empty or malformed one."""
    if not isinstance(rect, str) or not _RECT.match(rect):
        return None
    x0, y0, x1, y1 = (int(v) for v in rect.split(","))
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


def format_rect(box: Iterable[float]) -> str:
    """Format a box as PubFig's ``x0,y0,x1,y1`` (integers)."""
    return ",".join(str(int(round(v))) for v in box)
