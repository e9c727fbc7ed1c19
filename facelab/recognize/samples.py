"""Photos to try a model on, picked from a face stage's manifest (notebook 09, benchmarks)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from facelab.manifest import OK, read_manifest


def face_stage_photos(faces_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """Every photo the face stage looked at, once, kept or not.

    Returns:
        ``person``, ``photo`` (absolute path), ``n_faces`` and ``status`` per photo.
    """
    folder = Path(faces_dir).resolve()
    df = read_manifest(folder)
    df = df[df["photo_path"].fillna("").astype(str) != ""].copy()
    df["photo"] = [os.path.normpath(folder / p) for p in df["photo_path"].astype(str)]
    df["n_faces"] = pd.to_numeric(df["n_faces"], errors="coerce").fillna(0).astype(int)
    return df.drop_duplicates("photo")[["person", "photo", "n_faces", "status"]].reset_index(
        drop=True)


def group_photos(faces_dir: str | os.PathLike[str], n: int = 8, seed: int = 0) -> list[str]:
    """Up to ``n`` photos in which the face stage found several faces (seeded sample)."""
    df = face_stage_photos(faces_dir)
    groups = df[df["n_faces"] > 1]
    return groups.sample(n=min(n, len(groups)), random_state=seed)["photo"].tolist()


def photos_of(faces_dir: str | os.PathLike[str], people: Iterable[str], n: int = 8,
              seed: int = 0, single: bool = True) -> list[str]:
    """Up to ``n`` photos of ``people`` (kept one-face photos when ``single``)."""
    df = face_stage_photos(faces_dir)
    df = df[df["person"].astype(str).isin(set(people))]
    if single:
        df = df[(df["status"] == OK) & (df["n_faces"] == 1)]
    return df.sample(n=min(n, len(df)), random_state=seed)["photo"].tolist()
