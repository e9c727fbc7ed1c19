"""Open set: a stranger is "unknown", not the nearest celebrity.

A softmax always names somebody, and its top probability is a poor
judge of strangers (it is often as high for them as for known faces).  :func:`fit
<facelab.learn.fitting.fit>` therefore holds a few identities out of training
(:func:`hold_out_identities`, 10% by default) and, after training, calibrates a threshold on
the **score**: the cosine similarity between the face's embedding (the input of the model's
``softmax`` layer: the pooled CNN features, or the cosine head's embedding,
:mod:`facelab.learn.heads`; averaged with the mirrored face when the recipe's
``flip_average`` is on) and the mean training embedding of the person the softmax names
(:func:`class_centroids`, stored as ``centroids.npy``).

People with a double among the others (twins, the demo's look-alikes) can be kept out of the
draw (``keep``): a stranger who is a known person's double scores like that person, and no
threshold then rejects the stranger without rejecting the known person too.

* the threshold is the lowest value at which at most ``target_far`` (1% by default) of the
  held-out people's non-test faces would be accepted as somebody (the false-accept rate);
* the curve (false accepts of strangers, false rejects and correct names of known
  validation faces, against the threshold) is stored with it, and the test split's
  known faces plus the held-out people's test faces are scored once at that threshold.

Model selection never sees the test split; the held-out people's test photos are used only
for the reported figures.  ``leave_one_out_far`` also reports the false-accept rate on each
held-out person when the threshold is calibrated without them (a stranger never seen at
all, not even in calibration).

Files in the model folder: ``openset.json`` (threshold, target, how it was set, test
figures), ``openset_curve.csv``, ``openset_scores.csv`` (one row per scored face) and
``centroids.npy``, plus
``recognizer.json`` (what ``facelab predict`` needs: image size, flip averaging, the face
stage's detector and crop settings, the facelab version).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from facelab.io import atomic_write_bytes
from facelab.manifest import FACE_SETTINGS_NAME

OPENSET_NAME = "openset.json"
CURVE_NAME = "openset_curve.csv"
SCORES_NAME = "openset_scores.csv"
CENTROIDS_NAME = "centroids.npy"
RECOGNIZER_NAME = "recognizer.json"
MODEL_FORMAT = 1
SCORE_DEFINITION = ("cosine similarity between the face's embedding (the softmax layer's "
                    "input, averaged with the mirrored face when flip_average is on) and the mean "
                    "training embedding of the top-1 person; accepted when >= threshold")


def holdout_count(n_classes: int, fraction: float, min_classes: int = 5) -> int:
    """How many identities to hold out: ``round(fraction * K)``, at least 1, leaving >= 2.

    No identity is held out when ``fraction`` is 0 or there are fewer than
    ``min_classes`` identities.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"holdout fraction {fraction} must be in [0, 1)")
    if fraction == 0 or n_classes < min_classes:
        return 0
    return int(min(max(1, round(fraction * n_classes)), n_classes - 2))


def hold_out_identities(df: pd.DataFrame, fraction: float = 0.1, seed: int = 0,
                        keep: Sequence[str] = ()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Set a seeded random ``fraction`` of the people aside as strangers.

    Args:
        df: The faces (``person`` column, one row per face).
        fraction: Share of identities held out (see :func:`holdout_count`, which counts
            all the people, ``keep`` included).
        seed: Seed of the choice (the same data and seed hold out the same people).
        keep: People never held out, e.g. those with a double in the set (a stranger
            who is a known person's double scores like that person; ``docs/recognize.md``).

    Returns:
        The known people's rows and the held-out people's rows (both index-reset).

    Raises:
        ValueError: When ``keep`` names somebody who has no face here, or leaves fewer
            people to draw from than are needed.
    """
    names = sorted(df["person"].astype(str).unique())
    n = holdout_count(len(names), fraction)
    kept = set(map(str, keep))
    unknown = sorted(kept - set(names))
    if unknown:
        raise ValueError(f"keep names people without faces here: {unknown}; check the "
                         "spelling against the person names of the faces")
    pool = [name for name in names if name not in kept]
    if n > len(pool):
        raise ValueError(f"{n} people must be held out but only {len(pool)} are not in "
                         "keep: keep fewer people known, or lower the holdout fraction")
    rng = np.random.default_rng(seed + 7919)
    held = {pool[i] for i in rng.permutation(len(pool))[:n]}
    mask = df["person"].astype(str).isin(held)
    return df[~mask].reset_index(drop=True), df[mask].reset_index(drop=True)


def threshold_for_far(impostor_scores: np.ndarray, target_far: float) -> float:
    """The lowest threshold at which at most ``target_far`` of impostor scores are accepted.

    A face is accepted when its score is >= the threshold.  With no impostor score the
    threshold is 0 (accept everything).
    """
    scores = np.sort(np.asarray(impostor_scores, dtype=float))
    if scores.size == 0:
        return 0.0
    allowed = int(np.floor(target_far * scores.size + 1e-9))   # accepted impostors allowed
    if allowed >= scores.size:
        return 0.0
    # accept strictly above the (allowed+1)-th highest score
    return float(np.nextafter(scores[scores.size - allowed - 1], np.inf))


def rates(threshold: float, known_scores: np.ndarray, known_correct: np.ndarray,
          unknown_scores: np.ndarray) -> dict[str, float]:
    """Open-set rates at one threshold.

    Returns:
        ``false_accept`` (share of strangers accepted), ``false_reject`` (share of known
        faces rejected), ``correct_named`` (known faces accepted with the right name),
        ``wrong_named`` (known faces accepted with a wrong name); NaN where a set is empty.
    """
    ks, kc = np.asarray(known_scores, float), np.asarray(known_correct, bool)
    us = np.asarray(unknown_scores, float)
    ok = ks >= threshold

    def share(x: np.ndarray) -> float:
        return float(x.mean()) if x.size else float("nan")

    return {"false_accept": share(us >= threshold), "false_reject": share(~ok),
            "correct_named": share(ok & kc), "wrong_named": share(ok & ~kc)}


def openset_curve(known_scores: np.ndarray, known_correct: np.ndarray,
                  unknown_scores: np.ndarray, points: int = 201) -> pd.DataFrame:
    """:func:`rates` against the threshold (one row per threshold, ascending).

    The thresholds are quantiles of all the scores (plus 0 and 1), so the curve is fine
    where the scores are, however narrow their range.
    """
    scores = np.concatenate([np.asarray(known_scores, float), np.asarray(unknown_scores, float)])
    grid = np.linspace(0.0, 1.0, points)
    if scores.size:
        grid = np.unique(np.concatenate([[0.0, 1.0], np.quantile(scores, grid)]))
    return pd.DataFrame([{"threshold": round(float(t), 6),
                          **rates(t, known_scores, known_correct, unknown_scores)}
                         for t in grid])


def operating_points(curve: pd.DataFrame, targets: tuple[float, ...] = (0.01, 0.02, 0.05,
                                                                         0.1, 0.2)
                     ) -> pd.DataFrame:
    """The curve's lowest threshold for each false-accept target, with its rates.

    Args:
        curve: :func:`openset_curve` (``openset_curve.csv``).
        targets: False-accept rates of strangers.

    Returns:
        One row per target: ``target_far``, ``threshold``, ``false_accept``,
        ``false_reject``, ``correct_named``, ``wrong_named``.
    """
    rows = []
    for target in targets:
        ok = curve[curve["false_accept"] <= target + 1e-12]
        if len(ok):
            rows.append({"target_far": target, **ok.iloc[0].to_dict()})
    return pd.DataFrame(rows)


def stranger_summary(scores: pd.DataFrame) -> pd.DataFrame:
    """Per held-out person: faces, who the model most often names instead, median score.

    Args:
        scores: ``openset_scores.csv`` (``set``, ``person``, ``predicted``, ``score``).
    """
    strangers = scores[scores["set"].astype(str).str.startswith("unknown")]
    if strangers.empty:
        return pd.DataFrame(columns=["faces", "most often named", "share", "median score"])
    grouped = strangers.groupby("person")
    top = grouped["predicted"].agg(lambda s: s.value_counts().index[0])
    share = grouped["predicted"].agg(lambda s: s.value_counts(normalize=True).iloc[0])
    return pd.DataFrame({"faces": grouped.size(), "most often named": top,
                         "share": share.round(3), "median score": grouped["score"].median()})


def leave_one_out_far(scores: np.ndarray, persons: np.ndarray, target_far: float
                      ) -> dict[str, float]:
    """False-accept rate on each held-out person when calibrated on the other ones only."""
    scores, persons = np.asarray(scores, float), np.asarray(persons).astype(str)
    out: dict[str, float] = {}
    for name in sorted(set(persons)):
        rest = scores[persons != name]
        if rest.size == 0:
            continue
        t = threshold_for_far(rest, target_far)
        out[name] = float((scores[persons == name] >= t).mean())
    return out


def two_headed(model: Any) -> Any:
    """A Keras model giving (probabilities, embedding): the softmax layer's output and input."""
    import keras

    layer = model.get_layer("softmax")
    return keras.Model(model.inputs[0], [layer.output, layer.input])


def probs_and_embeddings(heads: Any, batches: Any, flip_average: bool = True
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities [N, K] and embeddings [N, D] of image batches (float32 [0, 255]).

    Args:
        heads: :func:`two_headed` of the model.
        batches: An iterable of image batches, or ``(images, labels)`` batches.
        flip_average: Average both with the horizontally mirrored images.
    """
    probs, feats = [], []
    for batch in batches:
        x = np.asarray(batch[0] if isinstance(batch, tuple) else batch, dtype=np.float32)
        p, f = (np.asarray(v) for v in heads(x, training=False))
        if flip_average:
            p2, f2 = (np.asarray(v) for v in heads(x[:, :, ::-1], training=False))
            p, f = (p + p2) / 2.0, (f + f2) / 2.0
        probs.append(p)
        feats.append(f)
    if not probs:
        return np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32)
    return np.concatenate(probs), np.concatenate(feats)


def unit(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (zero rows stay zero)."""
    v = np.asarray(vectors, dtype=np.float32)
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(norm, 1e-12)


def class_centroids(feats: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Unit-length mean embedding per class ([K, D]; a class without rows gets zeros)."""
    out = np.zeros((k, feats.shape[1]), np.float32)
    for c in range(k):
        rows = feats[labels == c]
        if len(rows):
            out[c] = rows.mean(axis=0)
    return unit(out)


def open_scores(probs: np.ndarray, feats: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """The open-set score: cosine of each embedding with its top-1 class's centroid."""
    top = np.asarray(probs).argmax(axis=1)
    return np.sum(unit(feats) * centroids[top], axis=1)


def _infer(heads: Any, rows: pd.DataFrame, label_map: Any, image_size: int,
           flip_average: bool) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and embeddings of faces, in row order (people need not be known)."""
    from facelab.data.pipeline import make_dataset

    if rows.empty:
        return np.zeros((0, len(label_map))), np.zeros((0, 1))
    view = rows.assign(person=label_map.names[0], split="val")   # read like val, in order
    ds = make_dataset(view, "val", image_size=image_size, batch_size=128, labels=label_map)
    return probs_and_embeddings(heads, ds, flip_average)


def _scored(heads: Any, rows: pd.DataFrame, label_map: Any, centroids: np.ndarray,
            name: str, **read: Any) -> pd.DataFrame:
    """One row per face: set, path, person, predicted, score, correct."""
    probs, feats = _infer(heads, rows, label_map, **read)
    if rows.empty:
        return pd.DataFrame(columns=["set", "path", "person", "predicted", "score", "correct"])
    pred = probs.argmax(axis=1)
    known = np.array([p in label_map for p in rows["person"]])
    correct = known & (np.array(label_map.names)[pred] == rows["person"].to_numpy())
    return pd.DataFrame({"set": name, "path": rows["path"].to_numpy(),
                         "person": rows["person"].to_numpy(),
                         "predicted": np.array(label_map.names)[pred],
                         "score": open_scores(probs, feats, centroids), "correct": correct})


def calibrate(model: Any, faces: pd.DataFrame, strangers: pd.DataFrame, label_map: Any,
              out_dir: str | Path, *, image_size: int, flip_average: bool,
              target_far: float = 0.01, test_split: str = "test",
              kept_known: Sequence[str] = ()) -> dict[str, Any]:
    """Store the class centroids, calibrate the unknown threshold, score the test split once.

    Args:
        model: The trained model (its last layer is named ``softmax``).
        faces: The known people's faces (absolute ``path``, ``person``, ``label``,
            ``split``): train gives the centroids, val the calibration, ``test_split``
            the reported figures.
        strangers: The held-out people's faces (same columns but ``label``); may be empty.
        label_map: The model's label map.
        out_dir: The model folder.
        image_size: The model's input size.
        flip_average: Test-time flip averaging (as the recipe).
        target_far: The false-accept rate to calibrate for.
        test_split: The split scored for the report (``val`` when there is no test split).
        kept_known: The people who were never eligible to be held out (recorded).

    Returns:
        What ``openset.json`` holds.
    """
    from facelab.data.labels import relative_to

    if not 0 < target_far < 1:
        raise ValueError(f"target false-accept rate {target_far} must be in (0, 1)")
    out = Path(out_dir)
    heads = two_headed(model)
    read = {"image_size": image_size, "flip_average": flip_average}
    train = faces[faces["split"] == "train"]
    _, feats = _infer(heads, train, label_map, **read)
    centroids = class_centroids(feats, label_map.encode(train["person"].tolist()),
                                len(label_map))
    np.save(out / CENTROIDS_NAME, centroids)
    is_test = (strangers["split"].astype(str) == "test") if len(strangers) \
        else pd.Series([], dtype=bool)
    table = pd.concat([
        _scored(heads, faces[faces["split"] == "val"], label_map, centroids, "known_val", **read),
        _scored(heads, faces[faces["split"] == test_split], label_map, centroids, "known_test",
                **read),
        _scored(heads, strangers[~is_test], label_map, centroids, "unknown_cal", **read),
        _scored(heads, strangers[is_test], label_map, centroids, "unknown_test", **read)],
        ignore_index=True)
    info = _calibration_info(table, target_far, test_split)
    info["held_out_identities"] = sorted(strangers["person"].astype(str).unique()) \
        if len(strangers) else []
    info["never_held_out"] = sorted(map(str, kept_known))
    table["path"] = relative_to(table["path"].astype(str).tolist(), out)
    atomic_write_bytes(out / SCORES_NAME, table.to_csv(index=False).encode("utf-8"))
    val = table[table["set"] == "known_val"]
    curve = openset_curve(val["score"], val["correct"], info.pop("_impostors"))
    atomic_write_bytes(out / CURVE_NAME, curve.to_csv(index=False).encode("utf-8"))
    text = json.dumps(info, indent=2, ensure_ascii=False) + "\n"
    atomic_write_bytes(out / OPENSET_NAME, text.encode("utf-8"))
    return info


def _calibration_info(table: pd.DataFrame, target_far: float, test_split: str
                      ) -> dict[str, Any]:
    """Threshold, rates on calibration and test sets, leave-one-identity-out rates."""
    part = {name: table[table["set"] == name] for name in
            ("known_val", "known_test", "unknown_cal", "unknown_test")}
    if len(part["unknown_cal"]):
        method = "held-out identities"
        impostors = part["unknown_cal"]["score"].to_numpy()
    else:   # too few people to hold any out: wrong answers on val stand in for strangers
        method = "wrong validation answers (no held-out identities)"
        val = part["known_val"]
        impostors = val.loc[~val["correct"].astype(bool), "score"].to_numpy()
    threshold = threshold_for_far(impostors, target_far)
    strangers = pd.concat([part["unknown_cal"], part["unknown_test"]])

    def at(known: pd.DataFrame, unknown: np.ndarray) -> dict[str, float]:
        return rates(threshold, known["score"], known["correct"], unknown)

    return {"threshold": threshold, "target_far": target_far, "method": method,
            "score": SCORE_DEFINITION, "centroids": CENTROIDS_NAME,
            "calibration": {"known_val_faces": len(part["known_val"]),
                            "impostor_faces": int(impostors.size),
                            **at(part["known_val"], impostors)},
            "test": {"split": test_split, "known_faces": len(part["known_test"]),
                     "unknown_faces": len(part["unknown_test"]),
                     "closed_set_accuracy": float(part["known_test"]["correct"].mean())
                     if len(part["known_test"]) else float("nan"),
                     **at(part["known_test"], part["unknown_test"]["score"].to_numpy())},
            "leave_one_identity_out_far": leave_one_out_far(
                strangers["score"].to_numpy(), strangers["person"].to_numpy(), target_far),
            "_impostors": impostors}


def find_face_settings(source: Any) -> Path | None:
    """The face stage's ``face_settings.json`` behind a fit source, if there is one.

    Looks in the source folder, then in the folder its ``split.json`` names as source.
    """
    if isinstance(source, pd.DataFrame):
        return None
    folder = Path(source)
    folder = folder.parent if folder.is_file() else folder
    if (folder / FACE_SETTINGS_NAME).is_file():
        return folder / FACE_SETTINGS_NAME
    info = folder / "split.json"
    if info.is_file():
        origin = json.loads(info.read_text(encoding="utf-8")).get("source")
        for base in ([Path(str(origin)), folder.parent / str(origin)] if origin else []):
            if (base / FACE_SETTINGS_NAME).is_file():     # absolute, or as given
                return base / FACE_SETTINGS_NAME
    return None


def write_recognizer_info(source: Any, out_dir: str | Path, image_size: int,
                          flip_average: bool) -> dict[str, Any]:
    """Write ``recognizer.json`` and copy the face settings into the model folder.

    ``faces`` is ``None`` when the source was ready-made crops (predict then refuses: it
    cannot know how to cut faces the same way).
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        release = version("facelab")
    except PackageNotFoundError:     # an uninstalled copy
        release = "unknown"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    found = find_face_settings(source)
    faces = None
    if found is not None:
        if found.resolve() != (out / FACE_SETTINGS_NAME).resolve():
            shutil.copyfile(found, out / FACE_SETTINGS_NAME)
        faces = FACE_SETTINGS_NAME
    info = {"format": MODEL_FORMAT, "facelab_version": release,
            "image_size": int(image_size), "flip_average": bool(flip_average),
            "face_settings": faces, "openset": OPENSET_NAME, "centroids": CENTROIDS_NAME}
    atomic_write_bytes(out / RECOGNIZER_NAME,
                       (json.dumps(info, indent=2) + "\n").encode("utf-8"))
    return info


def split_off_strangers(df: pd.DataFrame, label_map: Any, fraction: float = 0.1,
                        seed: int = 0, keep: Sequence[str] = ()
                        ) -> tuple[pd.DataFrame, Any, pd.DataFrame]:
    """Hold identities out (see :func:`hold_out_identities`) and relabel the rest 0..K'-1.

    Returns:
        The known faces (with a new ``label`` column), their label map (the one given
        when nobody is held out) and the held-out faces.
    """
    from facelab.data.labels import LabelMap, add_labels

    known, strangers = hold_out_identities(df, fraction, seed, keep)
    if strangers.empty:
        return df, label_map, strangers
    known, label_map = add_labels(known, LabelMap.from_manifest(known))
    return known, label_map, strangers
