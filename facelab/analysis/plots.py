"""Figures of the bias analysis: confusion matrix, predicted vs true shares, mistakes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from facelab.analysis.bias import DEFAULT_THRESHOLD, confusion, dominant_class_alarm, share_table

if TYPE_CHECKING:
    from matplotlib.figure import Figure



def plot_confusion(y_true: Sequence[int], y_pred: Sequence[int], names: Sequence[str], *,
                   normalize: bool = True, title: str = "", max_label: int = 22) -> Figure:
    """Draw the confusion matrix, readable with 40+ classes.

    The figure grows with the number of classes, tick labels are shortened to
    ``max_label`` characters, and counts are written in the cells only when K <= 15.

    Args:
        y_true: True ids.
        y_pred: Predicted ids.
        names: Class names in id order.
        normalize: Row-normalised (recall on the diagonal) instead of counts.
        title: Figure title.
        max_label: Longest tick label.
    """
    import matplotlib.pyplot as plt

    k = len(names)
    cm = confusion(y_true, y_pred, k, normalize=normalize)
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


def plot_shares(y_true: Sequence[int], y_pred: Sequence[int], names: Sequence[str], *,
                title: str = "", ax: Any = None, threshold: float = DEFAULT_THRESHOLD
                ) -> Figure:
    """Bar chart of the predicted share per class against its true share.

    One dominating class (the post's "Brad Pitt") shows as one tall bar; a healthy model
    is flat and follows the true shares.  Classes that set off the
    :func:`dominant_class_alarm` are red.

    Args:
        y_true: True ids.
        y_pred: Predicted ids.
        names: Class names in id order.
        title: Axis title.
        ax: Draw into this axis (default: a new figure).
        threshold: The alarm threshold (predicted / true share) to mark.
    """
    import matplotlib.pyplot as plt

    table = share_table(y_true, y_pred, names).loc[list(names)]
    k = len(names)
    if ax is None:
        fig, ax = plt.subplots(figsize=(max(6.0, 0.22 * k + 2), 3.8))
    else:
        fig = ax.figure
    x = np.arange(k)
    offenders = set(dominant_class_alarm(y_true, y_pred, names, threshold).offenders)
    colours = ["tab:red" if name in offenders else "tab:blue" for name in table.index]
    ax.bar(x, table["predicted_share"], color=colours, label="predicted share")
    ax.step(np.append(x, k) - 0.5, np.append(table["true_share"], table["true_share"].iloc[-1]),
            where="post", color="k", lw=1.2, label="true share")
    ax.set_xticks(x, [n[:14] for n in names], rotation=90, fontsize=7 if k > 20 else 8)
    ax.set_ylabel("share of predictions")
    ax.set_ylim(0, max(float(table["predicted_share"].max()), float(table["true_share"].max()))
                * 1.1 + 1e-9)
    ax.set_title(title or "predicted vs true class share")
    ax.legend(fontsize=8)
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
