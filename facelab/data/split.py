"""The train/val(/test) split: stratified, leak-free, made once and first.

The blog post had no split at the start and re-split 7:3 late, after decisions had
already been made on all the data.  Here the split is the first thing made from the
faces and it is written down (``workdir/split/manifest.csv`` with ``label`` and
``split`` columns, plus ``labels.json``); every later stage reads it and never re-splits.

:func:`stratified_split` keeps every class's proportions (within one photo when rows are
independent), and keeps all rows of one duplicate group (``dup_group`` from the
collection stage: the same photo downloaded twice, re-encoded or resized) in one split,
so a photo never sits in train and val at once.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from facelab.data.labels import LabelMap, add_labels, load_faces, relative_to
from facelab.io import atomic_write_bytes
from facelab.lock import writes_folder
from facelab.manifest import FACE_SETTINGS_NAME, LABELS_NAME, MANIFEST_NAME, write_manifest

DEFAULT_FRACTIONS: dict[str, float] = {"train": 0.7, "val": 0.3}


SPLIT_NAMES = ("train", "val", "test")


SPLIT_INFO = "split.json"


def normalise_fractions(fractions: Mapping[str, float] | Sequence[float] | None
                        ) -> dict[str, float]:
    """Check and normalise split fractions.

    Args:
        fractions: ``{"train": .7, "val": .3}`` (names from train/val/test), a sequence of
            2 or 3 numbers meaning train, val(, test), or ``None`` for 70/30.

    Returns:
        Fractions by split name, in train, val, test order, zero-fraction splits dropped.

    Raises:
        ValueError: For unknown names, negative numbers, or a sum other than 1.
    """
    if fractions is None:
        return dict(DEFAULT_FRACTIONS)
    if not isinstance(fractions, Mapping):
        values = list(fractions)
        if len(values) not in (2, 3):
            raise ValueError(f"fractions {values} must be (train, val) or (train, val, test)")
        fractions = dict(zip(SPLIT_NAMES, values, strict=False))
    unknown = [k for k in fractions if k not in SPLIT_NAMES]
    if unknown:
        raise ValueError(f"unknown split name(s) {unknown}: use {list(SPLIT_NAMES)}")
    out = {k: float(fractions[k]) for k in SPLIT_NAMES if k in fractions}
    if any(v < 0 or math.isnan(v) for v in out.values()):
        raise ValueError(f"fractions {out} must be >= 0")
    if abs(sum(out.values()) - 1.0) > 1e-6:
        raise ValueError(f"fractions {out} sum to {sum(out.values()):.4f}, not 1")
    out = {k: v for k, v in out.items() if v > 0}
    if "train" not in out:
        raise ValueError("the train fraction must be > 0")
    return out


def min_class_size(fractions: Mapping[str, float] | Sequence[float] | None = None) -> int:
    """Return the fewest photos (groups) a class needs so that every split gets >= 1.

    A split of fraction f needs ``n * f >= 1``, so ``n >= ceil(1 / f)`` for the smallest f
    (70/30 -> 4, 70/15/15 -> 7).
    """
    fr = normalise_fractions(fractions)
    return max(math.ceil(1.0 / f - 1e-9) for f in fr.values())


def _targets(n: int, fractions: Mapping[str, float]) -> dict[str, int]:
    """Largest-remainder apportionment of n rows to splits (sums to n)."""
    raw = {k: n * f for k, f in fractions.items()}
    base = {k: math.floor(v) for k, v in raw.items()}
    left = n - sum(base.values())
    for k in sorted(raw, key=lambda k: (raw[k] - base[k], fractions[k]), reverse=True)[:left]:
        base[k] += 1
    return base


def _group_keys(df: pd.DataFrame, group: str | None) -> pd.Series:
    """One key per row: the duplicate group, or the row itself when it has none."""
    own = pd.Series([f"row:{i}" for i in range(len(df))], index=df.index)
    if not group or group not in df.columns:
        return own
    col = df[group]
    empty = col.isna() | (col.astype(str).str.strip().isin(["", "-1", "nan", "None"]))
    return own.where(empty, "grp:" + col.astype(str))


def stratified_split(manifest: pd.DataFrame,
                     fractions: Mapping[str, float] | Sequence[float] | None = None,
                     seed: int = 0, group: str | None = "dup_group",
                     label: str = "person", small: str = "error") -> pd.DataFrame:
    """Assign every row to train/val(/test), per class, keeping duplicate groups whole.

    Per class, the rows' duplicate groups are shuffled (``seed``) and dealt, largest
    first, to the split furthest below its target (targets by largest remainder, so with
    independent rows every class's split sizes are within one photo of ``n * fraction``).
    A group that spans several classes (a label conflict) goes to one split as a whole.

    Args:
        manifest: One row per face; needs the ``label`` column (default ``person``).
        fractions: ``{"train": .7, "val": .3}`` (default, like the post), or with
            ``"test"``; a sequence (train, val[, test]) works too.
        seed: Seed of the shuffle; the same inputs and seed give the same split.
        group: Column of duplicate-group ids (rows with an empty value are their own
            group); ``None`` or a missing column means every row is independent.
        label: The class column.
        small: A class too small to fill every split: ``"error"`` (raise) or ``"keep"``
            (deal it all the same: training first, so some of its splits stay empty;
            ``facelab fit`` keeps every person and says so).

    Returns:
        A copy of the manifest with a ``split`` column.

    Raises:
        ValueError: For an empty manifest, bad fractions, or (``small="error"``) a class
            too small to split (the message names the class and the minimum it needs).
    """
    if small not in ("error", "keep"):
        raise ValueError(f"small={small!r}: use 'error' or 'keep'")
    fr = normalise_fractions(fractions)
    if manifest is None or len(manifest) == 0:
        raise ValueError("nothing to split: the manifest is empty (no kept face)")
    if label not in manifest.columns:
        raise ValueError(f"manifest has no {label!r} column to stratify on")
    df = manifest.copy()
    keys = _group_keys(df, group)
    need = min_class_size(fr)
    rng = np.random.default_rng(seed)
    assigned: dict[str, str] = {}     # group key -> split
    split = pd.Series("", index=df.index, dtype=object)
    for name in sorted(df[label].astype(str).unique()):
        rows = df.index[df[label].astype(str) == name]
        class_keys = keys.loc[rows]
        sizes = class_keys.value_counts()
        if (len(rows) < need or len(sizes) < len(fr)) and small == "error":
            raise ValueError(
                f"class {name!r} has {len(rows)} photo(s) in {len(sizes)} duplicate "
                f"group(s): a {'/'.join(f'{round(v * 100)}' for v in fr.values())} split "
                f"needs at least {need} independent photos per class; collect more or drop "
                "the class")
        target = _targets(len(rows), fr)
        count = dict.fromkeys(fr, 0)
        for key, size in sizes.items():   # groups already placed by another class
            if key in assigned:
                count[assigned[key]] += int(size)
        free = [k for k in sizes.index if k not in assigned]
        order = rng.permutation(len(free))
        free = sorted((free[i] for i in order), key=lambda k: -int(sizes[k]))  # stable
        for key in free:
            best = max(fr, key=lambda s: (target[s] - count[s], fr[s]))
            assigned[key] = best
            count[best] += int(sizes[key])
        split.loc[rows] = class_keys.map(assigned).to_numpy()
        empty = [s for s in fr if count[s] == 0]
        if empty and small == "error":
            raise ValueError(f"class {name!r}: its duplicate groups left split(s) {empty} "
                             f"empty; it needs more independent photos (>= {need})")
    df["split"] = split
    return df


def naive_split(manifest: pd.DataFrame, train_fraction: float = 0.7,
                seed: int = 0) -> pd.DataFrame:
    """Split rows at random, ignoring classes and duplicate groups (the pitfall, for plots).

    Returns:
        A copy with ``split`` = ``train`` for a random ``train_fraction`` of rows, else
        ``val``.
    """
    df = manifest.copy()
    rng = np.random.default_rng(seed)
    train = rng.permutation(len(df)) < round(train_fraction * len(df))
    df["split"] = np.where(train, "train", "val")
    return df


def split_report(manifest: pd.DataFrame, label: str = "person") -> pd.DataFrame:
    """Photos per class and split, with each split's share of the class."""
    counts = pd.crosstab(manifest[label], manifest["split"])
    counts = counts[[s for s in SPLIT_NAMES if s in counts.columns]]
    shares = counts.div(counts.sum(axis=1), axis=0).add_suffix("_share")
    return pd.concat([counts, shares.round(3)], axis=1)


def leaked_groups(manifest: pd.DataFrame, group: str = "dup_group") -> pd.DataFrame:
    """Duplicate groups whose rows sit in more than one split (empty when none leak).

    Returns:
        One row per leaking group: ``group`` (the id) and ``splits`` (sorted names).
    """
    if group not in manifest.columns or "split" not in manifest.columns:
        return pd.DataFrame({"group": [], "splits": []})
    keys = _group_keys(manifest, group)
    real = ~keys.str.startswith("row:")
    splits = manifest.loc[real, "split"].groupby(keys[real]).agg(lambda s: sorted(set(s)))
    splits = splits[splits.map(len) > 1]
    return pd.DataFrame({"group": [k.removeprefix("grp:") for k in splits.index],
                         "splits": splits.tolist()})


@writes_folder("out_dir", "split")     # one writer per folder (facelab.lock)
def write_split(manifest: pd.DataFrame, out_dir: str | os.PathLike[str],
                label_map: LabelMap, info: Mapping[str, object] | None = None) -> Path:
    """Write the split stage folder: manifest.csv (paths relative to it), labels.json.

    Args:
        manifest: Rows with absolute ``path``, ``person``, ``label`` and ``split``.
        out_dir: The stage folder (e.g. ``workdir/split``).
        label_map: The map behind ``label``.
        info: Extra facts for ``split.json`` (fractions, seed, source ...).

    Returns:
        The manifest path.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    df = manifest.copy()
    for column in [c for c in df.columns if c == "path" or str(c).endswith("_path")]:
        values = df[column].fillna("").astype(str)
        rel = relative_to([v for v in values if v], out_dir)
        df.loc[values != "", column] = rel
    for column in ("status", "reason"):
        if column not in df.columns:
            df[column] = "ok" if column == "status" else ""
    label_map.save(out_dir / LABELS_NAME)
    if info is not None:
        text = json.dumps(dict(info), ensure_ascii=False, indent=2, default=str) + "\n"
        atomic_write_bytes(out_dir / SPLIT_INFO, text.encode("utf-8"))
    return write_manifest(df, out_dir / MANIFEST_NAME)


@writes_folder("out_dir", "split")
def split_stage(source: str | os.PathLike[str] | pd.DataFrame, out_dir: str | os.PathLike[str],
                fractions: Mapping[str, float] | Sequence[float] | None = None, seed: int = 0,
                group: str | None = "dup_group", force: bool = False
                ) -> tuple[pd.DataFrame, LabelMap]:
    """Make the split once: labels + stratified split of SOURCE, written to ``out_dir``.

    When ``out_dir`` already holds a split made with the same fractions, seed and group,
    it is read back instead of being remade (the split is made once; a changed split
    would leak validation photos into training decisions).

    Args:
        source: Anything :func:`facelab.data.labels.load_faces` reads (``workdir/faces``, a
            folder of crops per person, ...).
        out_dir: The split stage folder (``workdir/split``).
        fractions: See :func:`stratified_split`.
        seed: The split's seed.
        group: Duplicate-group column.
        force: Remake the split even when one with other settings exists.

    Returns:
        The manifest (absolute paths, ``label`` and ``split``) and the label map.

    Raises:
        ValueError: When a split with other settings already exists and ``force`` is False.
        facelab.lock.FolderBusyError: When another run writes ``out_dir`` or ``source``.
    """
    out_dir = Path(out_dir)
    fr = normalise_fractions(fractions)
    settings = {"fractions": fr, "seed": int(seed), "group": group}
    info_path = out_dir / SPLIT_INFO
    if not force and info_path.is_file() and (out_dir / MANIFEST_NAME).is_file():
        old = json.loads(info_path.read_text(encoding="utf-8"))
        if {k: old.get(k) for k in settings} == json.loads(json.dumps(settings)):
            df = load_faces(out_dir)
            now = set(load_faces(source)["path"])
            if now != set(df["path"]):
                raise ValueError(
                    f"{out_dir} holds a split of other faces than {source} now has "
                    f"({len(now - set(df['path']))} new, {len(set(df['path']) - now)} gone): "
                    "the split is made once per data set; pass force=True (or another "
                    "folder) to make a new one")
            if not isinstance(source, pd.DataFrame):
                carry_face_settings(source, out_dir)
            return df, LabelMap.load(out_dir)
        raise ValueError(f"{out_dir} already holds a split made with "
                         f"{ {k: old.get(k) for k in settings} }, not {settings}: the split "
                         "is made once; pass force=True (or another folder) to remake it")
    faces = load_faces(source)
    df, label_map = add_labels(faces)
    df = stratified_split(df, fr, seed=seed, group=group)
    info = {**settings, "source": str(source) if not isinstance(source, pd.DataFrame)
            else "DataFrame", "rows": len(df),
            "per_split": df["split"].value_counts().to_dict()}
    write_split(df, out_dir, label_map, info)
    if not isinstance(source, pd.DataFrame):
        carry_face_settings(source, out_dir)
    return df, label_map


def carry_face_settings(source: str | os.PathLike[str], out_dir: str | os.PathLike[str]
                        ) -> Path | None:
    """Copy the face stage's ``face_settings.json`` from SOURCE's folder into ``out_dir``.

    The file says how the faces were detected and cropped; the split and model folders
    carry it so that ``facelab predict`` repeats it (see :mod:`facelab.faces.settings`).

    Returns:
        The copy, or ``None`` when SOURCE has no such file (ready-made crops).
    """
    folder = Path(source)
    folder = folder.parent if folder.is_file() else folder
    found = folder / FACE_SETTINGS_NAME
    if not found.is_file() or found.resolve() == (Path(out_dir) / FACE_SETTINGS_NAME).resolve():
        return None
    target = Path(out_dir) / FACE_SETTINGS_NAME
    atomic_write_bytes(target, found.read_bytes())
    return target


def read_split(folder: str | os.PathLike[str]) -> tuple[pd.DataFrame, LabelMap]:
    """Read a split stage folder: manifest (absolute paths) and its label map."""
    df = load_faces(folder)
    if "split" not in df.columns:
        raise ValueError(f"{folder}'s manifest has no split column: make it with "
                         "facelab.data.split.split_stage (notebook 03)")
    return df, LabelMap.load(folder)


__all__ = ["stratified_split", "naive_split", "split_stage", "read_split",
           "write_split", "split_report", "leaked_groups", "min_class_size",
           "normalise_fractions", "carry_face_settings"]
