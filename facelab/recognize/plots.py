"""Pictures of predictions: annotated photos, contact sheets, the open-set curve."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from facelab.manifest import OK, parse_rect

COLOURS = {"named": (40, 180, 60), "unknown": (250, 150, 0), "skipped": (150, 150, 150)}


def _font(size: int) -> Any:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:        # Pillow < 10.1 has one bitmap size
        return ImageFont.load_default()


def _label(row: dict[str, Any] | pd.Series) -> tuple[str, tuple[int, int, int]]:
    decision = str(row.get("decision", ""))
    score = row.get("score")
    tail = f" {float(score):.2f}" if score is not None and not pd.isna(score) else ""
    if row.get("status") != OK or decision == "skipped":
        return "skipped", COLOURS["skipped"]
    if decision == "unknown":
        return f"unknown{tail}", COLOURS["unknown"]
    return f"{decision}{tail}", COLOURS["named"]


def annotate_photo(image: Image.Image, rows: pd.DataFrame | Sequence[dict[str, Any]]
                   ) -> Image.Image:
    """A copy of ``image`` with each face's box and decision drawn on it.

    Green: a name (with its score); orange: ``unknown``; grey: a face that was skipped.

    Args:
        image: The photo (RGB).
        rows: Its prediction rows (``box``, ``status``, ``decision``, ``score``).
    """
    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    records = rows.to_dict("records") if isinstance(rows, pd.DataFrame) else list(rows)
    width = max(2, round(max(out.size) / 250))
    font = _font(max(12, round(max(out.size) / 40)))
    for row in records:
        box = parse_rect(str(row.get("box") or ""))
        if box is None:
            continue
        text, colour = _label(row)
        draw.rectangle(box, outline=colour, width=width)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        y = max(0, box[1] - (bottom - top) - 2 * width)
        draw.rectangle((box[0], y, box[0] + right - left + 2 * width, y + bottom + width),
                       fill=colour)
        draw.text((box[0] + width, y), text, fill=(255, 255, 255), font=font)
    return out


def contact_sheet(images: Sequence[Image.Image], columns: int = 4, size: int = 320,
                  captions: Sequence[str] | None = None) -> Image.Image:
    """Tile photos (aspect kept) into one picture, with an optional caption under each."""
    columns = max(1, min(columns, len(images) or 1))
    rows = max(1, math.ceil(len(images) / columns))
    caption_h = 18 if captions else 0
    sheet = Image.new("RGB", (columns * size, rows * (size + caption_h)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = _font(12)
    for k, image in enumerate(images):
        tile = image.convert("RGB").copy()
        tile.thumbnail((size, size))
        x, y = (k % columns) * size, (k // columns) * (size + caption_h)
        sheet.paste(tile, (x + (size - tile.width) // 2, y + (size - tile.height) // 2))
        if captions:
            text = str(captions[k])
            text = text if len(text) <= size // 7 else text[:size // 7 - 3] + "..."
            draw.text((x + 4, y + size + 2), text, fill=(0, 0, 0), font=font)
    return sheet


def results_sheet(results: Sequence[Any], columns: int = 4, size: int = 320) -> Image.Image:
    """Annotated photos of :meth:`Recognizer.iter_predict` results as one contact sheet."""
    shown = [r for r in results if r.image is not None]
    return contact_sheet([annotate_photo(r.image, r.rows) for r in shown], columns, size,
                         captions=[str(r.item.photo).replace("\\", "/").split("/")[-1]
                                   for r in shown])


def plot_openset_curve(curve: pd.DataFrame, threshold: float, target_far: float | None = None,
                       ax: Any = None, title: str = "open set: strangers vs known faces") -> Any:
    """False accepts (strangers) and false rejects (known faces) against the threshold.

    Args:
        curve: ``openset_curve.csv`` (``threshold``, ``false_accept``, ``false_reject``,
            ``correct_named``).
        threshold: The chosen threshold (marked).
        target_far: The calibration target (drawn as a dotted line).
        ax: Axes to draw on (default: a new figure).
        title: The axes' title.

    Returns:
        The figure.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 4))
    t = curve["threshold"].to_numpy()
    ax.plot(t, curve["false_accept"], label="false accept (strangers named)", color="tab:red")
    ax.plot(t, curve["false_reject"], label="false reject (known faces unknown)",
            color="tab:blue")
    ax.plot(t, curve["correct_named"], label="known faces correctly named", color="tab:green",
            linestyle="--")
    at = int(np.argmin(np.abs(t - threshold)))
    for column, colour in (("false_accept", "tab:red"), ("false_reject", "tab:blue"),
                           ("correct_named", "tab:green")):
        ax.plot([threshold], [curve[column].iloc[at]], "o", color=colour)
    ax.axvline(threshold, color="black", linewidth=1)
    ax.annotate(f"threshold {threshold:.3f}", (threshold, 0.5), xytext=(-8, 0),
                textcoords="offset points", ha="right", fontsize=9)
    if target_far is not None:
        ax.axhline(target_far, color="tab:red", linestyle=":", linewidth=1,
                   label=f"target false-accept rate {target_far:.0%}")
    ax.set_xlabel("threshold on the score (cosine to the named person's centroid)")
    ax.set_ylabel("share of faces")
    ax.set_ylim(-0.02, 1.02)
    inner = curve[(curve["threshold"] > 0) & (curve["threshold"] < 1)]["threshold"]
    if len(inner):     # zoom on the scores' range (cosines of ReLU features bunch near 1)
        ax.set_xlim(float(inner.min()) - 0.01, 1.0 + 0.005)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="center left")
    return ax.figure


def plot_score_histograms(scores: pd.DataFrame, threshold: float, ax: Any = None) -> Any:
    """Score histograms of known faces (right and wrong names) and of strangers.

    Args:
        scores: ``openset_scores.csv`` (``set``, ``score``, ``correct``).
        threshold: The chosen threshold (marked).
        ax: Axes to draw on (default: a new figure).
    """
    import matplotlib.pyplot as plt
    import numpy as np

    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 3.6))
    bins = np.linspace(float(scores["score"].min()), float(scores["score"].max()), 41)
    known = scores[scores["set"].str.startswith("known")]
    strangers = scores[scores["set"].str.startswith("unknown")]
    parts = [(known[known["correct"].astype(bool)], "known, right name", "tab:green"),
             (known[~known["correct"].astype(bool)], "known, wrong name", "tab:purple"),
             (strangers, "strangers (never trained on)", "tab:red")]
    for part, label, colour in parts:
        if len(part):
            ax.hist(part["score"], bins=bins, alpha=0.55, label=f"{label} ({len(part)})",
                    color=colour, density=True)
    ax.axvline(threshold, color="black", linewidth=1, label=f"threshold {threshold:.3f}")
    ax.set_xlabel("score (cosine to the named person's centroid)")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    return ax.figure
