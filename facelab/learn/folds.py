"""Calibrate "unknown" without leaving anybody out of the model: people held out in turn.

The threshold that turns a face into ``unknown`` must be set on people the model was not
trained on.  Setting some people aside for good would drop them from the model (one person
in five, on the five friends a user brings), so :func:`fit <facelab.learn.fitting.fit>`
holds people out **in rotation**: the people are dealt into ``folds`` groups; for each group
a model is trained without it and scores the group's faces as strangers; the scores of all
groups are pooled to calibrate (:func:`facelab.learn.openset.calibrate`); the final model is
then trained on everyone.  With the pretrained face network a fold is a head on cached
embeddings (seconds); with the from-scratch CNN it is a whole training run.

Fold models know fewer people than the final one, so a stranger has fewer people to be
mistaken for: ``docs/learn.md`` gives the measured false-accept rate of final models on
people outside the training folder against the target (how well the threshold carries over).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

MIN_PEOPLE = 3          # each fold model needs at least 2 people


def identity_folds(people: Sequence[str], folds: int, seed: int = 0,
                   keep: Sequence[str] = ()) -> list[list[str]]:
    """Deal people into ``folds`` seeded groups (none with fewer than 3 people).

    Args:
        people: Everybody in the model.
        folds: How many groups (at most one per eligible person; 0: none).
        seed: Seed of the deal.
        keep: People never held out (look-alike pairs, twins: a stranger who is a known
            person's double scores like that person, so no threshold rejects one and keeps
            the other).

    Returns:
        The groups (sorted names each), or ``[]`` when there are too few people.

    Raises:
        ValueError: When ``folds`` is negative or ``keep`` names somebody not in ``people``.
    """
    if folds < 0:
        raise ValueError(f"folds {folds} must be 0 (no calibration folds) or more")
    names = sorted(map(str, people))
    kept = set(map(str, keep))
    unknown = sorted(kept - set(names))
    if unknown:
        raise ValueError(f"keep names people without faces here: {unknown}; check the "
                         "spelling against the person names of the faces")
    eligible = [name for name in names if name not in kept]
    count = min(folds, len(eligible))
    if count == 0 or len(names) < MIN_PEOPLE:
        return []
    while len(names) - math.ceil(len(eligible) / count) < 2:
        count += 1      # smaller groups leave >= 2 people to train on (ends at groups of 1)
    order = np.random.default_rng(seed + 7919).permutation(len(eligible))
    return [sorted(eligible[j] for j in order[i::count]) for i in range(count)]


def fold_strangers(faces: pd.DataFrame, groups: list[list[str]],
                   score_without: Callable[[int, list[str], pd.DataFrame], pd.DataFrame]
                   ) -> pd.DataFrame:
    """Score each group's faces with a model trained without the group, pooled.

    Args:
        faces: Every face (``person``, ``split``, ``path``).
        groups: :func:`identity_folds`.
        score_without: ``(fold index, people to train on, faces to score)`` -> a
            :func:`facelab.learn.openset.scored_table` of those faces.

    Returns:
        The pooled rows, ``set`` = ``unknown_cal`` (non-test faces: the calibration) or
        ``unknown_test`` (test faces: reported once), and ``fold``.
    """
    everyone = sorted(faces["person"].astype(str).unique())
    tables = []
    for index, group in enumerate(groups):
        rows = faces[faces["person"].astype(str).isin(group)].reset_index(drop=True)
        if rows.empty:
            continue
        table = score_without(index, [p for p in everyone if p not in group], rows)
        is_test = (rows["split"].astype(str) == "test").to_numpy()
        tables.append(table.assign(set=np.where(is_test, "unknown_test", "unknown_cal"),
                                   fold=index))
    if not tables:
        return pd.DataFrame(columns=["set", "path", "person", "predicted", "score",
                                     "correct", "fold"])
    return pd.concat(tables, ignore_index=True)


def people_aside(people: Sequence[str], count: int, seed: int = 0,
                 keep: Sequence[str] = ()) -> list[str]:
    """Draw ``count`` people (seeded, never one of ``keep``) to leave out of a model.

    For experiments only: the people a notebook or a benchmark keeps as strangers from
    outside the training folder (``fit(..., set_aside=...)``), to measure how well the
    threshold calibrated on the folds carries over.

    Raises:
        ValueError: When fewer than ``count`` + 2 people can be drawn from.
    """
    kept = set(map(str, keep))
    pool = sorted(str(p) for p in set(map(str, people)) - kept)
    if count < 0 or count > len(pool) or len(set(map(str, people))) - count < 2:
        raise ValueError(f"cannot set {count} of {len(pool)} people aside and keep 2 to "
                         "train on")
    order = np.random.default_rng(seed + 104729).permutation(len(pool))
    return sorted(pool[i] for i in order[:count])
