"""Labels as users have them: names or integer ids, lists, numpy arrays or pandas Series.

Every function of :mod:`facelab.analysis` that takes ``y_true, y_pred`` passes them through
:func:`encode_labels` first, so any classifier's predictions work, not only facelab's ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

_SHOWN = 3      # examples named in an error message

# Names (strings) or integer ids: a list, a numpy array or a pandas Series.
LabelsLike = Sequence[str] | Sequence[int] | np.ndarray | pd.Series


@dataclass(frozen=True)
class Labels:
    """True and predicted labels as ids into ``names``.

    Attributes:
        true: True class ids (int64), one per example.
        pred: Predicted class ids (int64).
        names: Class names in id order.
    """

    true: np.ndarray
    pred: np.ndarray
    names: list[str]


def _examples(values: Any) -> str:
    """A few values for an error message: ``'a', 'b', 'c' and 4 more``."""
    values = list(values)
    shown = ", ".join(repr(v.item() if isinstance(v, np.generic) else v)
                      for v in values[:_SHOWN])
    return shown + (f" and {len(values) - _SHOWN} more" if len(values) > _SHOWN else "")


def _as_array(labels: Any, what: str) -> np.ndarray:
    """One label per example as a 1-D array (a Series' positions, not its index)."""
    if isinstance(labels, (str, bytes)):
        raise ValueError(f"{what} is one string ({labels!r}): pass one label per example")
    array = np.asarray(labels)      # a Series or Categorical gives its values, in order
    if array.dtype.kind in "US" and not isinstance(labels, np.ndarray):
        array = np.asarray(labels, dtype=object)    # ["a", 1] would become ["a", "1"]
    if array.ndim != 1:
        raise ValueError(f"{what} has shape {array.shape}: pass one label per example (for "
                         "probabilities or one-hot rows, take probs.argmax(axis=1))")
    return array


def _kind(array: np.ndarray, what: str) -> str:
    """``ids`` or ``names``; raises for missing, fractional, boolean or mixed labels."""
    if array.dtype.kind in "iuUS":
        return "ids" if array.dtype.kind in "iu" else "names"
    if array.dtype.kind == "b":
        raise ValueError(f"{what} holds True/False: pass class names or integer ids")
    missing = np.flatnonzero(pd.isna(array))
    if missing.size:
        raise ValueError(f"{what} has {missing.size} missing label(s) (at positions "
                         f"{_examples(missing)}, counting from 0)")
    if array.dtype.kind == "f":
        fractional = array[array != np.round(array)]
        if fractional.size:
            raise ValueError(f"{what} holds numbers that are not integer ids "
                             f"({_examples(fractional)}): pass class ids or names (for "
                             "probabilities, take probs.argmax(axis=1))")
        return "ids"
    is_name = np.fromiter((isinstance(v, str) for v in array), bool, len(array))
    is_id = np.fromiter((isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                         for v in array), bool, len(array))
    if is_name.any() and is_id.any():
        raise ValueError(f"{what} mixes names ({_examples(array[is_name])}) and integer ids "
                         f"({_examples(array[is_id])}): pass one kind")
    other = ~(is_name | is_id)
    if other.any():
        raise ValueError(f"{what} holds values that are neither names nor integer ids "
                         f"({_examples(array[other])})")
    return "names" if is_name.any() else "ids"


def _ids(array: np.ndarray, names: list[str], what: str) -> np.ndarray:
    """Integer ids checked against ``names``."""
    ids = array.astype(np.int64)
    outside = np.unique(ids[(ids < 0) | (ids >= len(names))])
    if outside.size:
        raise ValueError(f"{what} has ids outside 0..{len(names) - 1} (names has "
                         f"{len(names)} entries): {_examples(outside)}")
    return ids


def _lookup(array: np.ndarray, names: list[str], what: str) -> np.ndarray:
    """Names -> their position in ``names``; raises naming the unknown ones."""
    index = pd.Index(names)
    ids = index.get_indexer(array.astype(str))
    unknown = pd.Series(array[ids < 0].astype(str)).value_counts()
    if not unknown.empty:
        listing = ", ".join(f"{name!r} ({count}x)" for name, count in
                            unknown.head(_SHOWN).items())
        more = f" and {len(unknown) - _SHOWN} more" if len(unknown) > _SHOWN else ""
        raise ValueError(f"{what} has {len(unknown)} name(s) not among the {len(names)} names "
                         f"given: {listing}{more}")
    return ids.astype(np.int64)


def encode_labels(y_true: LabelsLike, y_pred: LabelsLike, names: Sequence[Any] | None = None, *,
                  what: tuple[str, str] = ("y_true", "y_pred")) -> Labels:
    """Turn true and predicted labels of any usual form into ids and class names.

    Labels are names (strings) or integer ids, in a list, a numpy array or a pandas Series
    (taken by position).  With ``names``, ids index into it and names must be among it;
    without, the classes are the distinct labels of both, sorted (an id ``i`` is then the
    class named ``str(i)``).

    Args:
        y_true: True labels, one per example.
        y_pred: Predicted labels, as many.
        names: Class names in id order (optional).
        what: How the error messages call the two inputs (e.g. CSV column names).

    Returns:
        :class:`Labels` (``true``, ``pred`` ids and ``names``).

    Raises:
        ValueError: Lengths differ, labels are missing, mixed (names and ids), not labels
            (fractions, 2-D arrays), or not among ``names``; ``names`` has duplicates.
    """
    true, pred = _as_array(y_true, what[0]), _as_array(y_pred, what[1])
    if len(true) != len(pred):
        raise ValueError(f"{what[0]} has {len(true)} labels but {what[1]} has {len(pred)}: "
                         "pass one true and one predicted label per example")
    kinds = (_kind(true, what[0]) if len(true) else "", _kind(pred, what[1]) if len(pred) else "")
    if kinds[0] != kinds[1]:
        raise ValueError(f"{what[0]} holds {kinds[0]} but {what[1]} holds {kinds[1]}: pass "
                         "both as names or both as integer ids")
    if names is None:
        return _from_labels(true, pred, kinds[0], what)
    names = [str(n) for n in names]
    duplicated = pd.Index(names)[pd.Index(names).duplicated()].unique()
    if len(duplicated):
        raise ValueError(f"names has duplicates: {_examples(duplicated)}")
    if not len(true):
        return Labels(np.zeros(0, np.int64), np.zeros(0, np.int64), names)
    encode = _ids if kinds[0] == "ids" else _lookup
    return Labels(encode(true, names, what[0]), encode(pred, names, what[1]), names)


def _from_labels(true: np.ndarray, pred: np.ndarray, kind: str,
                 what: tuple[str, str]) -> Labels:
    """Classes taken from the labels themselves, sorted (ids numerically)."""
    if not len(true):
        raise ValueError(f"{what[0]} and {what[1]} are empty: nothing to analyse")
    true, pred = (true.astype(np.int64), pred.astype(np.int64)) if kind == "ids" else (
        true.astype(str), pred.astype(str))
    found = np.unique(np.concatenate([true, pred]))
    return Labels(np.searchsorted(found, true).astype(np.int64),
                  np.searchsorted(found, pred).astype(np.int64), [str(v) for v in found])


def as_ids(y_true: LabelsLike, y_pred: LabelsLike,
           names: Sequence[Any] | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """:func:`encode_labels` as a tuple: ``(true ids, predicted ids, names)``."""
    labels = encode_labels(y_true, y_pred, names)
    return labels.true, labels.pred, labels.names


def prediction_table(y_true: LabelsLike, y_pred: LabelsLike,
                     names: Sequence[Any] | None = None, *, images: Any = None,
                     scores: Any = None, what: tuple[str, str] = ("y_true", "y_pred"),
                     ) -> tuple[pd.DataFrame, list[str]]:
    """One row per example in :func:`~facelab.analysis.predict_split`'s columns.

    Args:
        y_true: True labels (names or ids).
        y_pred: Predicted labels.
        names: Class names in id order (default: the labels' classes, sorted).
        images: Optional image path per example (``path`` column).
        scores: Optional score of the prediction per example (``confidence`` column).
        what: How error messages call ``y_true`` and ``y_pred``.

    Returns:
        ``(table, names)``: ``true`` and ``pred`` ids, ``person`` and ``predicted`` names,
        ``correct``, and ``path`` / ``confidence`` when given.
    """
    labels = encode_labels(y_true, y_pred, names, what=what)
    named = np.asarray(labels.names, dtype=object)
    table = pd.DataFrame({"true": labels.true, "pred": labels.pred,
                          "person": named[labels.true] if len(named) else [],
                          "predicted": named[labels.pred] if len(named) else [],
                          "correct": labels.true == labels.pred})
    for column, values, label in (("path", images, "images"),
                                  ("confidence", scores, "scores")):
        if values is None:
            continue
        values = np.asarray(values)
        if values.shape != (len(table),):
            raise ValueError(f"{label} has shape {values.shape} but there are {len(table)} "
                             "labels: pass one per example")
        if column == "confidence":
            numbers = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(float)
            bad = values[np.isnan(numbers) & ~pd.isna(values)]
            if bad.size:
                raise ValueError(f"{label} holds values that are not numbers: {_examples(bad)}")
            values = numbers
        table[column] = values
    return table, labels.names
