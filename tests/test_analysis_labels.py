"""facelab.analysis takes labels as users have them: names, ids, arrays, Series; clear errors."""

from __future__ import annotations

import importlib

import numpy as np
import pandas as pd
import pytest

from facelab import analysis

NAMES = ["Angelina Jolie", "Brad Pitt", "Cate Blanchett"]
# Cate's faces go to Brad one way: the verdict fires on swallowed and one-way pairs
TRUE_IDS = np.repeat([0, 1, 2], 8)
PRED_IDS = np.r_[[0] * 8, [1] * 8, [1] * 7, 2]
TRUE_NAMES = [NAMES[i] for i in TRUE_IDS]
PRED_NAMES = [NAMES[i] for i in PRED_IDS]

# every function of facelab.analysis that takes y_true, y_pred (names optional)
FUNCTIONS = ["confusion", "share_table", "per_class_table", "confused_pairs",
             "dominant_class_alarm", "swallowed_class_alarm", "one_way_pair_alarm",
             "bias_verdict", "summarise", "plot_confusion", "plot_shares", "plot_recall"]


def _same(a: object, b: object) -> None:
    """Two results of an analysis function are equal (arrays, tables, dataclasses, figures)."""
    if isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b)
    elif hasattr(a, "to_dict"):
        assert a.to_dict() == b.to_dict()
    elif hasattr(a, "axes"):                       # a figure: the same tick labels
        assert [t.get_text() for t in a.axes[0].get_xticklabels()] == \
               [t.get_text() for t in b.axes[0].get_xticklabels()]
    else:
        assert a == b


@pytest.mark.parametrize("function", FUNCTIONS)
def test_names_ids_arrays_and_series_give_the_same_answer(function: str) -> None:
    import matplotlib
    import matplotlib.pyplot as plt

    matplotlib.use("Agg")
    call = getattr(analysis, function)
    reference = call(TRUE_IDS, PRED_IDS, NAMES)         # what facelab's own callers pass
    for y_true, y_pred, names in [
            (TRUE_NAMES, PRED_NAMES, None),                             # names, sorted
            (TRUE_NAMES, PRED_NAMES, NAMES),
            (np.array(TRUE_NAMES), pd.Series(PRED_NAMES, index=range(50, 74)), None),
            (pd.Series(TRUE_IDS), pd.Series(PRED_IDS), NAMES),
            (list(TRUE_IDS), tuple(PRED_IDS.astype(float)), NAMES),
            (pd.Series(TRUE_NAMES, dtype="category"), PRED_NAMES, None)]:
        _same(reference, call(y_true, y_pred, names))
    plt.close("all")


def test_names_are_optional_and_sorted() -> None:
    labels = analysis.encode_labels(["b", "c", "a"], ["b", "b", "d"])
    assert labels.names == ["a", "b", "c", "d"]     # a class only predicted is a class too
    assert labels.true.tolist() == [1, 2, 0] and labels.pred.tolist() == [1, 1, 3]
    ids = analysis.encode_labels([1001, 2002, 1001], [2002, 2002, 7])   # ids without names
    assert ids.names == ["7", "1001", "2002"] and ids.pred.tolist() == [2, 2, 0]
    cm = analysis.confusion(["x", "y", "y"], ["y", "y", "y"])
    assert cm.tolist() == [[0, 1], [0, 2]]
    verdict = analysis.bias_verdict(TRUE_NAMES, PRED_NAMES)
    assert verdict.fired_checks == ["swallowed", "one_way_pairs"]
    assert verdict.swallowed.offenders[0]["absorber"] == "Brad Pitt"
    summary = analysis.summarise(pd.Series(TRUE_NAMES), pd.Series(PRED_NAMES))
    assert set(summary["per_class_recall"]) == set(NAMES)


@pytest.mark.parametrize("y_true, y_pred, names, message", [
    (TRUE_NAMES, PRED_NAMES[:-1], None, "y_true has 24 labels but y_pred has 23"),
    (TRUE_NAMES, list(PRED_IDS), None, "y_true holds names but y_pred holds ids"),
    (TRUE_NAMES, PRED_NAMES[:-1] + ["Bradd Pitt"], NAMES,
     r"y_pred has 1 name\(s\) not among the 3 names given: 'Bradd Pitt' \(1x\)"),
    (TRUE_NAMES, PRED_NAMES, NAMES[:2], "y_true has 1 name.*'Cate Blanchett' \\(8x\\)"),
    (TRUE_IDS, PRED_IDS + 1, NAMES, r"y_pred has ids outside 0..2 \(names has 3 entries\): 3"),
    (["a", 1], ["a", "a"], None, r"y_true mixes names \('a'\) and integer ids \(1\)"),
    (["a", "b"], pd.Series(["a", None]), None, r"y_pred has 1 missing label\(s\)"),
    ([0.2, 1.0], [1, 1], None, "y_true holds numbers that are not integer ids"),
    (TRUE_IDS, np.eye(3)[PRED_IDS], NAMES, r"y_pred has shape \(24, 3\).*argmax"),
    ("Brad Pitt", ["Brad Pitt"], None, "y_true is one string"),
    ([True, False], [True, True], None, "True/False"),
    (TRUE_NAMES, PRED_NAMES, ["a", "b", "a"], "names has duplicates: 'a'"),
    ([], [], None, "empty"),
])
def test_bad_labels_say_which(y_true: object, y_pred: object, names: object,
                              message: str) -> None:
    with pytest.raises(ValueError, match=message):
        analysis.bias_verdict(y_true, y_pred, names)


def test_lazy_packages_list_their_exports_for_tab_completion() -> None:
    listed = dir(analysis)
    for name in ("bias_verdict", "plot_confusion", "report", "explore", "encode_labels"):
        assert name in listed
    for package in ("collect", "faces", "data", "learn", "recognize", "demo"):
        module = importlib.import_module(f"facelab.{package}")
        assert set(module.__all__) <= set(dir(module)), package
