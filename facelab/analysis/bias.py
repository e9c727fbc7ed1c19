"""Bias analysis: where the model is wrong, and which classes take or lose the answers.

One class can take the others' answers (dominant) or be never named (swallowed by a
look-alike).

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
* :func:`swallowed_class_alarm` - its mirror image: a class the model (almost) never names,
  with the class that absorbs it;
* :func:`one_way_pair_alarm` - pairs confused one way (A -> B, hardly B -> A): look-alikes;
* :func:`bias_verdict` - the three checks and one verdict line;
* :func:`summarise` - the numbers ``facelab fit`` writes to ``metrics.json``.

Labels are names or integer ids (lists, numpy arrays, pandas Series); ``names`` is optional
(:func:`~facelab.analysis.encode_labels`).  TensorFlow is imported inside the functions that
need it only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from facelab.analysis.labels import LabelsLike, as_ids

DEFAULT_THRESHOLD = 1.5


def confusion(y_true: LabelsLike, y_pred: LabelsLike,
              num_classes: int | Sequence[str] | None = None,
              normalize: bool = False) -> np.ndarray:
    """Confusion matrix: rows = true class, columns = predicted class.

    Args:
        y_true: True labels (names or ids).
        y_pred: Predicted labels.
        num_classes: K (ids 0..K-1), or the class names in row order (default: the
            labels' classes, sorted, as :func:`~facelab.analysis.encode_labels` finds them).
        normalize: Divide each row by its total (rows with no example stay 0).
    """
    if isinstance(num_classes, (int, np.integer)):
        num_classes = [str(i) for i in range(num_classes)]
    y_true, y_pred, names = as_ids(y_true, y_pred, num_classes)
    cm = np.zeros((len(names), len(names)), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    if not normalize:
        return cm
    totals = cm.sum(axis=1, keepdims=True)
    return np.divide(cm, totals, out=np.zeros(cm.shape), where=totals > 0)


def share_table(y_true: LabelsLike, y_pred: LabelsLike,
                names: Sequence[str] | None = None) -> pd.DataFrame:
    """Predicted-class share vs true share per class.

    Returns:
        Indexed by name: ``true_share``, ``predicted_share``, ``ratio`` (predicted /
        true; inf when a class that never occurs is predicted), sorted by ratio.
    """
    y_true, y_pred, names = as_ids(y_true, y_pred, names)
    k = len(names)
    n = max(len(y_true), 1)
    true = np.bincount(y_true, minlength=k)[:k] / n
    pred = np.bincount(y_pred, minlength=k)[:k] / max(len(y_pred), 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(true > 0, pred / np.where(true > 0, true, 1),
                         np.where(pred > 0, np.inf, 1.0))
    table = pd.DataFrame({"true_share": true, "predicted_share": pred, "ratio": ratio},
                         index=pd.Index(list(names), name="class"))
    return table.sort_values("ratio", ascending=False, kind="stable")


def per_class_table(y_true: LabelsLike, y_pred: LabelsLike,
                    names: Sequence[str] | None = None) -> pd.DataFrame:
    """Precision, recall, F1, support and predicted count per class (worst recall first)."""
    y_true, y_pred, names = as_ids(y_true, y_pred, names)
    cm = confusion(y_true, y_pred, names)
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


def confused_pairs(y_true: LabelsLike, y_pred: LabelsLike,
                   names: Sequence[str] | None = None, top: int = 10) -> pd.DataFrame:
    """List the most frequent (true, predicted) mistakes.

    Returns:
        Columns ``true``, ``predicted``, ``count``, ``share_of_true`` (the share of the
        true class's examples that went to that prediction), most frequent first.
    """
    y_true, y_pred, names = as_ids(y_true, y_pred, names)
    k = len(names)
    cm = confusion(y_true, y_pred, names)
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


def dominant_class_alarm(y_true: LabelsLike, y_pred: LabelsLike,
                         names: Sequence[str] | None = None, threshold: float = DEFAULT_THRESHOLD,
                         min_count: int = 3, min_excess: float | None = None) -> Alarm:
    """Check whether one class is predicted far more often than it occurs.

    Args:
        y_true: True labels, names or ids (the reference shares).
        y_pred: Predicted labels.
        names: Class names in id order (default: the labels' classes, sorted).
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
    y_true, y_pred, names = as_ids(y_true, y_pred, names)
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


# ---------------------------------------------------------------------------- the other side
SWALLOW_RECALL_FACTOR = 0.5
SWALLOW_SHARE_RATIO = 1 / 3
ALPHA = 0.01
MIN_SUPPORT = 5
PAIR_MIN_SHARE = 0.3
PAIR_MIN_COUNT = 5
PAIR_ONE_WAY_RATIO = 3.0


def _binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p)."""
    p = min(max(p, 0.0), 1.0)
    if k >= n or p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    log_p, log_q, log_n = math.log(p), math.log1p(-p), math.lgamma(n + 1)
    # in logs: math.comb(n, i) * p ** i overflows a float from a few thousand examples on
    return float(min(1.0, sum(math.exp(log_n - math.lgamma(i + 1) - math.lgamma(n - i + 1)
                                       + i * log_p + (n - i) * log_q) for i in range(k + 1))))


def _poisson_cdf(k: int, mean: float) -> float:
    """P(X <= k) for X ~ Poisson(mean)."""
    if mean <= 0:
        return 1.0
    return float(sum(math.exp(i * math.log(mean) - mean - math.lgamma(i + 1))
                     for i in range(k + 1)))


@dataclass
class SwallowedAlarm:
    """Result of :func:`swallowed_class_alarm`: classes the model (almost) never names.

    Attributes:
        fired: True when at least one class is swallowed.
        median_recall: The reference: median recall over the classes with examples.
        recall_factor: A class's recall must fall below this x ``median_recall`` ...
        share_ratio: ... or its predicted share below this x its true share ...
        alpha: ... and be that low by chance with probability below ``alpha / K``.
        offenders: One dict per swallowed class (worst recall first): ``class``,
            ``support``, ``recall``, ``ratio`` (predicted / true share), ``absorber`` (the
            class most of its faces went to), ``absorbed`` (how many), ``absorbed_share``,
            ``p_value`` and ``reasons`` (``recall`` and/or ``share``).
        lowest: The class with the lowest recall (named in the message when quiet).
        message: A one-line verdict.
    """

    fired: bool
    median_recall: float
    recall_factor: float
    share_ratio: float
    alpha: float
    offenders: list[dict[str, Any]]
    lowest: dict[str, Any]
    message: str

    @property
    def classes(self) -> list[str]:
        """Names of the swallowed classes."""
        return [str(o["class"]) for o in self.offenders]

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return asdict(self)


def _class_rows(cm: np.ndarray, names: Sequence[str]) -> list[dict[str, Any]]:
    """Per class: support, correct, predicted, recall, ratio and its main absorber."""
    rows = []
    for c, name in enumerate(names):
        support, predicted, tp = int(cm[c].sum()), int(cm[:, c].sum()), int(cm[c, c])
        off = cm[c].copy()
        off[c] = -1
        j = int(off.argmax())
        rows.append({"class": str(name), "support": support, "correct": tp,
                     "predicted": predicted, "recall": tp / support if support else 0.0,
                     "ratio": predicted / support if support else 0.0,
                     "absorber": str(names[j]) if off[j] > 0 else "",
                     "absorbed": max(int(off[j]), 0),
                     "absorbed_share": max(int(off[j]), 0) / support if support else 0.0})
    return rows


def swallowed_class_alarm(y_true: LabelsLike, y_pred: LabelsLike,
                          names: Sequence[str] | None = None,
                          recall_factor: float = SWALLOW_RECALL_FACTOR,
                          share_ratio: float = SWALLOW_SHARE_RATIO, alpha: float = ALPHA,
                          min_support: int = MIN_SUPPORT) -> SwallowedAlarm:
    """Check whether some class is swallowed: the model (almost) never names it.

    The mirror image of :func:`dominant_class_alarm`.  A class is swallowed when it has at
    least ``min_support`` examples and

    * its recall is below ``recall_factor`` x the median recall of all classes, and a
      Binomial(support, median recall) draw would be that low with probability below
      ``alpha / K`` (so one unlucky small class of a healthy model stays quiet); or
    * it is predicted fewer than ``share_ratio`` x as often as it occurs, and a
      Poisson(support) count would be that low with probability below ``alpha / K``.

    Each swallowed class is reported with its *absorber*, the class most of its faces
    were taken for (typically a look-alike).

    Args:
        y_true: True labels (names or ids).
        y_pred: Predicted labels.
        names: Class names in id order (default: the labels' classes, sorted).
        recall_factor: Relative recall floor (0.5: half the median recall).
        share_ratio: Predicted / true share floor (1/3).
        alpha: Chance of a false alarm per check, over all K classes together.
        min_support: Classes with fewer examples are not judged.

    Returns:
        A :class:`SwallowedAlarm`.
    """
    y_true, y_pred, names = as_ids(y_true, y_pred, names)
    k = len(names)
    rows = _class_rows(confusion(y_true, y_pred, names), names)
    present = [r for r in rows if r["support"] > 0]
    if not present:
        raise ValueError("no examples to check")
    median = float(np.median([r["recall"] for r in present]))
    offenders = []
    for r in present:
        if r["support"] < min_support:
            continue
        p_recall = _binomial_cdf(r["correct"], r["support"], median)
        p_share = _poisson_cdf(r["predicted"], r["support"])
        reasons = []
        if r["recall"] < recall_factor * median and p_recall < alpha / k:
            reasons.append("recall")
        if r["ratio"] < share_ratio and p_share < alpha / k:
            reasons.append("share")
        if reasons:
            offenders.append({**r, "p_value": min(p_recall, p_share), "reasons": reasons})
    offenders.sort(key=lambda o: (o["recall"], o["ratio"]))
    lowest = min(present, key=lambda r: (r["recall"], r["ratio"]))
    if offenders:
        listing = "; ".join(f"{o['class']!r} recall {o['recall']:.2f} ({o['absorbed']} of "
                            f"{o['support']} -> {o['absorber']!r})" for o in offenders[:4])
        more = f" and {len(offenders) - 4} more" if len(offenders) > 4 else ""
        message = (f"ALARM: {len(offenders)} swallowed class(es), named far less than the "
                   f"rest (median recall {median:.2f}): {listing}{more}")
    else:
        message = (f"ok: no swallowed class (lowest recall {lowest['class']!r} "
                   f"{lowest['recall']:.2f}, median {median:.2f})")
    return SwallowedAlarm(bool(offenders), median, float(recall_factor), float(share_ratio),
                          float(alpha), offenders, lowest, message)


@dataclass
class PairAlarm:
    """Result of :func:`one_way_pair_alarm`: look-alike pairs confused in one direction.

    Attributes:
        fired: True when at least one pair goes one way.
        min_share: A -> B must take at least this share of A's examples ...
        min_count: ... and at least this many of them ...
        one_way_ratio: ... and this many times B -> A's share of B's examples.
        pairs: One dict per pair (largest share first): ``true``, ``predicted``,
            ``count``, ``share_of_true``, ``reverse_count``, ``reverse_share``.
        message: A one-line verdict.
    """

    fired: bool
    min_share: float
    min_count: int
    one_way_ratio: float
    pairs: list[dict[str, Any]]
    message: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return asdict(self)


def one_way_pair_alarm(y_true: LabelsLike, y_pred: LabelsLike,
                       names: Sequence[str] | None = None,
                       min_share: float = PAIR_MIN_SHARE, min_count: int = PAIR_MIN_COUNT,
                       one_way_ratio: float = PAIR_ONE_WAY_RATIO) -> PairAlarm:
    """Find confused pairs that go one way (A -> B far more than B -> A).

    Two look-alikes the model cannot tell apart are usually merged into one of them: A's
    faces are named B, B's faces stay B.  A pair fires when A -> B takes at least
    ``min_share`` of A's examples (and ``min_count`` of them) and at least
    ``one_way_ratio`` x the share of B's examples that go B -> A.

    Args:
        y_true: True labels (names or ids).
        y_pred: Predicted labels.
        names: Class names in id order (default: the labels' classes, sorted).
        min_share: Smallest share of A's examples taken for B (0.3).
        min_count: Smallest number of them (5).
        one_way_ratio: How much more one direction must weigh than the other (3).

    Returns:
        A :class:`PairAlarm`.
    """
    y_true, y_pred, names = as_ids(y_true, y_pred, names)
    cm = confusion(y_true, y_pred, names)
    support = np.maximum(cm.sum(axis=1), 1)
    share = cm / support[:, None]
    pairs = []
    for a, b in zip(*np.nonzero(cm), strict=True):
        if a == b or cm[a, b] < min_count or share[a, b] < min_share:
            continue
        if share[a, b] >= one_way_ratio * share[b, a]:
            pairs.append({"true": str(names[a]), "predicted": str(names[b]),
                          "count": int(cm[a, b]), "share_of_true": float(share[a, b]),
                          "reverse_count": int(cm[b, a]),
                          "reverse_share": float(share[b, a])})
    pairs.sort(key=lambda p: (-p["share_of_true"], -p["count"]))
    if pairs:
        listing = "; ".join(f"{p['true']!r} -> {p['predicted']!r} {p['count']} "
                            f"({p['share_of_true']:.0%}), back {p['reverse_count']}"
                            for p in pairs[:4])
        more = f" and {len(pairs) - 4} more" if len(pairs) > 4 else ""
        message = f"ALARM: {len(pairs)} one-way confused pair(s): {listing}{more}"
    else:
        message = (f"ok: no pair confused one way (A -> B >= {min_share:.0%} of A and "
                   f">= {one_way_ratio:g}x B -> A)")
    return PairAlarm(bool(pairs), float(min_share), int(min_count), float(one_way_ratio),
                     pairs, message)


@dataclass
class Verdict:
    """The bias verdict: dominant classes, swallowed classes, one-way pairs, in one line.

    Attributes:
        fired: True when any of the three checks fired.
        fired_checks: Which ones (``dominant``, ``swallowed``, ``one_way_pairs``).
        dominant: :func:`dominant_class_alarm`'s result.
        swallowed: :func:`swallowed_class_alarm`'s result.
        pairs: :func:`one_way_pair_alarm`'s result.
        message: The verdict line.
    """

    fired: bool
    fired_checks: list[str]
    dominant: Alarm
    swallowed: SwallowedAlarm
    pairs: PairAlarm
    message: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (``fired``, ``fired_checks``, ``message`` and one dict per check)."""
        return {"fired": self.fired, "fired_checks": self.fired_checks,
                "message": self.message, "dominant": self.dominant.to_dict(),
                "swallowed": self.swallowed.to_dict(), "one_way_pairs": self.pairs.to_dict()}


def bias_verdict(y_true: LabelsLike, y_pred: LabelsLike, names: Sequence[str] | None = None,
                 threshold: float = DEFAULT_THRESHOLD) -> Verdict:
    """Run the three checks and write one verdict line a user can trust.

    Args:
        y_true: True labels (names or ids).
        y_pred: Predicted labels.
        names: Class names in id order (default: the labels' classes, sorted).
        threshold: :func:`dominant_class_alarm`'s threshold (the other checks use their
            documented defaults).

    Returns:
        A :class:`Verdict`; its message starts with ``ALARM`` or ``ok``.
    """
    y_true, y_pred, names = as_ids(y_true, y_pred, names)
    checks = {"dominant": dominant_class_alarm(y_true, y_pred, names, threshold),
              "swallowed": swallowed_class_alarm(y_true, y_pred, names),
              "one_way_pairs": one_way_pair_alarm(y_true, y_pred, names)}
    fired = [name for name, check in checks.items() if check.fired]
    if fired:
        parts = [checks[name].message.removeprefix("ALARM: ") for name in fired]
        message = f"ALARM ({', '.join(fired)}): " + " | ".join(parts)
    else:
        message = ("ok: no dominant class, no swallowed class, no one-way confused pair "
                   f"(highest share ratio {checks['dominant'].worst_class!r} "
                   f"{checks['dominant'].ratio:.2f}x; lowest recall "
                   f"{checks['swallowed'].lowest['class']!r} "
                   f"{checks['swallowed'].lowest['recall']:.2f}, median "
                   f"{checks['swallowed'].median_recall:.2f})")
    return Verdict(bool(fired), fired, checks["dominant"], checks["swallowed"],
                   checks["one_way_pairs"], message)


def summarise(y_true: LabelsLike, y_pred: LabelsLike, names: Sequence[str] | None = None,
              threshold: float = DEFAULT_THRESHOLD) -> dict[str, Any]:
    """Compute the metrics ``facelab fit`` writes to ``metrics.json``.

    Returns:
        ``accuracy``, ``balanced_accuracy`` (mean per-class recall), ``macro_f1``,
        ``n``, ``per_class_recall``, ``min_recall``, ``predicted_share``, ``true_share``,
        ``max_share_ratio`` and ``alarm`` (:class:`Verdict` as a dict: ``fired``,
        ``fired_checks``, ``message``, ``dominant``, ``swallowed``, ``one_way_pairs``).
    """
    y_true, y_pred, names = as_ids(y_true, y_pred, names)
    table = per_class_table(y_true, y_pred, names).loc[list(names)]
    present = table["support"] > 0
    shares = share_table(y_true, y_pred, names).loc[list(names)]
    verdict = bias_verdict(y_true, y_pred, names, threshold)
    return {"n": int(len(y_true)),
            "accuracy": float((y_true == y_pred).mean()) if len(y_true) else 0.0,
            "balanced_accuracy": float(table.loc[present, "recall"].mean()),
            "macro_f1": float(table.loc[present, "f1"].mean()),
            "min_recall": float(table.loc[present, "recall"].min()),
            "per_class_recall": {k: float(v) for k, v in table["recall"].items()},
            "predicted_share": {k: float(v) for k, v in shares["predicted_share"].items()},
            "true_share": {k: float(v) for k, v in shares["true_share"].items()},
            "max_share_ratio": float(shares.loc[shares["true_share"] > 0, "ratio"].max()),
            "alarm": verdict.to_dict()}
