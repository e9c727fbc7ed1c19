"""A trained model folder, checked before anything is predicted with it.

``facelab fit`` writes, besides ``model.keras`` and ``labels.json``, ``recognizer.json``
(image size, flip averaging, facelab version), the face stage's ``face_settings.json``
(detector and crop) and ``openset.json`` (the calibrated "unknown" threshold).
:func:`read_model_folder` reads them all and refuses, with a message that names the file
and says what to do, when one is missing or comes from another facelab version.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facelab.manifest import FACE_SETTINGS_NAME, LABELS_NAME

MODEL_NAME = "model.keras"


class ModelFolderError(ValueError):
    """A model folder predict cannot use (the message names the file and the fix)."""


@dataclass
class ModelFolder:
    """What predict needs from a model folder (the Keras model is loaded separately).

    Attributes:
        path: The folder.
        names: Class names in id order.
        image_size: The model's square input size.
        flip_average: Average each face's probabilities with its mirror image.
        faces: The face stage's settings (detector and crop).
        threshold: The calibrated "unknown" threshold (``None``: not calibrated).
        openset: The whole ``openset.json`` (empty when absent).
        centroids: Unit mean training embedding per class ([K, D]), for the score.
        score_model: What the open-set score compares faces with
            (:class:`facelab.learn.openset.ScoreModel`: centroids, gallery, parameters).
        arch: The model's arch (``face-resnet``, ``cnn``, a backbone).
    """

    path: Path
    names: tuple[str, ...]
    image_size: int
    flip_average: bool
    faces: dict[str, Any]
    threshold: float | None
    openset: dict[str, Any]
    centroids: Any = None
    score_model: Any = None
    arch: str = "cnn"

    @property
    def model_path(self) -> Path:
        """The Keras model file."""
        return self.path / MODEL_NAME


def _json(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise ModelFolderError(f"{path} is missing: {what}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelFolderError(f"{path} cannot be read ({error}): {what}") from error
    if not isinstance(data, dict):
        raise ModelFolderError(f"{path} is not a JSON object: {what}")
    return data


def _same_release(a: str, b: str) -> bool:
    """Whether two facelab versions share major.minor (the model folder layout)."""
    return str(a).split(".")[:2] == str(b).split(".")[:2]


REFIT = "run `facelab fit` again with this facelab to make one"


def read_model_folder(path: str | os.PathLike[str], crops: bool = False) -> ModelFolder:
    """Read and check a model folder written by ``facelab fit``.

    Args:
        path: The model folder.
        crops: The inputs will be face crops (``predict --crops``): a model trained on
            ready-made crops is fine then.

    Raises:
        ModelFolderError: For a missing folder, model, labels.json, recognizer.json or
            face settings, a folder from another facelab version, or, for whole photos, a
            model trained on ready-made crops (it is unknown how to cut faces the same way).
        facelab.lock.FolderBusyError: When a ``fit`` is still writing the folder.
    """
    from facelab.data.labels import LabelMap
    from facelab.faces.settings import facelab_version
    from facelab.learn.openset import MODEL_FORMAT, OPENSET_NAME, RECOGNIZER_NAME
    from facelab.lock import check_complete

    folder = Path(path)
    if not folder.is_dir():
        raise ModelFolderError(f"model folder {folder} does not exist: pass the --out folder "
                               "of `facelab fit` (e.g. runs/demo/work/model)")
    check_complete(folder, how_to_wait=None)      # a fit still writing it: not a model yet
    if not (folder / MODEL_NAME).is_file():
        raise ModelFolderError(f"{folder / MODEL_NAME} is missing: {REFIT}")
    info = _json(folder / RECOGNIZER_NAME, f"it says how to use the model; {REFIT}")
    version = str(info.get("facelab_version", "?"))
    current = facelab_version()
    if info.get("format") != MODEL_FORMAT or not _same_release(version, current):
        raise ModelFolderError(
            f"{folder} was written by facelab {version} (model folder format "
            f"{info.get('format')}), this is facelab {current} (format {MODEL_FORMAT}): "
            f"{REFIT}")
    try:
        names = LabelMap.load(folder).names
    except (FileNotFoundError, ValueError, KeyError, TypeError) as error:
        raise ModelFolderError(f"{folder / LABELS_NAME} is missing or unreadable ({error}); "
                               f"it names the classes: {REFIT}") from error
    if not info.get("face_settings") and not crops:
        raise ModelFolderError(
            f"{folder} was trained on ready-made crops (no {FACE_SETTINGS_NAME}), so it is "
            "unknown how to detect and crop faces in whole photos the same way: pass "
            "--crops (crops=True) when your inputs are face crops of the same kind, or train "
            "from a face-stage folder (`facelab faces`, then `facelab fit`) to predict on "
            "photos")
    faces = _json(folder / str(info["face_settings"]),
                  f"it says how training detected and cropped faces; {REFIT}") \
        if info.get("face_settings") else {}
    openset = {}
    if (folder / OPENSET_NAME).is_file():
        openset = _json(folder / OPENSET_NAME, "")
    threshold = openset.get("threshold")
    centroids = _centroids(folder / str(info.get("centroids", "")), len(names))
    return ModelFolder(folder, tuple(str(n) for n in names), int(info["image_size"]),
                       bool(info.get("flip_average", True)), faces,
                       None if threshold is None else float(threshold), openset,
                       centroids, _score_model(folder, openset), str(info.get("arch", "cnn")))


def _score_model(folder: Path, openset: dict[str, Any]) -> Any:
    from facelab.learn.openset import ScoreModel

    try:
        return ScoreModel.load(folder, openset)
    except (OSError, ValueError, KeyError) as error:
        raise ModelFolderError(f"the open-set files of {folder} (centroids.npy, gallery.npz) "
                               f"cannot be read ({error}); {REFIT}") from error


def _centroids(path: Path, k: int) -> Any:
    import numpy as np

    if not path.is_file():
        raise ModelFolderError(f"{path} is missing: the open-set score compares each face "
                               f"with these class centroids; {REFIT}")
    try:
        centroids = np.load(path)
    except (OSError, ValueError) as error:
        raise ModelFolderError(f"{path} cannot be read ({error}); {REFIT}") from error
    if centroids.ndim != 2 or centroids.shape[0] != k:
        raise ModelFolderError(f"{path} has shape {centroids.shape}, not ({k}, D): {REFIT}")
    return centroids


def resolve_threshold(folder: ModelFolder, threshold: str | float | None) -> float:
    """The threshold to use: ``"auto"``/``None`` -> the calibrated one, else the number.

    Raises:
        ModelFolderError: ``auto`` on a folder without a calibrated threshold.
        ValueError: A number outside [0, 1] or text that is not ``auto``.
    """
    if threshold is None or (isinstance(threshold, str) and threshold.strip() == "auto"):
        if folder.threshold is None:
            raise ModelFolderError(f"{folder.path} has no calibrated threshold (openset.json): "
                                   "pass --threshold 0.9 (or another number) or re-run fit")
        return folder.threshold
    try:
        value = float(threshold)
    except (TypeError, ValueError) as error:
        raise ValueError(f"threshold {threshold!r} must be 'auto' or a number in [0, 1]"
                         ) from error
    if not 0 <= value <= 1:
        raise ValueError(f"threshold {value} must be in [0, 1] (the open-set score is made "
                         "of cosine similarities; 0 or less would accept nearly every face)")
    return value


def detector_from_settings(info: dict[str, Any], **extra: Any) -> Any:
    """Rebuild the face stage's detector from its settings (``extra``: e.g. batch_size).

    Raises:
        ModelFolderError: For a backend this facelab does not have.
    """
    from facelab.faces.filter import make_detector

    options = dict(info.get("detector_options") or {})
    if "thresholds" in options:
        options["thresholds"] = tuple(options["thresholds"])
    backend = str(info.get("backend", "mtcnn"))
    if backend == "mtcnn":
        options.update(extra)
    try:
        return make_detector(backend, **options)
    except ValueError as error:
        raise ModelFolderError(f"the model's faces were detected with {backend!r}: {error}"
                               ) from error
