"""Face filtering: detect faces, keep photos with exactly one face, write aligned crops.

The blog post's author picked single-person photos by hand.  This stage lets a detector do
it: a photo is kept when exactly one confident face is found, and, when the source gives
the labelled face's ``rect`` (PubFig does), a group photo is kept too when exactly one
detection overlaps that rect.  Every other photo becomes a row with a status:

``no_face``, ``low_confidence``, ``multiple_faces``, ``rect_mismatch``,
``face_too_small``, ``unreadable``, ``detector_error`` (the detector failed on that photo,
e.g. a Vision API error; not cached, so a re-run retries it), or the upstream status
carried over unchanged.

Detectors share a tiny interface (:class:`Detector`: a list of RGB arrays in, a list of
:class:`Face` lists out).  Two backends: :class:`MTCNNDetector` (offline, the default)
and :class:`facelab.vision.VisionDetector` (Google Cloud Vision).  Detection runs on a
downscaled copy of each photo (``detect_max_side``), in batches; crops are cut from the
full-resolution original.  Detections are cached per photo sha256 in
``OUT/detections.jsonl``, so an interrupted or repeated run only detects what is new.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import sys
import textwrap
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from facelab.manifest import (
    MANIFEST_NAME,
    OK,
    absolute_paths,
    atomic_write_bytes,
    read_manifest,
    write_manifest,
)
from facelab.sources import format_rect, parse_rect, read_folder

NO_FACE = "no_face"
LOW_CONFIDENCE = "low_confidence"
MULTIPLE_FACES = "multiple_faces"
RECT_MISMATCH = "rect_mismatch"
FACE_TOO_SMALL = "face_too_small"
UNREADABLE = "unreadable"
DETECTOR_ERROR = "detector_error"
STATUSES = (OK, NO_FACE, LOW_CONFIDENCE, MULTIPLE_FACES, RECT_MISMATCH, FACE_TOO_SMALL,
            UNREADABLE, DETECTOR_ERROR)

FACES_DIR = "faces"
CACHE_NAME = "detections.jsonl"
LANDMARKS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
# columns this stage adds (input columns are carried over; the input ``path`` becomes
# ``photo_path``, relative to the output folder)
FACE_COLUMNS = ("person", "imagenum", "status", "reason", "path", "photo_path", "sha256",
                "photo_width", "photo_height", "n_faces", "n_confident", "face_index",
                "box", "confidence", "landmarks", "recovered", "rect_iou", "detections")


@dataclass
class Face:
    """One detected face, in the pixel coordinates of the image it was detected on.

    Attributes:
        box: ``(x0, y0, x1, y1)``.
        confidence: Detector score in [0, 1].
        landmarks: Name (see :data:`LANDMARKS`) -> ``(x, y)``; may be empty.
    """

    box: tuple[float, float, float, float]
    confidence: float
    landmarks: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def width(self) -> float:
        """Box width."""
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        """Box height."""
        return self.box[3] - self.box[1]

    def scaled(self, factor: float) -> Face:
        """Return the same face with every coordinate multiplied by ``factor``."""
        return Face(tuple(v * factor for v in self.box), self.confidence,  # type: ignore[arg-type]
                    {k: (x * factor, y * factor) for k, (x, y) in self.landmarks.items()})

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (rounded to 0.01 px)."""
        return {"box": [round(float(v), 2) for v in self.box],
                "confidence": round(float(self.confidence), 5),
                "landmarks": {k: [round(float(x), 2), round(float(y), 2)]
                              for k, (x, y) in self.landmarks.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Face:
        """Inverse of :meth:`to_dict`."""
        return cls(tuple(float(v) for v in d["box"]), float(d["confidence"]),  # type: ignore[arg-type]
                   {k: (float(v[0]), float(v[1])) for k, v in d.get("landmarks", {}).items()})


@dataclass
class DetectionFailure:
    """The detector could not process one image (the photo gets ``detector_error``)."""

    reason: str


class Detector(Protocol):
    """A face detector: RGB ``uint8`` arrays in, one list of faces (or a failure) per image."""

    name: str

    def cache_key(self) -> str:
        """Return a string that changes whenever the detector's results could change."""
        ...

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Face] | DetectionFailure]:
        """Detect faces in each image (coordinates in that image's pixels)."""
        ...


class MTCNNDetector:
    """The offline MTCNN detector (``mtcnn`` package, weights included), batched.

    Images are sorted by shape and sent to ``MTCNN.detect_faces`` as lists of
    ``batch_size`` (the package pads a batch to its largest image, so similar shapes
    waste little).  A batch that fails is retried image by image.

    Args:
        batch_size: Images per ``detect_faces`` call.
        min_face_size: Smallest face MTCNN looks for, in pixels of the detection copy.
        thresholds: PNet, RNet and ONet score thresholds.
        device: TensorFlow device (default: ``GPU:0`` when TensorFlow sees a GPU, else
            ``CPU:0``).
    """

    name = "mtcnn"

    def __init__(self, batch_size: int = 16, min_face_size: int = 20,
                 thresholds: tuple[float, float, float] = (0.6, 0.7, 0.8),
                 device: str | None = None) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if min_face_size < 12 or min_face_size > 20:
            # mtcnn 1.0.0 sizes its pyramid for min_face_size <= 20; larger values make
            # its last levels smaller than PNet's input and crash.  Detect on a smaller
            # copy instead (detect_max_side), which is equivalent and faster.
            raise ValueError("min_face_size must be between 12 and 20 (to ignore small faces "
                             "faster, lower detect_max_side instead)")
        self.batch_size = batch_size
        self.min_face_size = min_face_size
        self.thresholds = tuple(float(t) for t in thresholds)
        self.device = device
        self._mtcnn: Any = None

    def cache_key(self) -> str:
        """Backend, package version and the options that change results."""
        from importlib.metadata import version

        t = self.thresholds
        return (f"mtcnn-{version('mtcnn')}:mfs{self.min_face_size}:"
                f"t{t[0]:g},{t[1]:g},{t[2]:g}")

    def _load(self) -> Any:
        if self._mtcnn is None:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
            import tensorflow as tf
            from mtcnn import MTCNN

            device = self.device
            if device is None:
                device = "GPU:0" if tf.config.list_physical_devices("GPU") else "CPU:0"
            self._mtcnn = MTCNN(device=device)
        return self._mtcnn

    def _run(self, images: list[np.ndarray]) -> list[list[Face]]:
        t_pnet, t_rnet, t_onet = self.thresholds
        out = self._load().detect_faces(
            list(images), box_format="xyxy", min_face_size=self.min_face_size,
            threshold_pnet=t_pnet, threshold_rnet=t_rnet, threshold_onet=t_onet)
        result = []
        for faces in out:
            result.append([Face(tuple(float(v) for v in f["box"]), float(f["confidence"]),
                                {k: (float(v[0]), float(v[1]))
                                 for k, v in f.get("keypoints", {}).items()})
                           for f in faces])
        return result

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Face] | DetectionFailure]:
        """Detect faces in each image (RGB uint8 arrays), in shape-sorted batches."""
        results: list[list[Face] | DetectionFailure] = [[] for _ in images]
        # PNet needs at least 12 px; below ~24 px no face can be found anyway
        todo = [i for i, im in enumerate(images) if min(im.shape[:2]) >= 24]
        todo.sort(key=lambda i: (images[i].shape[0], images[i].shape[1]))
        for start in range(0, len(todo), self.batch_size):
            batch = todo[start:start + self.batch_size]
            try:
                found = self._run([images[i] for i in batch])
            except Exception:  # noqa: BLE001 - retry one by one to isolate the culprit
                found = []
                for i in batch:
                    try:
                        found.extend(self._run([images[i]]))
                    except Exception as error:  # noqa: BLE001 - a failure is a row
                        found.append(DetectionFailure(  # type: ignore[arg-type]
                            f"MTCNN failed: {type(error).__name__}: {str(error)[:200]}"))
            for i, faces in zip(batch, found, strict=True):
                results[i] = faces
        return results


def make_detector(backend: str = "mtcnn", **options: Any) -> Detector:
    """Build a detector by name.

    Args:
        backend: ``"mtcnn"`` (offline) or ``"vision"`` (Google Cloud Vision; credentials
            from the environment).
        **options: Passed to :class:`MTCNNDetector` or
            :class:`facelab.vision.VisionDetector`.

    Raises:
        ValueError: For an unknown backend.
    """
    if backend == "mtcnn":
        return MTCNNDetector(**options)
    if backend == "vision":
        from facelab.vision import VisionDetector

        return VisionDetector(**options)
    raise ValueError(f"unknown face backend {backend!r}: use 'mtcnn' or 'vision'")


# --------------------------------------------------------------------------- images

class UnreadablePhoto(Exception):
    """A photo that cannot be decoded (the message says why)."""


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB: alpha over white, 16-bit and float rescaled, CMYK, P, L."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        top = float(array.max()) if array.size else 0.0
        scale = 255.0 / (65535.0 if top > 255 else max(top, 1.0) if top > 0 else 1.0)
        return Image.fromarray(np.clip(array * scale, 0, 255).astype(np.uint8)).convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def load_photo(data: bytes) -> Image.Image:
    """Decode photo bytes into an upright RGB image (EXIF orientation applied).

    Raises:
        UnreadablePhoto: When the bytes are not a decodable image (truncated, HTML, ...).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            image.load()
    except Image.DecompressionBombError as error:
        raise UnreadablePhoto(f"too many pixels to decode safely ({error})") from error
    except Exception as error:  # noqa: BLE001 - PIL raises many kinds of errors
        raise UnreadablePhoto(f"cannot decode image: {type(error).__name__}: "
                              f"{str(error)[:160]}") from error
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001, S110 - a broken EXIF block: keep the raw orientation
        pass
    try:
        image = to_rgb(image)
    except Exception as error:  # noqa: BLE001
        raise UnreadablePhoto(f"cannot convert {image.mode} image to RGB: {error}") from error
    if image.width < 1 or image.height < 1:
        raise UnreadablePhoto("image has no pixels")
    return image


def detection_copy(image: Image.Image, max_side: int) -> tuple[np.ndarray, float]:
    """Make a copy of ``image`` whose longest side is at most ``max_side``.

    Returns:
        The copy as an RGB uint8 array and the factor that maps its coordinates back to
        the original (``original = copy * factor``).
    """
    longest = max(image.size)
    if longest <= max_side:
        return np.asarray(image), 1.0
    small = image
    factor = longest // (2 * max_side)
    if factor >= 2:               # cheap integer box reduction first for huge photos
        small = image.reduce(factor)
    scale = max_side / longest
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    small = small.resize(size, Image.Resampling.BILINEAR, reducing_gap=None)
    return np.asarray(small), image.width / size[0]


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``(x0, y0, x1, y1)`` boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def eye_angle(face: Face) -> float:
    """Angle in degrees of the line between the eyes (0 when the landmarks are missing)."""
    eyes = [face.landmarks[k] for k in ("left_eye", "right_eye") if k in face.landmarks]
    if len(eyes) != 2:
        return 0.0
    (x0, y0), (x1, y1) = sorted(eyes)          # left-most eye first, whatever its name
    if x1 - x0 <= 0:
        return 0.0
    return max(-45.0, min(45.0, math.degrees(math.atan2(y1 - y0, x1 - x0))))


def align_crop(image: Image.Image, face: Face, size: int = 128,
               margin: float = 0.25) -> Image.Image:
    """Cut a square, eyes-level crop of ``face`` out of ``image`` and resize it.

    Args:
        image: The full-resolution RGB photo (``face`` in its coordinates).
        face: The face to crop.
        size: Output side in pixels.
        margin: Extra room on each side, as a fraction of the box's longest side.

    Returns:
        A ``size`` x ``size`` RGB image; parts outside the photo are black.
    """
    cx = (face.box[0] + face.box[2]) / 2
    cy = (face.box[1] + face.box[3]) / 2
    side = max(face.width, face.height, 1.0) * (1 + 2 * margin)
    theta = math.radians(eye_angle(face))
    source = image
    k = side / size                        # source pixels per output pixel
    if k > 2:                              # reduce first: no aliasing, less work
        half = side * 0.75
        x0, y0 = math.floor(cx - half), math.floor(cy - half)
        region = image.crop((x0, y0, math.ceil(cx + half), math.ceil(cy + half)))
        f = int(k // 2)
        source = region.reduce(f)
        cx, cy, k = (cx - x0) / f, (cy - y0) / f, k / f
    cos, sin, h = math.cos(theta) * k, math.sin(theta) * k, size / 2
    data = (cos, -sin, cx - cos * h + sin * h, sin, cos, cy - sin * h - cos * h)
    return source.transform((size, size), Image.Transform.AFFINE, data,
                            resample=Image.Resampling.BICUBIC, fillcolor=(0, 0, 0))


# --------------------------------------------------------------------------- the rule

@dataclass
class Decision:
    """The outcome of :func:`apply_rule` for one photo."""

    status: str
    reason: str = ""
    index: int | None = None        # chosen face (index into the detections)
    n_confident: int = 0
    recovered: bool = False         # chosen among several faces thanks to the rect
    rect_iou: float | None = None


def apply_rule(faces: Sequence[Face], rect: Sequence[float] | None = None,
               min_confidence: float = 0.9, min_face_px: float = 40,
               iou_threshold: float = 0.3, rect_strict: bool = True) -> Decision:
    """Decide whether a photo is kept, and which face is cropped.

    Args:
        faces: All detections, in the photo's coordinates.
        rect: The labelled face's box (PubFig ``rect``), or ``None``.
        min_confidence: Detections below this score are ignored (``low_confidence`` when
            no detection reaches it).
        min_face_px: The kept face's shorter box side must reach this (else
            ``face_too_small``).
        iou_threshold: A detection "overlaps the rect" when its IoU reaches this.
        rect_strict: When True a lone confident face that misses the rect is
            ``rect_mismatch``; when False (rect not trusted, e.g. the photo was resized
            since the list was made) the rect only picks among several faces.

    Returns:
        A :class:`Decision`.
    """
    if not faces:
        return Decision(NO_FACE, "the detector found no face")
    confident = [i for i, f in enumerate(faces) if f.confidence >= min_confidence]
    if not confident:
        best = max(f.confidence for f in faces)
        return Decision(LOW_CONFIDENCE, f"{len(faces)} detection(s), best score {best:.2f} "
                        f"< {min_confidence:.2f}")
    n = len(confident)
    chosen: int | None = None
    recovered = False
    best_iou: float | None = None
    if rect is not None:
        ious = {i: iou(faces[i].box, rect) for i in confident}
        best_iou = max(ious.values())
        matches = [i for i in confident if ious[i] >= iou_threshold]
        if len(matches) == 1:
            chosen, recovered = matches[0], n > 1
        elif len(matches) > 1:
            return Decision(MULTIPLE_FACES, f"{len(matches)} of {n} faces overlap the "
                            f"labelled rect (IoU >= {iou_threshold:.2f})", n_confident=n,
                            rect_iou=best_iou)
        elif n > 1 or rect_strict:
            return Decision(RECT_MISMATCH, f"{n} confident face(s), none overlaps the "
                            f"labelled rect (best IoU {best_iou:.2f} < {iou_threshold:.2f})",
                            n_confident=n, rect_iou=best_iou)
    if chosen is None:
        if n > 1:
            return Decision(MULTIPLE_FACES, f"{n} confident faces and no rect to choose "
                            "the labelled one", n_confident=n)
        chosen = confident[0]
    face = faces[chosen]
    short = min(face.width, face.height)
    if short < min_face_px:
        return Decision(FACE_TOO_SMALL, f"face is {short:.0f} px < {min_face_px:g} px",
                        index=chosen, n_confident=n, recovered=recovered, rect_iou=best_iou)
    return Decision(OK, "", index=chosen, n_confident=n, recovered=recovered,
                    rect_iou=best_iou if rect is not None else None)


# --------------------------------------------------------------------------- the cache

class DetectionCache:
    """Detections per (photo sha256, detector settings), kept as JSON lines on disk.

    Each line: ``{"sha256", "key", "width", "height", "faces": [...]}`` with faces in
    the full photo's coordinates.  A torn last line (killed run) is ignored.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._entries: dict[tuple[str, str], dict[str, Any]] = {}
        if self.path.exists():
            with self.path.open("r", encoding="utf-8") as handle:
                for line in handle:
                    try:
                        entry = json.loads(line)
                        self._entries[(entry["sha256"], entry["key"])] = entry
                    except (ValueError, KeyError, TypeError):
                        continue

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, sha256: str, key: str) -> dict[str, Any] | None:
        """Return the cached entry, or ``None``."""
        return self._entries.get((sha256, key))

    def add(self, entries: Iterable[dict[str, Any]]) -> None:
        """Append entries (flushed to disk at once)."""
        entries = list(entries)
        if not entries:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            for entry in entries:
                self._entries[(entry["sha256"], entry["key"])] = entry
                handle.write(json.dumps(entry, separators=(",", ":")) + "\n")
            handle.flush()
            os.fsync(handle.fileno())


# --------------------------------------------------------------------------- the stage

@dataclass
class FaceSettings:
    """Options of the face stage (see :func:`filter_faces`)."""

    crop_size: int = 128
    margin: float = 0.25
    min_confidence: float = 0.9
    min_face_px: float = 40
    iou_threshold: float = 0.3
    detect_max_side: int | None = None
    jpeg_quality: int = 92

    def check(self) -> None:
        """Raise ValueError for impossible values."""
        if not 16 <= self.crop_size <= 2048:
            raise ValueError(f"crop_size {self.crop_size} must be between 16 and 2048")
        if not 0 <= self.margin <= 2:
            raise ValueError(f"margin {self.margin} must be between 0 and 2")
        if not 0 <= self.min_confidence <= 1:
            raise ValueError(f"min_confidence {self.min_confidence} must be in [0, 1]")
        if not 0 < self.iou_threshold <= 1:
            raise ValueError(f"iou_threshold {self.iou_threshold} must be in (0, 1]")
        if self.detect_max_side is not None and self.detect_max_side < 64:
            raise ValueError(f"detect_max_side {self.detect_max_side} must be >= 64")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality {self.jpeg_quality} must be in 1..100")


DEFAULT_MAX_SIDE = {"mtcnn": 320, "vision": 640}


def read_source(src: str | os.PathLike[str]) -> tuple[pd.DataFrame, Path]:
    """Read the stage's input: a stage folder / manifest.csv, or a folder per person.

    Returns:
        The input rows and the folder their ``path`` is relative to.
    """
    src = Path(src)
    if src.suffix == ".csv" and src.is_file():
        return read_manifest(src), src.parent
    if (src / MANIFEST_NAME).is_file():
        return read_manifest(src), src
    if src.is_dir():
        return read_folder(src), src
    raise FileNotFoundError(f"{src} is neither a stage folder with {MANIFEST_NAME} nor a "
                            "folder with one sub-folder of photos per person")


def _crop_name(sha: str, index: int, settings: FaceSettings, face: Face) -> str:
    tag = hashlib.sha1(json.dumps([settings.crop_size, settings.margin, settings.jpeg_quality,
                                   face.to_dict()], sort_keys=True).encode()).hexdigest()[:8]
    return f"{FACES_DIR}/{sha[:2]}/{sha[:24]}-{index}-{tag}.jpg"


def _save_jpeg(image: Image.Image, path: Path, quality: int) -> None:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    atomic_write_bytes(path, buffer.getvalue())


def _relpath(target: str, start: Path) -> str:
    try:
        return Path(os.path.relpath(target, start)).as_posix()
    except ValueError:              # another drive on Windows
        return Path(target).as_posix()


def _decide(rows: pd.DataFrame, i: int, entry: dict[str, Any], settings: FaceSettings,
            has_md5_ok: bool) -> dict[str, Any]:
    """Apply the rule to one photo's cached detections; the manifest fields it fills."""
    faces = [Face.from_dict(f) for f in entry["faces"]]
    width, height = int(entry["width"]), int(entry["height"])
    rect = parse_rect(str(rows.at[i, "rect"])) if "rect" in rows.columns else None
    if rect is not None and (rect[2] > width * 1.1 or rect[3] > height * 1.1):
        rect = None                    # stale rect: the photo was resized since the list
    changed = has_md5_ok and str(rows.at[i, "md5_ok"]).strip().lower() in ("false", "0")
    strict = not (rect is not None and changed)
    decision = apply_rule(faces, rect, settings.min_confidence, settings.min_face_px,
                          settings.iou_threshold, rect_strict=strict)
    fields: dict[str, Any] = {
        "status": decision.status, "reason": decision.reason, "photo_width": width,
        "photo_height": height, "n_faces": len(faces), "n_confident": decision.n_confident,
        "recovered": decision.recovered,
        "rect_iou": round(decision.rect_iou, 3) if decision.rect_iou is not None else None,
        "detections": json.dumps([[round(v, 1) for v in f.box] + [round(f.confidence, 4)]
                                  for f in faces])}
    if decision.index is not None:
        face = faces[decision.index]
        fields.update(face_index=decision.index, box=format_rect(face.box),
                      confidence=round(face.confidence, 5),
                      landmarks=json.dumps(face.to_dict()["landmarks"]),
                      _face=json.dumps(face.to_dict()))
    return fields


def filter_faces(src: str | os.PathLike[str], out: str | os.PathLike[str], *,
                 backend: str = "mtcnn", detector: Detector | None = None,
                 crop_size: int = 128, margin: float = 0.25, min_confidence: float = 0.9,
                 min_face_px: float = 40, iou_threshold: float = 0.3,
                 detect_max_side: int | None = None, batch_size: int = 16,
                 jpeg_quality: int = 92, max_photos: int | None = None, seed: int = 0,
                 progress: bool = True, verbose: bool = True) -> pd.DataFrame:
    """Run the face stage: detect, apply the one-face rule, write crops and the manifest.

    Args:
        src: The collection stage's folder (``manifest.csv`` with ``path`` to photos and
            optional ``rect``), a manifest file, or a folder with a sub-folder per person.
        out: The output stage folder (``faces/``, ``manifest.csv``, ``detections.jsonl``).
        backend: ``"mtcnn"`` or ``"vision"`` (ignored when ``detector`` is given).
        detector: A ready detector (any :class:`Detector`).
        crop_size: Side of the square crops, pixels.
        margin: Room around the face box on each side, as a fraction of its side.
        min_confidence: Minimum detection score of a face that counts.
        min_face_px: Minimum shorter side of the kept face's box, in photo pixels.
        iou_threshold: IoU with the labelled rect needed to pick a face in a group photo.
        detect_max_side: Photos are detected on a copy at most this long (default 320
            for MTCNN, 640 for Vision); crops come from the original.
        batch_size: Images per detector call (MTCNN; Vision sends at most 16 per request).
        jpeg_quality: Quality of the saved crops.
        max_photos: Process only a random sample of this many photos (smoke runs); the
            other rows are left out of the output.
        seed: Seed of that sample.
        progress: Show a tqdm progress bar.
        verbose: Print the counts per status.

    Returns:
        The output manifest (also written to ``out/manifest.csv``): one row per rejected
        photo, one ``ok`` row per kept face, upstream failures carried over.

    Raises:
        FileNotFoundError: When ``src`` holds no input.
        ValueError: For impossible options or a missing ``path`` column.
    """
    from tqdm.auto import tqdm

    settings = FaceSettings(crop_size, margin, min_confidence, min_face_px, iou_threshold,
                            detect_max_side, jpeg_quality)
    settings.check()
    if max_photos is not None and max_photos < 1:
        raise ValueError("max_photos must be at least 1 (or None for all)")
    rows, root = read_source(src)
    if "path" not in rows.columns or "status" not in rows.columns:
        raise ValueError(f"the input manifest under {src} lacks 'path'/'status' columns: pass "
                         "the collection stage's folder or a folder of photos per person")
    out = Path(out)
    if out.resolve() == root.resolve():
        raise ValueError("--out must differ from the input folder")
    if detector is None:
        detector = make_detector(backend, **({"batch_size": batch_size}
                                             if backend == "mtcnn" else {}))
    max_side = detect_max_side or DEFAULT_MAX_SIDE.get(detector.name, 640)
    key = f"{detector.cache_key()}:side{max_side}"
    out.mkdir(parents=True, exist_ok=True)
    cache = DetectionCache(out / CACHE_NAME)

    rows = rows.reset_index(drop=True)
    todo_mask = rows["status"].astype(str) == OK
    if max_photos is not None and todo_mask.sum() > max_photos:
        keep = rows[todo_mask].sample(n=max_photos, random_state=seed).index
        rows = rows[~todo_mask | rows.index.isin(keep)].reset_index(drop=True)
        todo_mask = rows["status"].astype(str) == OK
    abs_paths = absolute_paths(rows, root)
    has_md5_ok = "md5_ok" in rows.columns

    records: list[dict[str, Any]] = [{} for _ in range(len(rows))]
    base_cols = [c for c in rows.columns if c != "path"]

    def base(i: int) -> dict[str, Any]:
        record = {c: rows.at[i, c] for c in base_cols}
        p = abs_paths.iat[i]
        record["photo_path"] = _relpath(p, out) if p else ""
        record["path"] = ""
        return record

    for i in np.flatnonzero(~todo_mask.to_numpy()):
        records[int(i)] = base(int(i))

    todo = [int(i) for i in np.flatnonzero(todo_mask.to_numpy())]
    chunk = max(1, batch_size) * 8            # detectors sort a chunk by shape
    bar = tqdm(total=len(todo), desc=f"faces ({detector.name})", unit="photo",
               disable=not progress)
    stats = {"detected": 0, "cached": 0}
    for start in range(0, len(todo), chunk):
        part = todo[start:start + chunk]
        data: dict[str, bytes] = {}            # sha256 -> bytes
        shas: dict[int, str] = {}              # row -> sha256
        images: dict[str, Image.Image] = {}    # sha256 -> decoded photo
        failed: dict[str, tuple[str, str]] = {}  # sha256 -> (status, reason)
        read_errors: dict[int, str] = {}
        for i in part:
            try:
                raw = Path(abs_paths.iat[i]).read_bytes()
            except OSError as error:
                read_errors[i] = f"cannot read file: {type(error).__name__}: {error}"
                continue
            shas[i] = hashlib.sha256(raw).hexdigest()
            data[shas[i]] = raw
        # detect what the cache lacks, once per distinct photo
        need = [sha for sha in dict.fromkeys(shas.values()) if cache.get(sha, key) is None]
        stats["cached"] += sum(1 for sha in shas.values() if sha not in need)
        arrays, factors, owners = [], [], []
        for sha in need:
            try:
                images[sha] = load_photo(data[sha])
            except UnreadablePhoto as error:
                failed[sha] = (UNREADABLE, str(error))
                continue
            array, factor = detection_copy(images[sha], max_side)
            arrays.append(array)
            factors.append(factor)
            owners.append(sha)
        if arrays:
            found = detector.detect(arrays)
            new = []
            for sha, faces, factor in zip(owners, found, factors, strict=True):
                if isinstance(faces, DetectionFailure):
                    failed[sha] = (DETECTOR_ERROR, faces.reason)
                    continue
                new.append({"sha256": sha, "key": key, "width": images[sha].width,
                            "height": images[sha].height,
                            "faces": [f.scaled(factor).to_dict() for f in faces]})
            cache.add(new)
            stats["detected"] += len(arrays)
        for i in part:
            record = base(i)
            records[i] = record
            if i in read_errors:
                record.update(status=UNREADABLE, reason=read_errors[i])
                continue
            sha = shas[i]
            record["sha256"] = sha
            if sha in failed:
                record.update(status=failed[sha][0], reason=failed[sha][1])
                continue
            record.update(_decide(rows, i, cache.get(sha, key), settings, has_md5_ok))
            if record["status"] != OK:
                continue
            face = Face.from_dict(json.loads(record.pop("_face")))
            name = _crop_name(sha, int(record["face_index"]), settings, face)
            target = out / name
            if not target.exists():
                try:
                    if sha not in images:
                        images[sha] = load_photo(data[sha])
                    _save_jpeg(align_crop(images[sha], face, crop_size, margin), target,
                               jpeg_quality)
                except (UnreadablePhoto, OSError, ValueError) as error:
                    record.update(status=UNREADABLE, reason=f"cannot crop: {error}")
                    continue
            record["path"] = name
        bar.update(len(part))
    bar.close()

    df = pd.DataFrame.from_records(records)
    df = df.drop(columns=[c for c in ("_face",) if c in df.columns])
    for column in FACE_COLUMNS:
        if column not in df.columns:
            df[column] = pd.NA
    ordered = list(FACE_COLUMNS) + [c for c in df.columns if c not in FACE_COLUMNS]
    df = df[ordered]
    for column in ("path", "photo_path", "sha256", "reason", "box", "landmarks",
                   "detections"):
        df[column] = df[column].fillna("").astype(str)
    for column in ("photo_width", "photo_height", "n_faces", "n_confident", "face_index"):
        df[column] = pd.to_numeric(df[column], errors="coerce").astype("Int64")
    df["recovered"] = df["recovered"].astype("boolean")
    write_manifest(df, out)
    df.attrs["faces"] = {"detected": stats["detected"], "cached": stats["cached"],
                         "detector": key}
    if verbose:
        print(summary(df))
    return df


def summary(df: pd.DataFrame) -> str:
    """Format the counts per status (and recovered group photos) as printable text."""
    counts = df["status"].value_counts()
    lines = [f"face stage: {len(df)} rows, {int(counts.get(OK, 0))} faces kept"]
    for status, count in counts.items():
        lines.append(f"  {status:<16} {count:>6}")
    if "recovered" in df.columns:
        recovered = int((df["recovered"].fillna(False).astype(bool)
                         & (df["status"] == OK)).sum())
        lines.append(f"  (of the kept: {recovered} group photos recovered with the rect)")
    stats = df.attrs.get("faces")
    if stats:
        lines.append(f"  detector runs: {stats['detected']} photos detected, "
                     f"{stats['cached']} from the cache ({stats['detector']})")
    return "\n".join(lines)


# --------------------------------------------------------------------------- plots

def _faces_of(row: pd.Series) -> list[list[float]]:
    try:
        return json.loads(row["detections"]) if row.get("detections") else []
    except (TypeError, ValueError):
        return []


def _show_photo(ax: Any, path: Path, row: pd.Series, title: str) -> None:
    from matplotlib.patches import Rectangle

    ax.set_xticks([])
    ax.set_yticks([])
    try:
        image = load_photo(path.read_bytes())
    except (OSError, UnreadablePhoto):
        ax.text(0.5, 0.5, "unreadable", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title, fontsize=7)
        return
    ax.imshow(image)
    chosen = parse_rect(str(row.get("box", "")))
    for x0, y0, x1, y1, conf in _faces_of(row):
        is_chosen = chosen is not None and iou((x0, y0, x1, y1), chosen) > 0.9
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, linewidth=1.5,
                               edgecolor="lime" if is_chosen else "red"))
        ax.text(x0, y0, f"{conf:.2f}", color="yellow", fontsize=6, va="bottom")
    rect = parse_rect(str(row.get("rect", ""))) if "rect" in row else None
    if rect is not None:
        ax.add_patch(Rectangle((rect[0], rect[1]), rect[2] - rect[0], rect[3] - rect[1],
                               fill=False, linewidth=1.2, linestyle="--", edgecolor="cyan"))
    ax.set_title(title, fontsize=7)


def plot_status_counts(df: pd.DataFrame, ax: Any = None) -> Any:
    """Bar chart of rows per status; returns the axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3))
    counts = df["status"].value_counts()
    colours = ["tab:green" if s == OK else "tab:red" if s in STATUSES else "tab:gray"
               for s in counts.index]
    ax.bar(counts.index.astype(str), counts.to_numpy(), color=colours)
    ax.set_ylabel("rows")
    ax.set_title("face stage: rows per status (green kept, red rejected here, grey upstream)")
    ax.tick_params(axis="x", rotation=30, labelsize=8)
    return ax


def plot_rejected(df: pd.DataFrame, root: str | os.PathLike[str], per_status: int = 4,
                  statuses: Sequence[str] = (NO_FACE, LOW_CONFIDENCE, MULTIPLE_FACES,
                                             RECT_MISMATCH, FACE_TOO_SMALL),
                  seed: int = 0) -> Any:
    """Gallery of rejected photos, one row per status, with every detection drawn.

    Red boxes: detections (score on top); cyan dashed: the labelled rect.

    Args:
        df: The face stage's manifest.
        root: The face stage's folder (``photo_path`` is relative to it).
        per_status: Photos per row.
        statuses: The statuses to show (those with no rows are skipped).
        seed: Which photos are sampled.

    Returns:
        The figure (``None`` when nothing was rejected).
    """
    import matplotlib.pyplot as plt

    root = Path(root)
    shown = [s for s in statuses if (df["status"] == s).any()]
    if not shown:
        return None
    fig, axes = plt.subplots(len(shown), per_status, figsize=(2.4 * per_status,
                                                              2.6 * len(shown)),
                             squeeze=False)
    for r, status in enumerate(shown):
        sub = df[df["status"] == status]
        sub = sub.sample(n=min(per_status, len(sub)), random_state=seed)
        for c in range(per_status):
            ax = axes[r][c]
            ax.axis("off")
            if c >= len(sub):
                continue
            row = sub.iloc[c]
            ax.axis("on")
            reason = textwrap.shorten(str(row["reason"]), 80, placeholder="...")
            _show_photo(ax, root / row["photo_path"], row,
                        f"{status}\n" + "\n".join(textwrap.wrap(reason, 40)))
    fig.tight_layout()
    return fig


def plot_recovered(df: pd.DataFrame, root: str | os.PathLike[str], n: int = 6,
                   seed: int = 0) -> Any:
    """Group photos kept thanks to the rect: rect (cyan dashed), chosen face (green).

    Returns:
        The figure (``None`` when no photo was recovered).
    """
    import matplotlib.pyplot as plt

    root = Path(root)
    sub = df[(df["status"] == OK) & df["recovered"].fillna(False).astype(bool)]
    if sub.empty:
        return None
    sub = sub.sample(n=min(n, len(sub)), random_state=seed)
    fig, axes = plt.subplots(1, len(sub), figsize=(3 * len(sub), 3.2), squeeze=False)
    for ax, (_, row) in zip(axes[0], sub.iterrows(), strict=True):
        _show_photo(ax, root / row["photo_path"], row,
                    f"{row['person']}: {int(row['n_confident'])} faces, IoU {row['rect_iou']}")
    fig.tight_layout()
    return fig


def plot_crops(df: pd.DataFrame, root: str | os.PathLike[str], per_person: int = 8,
               max_people: int = 10, seed: int = 0) -> Any:
    """Grid of kept crops: one row per person (the people with most crops first).

    Returns:
        The figure (``None`` when no face was kept).
    """
    import matplotlib.pyplot as plt

    root = Path(root)
    kept_rows = df[(df["status"] == OK) & (df["path"] != "")]
    if kept_rows.empty:
        return None
    people = kept_rows["person"].value_counts().index[:max_people]
    fig, axes = plt.subplots(len(people), per_person,
                             figsize=(1.3 * per_person, 1.45 * len(people)), squeeze=False)
    for r, person in enumerate(people):
        sub = kept_rows[kept_rows["person"] == person]
        sub = sub.sample(n=min(per_person, len(sub)), random_state=seed)
        for c in range(per_person):
            ax = axes[r][c]
            ax.axis("off")
            if c < len(sub):
                with Image.open(root / sub.iloc[c]["path"]) as crop:
                    ax.imshow(crop.copy())
        axes[r][0].set_title(f"{person} ({len(kept_rows[kept_rows['person'] == person])})",
                             fontsize=7, loc="left")
    fig.tight_layout()
    return fig


def contact_sheet(paths: Sequence[str | os.PathLike[str]], columns: int = 10,
                  size: int = 96) -> Image.Image:
    """Tile images into one picture (for looking at many crops at once)."""
    rows = max(1, math.ceil(len(paths) / columns))
    sheet = Image.new("RGB", (columns * size, rows * size), (255, 255, 255))
    for k, p in enumerate(paths):
        with Image.open(p) as im:
            tile = to_rgb(im).resize((size, size))
        sheet.paste(tile, ((k % columns) * size, (k // columns) * size))
    return sheet


# --------------------------------------------------------------------------- CLI

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``facelab faces``."""
    parser.add_argument("src", help="the collection stage's folder (with manifest.csv), or a "
                        "folder with one sub-folder of photos per person")
    parser.add_argument("--out", default=None, help="output stage folder (default: 'faces' "
                        "beside SRC when SRC is a stage folder)")
    parser.add_argument("--backend", choices=("mtcnn", "vision"), default="mtcnn",
                        help="mtcnn (offline, default) or vision (Google Cloud Vision; "
                        "credentials from GOOGLE_APPLICATION_CREDENTIALS)")
    parser.add_argument("--crop-size", type=int, default=128, help="crop side in px (128)")
    parser.add_argument("--margin", type=float, default=0.25,
                        help="room around the face box on each side, fraction (0.25)")
    parser.add_argument("--min-confidence", type=float, default=0.9,
                        help="minimum detection score (0.9)")
    parser.add_argument("--min-face-px", type=float, default=40,
                        help="minimum face box side in photo pixels (40)")
    parser.add_argument("--iou", type=float, default=0.3, dest="iou_threshold",
                        help="IoU with the labelled rect to pick a face in a group photo (0.3)")
    parser.add_argument("--detect-max-side", type=int, default=None,
                        help="detect on a copy at most this long (mtcnn 320, vision 640)")
    parser.add_argument("--batch-size", type=int, default=16, help="images per MTCNN call")
    parser.add_argument("--max-photos", type=int, default=None,
                        help="only a random sample of this many photos (smoke runs)")
    parser.add_argument("--seed", type=int, default=0, help="seed of that sample")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_cli(args: argparse.Namespace) -> int:
    """Entry point of ``facelab faces``."""
    src = Path(args.src)
    out = args.out
    if out is None:
        if not (src / MANIFEST_NAME).is_file():
            raise ValueError(f"{src} has no {MANIFEST_NAME}: pass --out for the crops and "
                             "manifest")
        out = src.parent / FACES_DIR
    df = filter_faces(src, out, backend=args.backend, crop_size=args.crop_size,
                      margin=args.margin, min_confidence=args.min_confidence,
                      min_face_px=args.min_face_px, iou_threshold=args.iou_threshold,
                      detect_max_side=args.detect_max_side, batch_size=args.batch_size,
                      max_photos=args.max_photos, seed=args.seed,
                      progress=not args.no_progress)
    print(f"wrote {Path(out) / MANIFEST_NAME}", file=sys.stderr)
    return 0 if len(df) else 1
