"""The face stage's settings, written beside its crops so that later stages can repeat them.

A trained model is only as good as the crops it sees: ``facelab predict`` has to detect
and cut faces exactly as training did.  :func:`write_face_settings` records the detector
(backend, options, detection size) and the crop geometry in ``face_settings.json``; the
split and fit stages copy that file along, and :func:`detector_from_settings` rebuilds the
same detector from it (:func:`facelab.recognize.folder.detector_from_settings`).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from facelab.faces.base import Detector
from facelab.io import atomic_write_bytes
from facelab.manifest import FACE_SETTINGS_NAME

SETTINGS_FORMAT = 1

# detector attributes that change results (read from the detector when it has them)
DETECTOR_OPTIONS = ("min_face_size", "thresholds")


def facelab_version() -> str:
    """The installed facelab's version (``unknown`` when run from an uninstalled copy)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("facelab")
    except PackageNotFoundError:
        return "unknown"


def face_settings_dict(settings: Any, detector: Detector, max_side: int) -> dict[str, Any]:
    """What predict needs to detect and crop as the face stage did.

    Args:
        settings: The stage's :class:`facelab.faces.filter.FaceSettings`.
        detector: The detector that ran.
        max_side: The detection copy's longest side.
    """
    options = {k: getattr(detector, k) for k in DETECTOR_OPTIONS if hasattr(detector, k)}
    options = {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()}
    crop = asdict(settings) if is_dataclass(settings) else dict(settings)
    return {"format": SETTINGS_FORMAT, "facelab_version": facelab_version(),
            "backend": detector.name, "detector_key": detector.cache_key(),
            "detector_options": options, "detect_max_side": int(max_side),
            **{k: v for k, v in crop.items() if k != "detect_max_side"}}


def write_face_settings(out: str | os.PathLike[str], settings: Any, detector: Detector,
                        max_side: int) -> Path:
    """Write ``OUT/face_settings.json`` (see :func:`face_settings_dict`)."""
    path = Path(out) / FACE_SETTINGS_NAME
    text = json.dumps(face_settings_dict(settings, detector, max_side), indent=2) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))
    return path


def read_face_settings(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """Read ``face_settings.json`` from a stage or model folder.

    Raises:
        FileNotFoundError: When the folder has none (the message says why it matters).
        ValueError: When the file is unreadable or of another format.
    """
    path = Path(folder) / FACE_SETTINGS_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: the faces were not cut by facelab's face stage, so it is "
            "unknown how to detect and crop new photos the same way")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); re-run the face stage") from error
    found = info.get("format") if isinstance(info, dict) else "?"
    if found != SETTINGS_FORMAT:
        raise ValueError(f"{path} has format {found}, this facelab reads format "
                         f"{SETTINGS_FORMAT}: re-run the face stage and facelab fit with this "
                         "version")
    return info
