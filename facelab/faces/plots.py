"""Figures of the face stage: status counts, rejected photos with their boxes, crops."""

from __future__ import annotations

import json
import math
import os
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image

from facelab.faces.crops import UnreadablePhoto, load_photo, to_rgb
from facelab.faces.rule import (
    FACE_TOO_SMALL,
    LOW_CONFIDENCE,
    MULTIPLE_FACES,
    NO_FACE,
    RECT_MISMATCH,
    STATUSES,
    iou,
)
from facelab.manifest import (
    OK,
    parse_rect,
)


# --------------------------------------------------------------------------- plots
def _faces_of(row: pd.Series) -> list[list[float]]:
    try:
        return json.loads(row["detections"]) if row.get("detections") else []
    except (TypeError, ValueError):
        return []


def _show_photo(ax: Any, path: Path, row: pd.Series, title: str) -> None:
    from matplotlib.patches import Rectangle

    ax.set_xticks([])
    ax.set_yticks([])
    try:
        image = load_photo(path.read_bytes())
    except (OSError, UnreadablePhoto):
        ax.text(0.5, 0.5, "unreadable", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title, fontsize=7)
        return
    ax.imshow(image)
    chosen = parse_rect(str(row.get("box", "")))
    for x0, y0, x1, y1, conf in _faces_of(row):
        is_chosen = chosen is not None and iou((x0, y0, x1, y1), chosen) > 0.9
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, linewidth=1.5,
                               edgecolor="lime" if is_chosen else "red"))
        ax.text(x0, y0, f"{conf:.2f}", color="yellow", fontsize=6, va="bottom")
    rect = parse_rect(str(row.get("rect", ""))) if "rect" in row else None
    if rect is not None:
        ax.add_patch(Rectangle((rect[0], rect[1]), rect[2] - rect[0], rect[3] - rect[1],
                               fill=False, linewidth=1.2, linestyle="--", edgecolor="cyan"))
    ax.set_title(title, fontsize=7)


def plot_status_counts(df: pd.DataFrame, ax: Any = None) -> Any:
    """Bar chart of rows per status; returns the axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3))
    counts = df["status"].value_counts()
    colours = ["tab:green" if s == OK else "tab:red" if s in STATUSES else "tab:gray"
               for s in counts.index]
    ax.bar(counts.index.astype(str), counts.to_numpy(), color=colours)
    ax.set_ylabel("rows")
    ax.set_title("face stage: rows per status (green kept, red rejected here, grey upstream)")
    ax.tick_params(axis="x", rotation=30, labelsize=8)
    return ax


def plot_rejected(df: pd.DataFrame, root: str | os.PathLike[str], per_status: int = 4,
                  statuses: Sequence[str] = (NO_FACE, LOW_CONFIDENCE, MULTIPLE_FACES,
                                             RECT_MISMATCH, FACE_TOO_SMALL),
                  seed: int = 0) -> Any:
    """Gallery of rejected photos, one row per status, with every detection drawn.

    Red boxes: detections (score on top); cyan dashed: the labelled rect.

    Args:
        df: The face stage's manifest.
        root: The face stage's folder (``photo_path`` is relative to it).
        per_status: Photos per row.
        statuses: The statuses to show (those with no rows are skipped).
        seed: Which photos are sampled.

    Returns:
        The figure (``None`` when nothing was rejected).
    """
    import matplotlib.pyplot as plt

    root = Path(root)
    shown = [s for s in statuses if (df["status"] == s).any()]
    if not shown:
        return None
    fig, axes = plt.subplots(len(shown), per_status, figsize=(2.4 * per_status,
                                                              2.6 * len(shown)),
                             squeeze=False)
    for r, status in enumerate(shown):
        sub = df[df["status"] == status]
        sub = sub.sample(n=min(per_status, len(sub)), random_state=seed)
        for c in range(per_status):
            ax = axes[r][c]
            ax.axis("off")
            if c >= len(sub):
                continue
            row = sub.iloc[c]
            ax.axis("on")
            reason = textwrap.shorten(str(row["reason"]), 80, placeholder="...")
            _show_photo(ax, root / row["photo_path"], row,
                        f"{status}\n" + "\n".join(textwrap.wrap(reason, 40)))
    fig.tight_layout()
    return fig


def plot_recovered(df: pd.DataFrame, root: str | os.PathLike[str], n: int = 6,
                   seed: int = 0) -> Any:
    """Group photos kept thanks to the rect: rect (cyan dashed), chosen face (green).

    Returns:
        The figure (``None`` when no photo was recovered).
    """
    import matplotlib.pyplot as plt

    root = Path(root)
    sub = df[(df["status"] == OK) & df["recovered"].fillna(False).astype(bool)]
    if sub.empty:
        return None
    sub = sub.sample(n=min(n, len(sub)), random_state=seed)
    fig, axes = plt.subplots(1, len(sub), figsize=(3 * len(sub), 3.2), squeeze=False)
    for ax, (_, row) in zip(axes[0], sub.iterrows(), strict=True):
        _show_photo(ax, root / row["photo_path"], row,
                    f"{row['person']}: {int(row['n_confident'])} faces, IoU {row['rect_iou']}")
    fig.tight_layout()
    return fig


def plot_crops(df: pd.DataFrame, root: str | os.PathLike[str], per_person: int = 8,
               max_people: int = 10, seed: int = 0) -> Any:
    """Grid of kept crops: one row per person (the people with most crops first).

    Returns:
        The figure (``None`` when no face was kept).
    """
    import matplotlib.pyplot as plt

    root = Path(root)
    kept_rows = df[(df["status"] == OK) & (df["path"] != "")]
    if kept_rows.empty:
        return None
    people = kept_rows["person"].value_counts().index[:max_people]
    fig, axes = plt.subplots(len(people), per_person,
                             figsize=(1.3 * per_person, 1.45 * len(people)), squeeze=False)
    for r, person in enumerate(people):
        sub = kept_rows[kept_rows["person"] == person]
        sub = sub.sample(n=min(per_person, len(sub)), random_state=seed)
        for c in range(per_person):
            ax = axes[r][c]
            ax.axis("off")
            if c < len(sub):
                with Image.open(root / sub.iloc[c]["path"]) as crop:
                    ax.imshow(crop.copy())
        axes[r][0].set_title(f"{person} ({len(kept_rows[kept_rows['person'] == person])})",
                             fontsize=7, loc="left")
    fig.tight_layout()
    return fig


def contact_sheet(paths: Sequence[str | os.PathLike[str]], columns: int = 10,
                  size: int = 96) -> Image.Image:
    """Tile images into one picture (for looking at many crops at once)."""
    rows = max(1, math.ceil(len(paths) / columns))
    sheet = Image.new("RGB", (columns * size, rows * size), (255, 255, 255))
    for k, p in enumerate(paths):
        with Image.open(p) as im:
            tile = to_rgb(im).resize((size, size))
        sheet.paste(tile, ((k % columns) * size, (k // columns) * size))
    return sheet
