"""Labels: person names -> stable integer ids, and loading the faces to train on.

The blog post used names as labels and fought TensorFlow to turn them into softmax
indices; it later regenerated integer labels 0..44 by hand.  Here a :class:`LabelMap`
is built once from the data, saved as ``labels.json`` next to the split, and reused by
training and analysis.  The order is documented and stable: **names sorted by Python's
``sorted`` (Unicode code point order), id = position**.  An unknown name raises with the
name in the message: there is no silent "out of vocabulary = 0" class.  One-hot vectors
are made inside the tf.data pipeline with ``tf.one_hot`` (:mod:`facelab.data.pipeline`).

:func:`load_faces` turns any SOURCE (a stage folder with ``manifest.csv``, e.g.
``workdir/faces``, or a folder with one sub-folder of face crops per person) into one
manifest of kept faces with absolute paths; notebooks and ``facelab fit`` start there.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from facelab.io import atomic_write_bytes
from facelab.lock import check_complete
from facelab.manifest import LABELS_NAME, MANIFEST_NAME, OK, read_manifest


class UnknownLabelError(KeyError):
    """A name (or id) that is not in the label map; the message names it."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class LabelMap:
    """Person names <-> integer ids 0..K-1 (names sorted by code point, id = position).

    Attributes:
        names: The class names in id order.
        counts: Number of examples per name when the map was built (informative; saved in
            the JSON so a reader sees the class sizes the model was trained on).
    """

    names: tuple[str, ...]
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = tuple(str(n) for n in self.names)
        if not names:
            raise ValueError("a label map needs at least one name")
        if list(names) != sorted(set(names)):
            raise ValueError("label map names must be unique and sorted (use "
                             "LabelMap.from_names to build one from raw names)")
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "_index", {n: i for i, n in enumerate(names)})

    @classmethod
    def from_names(cls, names: Iterable[str]) -> LabelMap:
        """Build a map from the names of all examples (duplicates are counted).

        Args:
            names: One name per example, e.g. a manifest's ``person`` column.

        Raises:
            ValueError: When a name is empty or missing.
        """
        values = list(names)
        bad = [n for n in values if not isinstance(n, str) or not n.strip()]
        if bad:
            raise ValueError(f"{len(bad)} example(s) have an empty or missing name "
                             f"(e.g. {bad[0]!r}): fix or drop those manifest rows first")
        counts = Counter(values)
        return cls(tuple(sorted(counts)), {n: int(counts[n]) for n in sorted(counts)})

    @classmethod
    def from_manifest(cls, manifest: pd.DataFrame, column: str = "person") -> LabelMap:
        """Build a map from a manifest's name column (all rows given count)."""
        if column not in manifest.columns:
            raise ValueError(f"manifest has no {column!r} column (columns: "
                             f"{list(manifest.columns)})")
        return cls.from_names(manifest[column].tolist())

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self._index  # type: ignore[attr-defined]

    @property
    def num_classes(self) -> int:
        """K, the number of classes (the one-hot depth)."""
        return len(self.names)

    def index(self, name: str) -> int:
        """Return the id of one name.

        Raises:
            UnknownLabelError: When the name is not in the map (the message names it).
        """
        try:
            return self._index[name]  # type: ignore[attr-defined]
        except (KeyError, TypeError):
            preview = ", ".join(repr(n) for n in self.names[:5])
            more = ", ..." if len(self.names) > 5 else ""
            raise UnknownLabelError(
                f"unknown label {name!r}: not one of the {len(self.names)} names of this "
                f"label map ({preview}{more}); was the map built from another manifest? "
                "Rebuild it with LabelMap.from_manifest or drop that row") from None

    def encode(self, names: Iterable[str]) -> np.ndarray:
        """Ids of many names (int32 array); raises on the first unknown name."""
        return np.fromiter((self.index(n) for n in names), dtype=np.int32)

    def decode(self, ids: Iterable[int] | int) -> list[str] | str:
        """Names of ids (a single id gives a single name).

        Raises:
            UnknownLabelError: For an id outside 0..K-1.
        """
        if isinstance(ids, (int, np.integer)):
            i = int(ids)
            if not 0 <= i < len(self.names):
                raise UnknownLabelError(f"label id {i} is outside 0..{len(self.names) - 1}")
            return self.names[i]
        return [self.decode(int(i)) for i in ids]  # type: ignore[misc]

    def to_dict(self) -> dict[str, object]:
        """Return the JSON form: ``order``, ``num_classes`` and ``classes`` (id, name, count)."""
        return {"order": "names sorted by Unicode code point; id = position",
                "num_classes": len(self.names),
                "classes": [{"id": i, "name": n, "count": int(self.counts.get(n, 0))}
                            for i, n in enumerate(self.names)]}

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the map as JSON (atomically); a folder gets ``labels.json`` inside."""
        path = Path(path)
        if path.suffix != ".json":
            path = path / LABELS_NAME
        text = json.dumps(self.to_dict(), ensure_ascii=False, indent=2) + "\n"
        atomic_write_bytes(path, text.encode("utf-8"))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LabelMap:
        """Read a map written by :meth:`save` (a file, or a folder holding labels.json).

        Raises:
            FileNotFoundError: When there is no such file.
            ValueError: When the ids are not 0..K-1 in sorted-name order.
        """
        path = Path(path)
        if path.suffix != ".json":
            path = path / LABELS_NAME
        if not path.is_file():
            raise FileNotFoundError(f"no label map at {path}: it is written by the split "
                                    "stage (notebook 03 or facelab.data.split.split_stage)")
        data = json.loads(path.read_text(encoding="utf-8"))
        classes = sorted(data["classes"], key=lambda c: int(c["id"]))
        if [int(c["id"]) for c in classes] != list(range(len(classes))):
            raise ValueError(f"{path}: class ids are not 0..K-1")
        names = tuple(str(c["name"]) for c in classes)
        if list(names) != sorted(names):
            raise ValueError(f"{path}: names are not in sorted order, so ids would not "
                             "match facelab's documented order")
        return cls(names, {str(c["name"]): int(c.get("count", 0)) for c in classes})


def load_faces(source: str | os.PathLike[str] | pd.DataFrame,
               only_ok: bool = True) -> pd.DataFrame:
    """Read the faces to train on from any kind of source, with absolute file paths.

    Args:
        source: One of

            * a stage folder holding ``manifest.csv`` (``workdir/faces`` from the face
              stage, ``workdir/split`` from the split stage, ...), or that CSV file;
            * a folder with one sub-folder of face crops per person (``ROOT/<name>/*.jpg``,
              e.g. ``../shared/data/pubfig83-dev``), read with
              :func:`facelab.collect.sources.read_folder`;
            * a DataFrame already loaded (returned as a copy, paths left as they are).
        only_ok: Keep only rows whose ``status`` is ``ok`` (kept faces).

    Returns:
        The manifest (index reset) with ``path`` (and any ``*_path`` column, such as the
        face stage's ``photo_path``) made absolute; other columns (``person``,
        ``status``, ``reason``, ``dup_group``, ``split``, ``label`` ...) are kept as they
        are.

    Raises:
        FileNotFoundError: When ``source`` does not exist.
        ValueError: When it has no ``person``/``path`` columns or no kept face.
        facelab.lock.FolderBusyError: When another run is still writing that stage folder.
    """
    if isinstance(source, pd.DataFrame):
        df = source.copy()
        origin = "the given DataFrame"
    else:
        root = Path(source)
        if not root.exists():
            raise FileNotFoundError(f"{root} does not exist: pass a stage folder with "
                                    "manifest.csv (e.g. workdir/faces) or a folder with "
                                    "one sub-folder of face crops per person")
        if root.is_file() or (root / MANIFEST_NAME).is_file():
            folder = root.parent if root.is_file() else root
            check_complete(folder, how_to_wait=None)   # not a stage still being written
            df = read_manifest(root)
        else:
            from facelab.collect.sources import read_folder

            df = read_folder(root)
            folder = root
        for column in _path_columns(df):
            df[column] = _resolve(df[column], folder)
        origin = str(root)
    missing = [c for c in ("person", "path") if c not in df.columns]
    if missing:
        raise ValueError(f"{origin} lacks column(s) {missing}: expected a face manifest "
                         "with person and path")
    if only_ok and "status" in df.columns:
        df = df[df["status"] == OK]
    df = df[df["path"].astype(str) != ""]
    if df.empty:
        raise ValueError(f"{origin} has no kept face (status ok with a path): run the face "
                         "stage first or check its manifest")
    df = df.reset_index(drop=True)
    df["person"] = df["person"].astype(str)
    return df


def _path_columns(df: pd.DataFrame) -> list[str]:
    """Columns of relative file paths: ``path`` and any ``*_path`` (e.g. ``photo_path``)."""
    return [c for c in df.columns if c == "path" or str(c).endswith("_path")]


def _resolve(paths: pd.Series, folder: Path) -> pd.Series:
    """Join relative paths to ``folder`` (absolute, normalised; '' stays '').

    Like :func:`facelab.manifest.absolute_paths`, but without a system call per file.
    """
    base = str(folder.resolve())
    return paths.map(lambda p: os.path.normpath(os.path.join(base, p))
                     if isinstance(p, str) and p else "")


def add_labels(manifest: pd.DataFrame, label_map: LabelMap | None = None,
               column: str = "person") -> tuple[pd.DataFrame, LabelMap]:
    """Add an integer ``label`` column (building the map from the manifest when not given).

    Returns:
        A copy of the manifest with ``label``, and the map used.

    Raises:
        UnknownLabelError: When a name is not in the given map.
    """
    label_map = label_map or LabelMap.from_manifest(manifest, column)
    out = manifest.copy()
    out["label"] = label_map.encode(out[column].tolist())
    return out, label_map


def relative_to(paths: Sequence[str], folder: str | os.PathLike[str]) -> list[str]:
    """Absolute paths made relative to ``folder`` (POSIX separators) for a manifest."""
    base = os.path.abspath(folder)
    return [Path(os.path.relpath(os.path.abspath(p), base)).as_posix() for p in paths]
