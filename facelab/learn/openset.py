"""Open set: a stranger is "unknown", not the nearest celebrity.

A softmax always names somebody, and its top probability is a poor judge of strangers.
The open-set **score** (:func:`open_scores`) looks at the face's embedding instead (the
input of the model's ``softmax`` layer: the pooled CNN features, or the pretrained face
network's unit-length embedding; averaged with the mirrored face when ``flip_average`` is
on), with the person the softmax names:

* how close the face is to that person: the mean cosine of its ``k`` (3) nearest training
  faces of that person (the **gallery**), or the cosine to their mean training embedding
  (the **centroid**) when there is no gallery;
* minus ``second_weight`` (0.25) x its cosine to the closest *other* person's centroid: a
  face between two people is less sure than one close to a single person.

Chosen on the real faces of ``pubfig83-dev`` (``docs/recognize.md`` has the table of the
scores tried); older model folders (no ``score_k`` in ``openset.json``) keep the plain
cosine to the centroid.

The threshold is calibrated by :func:`calibrate` on the scores of people the model was not
trained on: :mod:`facelab.learn.folds` trains models without each fold of people in turn
(every person in ``SRC`` stays in the final model), and the threshold is the lowest value at
which at most ``target_far`` (1%) of those strangers' non-test faces are accepted.  The
strangers' test faces and the known test faces are scored once at that threshold.

Files in the model folder: ``openset.json`` (threshold, target, how it was set, score
parameters, test figures, a ``warning`` when the threshold rejects most known faces),
``openset_curve.csv``, ``openset_scores.csv`` (one row per scored face), ``centroids.npy``,
``gallery.npz`` and ``recognizer.json`` (what ``facelab predict`` needs).
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
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
GALLERY_NAME = "gallery.npz"
RECOGNIZER_NAME = "recognizer.json"
MODEL_FORMAT = 1
SCORE_K = 3
SECOND_WEIGHT = 0.25
SCORE_DEFINITION = ("mean cosine between the face's embedding (the softmax layer's input, "
                    "averaged with the mirrored face when flip_average is on) and its score_k "
                    "nearest training faces of the top-1 person (the cosine to that person's "
                    "mean training embedding when score_k is 0), minus second_weight x the "
                    "cosine to the closest other person's mean training embedding; accepted "
                    "when >= threshold")
WEAK_THRESHOLD = 0.5      # below this share of known val faces named, the fit says so


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


def model_outputs(model: Any, rows: pd.DataFrame, label_map: Any, image_size: int,
                  flip_average: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and embeddings (:func:`probs_and_embeddings`) of faces, in row order.

    Args:
        model: A Keras model with a ``softmax`` layer.
        rows: Faces (absolute ``path``; any people, known or not).
        label_map: The model's label map.
        image_size: The model's input size.
        flip_average: Average with the mirrored faces.
    """
    from facelab.data.pipeline import make_dataset

    view = rows.assign(person=label_map.names[0], split="val")     # read in order
    data = make_dataset(view, "val", image_size=image_size, batch_size=128, labels=label_map)
    return probs_and_embeddings(two_headed(model), data, flip_average)


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


@dataclass
class ScoreModel:
    """What the open-set score compares a face with: per-person centroids and a gallery.

    Attributes:
        centroids: Unit mean training embedding per class [K, D].
        gallery: Unit training embeddings [G, D] (``None``: centroids only).
        gallery_labels: Their class ids [G].
        k: Nearest gallery faces averaged (0: the centroid instead).
        second_weight: Weight of the closest other centroid's cosine.
    """

    centroids: np.ndarray
    gallery: np.ndarray | None = None
    gallery_labels: np.ndarray | None = None
    k: int = SCORE_K
    second_weight: float = SECOND_WEIGHT

    @classmethod
    def from_training(cls, feats: np.ndarray, labels: np.ndarray, num_classes: int,
                      k: int = SCORE_K, second_weight: float = SECOND_WEIGHT) -> ScoreModel:
        """Centroids and gallery of training embeddings ``feats`` with class ids ``labels``."""
        labels = np.asarray(labels, int)
        return cls(class_centroids(feats, labels, num_classes), unit(feats) if k else None,
                   labels if k else None, int(k), float(second_weight))

    def save(self, out_dir: str | Path) -> None:
        """Write ``centroids.npy`` and (with a gallery) ``gallery.npz`` into ``out_dir``."""
        out = Path(out_dir)
        buffer = io.BytesIO()
        np.save(buffer, self.centroids.astype(np.float32))
        atomic_write_bytes(out / CENTROIDS_NAME, buffer.getvalue())
        if self.gallery is not None:
            buffer = io.BytesIO()
            np.savez(buffer, embeddings=self.gallery.astype(np.float32),
                     labels=np.asarray(self.gallery_labels, np.int32))
            atomic_write_bytes(out / GALLERY_NAME, buffer.getvalue())

    @classmethod
    def load(cls, folder: str | Path, info: dict[str, Any]) -> ScoreModel:
        """Read a model folder's score model (``info``: its ``openset.json``)."""
        folder = Path(folder)
        centroids = np.load(folder / CENTROIDS_NAME)
        k = int(info.get("score_k", 0))
        weight = float(info.get("second_weight", 0.0))
        if k and (folder / GALLERY_NAME).is_file():
            with np.load(folder / GALLERY_NAME) as stored:
                return cls(centroids, stored["embeddings"], stored["labels"], k, weight)
        return cls(centroids, None, None, 0, weight)

    def scores(self, probs: np.ndarray, feats: np.ndarray) -> np.ndarray:
        """:func:`open_scores` with this model."""
        return open_scores(probs, feats, self.centroids, self.gallery, self.gallery_labels,
                           self.k, self.second_weight)


def _nearest_own(f: np.ndarray, top: np.ndarray, gallery: np.ndarray, labels: np.ndarray,
                 k: int, fallback: np.ndarray) -> np.ndarray:
    """Mean cosine of each row's ``k`` nearest gallery faces of its top class."""
    own = fallback.copy()
    for c in np.unique(top):
        rows, faces = np.flatnonzero(top == c), gallery[labels == c]
        if not len(faces):
            continue
        n = min(k, len(faces))
        sims = f[rows] @ faces.T
        own[rows] = -np.partition(-sims, n - 1, axis=1)[:, :n].mean(axis=1)
    return own


def open_scores(probs: np.ndarray, feats: np.ndarray, centroids: np.ndarray,
                gallery: np.ndarray | None = None, gallery_labels: np.ndarray | None = None,
                k: int = 0, second_weight: float = 0.0) -> np.ndarray:
    """The open-set score of each face (see the module's description).

    Args:
        probs: Class probabilities [N, K] (the top-1 class is the one named).
        feats: Embeddings [N, D].
        centroids: Unit class centroids [K, D].
        gallery: Unit training embeddings [G, D] (``None``: centroid cosine).
        gallery_labels: Their class ids [G].
        k: Nearest gallery faces averaged (0: centroid cosine).
        second_weight: Weight of the closest other class's centroid cosine.
    """
    top = np.asarray(probs).argmax(axis=1)
    f = unit(feats)
    cos = f @ np.asarray(centroids, np.float32).T
    rows = np.arange(len(top))
    own = cos[rows, top]
    if gallery is not None and k:
        own = _nearest_own(f, top, np.asarray(gallery, np.float32),
                           np.asarray(gallery_labels), int(k), own)
    if second_weight and cos.shape[1] > 1:
        others = cos.copy()
        others[rows, top] = -np.inf
        own = own - second_weight * others.max(axis=1)
    return own.astype(np.float32)


def scored_table(name: str, rows: pd.DataFrame, probs: np.ndarray, feats: np.ndarray,
                 names: Sequence[str], score_model: ScoreModel) -> pd.DataFrame:
    """One row per face: set, path, person, predicted, score, correct."""
    columns = ["set", "path", "person", "predicted", "score", "correct"]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    predicted = np.asarray(names, dtype=object)[np.asarray(probs).argmax(axis=1)]
    person = rows["person"].astype(str).to_numpy()
    return pd.DataFrame({"set": name, "path": rows["path"].to_numpy(), "person": person,
                         "predicted": predicted, "score": score_model.scores(probs, feats),
                         "correct": predicted == person})


def calibrate(out_dir: str | Path, known: pd.DataFrame, strangers: pd.DataFrame, *,
              target_far: float = 0.01, test_split: str = "test",
              score_model: ScoreModel | None = None, floor: float | None = None,
              extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Calibrate the unknown threshold on strangers' scores; score the test sets once.

    Args:
        out_dir: The model folder.
        known: :func:`scored_table` rows of the final model's known faces, sets
            ``known_val`` (the curve) and ``known_test`` (the report).
        strangers: Rows of faces scored by models not trained on their person: set
            ``unknown_cal`` (the calibration: non-test faces) and ``unknown_test``
            (reported once); may be empty (then wrong val answers stand in).
        target_far: The false-accept rate to calibrate for.
        test_split: The split the known test rows come from (``val`` without a test split).
        score_model: The final model's score model (its parameters are recorded).
        floor: The lowest threshold allowed: what strangers at large are known to score
            (:func:`facelab.learn.face_resnet.stranger_floor` for the face network), for
            when the people at hand are too few to stand for all strangers.
        extra: More fields for ``openset.json`` (how the strangers were drawn).

    Returns:
        What ``openset.json`` holds.
    """
    from facelab.data.labels import relative_to

    if not 0 < target_far < 1:
        raise ValueError(f"target false-accept rate {target_far} must be in (0, 1)")
    out = Path(out_dir)
    table = pd.concat([known, strangers], ignore_index=True)
    info = _calibration_info(table, target_far, test_split, floor)
    if score_model is not None:
        info.update(score_k=score_model.k if score_model.gallery is not None else 0,
                    second_weight=score_model.second_weight)
    info.update(extra or {})
    named = info["calibration"]["correct_named"]
    if named == named and named < WEAK_THRESHOLD:       # not NaN
        info["warning"] = (f"the threshold names only {named:.0%} of the known validation "
                           "faces: most known faces will come back 'unknown' (too few faces "
                           "per person, or people who look alike; docs/recognize.md)")
    table["path"] = relative_to(table["path"].astype(str).tolist(), out)
    atomic_write_bytes(out / SCORES_NAME, table.to_csv(index=False).encode("utf-8"))
    val = table[table["set"] == "known_val"]
    curve = openset_curve(val["score"], val["correct"], info.pop("_impostors"))
    atomic_write_bytes(out / CURVE_NAME, curve.to_csv(index=False).encode("utf-8"))
    text = json.dumps(info, indent=2, ensure_ascii=False) + "\n"
    atomic_write_bytes(out / OPENSET_NAME, text.encode("utf-8"))
    return info


def _calibration_info(table: pd.DataFrame, target_far: float, test_split: str,
                      floor: float | None = None) -> dict[str, Any]:
    """Threshold, rates on calibration and test sets, per-stranger rates."""
    part = {name: table[table["set"] == name] for name in
            ("known_val", "known_test", "unknown_cal", "unknown_test")}
    if len(part["unknown_cal"]):
        method = "people held out in rotation (identity folds)"
        impostors = part["unknown_cal"]["score"].to_numpy(float)
    else:   # too few people to hold any out: wrong answers on val stand in for strangers
        method = ("wrong validation answers (nobody held out: no folds asked for, or fewer "
                  "than 3 people)")
        val = part["known_val"]
        impostors = val.loc[~val["correct"].astype(bool), "score"].to_numpy(float)
    calibrated = threshold_for_far(impostors, target_far)
    threshold = calibrated if floor is None else max(calibrated, float(floor))
    if threshold > calibrated:
        method += (f", raised from {calibrated:.4f} to the floor {threshold:.4f} that "
                   "strangers at large reach (measured on real faces)")
    strangers = pd.concat([part["unknown_cal"], part["unknown_test"]])

    def at(known: pd.DataFrame, unknown: np.ndarray) -> dict[str, float]:
        return rates(threshold, known["score"], known["correct"], unknown)

    return {"threshold": threshold, "target_far": target_far, "method": method,
            "calibrated_threshold": calibrated, "floor": floor,
            "score": SCORE_DEFINITION, "centroids": CENTROIDS_NAME,
            "calibration": {"known_val_faces": len(part["known_val"]),
                            "impostor_faces": int(impostors.size),
                            **at(part["known_val"], impostors)},
            "test": {"split": test_split, "known_faces": len(part["known_test"]),
                     "unknown_faces": len(part["unknown_test"]),
                     "closed_set_accuracy": float(part["known_test"]["correct"].mean())
                     if len(part["known_test"]) else float("nan"),
                     **at(part["known_test"], part["unknown_test"]["score"].to_numpy(float))},
            "leave_one_identity_out_far": leave_one_out_far(
                strangers["score"].to_numpy(float), strangers["person"].to_numpy(),
                target_far),
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
                          flip_average: bool, arch: str = "cnn") -> dict[str, Any]:
    """Write ``recognizer.json`` and copy the face settings into the model folder.

    ``face_settings`` is ``None`` when the source was ready-made crops: ``facelab predict``
    then takes only crops of the same kind (``--crops``), since it cannot know how to cut
    faces from whole photos the same way.
    """
    from facelab.faces.settings import facelab_version

    release = facelab_version()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    found = find_face_settings(source)
    faces = None
    if found is not None:
        if found.resolve() != (out / FACE_SETTINGS_NAME).resolve():
            shutil.copyfile(found, out / FACE_SETTINGS_NAME)
        faces = FACE_SETTINGS_NAME
    info = {"format": MODEL_FORMAT, "facelab_version": release,
            "arch": arch, "image_size": int(image_size), "flip_average": bool(flip_average),
            "face_settings": faces, "openset": OPENSET_NAME, "centroids": CENTROIDS_NAME}
    atomic_write_bytes(out / RECOGNIZER_NAME,
                       (json.dumps(info, indent=2) + "\n").encode("utf-8"))
    return info
