"""Who is in this photo?  Every face found, named, or called ``unknown``.

:class:`Recognizer` loads a model folder once (:func:`load`) and answers
:meth:`Recognizer.predict` for any number of photos: the face stage's detector runs on the
same detection copy, every face is cut with the same alignment, size, margin and JPEG
quality as the training crops (all read from the model folder's ``face_settings.json``),
classified with the same test-time flip averaging, and given a **decision**: the top name
when its score reaches the calibrated threshold, else ``unknown``.  The score is the cosine
similarity between the face's embedding and the top name's mean training embedding (see
:mod:`facelab.learn.openset`); the probabilities are listed beside it.

One output row per face; a photo that cannot be read, has no face or is too large is one
row with a ``status`` and a human-readable ``reason``, never an exception.
"""

from __future__ import annotations

import io
import os
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from facelab.manifest import OK, format_rect
from facelab.recognize.folder import ModelFolder, read_model_folder, resolve_threshold
from facelab.recognize.inputs import DEFAULT_MAX_PIXELS, Item, expand_inputs, open_item

UNKNOWN = "unknown"
SKIPPED = "skipped"
NO_FACE = "no_face"
LOW_CONFIDENCE = "low_confidence"
FACE_TOO_SMALL = "face_too_small"
DETECTOR_ERROR = "detector_error"
CHUNK = 128             # photos decoded and detected together (MTCNN batches by shape)
PIXEL_BUDGET = 300e6    # ... or fewer, when they hold this many pixels in all


@dataclass
class PhotoResult:
    """One photo's outcome: the image (when it could be read) and its rows."""

    item: Item
    image: Image.Image | None
    rows: list[dict[str, Any]] = field(default_factory=list)


def _photo_row(item: Item, status: str, reason: str, **extra: Any) -> dict[str, Any]:
    return {"photo": item.photo, "face_index": None, "n_faces": 0, "box": "",
            "detection_confidence": None, "status": status, "decision": SKIPPED,
            "score": None, "reason": reason, **extra}


class Recognizer:
    """A loaded model folder that names the faces in photos.

    Args:
        folder: The model folder (``facelab fit --out``) or a read :class:`ModelFolder`.
        detector: A ready detector (default: rebuilt from the face settings).
        batch_size: Detector batch size (MTCNN).
        crops: The inputs will be face crops (:meth:`predict` with ``crops=True``): a model
            trained on ready-made crops loads too.
    """

    def __init__(self, folder: str | os.PathLike[str] | ModelFolder,
                 detector: Any = None, batch_size: int = 16, crops: bool = False) -> None:
        from facelab.learn.model import load_model

        self.folder = folder if isinstance(folder, ModelFolder) \
            else read_model_folder(folder, crops=crops)
        self.faces = self.folder.faces
        self.detector = detector
        if detector is None and self.faces:
            self.detector = self._make_detector(batch_size)
        if self.folder.openset.get("warning"):
            warnings.warn(f"{self.folder.path}: {self.folder.openset['warning']}", stacklevel=2)
        from facelab.learn.openset import two_headed

        self.model = load_model(self.folder.model_path, compile=False)
        self.heads = two_headed(self.model)
        self.names = self.folder.names

    def _make_detector(self, batch_size: int) -> Any:
        from facelab.recognize.folder import detector_from_settings

        detector = detector_from_settings(self.faces, batch_size=batch_size)
        if detector.cache_key() != self.faces.get("detector_key"):
            warnings.warn(f"the detector is {detector.cache_key()}, training used "
                          f"{self.faces.get('detector_key')}: boxes may differ slightly",
                          stacklevel=3)
        return detector

    # ------------------------------------------------------------------ steps
    def detect(self, images: list[Image.Image]) -> list[Any]:
        """Faces per image, in full-photo coordinates (or a DetectionFailure)."""
        from facelab.faces.base import DetectionFailure
        from facelab.faces.crops import detection_copy

        side = int(self.faces.get("detect_max_side", 320))
        copies = [detection_copy(image, side) for image in images]
        found = self.detector.detect([array for array, _ in copies]) if copies else []
        return [faces if isinstance(faces, DetectionFailure)
                else [f.scaled(factor) for f in faces]
                for faces, (_, factor) in zip(found, copies, strict=True)]

    def crop(self, image: Image.Image, face: Any) -> np.ndarray:
        """The face cut exactly like a training crop (aligned, sized, JPEG round trip)."""
        from facelab.faces.crops import cut_face

        crop = cut_face(image, face, str(self.faces.get("crop_style", "square")),
                        int(self.faces.get("crop_size", 128)),
                        float(self.faces.get("margin", 0.25)))
        buffer = io.BytesIO()
        crop.save(buffer, format="JPEG", quality=int(self.faces.get("jpeg_quality", 92)))
        with Image.open(io.BytesIO(buffer.getvalue())) as decoded:
            return np.asarray(decoded.convert("RGB"))

    def classify(self, crops: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities [N, K] and open-set scores [N] of RGB crops, read like training."""
        import tensorflow as tf

        from facelab.learn.openset import probs_and_embeddings

        if not crops:
            return np.zeros((0, len(self.names)), np.float32), np.zeros(0, np.float32)
        size = self.folder.image_size
        x = np.stack([c.astype(np.float32) if c.shape[:2] == (size, size) else
                      tf.image.resize(c, (size, size)).numpy() for c in crops])
        batches = [x[i:i + 128] for i in range(0, len(x), 128)]
        probs, feats = probs_and_embeddings(self.heads, batches, self.folder.flip_average)
        return probs, self.folder.score_model.scores(probs, feats)

    def _check_face(self, face: Any) -> tuple[str, str]:
        conf, least = float(face.confidence), float(self.faces.get("min_confidence", 0.9))
        if conf < least:
            return LOW_CONFIDENCE, f"detector confidence {conf:.2f} < {least:.2f}"
        side, small = min(face.width, face.height), float(self.faces.get("min_face_px", 40))
        if side < small:
            return FACE_TOO_SMALL, f"face is {side:.0f} px, training kept faces >= {small:.0f} px"
        return OK, ""

    def _face_rows(self, result: PhotoResult, faces: list[Any], crops: list[np.ndarray]
                   ) -> list[int]:
        """Add one row per face; return the rows' indices whose crop joins ``crops``."""
        todo = []
        for index, face in enumerate(faces):
            status, reason = self._check_face(face)
            row = {"photo": result.item.photo, "face_index": index, "n_faces": len(faces),
                   "box": format_rect(face.box), "detection_confidence":
                   round(float(face.confidence), 4), "status": status,
                   "decision": SKIPPED if status != OK else "", "score": None,
                   "reason": reason}
            result.rows.append(row)
            if status == OK:
                try:
                    crops.append(self.crop(result.image, face))
                    todo.append(len(result.rows) - 1)
                except (OSError, ValueError) as error:
                    row.update(status=DETECTOR_ERROR, decision=SKIPPED,
                               reason=f"cannot crop the face: {error}")
        return todo

    def _decide(self, row: dict[str, Any], probs: np.ndarray, score: float, top_k: int,
                threshold: float) -> None:
        order = np.argsort(-probs)[:top_k]
        for rank, k in enumerate(order, start=1):
            row[f"name_{rank}"] = self.names[int(k)]
            row[f"prob_{rank}"] = round(float(probs[k]), 4)
        score = float(score)
        row["score"] = score
        if score >= threshold:
            row["decision"] = self.names[int(order[0])]
        else:
            row["decision"] = UNKNOWN
            row["reason"] = (f"score {score:.3f} < threshold {threshold:.3f} (nearest: "
                             f"{self.names[int(order[0])]})")

    # ------------------------------------------------------------------ the loop
    def _process(self, results: list[PhotoResult], top_k: int, threshold: float,
                 crops_given: bool = False) -> None:
        """Detect, crop, classify and decide for photos already read (rows added)."""
        from facelab.faces.base import DetectionFailure

        readable = [r for r in results if r.image is not None]
        if crops_given:
            return self._process_crops(readable, top_k, threshold)
        found = self.detect([r.image for r in readable])
        crops: list[np.ndarray] = []
        owners: list[tuple[PhotoResult, int]] = []
        for result, faces in zip(readable, found, strict=True):
            if isinstance(faces, DetectionFailure):
                result.rows.append(_photo_row(result.item, DETECTOR_ERROR, faces.reason))
            elif not faces:
                result.rows.append(_photo_row(result.item, NO_FACE, "the detector found no "
                                              "face in this photo"))
            else:
                owners.extend((result, i) for i in self._face_rows(result, faces, crops))
        probs, scores = self.classify(crops)
        for (result, index), p, s in zip(owners, probs, scores, strict=True):
            self._decide(result.rows[index], p, s, top_k, threshold)
        return None

    def _process_crops(self, readable: list[PhotoResult], top_k: int, threshold: float
                       ) -> None:
        """Each image is one face: one row each (``predict(..., crops=True)``).

        A CNN reads the crop as training read its crops (resized to its input).  The face
        network needs a chip: the detector finds the landmarks of the crop's largest face
        and the chip is cut as ``fit`` cut chips from ready-made crops (a model trained on
        chips without the face stage's settings takes the crops as chips).
        """
        from facelab.faces.base import DetectionFailure
        from facelab.learn.face_resnet import ARCH

        arrays: list[np.ndarray] = []
        owners: list[PhotoResult] = []
        chips = self.folder.arch == ARCH and self.detector is not None   # else: chips given
        found = self.detect([r.image for r in readable]) if chips else [None] * len(readable)
        for result, faces in zip(readable, found, strict=True):
            image = result.image
            face_box = (0.0, 0.0, float(image.width), float(image.height))
            if isinstance(faces, DetectionFailure):
                result.rows.append(_photo_row(result.item, DETECTOR_ERROR, faces.reason))
                continue
            if chips and not faces:
                result.rows.append(_photo_row(result.item, NO_FACE, "the detector found no "
                                              "face in this crop (the face network needs "
                                              "its landmarks to cut a chip)"))
                continue
            confidence = None
            if chips:
                face = max(faces, key=lambda f: f.width * f.height)
                face_box, confidence = face.box, round(float(face.confidence), 4)
                arrays.append(self.crop(image, face))
            else:
                arrays.append(np.asarray(image.convert("RGB")))
            result.rows.append({"photo": result.item.photo, "face_index": 0,
                                "n_faces": len(faces) if chips else 1,
                                "box": format_rect(face_box),
                                "detection_confidence": confidence,
                                "status": OK, "decision": "", "score": None, "reason": ""})
            owners.append(result)
        probs, scores = self.classify(arrays)
        for result, p, s in zip(owners, probs, scores, strict=True):
            self._decide(result.rows[-1], p, s, top_k, threshold)

    def _chunks(self, items: list[Item], downloads: Path, max_pixels: int
                ) -> Iterator[list[PhotoResult]]:
        """Read photos, in groups of CHUNK photos or PIXEL_BUDGET pixels at most.

        A photo that cannot be read carries its row already.
        """
        group: list[PhotoResult] = []
        pixels = 0
        for item in items:
            image, status, reason = open_item(item, downloads, max_pixels)
            result = PhotoResult(item, image)
            if image is None:
                result.rows.append(_photo_row(item, status, reason))
            else:
                pixels += image.width * image.height
            group.append(result)
            if len(group) >= CHUNK or pixels >= PIXEL_BUDGET:
                yield group
                group, pixels = [], 0
        if group:
            yield group

    def iter_predict(self, inputs: Any, *, top_k: int = 3, threshold: str | float | None = None,
                     downloads: str | os.PathLike[str] | None = None,
                     max_pixels: int = DEFAULT_MAX_PIXELS, progress: bool = False,
                     crops: bool = False) -> Iterator[PhotoResult]:
        """Like :meth:`predict`, one :class:`PhotoResult` per photo as they are done."""
        from tqdm.auto import tqdm

        if top_k < 1:
            raise ValueError(f"top_k {top_k} must be at least 1")
        if not crops and self.detector is None:
            raise ValueError(f"{self.folder.path} was trained on ready-made crops: it can "
                             "only name faces in crops of the same kind (crops=True, "
                             "`facelab predict --crops`)")
        limit = resolve_threshold(self.folder, threshold)
        items = expand_inputs(inputs)
        k = min(top_k, len(self.names))
        with tempfile.TemporaryDirectory(prefix="facelab-downloads-") as scratch:
            where = Path(downloads) if downloads is not None else Path(scratch)
            bar = tqdm(total=len(items), desc="predict", unit="photo", disable=not progress)
            for group in self._chunks(items, where, max_pixels):
                self._process(group, k, limit, crops)
                yield from group
                bar.update(len(group))
            bar.close()

    def predict(self, inputs: Any, *, top_k: int = 3, threshold: str | float | None = None,
                downloads: str | os.PathLike[str] | None = None,
                max_pixels: int = DEFAULT_MAX_PIXELS, progress: bool = False,
                crops: bool = False) -> pd.DataFrame:
        """Find and name every face of every photo (or name each face crop).

        Args:
            inputs: A photo path, folder, URL, manifest (``.csv`` with ``path`` or ``url``,
                or a PubFig ``.txt`` list), a PIL image or RGB array, or a list of them.
            top_k: How many names (with probabilities) each face row lists.
            threshold: ``"auto"``/``None`` (the calibrated one) or a number in [0, 1].
            downloads: Where URLs are downloaded (default: a temporary folder).
            max_pixels: Larger photos get a ``too_large`` row instead of being decoded.
            progress: Show a progress bar.
            crops: Each input is one face crop of the kind the model was trained on (LFW,
                PubFig83, another tool's crops): no face search in the photo, one row per
                image, the same open-set decision.

        Returns:
            One row per face (``photo``, ``face_index``, ``n_faces``, ``box`` as
            ``x0,y0,x1,y1``, ``detection_confidence``, ``status``, ``decision`` = a name,
            ``unknown`` or ``skipped``, ``score``, ``reason``, ``name_1``/``prob_1`` ...),
            and one row per photo without a usable face.
        """
        rows = [row for result in self.iter_predict(
            inputs, top_k=top_k, threshold=threshold, downloads=downloads,
            max_pixels=max_pixels, progress=progress, crops=crops) for row in result.rows]
        return predictions_frame(rows, min(top_k, len(self.names)))


def predictions_frame(rows: list[dict[str, Any]], top_k: int) -> pd.DataFrame:
    """Rows as a DataFrame with a fixed column order (empty top-k cells for skipped rows)."""
    columns = ["photo", "face_index", "n_faces", "box", "detection_confidence", "status",
               "decision", "score"]
    for rank in range(1, top_k + 1):
        columns += [f"name_{rank}", f"prob_{rank}"]
    frame = pd.DataFrame(rows).reindex(columns=[*columns, "reason"])
    frame["face_index"] = pd.to_numeric(frame["face_index"]).astype("Int64")
    frame["n_faces"] = pd.to_numeric(frame["n_faces"]).astype("Int64")
    numbers = ["detection_confidence", "score", *[f"prob_{r}" for r in range(1, top_k + 1)]]
    frame[numbers] = frame[numbers].apply(pd.to_numeric, errors="coerce").astype(float)
    frame["reason"] = frame["reason"].fillna("")
    return frame


def load(folder: str | os.PathLike[str], **options: Any) -> Recognizer:
    """Load a model folder once; call ``.predict(photos)`` as often as needed.

    ``crops=True`` loads a model trained on ready-made crops too (it then names crops only).

    Raises:
        facelab.recognize.folder.ModelFolderError: When the folder cannot be used (the
            message names the file and the fix).
    """
    return Recognizer(folder, **options)
