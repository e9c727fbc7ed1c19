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
    status = out["status"].astype(object).to_numpy().copy()
    reason = out["reason"].fillna("").astype(object).to_numpy().copy()
    dup_group = out["dup_group"].to_numpy().copy()

    def column(name: str) -> list[str]:
        if name not in out.columns:
            return [""] * len(out)
        return [v if isinstance(v, str) else "" for v in out[name].tolist()]

    person, rect = column("person"), column("rect")
    sha_all, ph_all, dh_all = column("sha256"), column("phash"), column("dhash")
    imagenum = out["imagenum"].tolist() if "imagenum" in out.columns else [None] * len(out)
    has = np.array([bool(a and b and c) for a, b, c in zip(sha_all, ph_all, dh_all,
                                                           strict=True)], dtype=bool)

    def candidates() -> np.ndarray:
        return np.nonzero((status == OK) & has)[0]

    def label(row: int) -> str:
        return _label(person[row], imagenum[row])

    # 1. known placeholders
    if known:
        known_sha = {k.sha256: k.name for k in known}
        known_p = hash_array([k.phash for k in known])
        known_d = hash_array([k.dhash for k in known])
        for i in candidates():
            sha, ph, dh = sha_all[i], ph_all[i], dh_all[i]
            name = known_sha.get(sha)
            if name is None:
                dist = np.maximum(np.bitwise_count(known_p ^ np.uint64(int(ph, 16))),
                                  np.bitwise_count(known_d ^ np.uint64(int(dh, 16))))
                if dist.min() <= placeholder_distance:
                    name = known[int(dist.argmin())].name
            if name is not None:
                status[i] = PLACEHOLDER
                reason[i] = f"matches the known placeholder picture {name}"

    # 2. the same picture behind URLs of several different people
    idx = candidates()
    if len(idx):
        labels = cluster([sha_all[i] for i in idx], [ph_all[i] for i in idx],
                         placeholder_distance, second=[dh_all[i] for i in idx])
        groups: dict[int, list[int]] = {}
        for pos, lab in enumerate(labels):
            groups.setdefault(lab, []).append(int(idx[pos]))
        for rows in groups.values():
            people = {_same_person(person[r]) for r in rows}
            if len(people) >= min_people:
                for r in rows:
                    status[r] = PLACEHOLDER
                    reason[r] = (f"the same picture is served for {len(rows)} URLs of "
                                 f"{len(people)} different people: a placeholder "
                                 "('image not available'), not a photo")

    # 3. exact and near duplicates among the rest
    idx = candidates()
    if len(idx):
        width = pd.to_numeric(out["width"].iloc[idx], errors="coerce").fillna(0).to_numpy()
        height = pd.to_numeric(out["height"].iloc[idx], errors="coerce").fillna(0).to_numpy()
        aspects = [w / h if h else 0.0 for w, h in zip(width, height, strict=True)]
        shas = [sha_all[i] for i in idx]
        hashes = [ph_all[i] for i in idx]
        dhashes = [dh_all[i] for i in idx]
        labels = cluster(shas, hashes, near_threshold, aspects, aspect_tolerance, dhashes)
        groups = {}
        for pos, lab in enumerate(labels):
            groups.setdefault(lab, []).append(pos)
        rects = [_normalized_rect(rect[int(i)], width[p], height[p])
                 for p, i in enumerate(idx)]
        number = 0
        for lab in sorted(groups, key=lambda g: idx[groups[g][0]]):
            members = groups[lab]
            if len(members) < 2:
                continue
            number += 1
            name = f"d{number:05d}"
            # largest resolution first, then earliest row; one kept row per distinct face
            ordered = sorted(members, key=lambda p: (-(width[p] * height[p]), idx[p]))
            kept: list[int] = []
            copy_of: dict[int, int] = {}
            for p in ordered:
                match = next((k for k in kept if _same_face(rects[p], rects[k])), None)
                if match is None:
                    kept.append(p)
                else:
                    copy_of[p] = match
            faces = len(kept)
            for p in members:
                row = int(idx[p])
                dup_group[row] = name
                if p not in copy_of:
                    if faces > 1:
                        note = (f"same photo as the other rows of {name}, a different face "
                                "(rect): kept")
                        reason[row] = f"{reason[row]}; {note}" if reason[row] else note
                    continue
                keep = copy_of[p]
                keep_row = int(idx[keep])
                how = ("same bytes" if shas[p] == shas[keep] else
                       f"near copy, phash/dhash distance {hamming(hashes[p], hashes[keep])}/"
                       f"{hamming(dhashes[p], dhashes[keep])}, "
                       f"{int(width[p])}x{int(height[p])} vs {int(width[keep])}x"
                       f"{int(height[keep])}")
                status[row] = DUPLICATE
                reason[row] = f"duplicate of {label(keep_row)} ({how})"
                mine, theirs = person[row], person[keep_row]
                if _same_person(mine) != _same_person(theirs):
                    conflict = (f"label conflict: the same face is labelled {theirs!r} and "
                                f"{mine!r}")
                    reason[row] += f"; {conflict}"
                    note = f"kept copy of {name}; {conflict}"
                    reason[keep_row] = (f"{reason[keep_row]}; {note}" if reason[keep_row]
                                        else note)
    out["status"] = status
    out["reason"] = reason
    out["dup_group"] = dup_group
    return out
