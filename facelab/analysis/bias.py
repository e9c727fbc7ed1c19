"""Bias analysis: where the model is wrong, and whether one class swallows the others.

The blog post's first model answered "Brad Pitt" for more than 90% of its inputs.  This
module makes that symptom visible and testable:

* :func:`predict_split` - predictions on a val/test split (optionally averaged with the
  horizontally flipped images), one row per face;
* :func:`confusion` / :func:`plot_confusion` - counts or row-normalised, readable with
  40+ class names;
* :func:`share_table` / :func:`plot_shares` - predicted-class share vs true share;
* :func:`per_class_table` - precision, recall, F1, support per class;
* :func:`confused_pairs` - the most confused (true, predicted) pairs;
* :func:`plot_misclassified` - a grid of misclassified faces;
* :func:`dominant_class_alarm` - fires when a class is predicted more than ``threshold``
  times as often as it occurs (the "90% Brad Pitt" symptom);
* :func:`summarise` - the numbers ``facelab fit`` writes to ``metrics.json``.

TensorFlow is imported inside the functions that need it only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:

    pass


DEFAULT_THRESHOLD = 1.5


def confusion(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int,
              normalize: bool = False) -> np.ndarray:
    """Confusion matrix: rows = true class, columns = predicted class.

    Args:
        y_true: True ids.
        y_pred: Predicted ids.
        num_classes: K.
        normalize: Divide each row by its total (rows with no example stay 0).
    """
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)), 1)
    if not normalize:
        return cm
    totals = cm.sum(axis=1, keepdims=True)
    return np.divide(cm, totals, out=np.zeros(cm.shape), where=totals > 0)


def share_table(y_true: Sequence[int], y_pred: Sequence[int],
                names: Sequence[str]) -> pd.DataFrame:
    """Predicted-class share vs true share per class.

    Returns:
        Indexed by name: ``true_share``, ``predicted_share``, ``ratio`` (predicted /
        true; inf when a class that never occurs is predicted), sorted by ratio.
    """
    k = len(names)
    n = max(len(y_true), 1)
    true = np.bincount(np.asarray(y_true, dtype=int), minlength=k)[:k] / n
    pred = np.bincount(np.asarray(y_pred, dtype=int), minlength=k)[:k] / max(len(y_pred), 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(true > 0, pred / np.where(true > 0, true, 1),
                         np.where(pred > 0, np.inf, 1.0))
    table = pd.DataFrame({"true_share": true, "predicted_share": pred, "ratio": ratio},
                         index=pd.Index(list(names), name="class"))
    return table.sort_values("ratio", ascending=False, kind="stable")


def per_class_table(y_true: Sequence[int], y_pred: Sequence[int],
                    names: Sequence[str]) -> pd.DataFrame:
    """Precision, recall, F1, support and predicted count per class (worst recall first)."""
    k = len(names)
    cm = confusion(y_true, y_pred, k)
    tp = np.diag(cm).astype(float)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), 0.0)
        recall = np.where(support > 0, tp / np.maximum(support, 1), 0.0)
        f1 = np.where(precision + recall > 0,
                      2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    table = pd.DataFrame({"precision": precision, "recall": recall, "f1": f1,
                          "support": support, "predicted": predicted},
                         index=pd.Index(list(names), name="class"))
    return table.sort_values(["recall", "f1"], kind="stable")


def confused_pairs(y_true: Sequence[int], y_pred: Sequence[int], names: Sequence[str],
                   top: int = 10) -> pd.DataFrame:
    """List the most frequent (true, predicted) mistakes.

    Returns:
        Columns ``true``, ``predicted``, ``count``, ``share_of_true`` (the share of the
        true class's examples that went to that prediction), most frequent first.
    """
    k = len(names)
    cm = confusion(y_true, y_pred, k)
    support = cm.sum(axis=1)
    rows = [{"true": names[i], "predicted": names[j], "count": int(cm[i, j]),
             "share_of_true": cm[i, j] / support[i]}
            for i in range(k) for j in range(k) if i != j and cm[i, j] > 0]
    table = pd.DataFrame(rows, columns=["true", "predicted", "count", "share_of_true"])
    return table.sort_values(["count", "share_of_true"], ascending=False,
                             kind="stable").head(top).reset_index(drop=True)


@dataclass
class Alarm:
    """Result of :func:`dominant_class_alarm`.

    Attributes:
        fired: True when some class's predicted share exceeds ``threshold`` x its true
            share.
        threshold: The threshold used.
        worst_class: The class with the largest predicted / true share ratio.
        ratio: That ratio.
        predicted_share: Its share of the predictions.
        true_share: Its share of the examples.
        offenders: Every class over the threshold.
        message: A one-line human-readable verdict.
    """

    fired: bool
    threshold: float
    worst_class: str
    ratio: float
    predicted_share: float
    true_share: float
    offenders: list[str]
    message: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        data = asdict(self)
        data["ratio"] = float(data["ratio"]) if np.isfinite(data["ratio"]) else "inf"
        return data


def dominant_class_alarm(y_true: Sequence[int], y_pred: Sequence[int], names: Sequence[str],
                         threshold: float = DEFAULT_THRESHOLD,
                         min_count: int = 3, min_excess: float | None = None) -> Alarm:
    """Check whether one class is predicted far more often than it occurs.

    Args:
        y_true: True ids (the reference shares).
        y_pred: Predicted ids.
        names: Class names in id order.
        threshold: Fire when predicted share > ``threshold`` x true share (1.5 = 50% more
            often than it occurs; the post's "Brad Pitt" was about 40x).
        min_count: Ignore classes predicted fewer than this many times (tiny splits make
            ratios noisy).
        min_excess: A class must also take at least this much more of the predictions
            than its true share (default ``1/K``: one uniform class's worth).  This keeps
            the alarm on *dominant* classes: a rare class (1% of a 50-class split)
            predicted for 2.5% of inputs is a ratio of 2.5 but steals little; Brad Pitt at
            90% vs 10% steals 80 points.  Pass 0 for the bare ratio test.

    Returns:
        An :class:`Alarm`.

    Raises:
        ValueError: For a threshold <= 1 or no predictions.
    """
    if threshold <= 1:
        raise ValueError(f"threshold={threshold} must be > 1 (predicted / true share)")
    if len(y_pred) == 0:
        raise ValueError("no predictions to check")
    table = share_table(y_true, y_pred, names)
    counts = table["predicted_share"] * len(y_pred)
    eligible = table[counts >= min_count - 1e-9]
    if eligible.empty:
        eligible = table
    worst = eligible.index[0]
    row = eligible.loc[worst]
    if min_excess is None:
        min_excess = 1.0 / len(names)
    excess = eligible["predicted_share"] - eligible["true_share"]
    over = (eligible["ratio"] > threshold) & (excess >= min_excess - 1e-12)
    offenders = [str(c) for c in eligible.index[over]]
    fired = bool(offenders)
    if fired:
        worst = offenders[0]
        row = eligible.loc[worst]
        message = (f"ALARM: {worst!r} is predicted for {row['predicted_share']:.0%} of inputs "
                   f"but is {row['true_share']:.0%} of them ({row['ratio']:.1f}x > "
                   f"{threshold}x, {row['predicted_share'] - row['true_share']:+.0%} of "
                   f"all predictions); {len(offenders)} class(es) over the threshold")
    else:
        message = (f"ok: no class predicted more than {threshold}x its true share while "
                   f"taking {min_excess:.1%}+ extra of the predictions (highest ratio: "
                   f"{worst!r}, {row['ratio']:.2f}x)")
    return Alarm(fired, float(threshold), str(worst), float(row["ratio"]),
                 float(row["predicted_share"]), float(row["true_share"]), offenders, message)


def summarise(y_true: Sequence[int], y_pred: Sequence[int], names: Sequence[str],
              threshold: float = DEFAULT_THRESHOLD) -> dict[str, Any]:
    """Compute the metrics ``facelab fit`` writes to ``metrics.json``.

    Returns:
        ``accuracy``, ``balanced_accuracy`` (mean per-class recall), ``macro_f1``,
        ``n``, ``per_class_recall``, ``predicted_share``, ``true_share``,
        ``max_share_ratio`` and ``alarm`` (:class:`Alarm` as a dict).
    """
    y_true = np.asarray(y_true, dtype=int)
    y_pred = np.asarray(y_pred, dtype=int)
    table = per_class_table(y_true, y_pred, names).loc[list(names)]
    present = table["support"] > 0
    shares = share_table(y_true, y_pred, names).loc[list(names)]
    alarm = dominant_class_alarm(y_true, y_pred, names, threshold)
    return {"n": int(len(y_true)),
            "accuracy": float((y_true == y_pred).mean()) if len(y_true) else 0.0,
            "balanced_accuracy": float(table.loc[present, "recall"].mean()),
            "macro_f1": float(table.loc[present, "f1"].mean()),
            "per_class_recall": {k: float(v) for k, v in table["recall"].items()},
            "predicted_share": {k: float(v) for k, v in shares["predicted_share"].items()},
            "true_share": {k: float(v) for k, v in shares["true_share"].items()},
            "max_share_ratio": float(shares.loc[shares["true_share"] > 0, "ratio"].max()),
            "alarm": alarm.to_dict()}
