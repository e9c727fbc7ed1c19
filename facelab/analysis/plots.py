"""Figures of the bias analysis.

Confusion matrix, predicted vs true shares and per-class recall (dominant and swallowed
classes marked), misclassified faces, the most confident mistakes, each swallowed class
beside the class that absorbs it, the faces behind one cell, and a report's set of figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from facelab.analysis.bias import (
    DEFAULT_THRESHOLD,
    Verdict,
    bias_verdict,
    confusion,
    per_class_table,
    share_table,
)
from facelab.analysis.labels import LabelsLike, as_ids

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DOMINANT_COLOUR = "tab:red"
SWALLOWED_COLOUR = "tab:orange"


def plot_confusion(y_true: LabelsLike, y_pred: LabelsLike,
                   names: Sequence[str] | None = None, *, normalize: bool = True,
                   title: str = "", max_label: int = 22) -> Figure:
    """Draw the confusion matrix, readable with 40+ classes.

    The figure grows with the number of classes, tick labels are shortened to
    ``max_label`` characters, and counts are written in the cells only when K <= 15.

    Args:
        y_true: True labels (names or ids).
        y_pred: Predicted labels.
        names: Class names in id order (default: the labels' classes, sorted).
        normalize: Row-normalised (recall on the diagonal) instead of counts.
        title: Figure title.
        max_label: Longest tick label.
    """
    import matplotlib.pyplot as plt

    y_true, y_pred, names = as_ids(y_true, y_pred, names)
    k = len(names)
    cm = confusion(y_true, y_pred, names, normalize=normalize)
    side = float(np.clip(0.22 * k + 2.5, 5, 16))
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    image = ax.imshow(cm, cmap="Blues", vmin=0, vmax=1 if normalize else max(cm.max(), 1))
    labels = [n if len(n) <= max_label else n[: max_label - 1] + "…" for n in names]
    fontsize = 9 if k <= 15 else (7 if k <= 30 else 6)
    ax.set_xticks(range(k), labels, rotation=90, fontsize=fontsize)
    ax.set_yticks(range(k), labels, fontsize=fontsize)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 15:
        for i in range(k):
            for j in range(k):
                if cm[i, j]:
                    text = f"{cm[i, j]:.2f}" if normalize else str(int(cm[i, j]))
                    ax.text(j, i, text, ha="center", va="center", fontsize=7,
                            color="white" if cm[i, j] > cm.max() / 2 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04,
                 label="share of the true class" if normalize else "count")
    ax.set_title(title or ("confusion matrix (row-normalised)" if normalize
                           else "confusion matrix (counts)"))
    fig.tight_layout()
    return fig


def _marks(y_true: np.ndarray, y_pred: np.ndarray, names: Sequence[str],
           threshold: float, verdict: Verdict | None) -> tuple[set[str], dict[str, str]]:
    """The dominant classes and the swallowed ones (-> their absorbers) of a verdict."""
    verdict = verdict or bias_verdict(y_true, y_pred, names, threshold)
    swallowed = {str(o["class"]): str(o["absorber"]) for o in verdict.swallowed.offenders}
    return set(verdict.dominant.offenders), swallowed


def _colours(classes: Any, dominant: set[str], swallowed: dict[str, str]) -> list[str]:
    """Bar colours: dominant classes red, swallowed ones orange, the rest blue."""
    return [DOMINANT_COLOUR if name in dominant else
            SWALLOWED_COLOUR if name in swallowed else "tab:blue" for name in classes]


def _new_axis(ax: Any, k: int) -> tuple[Figure, Any]:
    import matplotlib.pyplot as plt

    if ax is None:
        return plt.subplots(figsize=(max(6.0, 0.22 * k + 2), 3.8))
    return ax.figure, ax


def _legend_marks(ax: Any, dominant: bool, swallowed: bool) -> None:
    from matplotlib.patches import Patch

    handles, _ = ax.get_legend_handles_labels()
    if dominant:
        handles.append(Patch(color=DOMINANT_COLOUR, label="dominant class (alarm)"))
    if swallowed:
        handles.append(Patch(color=SWALLOWED_COLOUR, label="swallowed class (alarm)"))
    ax.legend(handles=handles, fontsize=8)


def plot_shares(y_true: LabelsLike, y_pred: LabelsLike, names: Sequence[str] | None = None,
                *, title: str = "", ax: Any = None, threshold: float = DEFAULT_THRESHOLD,
                verdict: Verdict | None = None) -> Figure:
    """Bar chart of the predicted share per class against its true share.

    One dominating class (the post's "Brad Pitt") shows as one tall bar; a swallowed class
    as a missing one; a healthy model is flat and follows the true shares.  Dominant
    classes are red, swallowed classes orange (:func:`~facelab.analysis.bias_verdict`).

    Args:
        y_true: True labels (names or ids).
        y_pred: Predicted labels.
        names: Class names in id order (default: the labels' classes, sorted).
        title: Axis title.
        ax: Draw into this axis (default: a new figure).
        threshold: The dominant-class threshold (predicted / true share).
        verdict: A verdict already computed on these predictions (default: computed).
    """
    y_true, y_pred, names = as_ids(y_true, y_pred, names)
    table = share_table(y_true, y_pred, names).loc[list(names)]
    k = len(names)
    fig, ax = _new_axis(ax, k)
    x = np.arange(k)
    dominant, swallowed = _marks(y_true, y_pred, names, threshold, verdict)
    colours = _colours(table.index, dominant, swallowed)
    ax.bar(x, table["predicted_share"], color=colours, label="predicted share")
    ax.step(np.append(x, k) - 0.5, np.append(table["true_share"], table["true_share"].iloc[-1]),
            where="post", color="k", lw=1.2, label="true share")
    ax.set_xticks(x, [n[:14] for n in names], rotation=90, fontsize=7 if k > 20 else 8)
    for label in ax.get_xticklabels():
        if label.get_text() in {n[:14] for n in swallowed}:
            label.set_color(SWALLOWED_COLOUR)
    ax.set_ylabel("share of predictions")
    ax.set_ylim(0, max(float(table["predicted_share"].max()), float(table["true_share"].max()))
                * 1.1 + 1e-9)
    ax.set_title(title or "predicted vs true class share")
    _legend_marks(ax, bool(dominant), bool(swallowed))
    fig.tight_layout()
    return fig


def plot_recall(y_true: LabelsLike, y_pred: LabelsLike, names: Sequence[str] | None = None,
                *, title: str = "", ax: Any = None, threshold: float = DEFAULT_THRESHOLD,
                verdict: Verdict | None = None, target: float | None = 0.5) -> Figure:
    """Per-class recall bars, sorted (worst first), with the alarm's classes marked.

    Swallowed classes are orange and labelled with their absorber; dominant classes red.

    Args:
        y_true: True labels (names or ids).
        y_pred: Predicted labels.
        names: Class names in id order (default: the labels' classes, sorted).
        title: Axis title.
        ax: Draw into this axis (default: a new figure).
        threshold: The dominant-class threshold.
        verdict: A verdict already computed on these predictions (default: computed).
        target: Draw a horizontal line at this recall (``None``: none).
    """
    y_true, y_pred, names = as_ids(y_true, y_pred, names)
    table = per_class_table(y_true, y_pred, names)
    table = table[table["support"] > 0].sort_values("recall", kind="stable")
    k = len(table)
    fig, ax = _new_axis(ax, k)
    dominant, swallowed = _marks(y_true, y_pred, names, threshold, verdict)
    colours = _colours(table.index, dominant, swallowed)
    x = np.arange(k)
    ax.bar(x, table["recall"], color=colours)
    labels = [f"{n[:14]} -> {swallowed[n][:10]}" if n in swallowed else n[:14]
              for n in table.index]
    ax.set_xticks(x, labels, rotation=90, fontsize=7 if k > 20 else 8)
    ax.axhline(float(np.median(table["recall"])), color="k", lw=1, ls="--",
               label=f"median {np.median(table['recall']):.2f}")
    if target is not None:
        ax.axhline(target, color="grey", lw=1, ls=":", label=f"target {target:g}")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("recall")
    ax.set_title(title or "recall per class (worst first)")
    _legend_marks(ax, bool(dominant), bool(swallowed))
    fig.tight_layout()
    return fig


def plot_misclassified(predictions: pd.DataFrame, n: int = 24, ncols: int = 8,
                       seed: int = 0) -> Figure:
    """Draw a grid of misclassified faces titled "true -> predicted (confidence)".

    Args:
        predictions: :func:`predict_split`'s table (needs ``path``).
        n: Faces to show (a seeded sample when there are more mistakes).
        ncols: Columns of the grid.
        seed: Seed of the sample.
    """
    import matplotlib.pyplot as plt
    from PIL import Image

    wrong = predictions[~predictions["correct"]]
    if len(wrong) > n:
        wrong = wrong.sample(n, random_state=seed)
    nrows = max(1, -(-len(wrong) // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.9 * ncols, 2.2 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, row in zip(axes.flat, wrong.itertuples(index=False), strict=False):
        with Image.open(row.path) as img:
            ax.imshow(np.asarray(img.convert("RGB")))
        ax.set_title(f"{row.person[:13]}\n-> {row.predicted[:13]} ({row.confidence:.2f})",
                     fontsize=7)
    if wrong.empty:
        axes.flat[0].text(0.5, 0.5, "no misclassified face", ha="center", va="center")
    fig.suptitle(f"misclassified faces ({int((~predictions['correct']).sum())} of "
                 f"{len(predictions)})", fontsize=10)
    fig.tight_layout()
    return fig


def _show(ax: Any, path: str | None, title: str, colour: str = "black") -> None:
    """Draw one image file into an axis (a blank panel when there is none or it is unreadable)."""
    from PIL import Image

    ax.axis("off")
    if isinstance(path, str) and path:
        try:
            with Image.open(path) as img:
                ax.imshow(np.asarray(img.convert("RGB")))
        except OSError:
            ax.text(0.5, 0.5, "missing or\nunreadable", ha="center", va="center", fontsize=7,
                    transform=ax.transAxes)
    ax.set_title(title, fontsize=7, color=colour)


def plot_top_losses(predictions: pd.DataFrame, portraits: dict[str, str], n: int = 12,
                    ncols: int = 3) -> Figure:
    """Draw the most confident wrong answers first, each beside both persons' portraits.

    Each item is three panels: the mistaken face (true -> predicted, confidence), a
    training portrait of the true person and one of the predicted person.

    Args:
        predictions: :func:`~facelab.analysis.predict_split`'s table.
        portraits: Person -> one training image (:func:`~facelab.analysis.portraits`).
        n: Mistakes to show.
        ncols: Mistakes per row (3 panels each).
    """
    import matplotlib.pyplot as plt

    wrong = predictions[~predictions["correct"]].sort_values("confidence", ascending=False,
                                                             kind="stable").head(n)
    nrows = max(1, -(-len(wrong) // ncols))
    fig, axes = plt.subplots(nrows, 3 * ncols, figsize=(1.5 * 3 * ncols, 1.9 * nrows),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, row in enumerate(wrong.itertuples(index=False)):
        r, c = divmod(i, ncols)
        trio = axes[r, 3 * c: 3 * c + 3]
        _show(trio[0], row.path, f"{row.person[:12]}\n-> {row.predicted[:12]} "
              f"({row.confidence:.2f})", "tab:red")
        _show(trio[1], portraits.get(row.person), f"true:\n{row.person[:14]}")
        _show(trio[2], portraits.get(row.predicted), f"predicted:\n{row.predicted[:14]}")
    if wrong.empty:
        axes.flat[0].text(0.5, 0.5, "no mistake", ha="center", va="center")
    fig.suptitle("most confident mistakes: the face, a training portrait of the true person, "
                 "one of the predicted person", fontsize=9)
    fig.tight_layout()
    return fig


def plot_swallowed(predictions: pd.DataFrame, verdict: Verdict, portraits: dict[str, str],
                   faces: int = 5) -> Figure:
    """Show each swallowed class beside its absorber: portraits and the mistaken faces.

    One row per swallowed class: a training portrait of the swallowed person, one of the
    absorber, then up to ``faces`` of the swallowed person's faces that were named as the
    absorber (most confident first).

    Args:
        predictions: :func:`~facelab.analysis.predict_split`'s table.
        verdict: :func:`~facelab.analysis.bias_verdict` on the same predictions.
        portraits: Person -> one training image (:func:`~facelab.analysis.portraits`).
        faces: Mistaken faces per row.
    """
    import matplotlib.pyplot as plt

    offenders = verdict.swallowed.offenders
    nrows = max(1, len(offenders))
    fig, axes = plt.subplots(nrows, 2 + faces, figsize=(1.6 * (2 + faces), 2.0 * nrows),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for row_axes, o in zip(axes, offenders, strict=False):
        lost, absorber = str(o["class"]), str(o["absorber"])
        _show(row_axes[0], portraits.get(lost), f"swallowed:\n{lost[:16]} "
              f"(recall {o['recall']:.2f})", SWALLOWED_COLOUR)
        _show(row_axes[1], portraits.get(absorber), f"absorber:\n{absorber[:16]} "
              f"({o['absorbed']}/{o['support']})")
        taken = predictions[(predictions["person"] == lost)
                            & (predictions["predicted"] == absorber)]
        taken = taken.sort_values("confidence", ascending=False, kind="stable")
        for ax, face in zip(row_axes[2:], taken.itertuples(index=False), strict=False):
            _show(ax, face.path, f"-> {absorber[:12]}\n({face.confidence:.2f})", "tab:red")
    if not offenders:
        axes.flat[0].text(0.5, 0.5, "no swallowed class", ha="center", va="center")
    fig.suptitle("swallowed classes beside the class that absorbs them (training portraits), "
                 "then their faces named as the absorber", fontsize=9)
    fig.tight_layout()
    return fig


def plot_cell(predictions: pd.DataFrame, true: str, predicted: str, *, n: int = 24,
              ncols: int = 8) -> Figure:
    """Show the faces behind one cell of the confusion matrix (highest score first).

    Args:
        predictions: One row per face with ``person``, ``predicted`` and ``path`` (and
            ``confidence``, when known): :func:`~facelab.analysis.predict_split`'s table or
            :attr:`Report.predictions <facelab.analysis.Report>`.
        true: The cell's true class.
        predicted: Its predicted class.
        n: Faces to show at most.
        ncols: Columns of the grid.
    """
    import matplotlib.pyplot as plt

    cell = predictions[(predictions["person"] == true) & (predictions["predicted"] == predicted)]
    if "confidence" in cell:
        cell = cell.sort_values("confidence", ascending=False, kind="stable")
    shown = cell.head(n)
    nrows = max(1, -(-len(shown) // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.7 * ncols, 2.0 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (index, row) in zip(axes.flat, shown.iterrows(), strict=False):
        score = row.get("confidence", np.nan)
        _show(ax, row.get("path"), f"#{index}" + ("" if pd.isna(score) else f" ({score:.2f})"),
              "black" if true == predicted else "tab:red")
    if shown.empty:
        axes.flat[0].text(0.5, 0.5, "no face in this cell", ha="center", va="center")
    more = f", the {n} with the highest score" if len(cell) > n else ""
    fig.suptitle(f"true {true!r} predicted as {predicted!r}: {len(cell)} face(s){more}",
                 fontsize=10)
    fig.tight_layout()
    return fig


def report_figures(predictions: pd.DataFrame, names: Sequence[str], verdict: Verdict, *,
                   worst_cell: tuple[str, str] | None = None,
                   threshold: float = DEFAULT_THRESHOLD) -> dict[str, Figure]:
    """Draw the figures of :func:`~facelab.analysis.report`.

    Args:
        predictions: One row per example with ``true`` and ``pred`` ids (and ``path``,
            ``confidence`` for the gallery): :attr:`Report.predictions`.
        names: Class names in id order.
        verdict: The verdict on these predictions (its classes are marked).
        worst_cell: ``(true, predicted)`` of the cell to show the faces of.
        threshold: The dominant-class threshold.

    Returns:
        File stem -> figure: ``confusion`` (row-normalised), ``confusion_counts``,
        ``shares``, ``recall`` and, with image paths and a ``worst_cell``, ``worst_cell``.
    """
    true, pred = predictions["true"], predictions["pred"]
    marks = {"threshold": threshold, "verdict": verdict}
    figures = {"confusion": plot_confusion(true, pred, names),
               "confusion_counts": plot_confusion(true, pred, names, normalize=False),
               "shares": plot_shares(true, pred, names, **marks),
               "recall": plot_recall(true, pred, names, **marks)}
    if "path" in predictions and worst_cell is not None:
        figures["worst_cell"] = plot_cell(predictions, *worst_cell)
    return figures
