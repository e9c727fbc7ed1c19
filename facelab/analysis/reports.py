"""One call from any classifier's predictions to the bias verdict, its tables and figures.

:func:`report` takes a predictions table (one row per example, the true and predicted
labels as names or ids, optionally an image path and a score); :func:`read_predictions`
reads one from a CSV for ``facelab bias``.  :meth:`Report.save` writes ``verdict.json``,
``per_class.csv``, ``confused_pairs.csv`` and the figures.  The figures come from
:mod:`facelab.analysis.plots`, imported only when they are drawn.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from facelab.analysis.bias import (
    DEFAULT_THRESHOLD,
    Verdict,
    bias_verdict,
    confused_pairs,
    per_class_table,
    summarise,
)
from facelab.analysis.labels import prediction_table
from facelab.io import atomic_write_bytes

VERDICT_NAME = "verdict.json"
PER_CLASS_NAME = "per_class.csv"
PAIRS_NAME = "confused_pairs.csv"
HEADLINE = ("n", "accuracy", "balanced_accuracy", "macro_f1", "min_recall")


@dataclass(repr=False)
class Report:
    """The bias analysis of one predictions table.

    Attributes:
        verdict: :func:`~facelab.analysis.bias_verdict` (``.message`` is the verdict line).
        per_class: :func:`~facelab.analysis.per_class_table` (worst recall first).
        confused_pairs: Every (true, predicted) mistake, most frequent first.
        summary: :func:`~facelab.analysis.summarise` (accuracy, balanced accuracy, ...).
        names: Class names in id order.
        predictions: One row per example in :func:`~facelab.analysis.predict_split`'s
            columns (``person``, ``predicted``, ``correct``; ``path``, ``confidence`` when
            given): what the galleries take.
        figures: File stem -> matplotlib figure (``confusion``, ``confusion_counts``,
            ``shares``, ``recall``, and ``worst_cell`` when images are given).
    """

    verdict: Verdict
    per_class: pd.DataFrame
    confused_pairs: pd.DataFrame
    summary: dict[str, Any]
    names: list[str]
    predictions: pd.DataFrame
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def worst_cell(self) -> tuple[str, str] | None:
        """The most frequent mistake as ``(true, predicted)``; ``None`` when there is none."""
        if self.confused_pairs.empty:
            return None
        first = self.confused_pairs.iloc[0]
        return str(first["true"]), str(first["predicted"])

    def to_dict(self) -> dict[str, Any]:
        """What ``verdict.json`` holds: the verdict, the headline figures, the worst cell."""
        cell = self.worst_cell
        first = None if cell is None else self.confused_pairs.iloc[0]
        return {**self.verdict.to_dict(), **{key: self.summary[key] for key in HEADLINE},
                "num_classes": len(self.names),
                "worst_cell": None if first is None else {
                    "true": cell[0], "predicted": cell[1], "count": int(first["count"]),
                    "share_of_true": float(first["share_of_true"])}}

    def save(self, out: str | Path, *, dpi: int = 90,
             meta: dict[str, Any] | None = None) -> dict[str, Path]:
        """Write ``verdict.json``, ``per_class.csv``, ``confused_pairs.csv`` and the figures.

        Args:
            out: Folder (created when missing).
            dpi: Resolution of the PNG figures.
            meta: Extra keys for ``verdict.json`` (e.g. the source file, the split).

        Returns:
            File name -> path of everything written.
        """
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        figures = {f"{stem}.png": figure for stem, figure in self.figures.items()}
        for name, figure in figures.items():
            figure.savefig(out / name, dpi=dpi)
        data = {**(meta or {}), **self.to_dict()}
        tables = {        # verdict.json last: once it is there, everything is
            PER_CLASS_NAME: self.per_class.to_csv().encode("utf-8"),
            PAIRS_NAME: self.confused_pairs.to_csv(index=False).encode("utf-8"),
            VERDICT_NAME: (json.dumps(data, indent=2, ensure_ascii=False, default=str)
                           + "\n").encode("utf-8"),
        }
        for name, payload in tables.items():
            atomic_write_bytes(out / name, payload)
        return {name: out / name for name in [*tables, *figures]}

    def draw(self, threshold: float = DEFAULT_THRESHOLD) -> dict[str, Any]:
        """Draw the figures (:func:`~facelab.analysis.plots.report_figures`)."""
        from facelab.analysis.plots import report_figures

        return report_figures(self.predictions, self.names, self.verdict,
                              worst_cell=self.worst_cell, threshold=threshold)

    def __repr__(self) -> str:
        return (f"Report({len(self.predictions)} predictions, {len(self.names)} classes, "
                f"figures {sorted(self.figures)}: {self.verdict.message})")

    def _repr_html_(self) -> str:
        colour = "#c62828" if self.verdict.fired else "#2e7d32"
        figures = ", ".join(f"<code>{html.escape(f)}</code>" for f in self.figures) or "none"
        return (f"<p style='color:{colour}'><b>{html.escape(self.verdict.message)}</b></p>"
                f"<p>{len(self.predictions)} predictions, {len(self.names)} classes, accuracy "
                f"{self.summary['accuracy']:.3f}, balanced accuracy "
                f"{self.summary['balanced_accuracy']:.3f}; figures: {figures}. "
                "Worst recall first:</p>" + self.per_class.head(10).round(3).to_html())


def report(df: pd.DataFrame, true: str = "person", pred: str = "predicted",
           image: str | None = None, *, score: str | None = None,
           names: Sequence[Any] | None = None, threshold: float = DEFAULT_THRESHOLD,
           figures: bool = True) -> Report:
    """Analyse a predictions table: the verdict, the per-class table and the figures.

    Args:
        df: One row per example (e.g. :func:`~facelab.analysis.predict_split`'s table, or
            any classifier's predictions).
        true: Column of the true labels (names or integer ids).
        pred: Column of the predicted labels (the same kind).
        image: Column of image paths: adds a gallery of the worst cell.
        score: Column of the prediction's score (shown in the gallery, best first).
        names: Class names in id order (default: the labels' classes, sorted).
        threshold: The dominant-class threshold (predicted / true share).
        figures: Draw the figures (``False``: tables and verdict only).

    Returns:
        A :class:`Report`.

    Raises:
        ValueError: A column is missing, or the labels are (see
            :func:`~facelab.analysis.encode_labels`).
    """
    check_columns(df, {"true": true, "pred": pred, "image": image, "score": score},
                  "the table")
    table, names = prediction_table(
        df[true], df[pred], names, what=(f"column {true!r}", f"column {pred!r}"),
        images=None if image is None else df[image].to_numpy(),
        scores=None if score is None else df[score].to_numpy())
    verdict = bias_verdict(table["true"], table["pred"], names, threshold)
    result = Report(verdict, per_class_table(table["true"], table["pred"], names),
                    confused_pairs(table["true"], table["pred"], names, top=len(names) ** 2),
                    summarise(table["true"], table["pred"], names, threshold), names, table)
    if figures:
        result.figures = result.draw(threshold)
    return result


def check_columns(df: pd.DataFrame, columns: dict[str, str | None], source: str) -> None:
    """Raise a ``ValueError`` naming each column ``df`` lacks, and when it has no rows.

    Args:
        df: The table.
        columns: How the caller asked for it (``true``, ``--true``) -> column name, or
            ``None`` for a column not asked for.
        source: What the message calls the table (a file name).
    """
    missing = [f"{name!r} ({role})" for role, name in columns.items()
               if name is not None and name not in df]
    if missing:
        raise ValueError(f"{source} has no column {', '.join(missing)}; its columns: "
                         f"{', '.join(map(repr, map(str, df.columns)))}")
    if df.empty:
        raise ValueError(f"{source} has no rows")


def read_predictions(path: str | Path, true: str, pred: str, image: str | None = None,
                     score: str | None = None) -> pd.DataFrame:
    """Read a predictions CSV, checking that it has rows and the columns named.

    Relative image paths are taken from the CSV's folder, as ``facelab fit`` writes them,
    else from the current folder.

    Args:
        path: The CSV file.
        true: Column of the true labels.
        pred: Column of the predicted labels.
        image: Column of image paths (optional).
        score: Column of scores (optional).

    Raises:
        FileNotFoundError: No such file.
        ValueError: Not a readable CSV, no rows, or a column missing (named).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file" if not path.exists()
                                else f"{path} is not a file")
    try:
        df = pd.read_csv(path, keep_default_na=False, na_values=[""])
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path} is empty: expected a CSV with a header row") from None
    except (UnicodeDecodeError, pd.errors.ParserError) as error:
        raise ValueError(f"{path} is not a readable CSV ({error})") from None
    check_columns(df, {"--true": true, "--pred": pred, "--image": image, "--score": score},
                  str(path))
    if image is not None:
        df[image] = [_resolve(value, path.parent) for value in df[image]]
    return df


def _resolve(value: Any, folder: Path) -> Any:
    """An image path relative to the CSV's folder when the file is there."""
    if not isinstance(value, str) or not value or Path(value).is_absolute():
        return value
    beside = folder / value
    return str(beside) if beside.exists() or not Path(value).exists() else value


def missing_images(predictions: pd.DataFrame) -> list[str]:
    """The image paths of a :class:`Report`'s predictions that are not files."""
    if "path" not in predictions:
        return []
    return [str(p) for p in predictions["path"] if not (isinstance(p, str) and p
                                                         and Path(p).is_file())]
