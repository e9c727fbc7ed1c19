"""Class balance: the imbalance report and the strategies side by side.

The blog post's celebrities had 50 to 250 photos each; the first model answered "Brad
Pitt" for more than 90% of inputs.  The post's fix was to *undersample* every class to
about 50 photos, throwing most of the data away.  The strategies here:

* :func:`undersample` - k rows per class (what the post did; discards data);
* :func:`oversample` - repeat rows of small classes up to the largest (no new
  information, and the repeats are memorised unless augmented);
* :func:`class_weights` - keep the data, weight the loss by ``n / (K * n_c)``
  (scikit-learn's "balanced"); pass to ``model.fit(class_weight=...)``;
* balanced sampling in tf.data (``tf.data.Dataset.sample_from_datasets`` over one
  endlessly reshuffled dataset per class) - **the default** of
  :func:`facelab.data.pipeline.make_dataset` (``balance="sample"``): every batch draws classes
  uniformly, all photos are used, and no photo repeats before its class is exhausted.

:func:`sampled_counts` shows what a strategy feeds the model; :func:`plot_counts`
draws the distributions side by side.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from facelab.data.labels import LabelMap


STRATEGIES = ("sample", "undersample", "oversample", "weights", "none")


def class_counts(manifest: pd.DataFrame, label: str = "person") -> pd.Series:
    """Rows per class, largest first (ties by name)."""
    counts = manifest[label].astype(str).value_counts()
    return counts.sort_index().sort_values(ascending=False, kind="stable")


def imbalance_ratio(counts: pd.Series | Mapping[str, int]) -> float:
    """Largest class size / smallest class size (1.0 = balanced)."""
    values = np.asarray(list(dict(counts).values()), dtype=float)
    if values.size == 0 or values.min() <= 0:
        raise ValueError("imbalance ratio needs at least one class and no empty class")
    return float(values.max() / values.min())


@dataclass
class BalanceReport:
    """Summary of a class distribution.

    Attributes:
        counts: Rows per class, largest first.
        ratio: Largest / smallest class.
        majority_share: The largest class's share of all rows (what a model that always
            answers that class would score).
    """

    counts: pd.Series
    ratio: float
    majority_share: float

    def __str__(self) -> str:
        c = self.counts
        return (f"{len(c)} classes, {int(c.sum())} rows; largest {c.index[0]!r} {int(c.iloc[0])}, "
                f"smallest {c.index[-1]!r} {int(c.iloc[-1])}; imbalance ratio {self.ratio:.2f}; "
                f"majority share {self.majority_share:.1%}")


def report(manifest: pd.DataFrame, split: str | None = "train",
           label: str = "person") -> BalanceReport:
    """Summarise one split (or all rows: ``None``): counts, imbalance ratio, majority share."""
    df = manifest
    if split is not None and "split" in manifest.columns:
        df = manifest[manifest["split"] == split]
    if df.empty:
        raise ValueError(f"no rows in split {split!r}")
    counts = class_counts(df, label)
    return BalanceReport(counts, imbalance_ratio(counts), float(counts.iloc[0] / counts.sum()))


def undersample(manifest: pd.DataFrame, k: int | None = None, seed: int = 0,
                label: str = "person") -> pd.DataFrame:
    """Keep at most ``k`` random rows per class (default: the smallest class's size).

    This is the post's fix; it discards ``sum(n_c - k)`` photos.
    """
    counts = class_counts(manifest, label)
    k = int(counts.min()) if k is None else int(k)
    if k < 1:
        raise ValueError(f"k={k}: keep at least one row per class")
    parts = [g.sample(n=min(k, len(g)), random_state=seed + i)
             for i, (_, g) in enumerate(manifest.groupby(label, sort=True))]
    return pd.concat(parts).sort_index()


def oversample(manifest: pd.DataFrame, target: int | None = None, seed: int = 0,
               label: str = "person") -> pd.DataFrame:
    """Repeat rows of each class up to ``target`` rows (default: the largest class).

    Every original row is kept once; the extra rows are drawn without replacement while
    possible (each photo repeats at most once more than any other of its class).
    """
    counts = class_counts(manifest, label)
    target = int(counts.max()) if target is None else int(target)
    rng = np.random.default_rng(seed)
    parts = []
    for _, g in manifest.groupby(label, sort=True):
        reps, rest = divmod(max(target, len(g)), len(g))
        extra = g.iloc[rng.permutation(len(g))[:rest]] if rest else g.iloc[:0]
        parts.append(pd.concat([g] * reps + [extra]))
    return pd.concat(parts)


def class_weights(manifest: pd.DataFrame, label_map: LabelMap | None = None,
                  label: str = "person") -> dict[int, float]:
    """Per-class loss weights ``n / (K * n_c)`` keyed by label id (for Keras ``class_weight``).

    Args:
        manifest: The training rows.
        label_map: Ids to use (default: built from the rows).
        label: The class column.
    """
    from facelab.data.labels import LabelMap

    label_map = label_map or LabelMap.from_manifest(manifest, label)
    counts = class_counts(manifest, label)
    n, k = float(counts.sum()), len(label_map)
    missing = [name for name in label_map.names if name not in counts.index]
    if missing:
        raise ValueError(f"class(es) {missing[:5]} have no training rows: a weight would "
                         "be infinite; check the split")
    return {label_map.index(name): n / (k * float(counts[name])) for name in label_map.names}


def sampled_counts(manifest: pd.DataFrame, strategy: str, n: int | None = None,
                   seed: int = 0, label: str = "person") -> pd.Series:
    """Count what one epoch of a strategy feeds the model, per class.

    Args:
        manifest: The training rows.
        strategy: One of ``none``, ``undersample``, ``oversample``, ``weights`` (the
            loss mass per class: count x weight) or ``sample`` (balanced sampling,
            simulated in NumPy with uniform class draws, ``n`` draws).
        n: Draws for ``sample`` (default: the number of rows).
        seed: Seed of the resampling.
        label: The class column.

    Returns:
        Counts per class, indexed like :func:`class_counts` of the input.
    """
    base = class_counts(manifest, label)
    if strategy == "none":
        out = base
    elif strategy == "undersample":
        out = class_counts(undersample(manifest, seed=seed, label=label), label)
    elif strategy == "oversample":
        out = class_counts(oversample(manifest, seed=seed, label=label), label)
    elif strategy == "weights":
        from facelab.data.labels import LabelMap

        lm = LabelMap.from_manifest(manifest, label)
        w = class_weights(manifest, lm, label)
        out = pd.Series({name: base[name] * w[lm.index(name)] for name in base.index})
    elif strategy == "sample":
        rng = np.random.default_rng(seed)
        draws = rng.integers(0, len(base), size=n or int(base.sum()))
        out = pd.Series(np.bincount(draws, minlength=len(base)), index=sorted(base.index))
    else:
        raise ValueError(f"unknown strategy {strategy!r}: use one of {list(STRATEGIES)}")
    return out.reindex(base.index).fillna(0)


def summarise(distributions: Mapping[str, pd.Series], base: pd.Series) -> pd.DataFrame:
    """One row per strategy: examples per epoch, photos left unused, imbalance ratio.

    Args:
        distributions: ``{strategy: counts per class}`` (e.g. from :func:`sampled_counts`).
        base: The training counts per class before any strategy.
    """
    rows = []
    for name, counts in distributions.items():
        counts = counts.reindex(base.index).fillna(0)
        unused = (base - counts).clip(lower=0) if name == "undersample" else base * 0
        rows.append({"strategy": name, "per_epoch": float(counts.sum()),
                     "photos_unused": int(unused.sum()),
                     "ratio": float(counts.max() / counts.min()) if counts.min() > 0
                     else float("inf"),
                     "largest_share": float(counts.max() / counts.sum())})
    return pd.DataFrame(rows).set_index("strategy").round(3)
