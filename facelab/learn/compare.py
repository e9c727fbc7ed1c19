"""Two fitted models side by side on the same faces: which one to use, and why.

Notebook 07 trains the blog post's road (a CNN from scratch) and the pretrained face
network on the same split; :func:`compare_fits` puts their test figures, training time,
``unknown`` calibration and bias verdict in one table, and, given faces of people neither
model was trained on (``fit(..., set_aside=...)``), how many of those strangers each lets
through at its own calibrated threshold, with the curve behind it (:func:`openset_roc`).
:func:`choose_model` picks the one to name faces with: calibrated on strangers, then the
better on the **validation** split (the test split chose nothing).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from facelab.learn.openset import OPENSET_NAME, RECOGNIZER_NAME, SCORES_NAME, ScoreModel


def _json(folder: Path, name: str) -> dict[str, Any]:
    return json.loads((folder / name).read_text(encoding="utf-8"))


def score_faces(model_dir: str | os.PathLike[str], rows: pd.DataFrame) -> pd.DataFrame:
    """Name and score faces with a fitted model, as ``fit`` scored its own.

    Args:
        model_dir: A ``facelab fit`` folder.
        rows: Faces cut like its training faces (absolute ``path``, ``person``).

    Returns:
        ``path``, ``person``, ``predicted``, ``score``, ``correct`` (named right, known).
    """
    from facelab.data.labels import LabelMap
    from facelab.learn.model import load_model
    from facelab.learn.openset import model_outputs, scored_table

    folder = Path(model_dir)
    info, openset = _json(folder, RECOGNIZER_NAME), _json(folder, OPENSET_NAME)
    label_map = LabelMap.load(folder)
    if rows.empty:
        return pd.DataFrame(columns=["path", "person", "predicted", "score", "correct"])
    probs, feats = model_outputs(load_model(folder / "model.keras", compile=False), rows,
                                 label_map, int(info["image_size"]),
                                 bool(info.get("flip_average", True)))
    table = scored_table("", rows.reset_index(drop=True), probs, feats, label_map.names,
                         ScoreModel.load(folder, openset))
    return table.drop(columns="set")


def openset_roc(known: pd.DataFrame, strangers: pd.DataFrame) -> pd.DataFrame:
    """Known faces named right and strangers accepted, for every threshold.

    Args:
        known: Known faces' ``score`` and ``correct`` (e.g. the ``known_test`` rows of
            ``openset_scores.csv``).
        strangers: Strangers' ``score`` (:func:`score_faces` of people set aside).

    Returns:
        ``threshold``, ``strangers_accepted``, ``known_named`` (one row per distinct score,
        descending thresholds).
    """
    cuts = np.unique(np.concatenate([known["score"].to_numpy(float),
                                     strangers["score"].to_numpy(float)]))[::-1]
    ks, kc = known["score"].to_numpy(float), known["correct"].astype(bool).to_numpy()
    ss = strangers["score"].to_numpy(float)
    return pd.DataFrame({"threshold": cuts,
                         "strangers_accepted": [(ss >= t).mean() if ss.size else np.nan
                                                for t in cuts],
                         "known_named": [((ks >= t) & kc).mean() if ks.size else np.nan
                                         for t in cuts]})


def compare_fits(fits: dict[str, str | os.PathLike[str]],
                 strangers: pd.DataFrame | None = None
                 ) -> tuple[pd.DataFrame, dict[str, tuple[pd.DataFrame, float]]]:
    """One row per fitted model: test figures, time, calibration, strangers, verdict.

    Args:
        fits: Label -> model folder.
        strangers: Faces of people no model was trained on (absolute ``path``,
            ``person``): each model scores them once; the share it accepts at its own
            threshold goes in the table, and the whole trade-off in the curves.

    Returns:
        The table (index: the labels) and, per model, :func:`openset_roc` of its known test
        faces and the strangers with its calibrated threshold (empty without strangers).
    """
    rows, curves = {}, {}
    for label, folder in fits.items():
        folder = Path(folder)
        m, o = _json(folder, "metrics.json"), _json(folder, OPENSET_NAME)
        rows[label] = {"arch": m["recipe"]["arch"], "people": m["num_classes"],
                       "test balanced accuracy": m["balanced_accuracy"],
                       "lowest recall": m["min_recall"],
                       "val balanced accuracy": m["val"]["balanced_accuracy"],
                       "fit seconds": m.get("fit_seconds", m.get("training_seconds_total")),
                       "unknown calibrated on": o.get("method", "").split(",")[0],
                       "known test faces named": o["test"]["correct_named"],
                       "verdict": ", ".join(m["alarm"]["fired_checks"]) or "quiet"}
        if strangers is not None and len(strangers):
            scored = score_faces(folder, strangers)
            accepted = float((scored["score"] >= o["threshold"]).mean())
            rows[label]["strangers accepted"] = accepted
            known = pd.read_csv(folder / SCORES_NAME)
            curves[label] = (openset_roc(known[known["set"] == "known_test"], scored),
                             float(o["threshold"]))
    return pd.DataFrame(rows).T, curves


def choose_model(fits: dict[str, str | os.PathLike[str]]) -> str:
    """The label of the model to name faces with: calibrated on strangers, then validation.

    A model whose ``unknown`` threshold was calibrated on people held out (folds) is
    preferred to one calibrated without any stranger (its open-set claim is untested);
    among those, the best validation balanced accuracy wins (the first on a tie).  The test
    split is not looked at: it stays a figure that chose nothing.
    """
    best, key = "", (-1, -1.0)
    for label, folder in fits.items():
        folder = Path(folder)
        calibrated = int(_json(folder, OPENSET_NAME).get("folds", 0) > 0) \
            if (folder / OPENSET_NAME).is_file() else 0
        score = (calibrated, float(_json(folder, "metrics.json")["val"]["balanced_accuracy"]))
        if score > key:
            best, key = label, score
    return best
