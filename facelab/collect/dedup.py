"""Placeholder and duplicate detection for the collection stage.

Both work on the decoded photos of a collection manifest and are computed at the end of a
run, from the journalled results only, so they are deterministic and independent of the
order in which downloads finished:

* **placeholders**: the same picture (identical bytes, or a perceptual hash within
  ``placeholder_distance`` bits) behind the URLs of at least ``min_people`` *different*
  people is what a dead host serves instead of a 404 ("image not available" pictures);
  a folder of known placeholders can be given too.
* **duplicates**: exact copies (same sha256) and near copies (re-encoded or resized: a
  perceptual hash within ``near_threshold`` bits and the same aspect ratio) are grouped in
  ``dup_group``; one row per group stays ``ok`` (the largest resolution, then the earliest
  row), the others become ``duplicate``.  Where the rows carry PubFig rects, rows whose
  rect marks a *different face* of the same photo (normalised IoU below 0.3: a group photo
  listed under two people, or twice) stay ``ok`` too: one row per face.  A duplicate whose
  person differs from its kept copy's is a label conflict, reported in ``reason``.

Perceptual hashes are ImageHash's ``phash`` (DCT) and ``dhash`` (gradient), 64 bits each,
stored as 16 hex digits (computed per photo by :func:`facelab.collect.fetch.image_hashes`);
"near" means close in *both* (and the same aspect ratio), which keeps look-alike but
different photos apart.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from facelab.collect.fetch import image_hashes
from facelab.manifest import OK, parse_rect

PLACEHOLDER = "placeholder"
DUPLICATE = "duplicate"
def hash_array(hashes: Sequence[str]) -> np.ndarray:
    """Hex hashes -> ``uint64`` array (for fast Hamming distances)."""
    return np.array([int(h, 16) for h in hashes], dtype=np.uint64)


def hamming(a: str, b: str) -> int:
    """Hamming distance between two hex hashes."""
    return int(bin(int(a, 16) ^ int(b, 16)).count("1"))


def near_pairs(hashes: np.ndarray, threshold: int, block: int = 512) -> np.ndarray:
    """All pairs ``i < j`` whose hashes differ in at most ``threshold`` bits.

    Args:
        hashes: ``uint64`` hashes, one per item.
        threshold: Largest Hamming distance counted as near.
        block: Rows compared at once (memory ~ ``block * len(hashes)`` bytes).

    Returns:
        An ``(k, 2)`` integer array of index pairs, sorted.
    """
    hashes = np.asarray(hashes, dtype=np.uint64)
    found = []
    for start in range(0, len(hashes), block):
        rows = hashes[start:start + block]
        dist = np.bitwise_count(rows[:, None] ^ hashes[None, start:])  # only j >= start
        i, j = np.nonzero(dist <= threshold)
        j = j + start
        i = i + start
        keep = j > i
        found.append(np.stack([i[keep], j[keep]], axis=1))
    if not found:
        return np.zeros((0, 2), dtype=np.int64)
    pairs = np.concatenate(found).astype(np.int64)
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)   # deterministic: smallest index is root


def cluster(keys: Sequence[str], hashes: Sequence[str], threshold: int,
            aspects: Sequence[float] | None = None, aspect_tolerance: float = 0.03,
            second: Sequence[str] | None = None) -> list[int]:
    """Cluster items that share a key or whose hashes are near.

    Args:
        keys: An exact identity per item (e.g. sha256); equal keys always cluster.
        hashes: Hex perceptual hashes, one per item.
        threshold: Largest Hamming distance that links two items (negative: exact only).
        aspects: Width/height per item; near links need aspects within
            ``aspect_tolerance`` (relative), so a crop is not a copy.
        aspect_tolerance: See ``aspects``.
        second: A second hex hash per item (e.g. dhash); near links need it within
            ``threshold`` too.

    Returns:
        A cluster id per item: the smallest item index in its cluster.
    """
    n = len(keys)
    uf = _UnionFind(n)
    first: dict[str, int] = {}
    for index, key in enumerate(keys):
        if key in first:
            uf.union(first[key], index)
        else:
            first[key] = index
    if threshold >= 0 and n > 1:
        # compare one item per exact key only (copies are already linked)
        reps = sorted(first.values())
        pairs = near_pairs(hash_array([hashes[i] for i in reps]), threshold)
        for a, b in pairs:
            i, j = reps[a], reps[b]
            if second is not None and hamming(second[i], second[j]) > threshold:
                continue
            if aspects is not None:
                ai, aj = aspects[i], aspects[j]
                if abs(ai - aj) > aspect_tolerance * max(ai, aj):
                    continue
            uf.union(i, j)
    return [uf.find(i) for i in range(n)]


@dataclass(frozen=True)
class KnownPlaceholder:
    """A known placeholder picture: its file name, sha256 and perceptual hashes."""

    name: str
    sha256: str
    phash: str
    dhash: str


def load_known_placeholders(folder: str | os.PathLike[str] | None) -> list[KnownPlaceholder]:
    """Hash every image in a folder of known placeholder pictures.

    Args:
        folder: The folder (``None``: no known placeholders).

    Returns:
        One entry per decodable image, sorted by file name.

    Raises:
        FileNotFoundError: When ``folder`` is given but is not a folder.
    """
    if folder is None:
        return []
    from PIL import Image

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no placeholder folder at {folder}: pass a folder of known "
                                "'image not available' pictures, or leave it out")
    known = []
    for file in sorted(p for p in folder.iterdir() if p.is_file()):
        data = file.read_bytes()
        try:
            with Image.open(file) as image:
                image.load()
                phash, dhash = image_hashes(image)
        except Exception:  # not an image: ignored (a README, say)
            continue
        known.append(KnownPlaceholder(file.name, hashlib.sha256(data).hexdigest(), phash,
                                      dhash))
    return known


def _label(person: str, imagenum: object) -> str:
    try:
        number = f" #{int(imagenum)}"  # type: ignore[call-overload]
    except (TypeError, ValueError):
        number = ""
    return f"{person}{number}"


def _normalized_rect(rect: object, width: float, height: float) -> tuple[float, ...] | None:
    """Express a PubFig rect as fractions of its image size (``None``: absent or unusable)."""
    box = parse_rect(rect) if isinstance(rect, str) else None
    if box is None or not width or not height:
        return None
    return (box[0] / width, box[1] / height, box[2] / width, box[3] / height)


def _same_face(a: tuple[float, ...] | None, b: tuple[float, ...] | None,
               min_iou: float = 0.3) -> bool:
    """Whether two normalised rects mark the same face (no rect: assume the same)."""
    if a is None or b is None:
        return True
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return union > 0 and inter / union >= min_iou


def _same_person(name: str) -> str:
    return " ".join(str(name).split()).casefold()


@dataclass
class _Rows:
    """The manifest columns dedup reads and writes, as plain arrays and lists."""

    status: np.ndarray
    reason: np.ndarray
    dup_group: np.ndarray
    person: list[str]
    rect: list[str]
    sha: list[str]
    phash: list[str]
    dhash: list[str]
    imagenum: list[Any]
    has: np.ndarray
    width: pd.Series
    height: pd.Series

    def candidates(self) -> np.ndarray:
        """Rows still ``ok`` with all three hashes."""
        return np.nonzero((self.status == OK) & self.has)[0]

    def label(self, row: int) -> str:
        return _label(self.person[row], self.imagenum[row])


def _rows_of(out: pd.DataFrame) -> _Rows:
    def column(name: str) -> list[str]:
        if name not in out.columns:
            return [""] * len(out)
        return [v if isinstance(v, str) else "" for v in out[name].tolist()]

    sha, ph, dh = column("sha256"), column("phash"), column("dhash")
    has = np.array([bool(a and b and c) for a, b, c in zip(sha, ph, dh, strict=True)],
                   dtype=bool)
    return _Rows(status=out["status"].astype(object).to_numpy().copy(),
                 reason=out["reason"].fillna("").astype(object).to_numpy().copy(),
                 dup_group=out["dup_group"].to_numpy().copy(), person=column("person"),
                 rect=column("rect"), sha=sha, phash=ph, dhash=dh,
                 imagenum=(out["imagenum"].tolist() if "imagenum" in out.columns
                           else [None] * len(out)),
                 has=has, width=out.get("width", pd.Series(0, index=out.index)),
                 height=out.get("height", pd.Series(0, index=out.index)))


def _mark_known(rows: _Rows, known: Sequence[KnownPlaceholder], distance: int) -> None:
    """Step 1: rows that are a known placeholder picture."""
    known_sha = {k.sha256: k.name for k in known}
    known_p = hash_array([k.phash for k in known])
    known_d = hash_array([k.dhash for k in known])
    for i in rows.candidates():
        name = known_sha.get(rows.sha[i])
        if name is None:
            dist = np.maximum(np.bitwise_count(known_p ^ np.uint64(int(rows.phash[i], 16))),
                              np.bitwise_count(known_d ^ np.uint64(int(rows.dhash[i], 16))))
            if dist.min() <= distance:
                name = known[int(dist.argmin())].name
        if name is not None:
            rows.status[i] = PLACEHOLDER
            rows.reason[i] = f"matches the known placeholder picture {name}"


def _mark_shared(rows: _Rows, min_people: int, distance: int) -> None:
    """Step 2: the same picture behind URLs of several different people."""
    idx = rows.candidates()
    if not len(idx):
        return
    labels = cluster([rows.sha[i] for i in idx], [rows.phash[i] for i in idx], distance,
                     second=[rows.dhash[i] for i in idx])
    groups: dict[int, list[int]] = {}
    for pos, lab in enumerate(labels):
        groups.setdefault(lab, []).append(int(idx[pos]))
    for members in groups.values():
        people = {_same_person(rows.person[r]) for r in members}
        if len(people) >= min_people:
            for r in members:
                rows.status[r] = PLACEHOLDER
                rows.reason[r] = (f"the same picture is served for {len(members)} URLs of "
                                  f"{len(people)} different people: a placeholder "
                                  "('image not available'), not a photo")


@dataclass
class _Candidates:
    """The rows taking part in duplicate grouping, with their sizes, hashes and rects."""

    idx: np.ndarray
    width: np.ndarray
    height: np.ndarray
    shas: list[str]
    hashes: list[str]
    dhashes: list[str]
    rects: list[tuple[float, ...] | None]


def _note(text: str, note: str) -> str:
    return f"{text}; {note}" if text else note


def _mark_group(rows: _Rows, c: _Candidates, members: list[int], name: str) -> None:
    """Mark one duplicate group: one kept row per distinct face, the rest ``duplicate``."""
    # largest resolution first, then earliest row; one kept row per distinct face
    ordered = sorted(members, key=lambda p: (-(c.width[p] * c.height[p]), c.idx[p]))
    kept: list[int] = []
    copy_of: dict[int, int] = {}
    for p in ordered:
        match = next((k for k in kept if _same_face(c.rects[p], c.rects[k])), None)
        if match is None:
            kept.append(p)
        else:
            copy_of[p] = match
    for p in members:
        row = int(c.idx[p])
        rows.dup_group[row] = name
        if p not in copy_of:
            if len(kept) > 1:
                rows.reason[row] = _note(rows.reason[row], f"same photo as the other rows of "
                                         f"{name}, a different face (rect): kept")
            continue
        keep = copy_of[p]
        keep_row = int(c.idx[keep])
        how = ("same bytes" if c.shas[p] == c.shas[keep] else
               f"near copy, phash/dhash distance {hamming(c.hashes[p], c.hashes[keep])}/"
               f"{hamming(c.dhashes[p], c.dhashes[keep])}, "
               f"{int(c.width[p])}x{int(c.height[p])} vs {int(c.width[keep])}x"
               f"{int(c.height[keep])}")
        rows.status[row] = DUPLICATE
        rows.reason[row] = f"duplicate of {rows.label(keep_row)} ({how})"
        mine, theirs = rows.person[row], rows.person[keep_row]
        if _same_person(mine) != _same_person(theirs):
            conflict = f"label conflict: the same face is labelled {theirs!r} and {mine!r}"
            rows.reason[row] += f"; {conflict}"
            rows.reason[keep_row] = _note(rows.reason[keep_row],
                                          f"kept copy of {name}; {conflict}")


def _mark_duplicates(rows: _Rows, near_threshold: int, aspect_tolerance: float) -> None:
    """Step 3: exact and near duplicates among the rows still ``ok``."""
    idx = rows.candidates()
    if not len(idx):
        return
    width = pd.to_numeric(rows.width.iloc[idx], errors="coerce").fillna(0).to_numpy()
    height = pd.to_numeric(rows.height.iloc[idx], errors="coerce").fillna(0).to_numpy()
    c = _Candidates(idx, width, height, [rows.sha[i] for i in idx],
                    [rows.phash[i] for i in idx], [rows.dhash[i] for i in idx],
                    [_normalized_rect(rows.rect[int(i)], width[p], height[p])
                     for p, i in enumerate(idx)])
    aspects = [w / h if h else 0.0 for w, h in zip(width, height, strict=True)]
    labels = cluster(c.shas, c.hashes, near_threshold, aspects, aspect_tolerance, c.dhashes)
    groups: dict[int, list[int]] = {}
    for pos, lab in enumerate(labels):
        groups.setdefault(lab, []).append(pos)
    number = 0
    for lab in sorted(groups, key=lambda g: idx[groups[g][0]]):
        if len(groups[lab]) < 2:
            continue
        number += 1
        _mark_group(rows, c, groups[lab], f"d{number:05d}")


def mark_placeholders_and_duplicates(df: pd.DataFrame, *, min_people: int = 3,
                                     placeholder_distance: int = 4, near_threshold: int = 8,
                                     known: Sequence[KnownPlaceholder] = (),
                                     aspect_tolerance: float = 0.03) -> pd.DataFrame:
    """Mark placeholder and duplicate rows of a collection manifest.

    Only rows with status ``ok`` and a ``sha256``, ``phash`` and ``dhash`` take part.
    Placeholders are decided first (known ones, then pictures shared by ``min_people`` different
    people); duplicates are then grouped among the remaining rows.

    Args:
        df: The manifest (``person``, ``imagenum``, ``status``, ``reason``, ``sha256``,
            ``phash``, ``dhash``, ``width``, ``height``), in input order.
        min_people: A picture behind the URLs of at least this many different people is
            a placeholder.
        placeholder_distance: Largest phash and dhash distance for "the same picture"
            there.
        near_threshold: Largest phash and dhash distance for a near duplicate (negative:
            exact copies only).
        known: Known placeholder pictures (:func:`load_known_placeholders`).
        aspect_tolerance: Relative aspect-ratio difference allowed within a near copy.

    Returns:
        A copy of ``df`` with ``status``, ``reason`` and ``dup_group`` updated.
    """
    if min_people < 2:
        raise ValueError(f"min_people must be at least 2 (got {min_people}): a picture shared "
                         "by one person is a duplicate, not a placeholder")
    out = df.copy()
    if "dup_group" not in out.columns:
        out["dup_group"] = ""
    out["dup_group"] = out["dup_group"].fillna("").astype(object)
    rows = _rows_of(out)
    if known:
        _mark_known(rows, known, placeholder_distance)
    _mark_shared(rows, min_people, placeholder_distance)
    _mark_duplicates(rows, near_threshold, aspect_tolerance)
    out["status"] = rows.status
    out["reason"] = rows.reason
    out["dup_group"] = rows.dup_group
    return out
