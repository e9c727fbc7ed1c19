"""Figures of the demo data: the identities, photos per identity."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image

from facelab.demo.photos import PHOTOS_CSV, portraits, read_photos
from facelab.manifest import parse_rect


def plot_identities(out_dir: str | os.PathLike[str], cols: int = 8, size: int = 96) -> Any:
    """Draw a grid of the identities (one portrait each, name and photo count).

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    items = portraits(out_dir, size)
    counts = read_photos(out_dir).groupby("person").size()
    rows = max(1, -(-len(items) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.6, rows * 1.9), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (person, img) in zip(axes.ravel(), items, strict=False):
        ax.imshow(img)
        ax.set_title(f"{person}\n{counts.get(person, 0)} photos", fontsize=7)
    fig.tight_layout()
    return fig


def face_crop(image_path: str | Path, rect: str, size: int = 96, margin: float = 0.25) -> Any:
    """Crop the labelled face of a photo (rect widened by ``margin``) to a square image."""
    with Image.open(image_path) as image:
        image = image.convert("RGB")
        box = parse_rect(rect) or (0, 0, image.width, image.height)
        x0, y0, x1, y1 = box
        side = max(x1 - x0, y1 - y0) * (1 + 2 * margin)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        crop = image.crop((round(cx - side / 2), round(cy - side / 2),
                           round(cx + side / 2), round(cy + side / 2)))
        return crop.resize((size, size), Image.Resampling.LANCZOS)


def identity_grid(demo_dir: str | Path, photos: pd.DataFrame | None = None,
                  columns: int = 8, size: int = 96) -> Any:
    """Plot one face per identity (its first single-face photo), titled by name."""
    import matplotlib.pyplot as plt

    demo_dir = Path(demo_dir)
    photos = photos if photos is not None else pd.read_csv(demo_dir / PHOTOS_CSV)
    single = photos[photos["n_faces"] == 1] if "n_faces" in photos.columns else photos
    first = single.groupby("person", sort=False).head(1)
    rows = max(1, -(-len(first) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.4, rows * 1.6), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, photo in zip(axes.flat, first.itertuples(index=False), strict=False):
        ax.imshow(face_crop(demo_dir / photo.path, photo.rect, size=size))
        ax.set_title(str(photo.person), fontsize=7)
    fig.suptitle(f"{len(first)} demo identities (one face each)")
    fig.tight_layout()
    return fig


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
