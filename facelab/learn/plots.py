"""Figures of training: learning curves (with the epochs where a run resumed)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from pathlib import Path

    from facelab.learn.training import TrainResult


def plot_history(history: pd.DataFrame, metrics: Sequence[str] = ("loss", "accuracy"),
                 resumed_at: Sequence[int] = ()) -> Any:
    """Learning curves: one panel per metric, train and ``val_`` lines.

    Args:
        history: :attr:`TrainResult.history` or :func:`read_history`.
        metrics: Base metric names.
        resumed_at: Epochs where a run resumed (drawn as dotted lines).

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.6), squeeze=False)
    epochs = history["epoch"].astype(int) + 1 if len(history) else []
    for ax, metric in zip(axes[0], metrics, strict=True):
        for column, style in ((metric, "-o"), (f"val_{metric}", "-s")):
            if column in history.columns:
                ax.plot(epochs, history[column], style, ms=3, label=column)
        for epoch in resumed_at:
            ax.axvline(epoch + 0.5, color="grey", ls=":", lw=1)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def save_fit_figures(out: Path, run: TrainResult, preds: pd.DataFrame, names: Sequence[str],
                     split: str, threshold: float) -> dict[str, Path]:
    """Write the figures of a finished ``facelab fit`` run as PNG files in ``out``.

    Args:
        out: The model folder.
        run: The finished training run (its history gives the learning curves).
        preds: Predictions on the scored split (:func:`~facelab.analysis.predict_split`).
        names: Class names, index = label.
        split: Name of the scored split (used in the titles).
        threshold: The dominant-class alarm's threshold (the shares and recall plots mark
            dominant and swallowed classes).

    Returns:
        File name -> path of each figure written.
    """
    import matplotlib.pyplot as plt

    from facelab.analysis.bias import bias_verdict
    from facelab.analysis.plots import (
        plot_confusion,
        plot_misclassified,
        plot_recall,
        plot_shares,
    )

    resumed = [r["started_at_epoch"] for r in run.runs[1:]]
    true, pred = preds["true"], preds["pred"]
    verdict = bias_verdict(true, pred, names, threshold)
    made = {"learning_curves.png": plot_history(run.history, resumed_at=resumed),
            "confusion.png": plot_confusion(true, pred, names, title=f"{split}: row-normalised"),
            "confusion_counts.png": plot_confusion(true, pred, names, normalize=False,
                                                   title=f"{split}: counts"),
            "shares.png": plot_shares(true, pred, names, threshold=threshold, verdict=verdict,
                                      title=f"{split}: predicted vs true share"),
            "recall.png": plot_recall(true, pred, names, threshold=threshold, verdict=verdict,
                                      title=f"{split}: recall per class (worst first)"),
            "misclassified.png": plot_misclassified(preds)}
    figures = {}
    for name, figure in made.items():
        figure.savefig(out / name, dpi=90)
        plt.close(figure)
        figures[name] = out / name
    return figures


def plot_model_comparison(table: pd.DataFrame,
                          curves: dict[str, tuple[pd.DataFrame, float]] | None = None) -> Any:
    """Models side by side: test balanced accuracy and fit time; the open-set trade-off.

    Args:
        table: :func:`facelab.learn.compare.compare_fits`.
        curves: The curves of :func:`facelab.learn.compare.compare_fits` (strangers accepted
            against known test faces named, each model's calibrated point marked); ``None``
            or empty: the left panel only.

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2 if curves else 1, figsize=(13 if curves else 6, 4.2),
                             squeeze=False, layout="constrained")
    ax = axes[0][0]
    labels = list(table.index)
    values = table["test balanced accuracy"].astype(float).to_numpy()
    bars = ax.barh(labels, values, color=[f"C{i}" for i in range(len(labels))])
    for bar, (_, row) in zip(bars, table.iterrows(), strict=True):
        ax.text(bar.get_width() - 0.01, bar.get_y() + bar.get_height() / 2,
                f"{row['test balanced accuracy']:.3f} (lowest {row['lowest recall']:.2f}); "
                f"fit {float(row['fit seconds']):.0f} s", ha="right", va="center",
                color="white", fontsize=9)
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    ax.set_xlabel("balanced accuracy, test split (scored once)")
    ax.set_title("closed set: every known person")
    if curves:
        ax = axes[0][1]
        for i, (label, (roc, threshold)) in enumerate(curves.items()):
            ax.plot(roc["strangers_accepted"], roc["known_named"], color=f"C{i}", label=label)
            at = roc[roc["threshold"] >= threshold].iloc[-1] if (
                roc["threshold"] >= threshold).any() else roc.iloc[0]
            ax.plot(at["strangers_accepted"], at["known_named"], "o", color=f"C{i}", ms=8)
        ax.set_xscale("symlog", linthresh=0.01)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("strangers' faces accepted as somebody (people never given to fit)")
        ax.set_ylabel("known test faces named right")
        ax.set_title("open set: the threshold's trade-off (dot: calibrated)")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    return fig
