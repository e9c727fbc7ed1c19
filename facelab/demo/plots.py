"""Figures of the demo data: the identities, photos per identity."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image

from facelab.demo.photos import face_crop, identity_faces, portraits, read_photos

__all__ = ["face_crop", "identity_grid", "photos_per_identity_plot", "plot_identities"]


def _face_grid(faces: list[tuple[str, Image.Image]], columns: int,
               cell: tuple[float, float], title: str = "") -> Any:
    """Draw square faces in a grid, ``columns`` wide, each titled; ``cell`` is inches."""
    import matplotlib.pyplot as plt

    rows = max(1, -(-len(faces) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * cell[0], rows * cell[1]),
                             squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (label, image) in zip(axes.ravel(), faces, strict=False):
        ax.imshow(image)
        ax.set_title(label, fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_identities(out_dir: str | os.PathLike[str], cols: int = 8, size: int = 96) -> Any:
    """Draw a grid of the identities (one portrait each, name and photo count).

    Returns:
        The matplotlib figure.
    """
    counts = read_photos(out_dir).groupby("person").size()
    faces = [(f"{person}\n{counts.get(person, 0)} photos", image)
             for person, image in portraits(out_dir, size)]
    return _face_grid(faces, cols, (1.6, 1.9))


def identity_grid(demo_dir: str | Path, photos: pd.DataFrame | None = None,
                  columns: int = 8, size: int = 96) -> Any:
    """Plot one face per identity (its first single-face photo), titled by name."""
    faces = identity_faces(demo_dir, photos, size=size, margin=0.25)
    return _face_grid(faces, columns, (1.4, 1.6),
                      title=f"{len(faces)} demo identities (one face each)")


def photos_per_identity_plot(photos: pd.DataFrame) -> Any:
    """Plot photos per identity, sorted: the imbalance the blog post suffered."""
    import matplotlib.pyplot as plt

    counts = photos["person"].value_counts().sort_values(ascending=False)
    fig, ax = plt.subplots(figsize=(max(6.0, len(counts) * 0.22), 3.8))
    ax.bar(range(len(counts)), counts.to_numpy(), color="tab:blue")
    ax.axhline(counts.median(), color="tab:red", linestyle="--",
               label=f"median {counts.median():.0f}")
    ax.set_xticks(range(len(counts)))
    ax.set_xticklabels(counts.index, rotation=90, fontsize=6 if len(counts) > 20 else 8)
    ax.set_ylabel("photos")
    ax.set_title(f"photos per identity: {counts.max()} vs {counts.min()} "
                 f"({counts.max() / max(1, counts.min()):.1f}x); {len(photos)} photos")
    ax.legend()
    fig.tight_layout()
    return fig
