"""Face filtering: detect faces, keep photos with exactly one face, write aligned crops.

The blog post's author picked single-person photos by hand.  This stage lets a detector do
it: a photo is kept when exactly one confident face is found, and, when the source gives
the labelled face's ``rect`` (PubFig does), a group photo is kept too when exactly one
detection overlaps that rect (the rule itself is :mod:`facelab.faces.rule`).  Every other
photo becomes a row with a status.

Detection runs on a downscaled copy of each photo (``detect_max_side``), in batches; crops
are cut from the full-resolution original (:mod:`facelab.faces.crops`).  Detections are
cached per photo sha256 in ``OUT/detections.jsonl``, so an interrupted or repeated run only
detects what is new.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from facelab.collect.sources import read_folder
from facelab.faces.base import DetectionFailure, Detector, Face
from facelab.faces.crops import CROP_STYLES, UnreadablePhoto, cut_face, detection_copy, load_photo
from facelab.faces.mtcnn import MTCNNDetector
from facelab.faces.rule import DETECTOR_ERROR, UNREADABLE, apply_rule
from facelab.faces.settings import write_face_settings
from facelab.io import atomic_write_bytes
from facelab.lock import check_complete, writes_folder
from facelab.manifest import (
    MANIFEST_NAME,
    OK,
    absolute_paths,
    format_rect,
    parse_rect,
    read_manifest,
    write_manifest,
)

FACES_DIR = "faces"


CACHE_NAME = "detections.jsonl"


# columns this stage adds (input columns are carried over; the input ``path`` becomes
# ``photo_path``, relative to the output folder)
FACE_COLUMNS = ("person", "imagenum", "status", "reason", "path", "photo_path", "sha256",
                "photo_width", "photo_height", "n_faces", "n_confident", "face_index",
                "box", "confidence", "landmarks", "recovered", "rect_iou", "detections")


def make_detector(backend: str = "mtcnn", **options: Any) -> Detector:
    """Build a detector by name.

    Args:
        backend: ``"mtcnn"`` (offline) or ``"vision"`` (Google Cloud Vision; credentials
            from the environment).
        **options: Passed to :class:`MTCNNDetector` or
            :class:`facelab.faces.vision.VisionDetector`.

    Raises:
        ValueError: For an unknown backend.
    """
    if backend == "mtcnn":
        return MTCNNDetector(**options)
    if backend == "vision":
        from facelab.faces.vision import VisionDetector

        return VisionDetector(**options)
    raise ValueError(f"unknown face backend {backend!r}: use 'mtcnn' or 'vision'")


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

    crop_size: int = 150
    margin: float = 0.25
    min_confidence: float = 0.9
    min_face_px: float = 40
    iou_threshold: float = 0.3
    detect_max_side: int | None = None
    jpeg_quality: int = 92
    crop_style: str = "chip"

    def check(self) -> None:
        """Raise ValueError for impossible values."""
        if self.crop_style not in CROP_STYLES:
            raise ValueError(f"crop_style {self.crop_style!r}: use one of {list(CROP_STYLES)}")
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
    from facelab.collect.run import JOURNAL_NAME

    if (src / JOURNAL_NAME).is_file():
        raise FileNotFoundError(f"{src} is a collection whose run has not finished (a "
                                f"{JOURNAL_NAME} but no {MANIFEST_NAME}): run its `facelab "
                                "collect` again to finish it (it resumes), then this")
    if src.is_dir():
        return read_folder(src), src
    raise FileNotFoundError(f"{src} is neither a stage folder with {MANIFEST_NAME} nor a "
                            "folder with one sub-folder of photos per person")


def _crop_name(sha: str, index: int, settings: FaceSettings, face: Face) -> str:
    shape = [settings.crop_size, settings.margin, settings.jpeg_quality, face.to_dict()]
    if settings.crop_style != "square":         # square crops keep their earlier names
        shape.append(settings.crop_style)
    tag = hashlib.sha1(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:8]
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


def _read_input(src: str | os.PathLike[str], out: Path, max_photos: int | None,
                seed: int, wait: bool = False) -> tuple[pd.DataFrame, Path]:
    """Read and check the stage's input; sample ``max_photos`` of its ok rows.

    Returns:
        The rows (index 0..n-1; failures upstream kept) and the folder of their paths.
    """
    folder = Path(src)
    check_complete(folder.parent if folder.suffix == ".csv" else folder, wait=wait,
                   how_to_wait="--wait (wait=True in Python)")
    rows, root = read_source(src)
    if "path" not in rows.columns or "status" not in rows.columns:
        raise ValueError(f"the input manifest under {src} lacks 'path'/'status' columns: pass "
                         "the collection stage's folder or a folder of photos per person")
    if out.resolve() == root.resolve():
        raise ValueError("--out must differ from the input folder")
    rows = rows.reset_index(drop=True)
    todo_mask = rows["status"].astype(str) == OK
    if max_photos is not None and todo_mask.sum() > max_photos:
        keep = rows[todo_mask].sample(n=max_photos, random_state=seed).index
        rows = rows[~todo_mask | rows.index.isin(keep)].reset_index(drop=True)
    return rows, root


@dataclass
class _Run:
    """What the steps of one face-stage run share.

    Attributes:
        rows: The input rows (index 0..n-1).
        abs_paths: Each row's photo file ('' when none).
        out: The output stage folder.
        settings: The stage's options.
        detector: The face detector.
        key: The detection cache key (detector and detection size).
        max_side: Photos are detected on a copy at most this long.
        cache: Detections per photo sha256.
        stats: Photos ``detected`` and found ``cached`` so far.
    """

    rows: pd.DataFrame
    abs_paths: pd.Series
    out: Path
    settings: FaceSettings
    detector: Detector
    key: str
    max_side: int
    cache: DetectionCache
    stats: dict[str, int] = field(default_factory=lambda: {"detected": 0, "cached": 0})

    def base(self, i: int) -> dict[str, Any]:
        """Row ``i``'s input fields, with its photo's path relative to the output folder."""
        record = {c: self.rows.at[i, c] for c in self.rows.columns if c != "path"}
        p = self.abs_paths.iat[i]
        record["photo_path"] = _relpath(p, self.out) if p else ""
        record["path"] = ""
        return record


@dataclass
class _Chunk:
    """The photos of a chunk of rows: bytes and decoded images by sha256, failures."""

    data: dict[str, bytes] = field(default_factory=dict)             # sha256 -> bytes
    shas: dict[int, str] = field(default_factory=dict)               # row -> sha256
    images: dict[str, Image.Image] = field(default_factory=dict)     # sha256 -> photo
    failed: dict[str, tuple[str, str]] = field(default_factory=dict)  # sha256 -> status, reason
    read_errors: dict[int, str] = field(default_factory=dict)        # row -> reason


def _read_chunk(run: _Run, part: list[int]) -> _Chunk:
    """Read the photo files of rows ``part`` and hash them."""
    chunk = _Chunk()
    for i in part:
        try:
            raw = Path(run.abs_paths.iat[i]).read_bytes()
        except OSError as error:
            chunk.read_errors[i] = f"cannot read file: {type(error).__name__}: {error}"
            continue
        chunk.shas[i] = hashlib.sha256(raw).hexdigest()
        chunk.data[chunk.shas[i]] = raw
    return chunk


def _detect_chunk(run: _Run, chunk: _Chunk) -> None:
    """Detect faces in what the cache lacks (once per distinct photo); cache the results."""
    need = [sha for sha in dict.fromkeys(chunk.shas.values())
            if run.cache.get(sha, run.key) is None]
    run.stats["cached"] += sum(1 for sha in chunk.shas.values() if sha not in need)
    arrays, factors, owners = [], [], []
    for sha in need:
        try:
            chunk.images[sha] = load_photo(chunk.data[sha])
        except UnreadablePhoto as error:
            chunk.failed[sha] = (UNREADABLE, str(error))
            continue
        array, factor = detection_copy(chunk.images[sha], run.max_side)
        arrays.append(array)
        factors.append(factor)
        owners.append(sha)
    if not arrays:
        return
    found = run.detector.detect(arrays)
    new = []
    for sha, faces, factor in zip(owners, found, factors, strict=True):
        if isinstance(faces, DetectionFailure):
            chunk.failed[sha] = (DETECTOR_ERROR, faces.reason)
            continue
        new.append({"sha256": sha, "key": run.key, "width": chunk.images[sha].width,
                    "height": chunk.images[sha].height,
                    "faces": [f.scaled(factor).to_dict() for f in faces]})
    run.cache.add(new)
    run.stats["detected"] += len(arrays)


def _record(run: _Run, chunk: _Chunk, i: int) -> dict[str, Any]:
    """Row ``i``'s output: its failure, the rule's decision and, when kept, its crop."""
    record = run.base(i)
    if i in chunk.read_errors:
        record.update(status=UNREADABLE, reason=chunk.read_errors[i])
        return record
    sha = chunk.shas[i]
    record["sha256"] = sha
    if sha in chunk.failed:
        record.update(status=chunk.failed[sha][0], reason=chunk.failed[sha][1])
        return record
    record.update(_decide(run.rows, i, run.cache.get(sha, run.key), run.settings,
                          "md5_ok" in run.rows.columns))
    if record["status"] != OK:
        return record
    face = Face.from_dict(json.loads(record.pop("_face")))
    name = _crop_name(sha, int(record["face_index"]), run.settings, face)
    target = run.out / name
    if not target.exists():
        try:
            if sha not in chunk.images:
                chunk.images[sha] = load_photo(chunk.data[sha])
            _save_jpeg(cut_face(chunk.images[sha], face, run.settings.crop_style,
                                run.settings.crop_size, run.settings.margin), target,
                       run.settings.jpeg_quality)
        except (UnreadablePhoto, OSError, ValueError) as error:
            record.update(status=UNREADABLE, reason=f"cannot crop: {error}")
            return record
    record["path"] = name
    return record


def _manifest(records: list[dict[str, Any]]) -> pd.DataFrame:
    """The output manifest: :data:`FACE_COLUMNS` first, then the input's, typed."""
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
    return df


@writes_folder("out", "faces")     # one writer per folder (facelab.lock)
def filter_faces(src: str | os.PathLike[str], out: str | os.PathLike[str], *,
                 backend: str = "mtcnn", detector: Detector | None = None,
                 crop_size: int = 150, margin: float = 0.25, min_confidence: float = 0.9,
                 min_face_px: float = 40, iou_threshold: float = 0.3,
                 detect_max_side: int | None = None, batch_size: int = 16,
                 jpeg_quality: int = 92, crop_style: str = "chip",
                 max_photos: int | None = None, seed: int = 0,
                 wait: bool = False, progress: bool = True,
                 verbose: bool = True) -> pd.DataFrame:
    """Run the face stage: detect, apply the one-face rule, write crops and the manifest.

    Args:
        src: The collection stage's folder (``manifest.csv`` with ``path`` to photos and
            optional ``rect``), a manifest file, or a folder with a sub-folder per person.
        out: The output stage folder (``faces/``, ``manifest.csv``, ``detections.jsonl``).
        backend: ``"mtcnn"`` or ``"vision"`` (ignored when ``detector`` is given).
        detector: A ready detector (any :class:`Detector`).
        crop_size: Side of the square crops, pixels (150: the face network's chips).
        margin: Room around the face box on each side, as a fraction of its side (square
            crops only).
        min_confidence: Minimum detection score of a face that counts.
        min_face_px: Minimum shorter side of the kept face's box, in photo pixels.
        iou_threshold: IoU with the labelled rect needed to pick a face in a group photo.
        detect_max_side: Photos are detected on a copy at most this long (default 320
            for MTCNN, 640 for Vision); crops come from the original.
        batch_size: Images per detector call (MTCNN; Vision sends at most 16 per request).
        jpeg_quality: Quality of the saved crops.
        crop_style: ``"chip"`` (default: dlib's alignment from the five landmarks,
            :mod:`facelab.faces.chips`, what the pretrained face network needs) or
            ``"square"`` (the face box with ``margin``, eyes levelled).
        max_photos: Process only a random sample of this many photos (smoke runs); the
            other rows are left out of the output.
        seed: Seed of that sample.
        wait: When another run is still writing ``src`` (a collection in progress), wait
            for it to finish instead of raising.
        progress: Show a tqdm progress bar.
        verbose: Print the counts per status.

    Returns:
        The output manifest (also written to ``out/manifest.csv``): one row per rejected
        photo, one ``ok`` row per kept face, upstream failures carried over.

    Raises:
        FileNotFoundError: When ``src`` holds no input, or a collection that never
            finished.
        ValueError: For impossible options or a missing ``path`` column.
        facelab.lock.FolderBusyError: When another run writes ``out``, or ``src`` (then
            its manifest is incomplete; see ``wait``).
    """
    from tqdm.auto import tqdm

    settings = FaceSettings(crop_size, margin, min_confidence, min_face_px, iou_threshold,
                            detect_max_side, jpeg_quality, crop_style)
    settings.check()
    if max_photos is not None and max_photos < 1:
        raise ValueError("max_photos must be at least 1 (or None for all)")
    out = Path(out)
    rows, root = _read_input(src, out, max_photos, seed, wait)
    if detector is None:
        detector = make_detector(backend, **({"batch_size": batch_size}
                                             if backend == "mtcnn" else {}))
    max_side = detect_max_side or DEFAULT_MAX_SIDE.get(detector.name, 640)
    out.mkdir(parents=True, exist_ok=True)
    run = _Run(rows, absolute_paths(rows, root), out, settings, detector,
               f"{detector.cache_key()}:side{max_side}", max_side,
               DetectionCache(out / CACHE_NAME))
    todo_mask = (rows["status"].astype(str) == OK).to_numpy()
    records: list[dict[str, Any]] = [{} for _ in range(len(rows))]
    for i in np.flatnonzero(~todo_mask):
        records[int(i)] = run.base(int(i))
    todo = [int(i) for i in np.flatnonzero(todo_mask)]
    size = max(1, batch_size) * 8            # detectors sort a chunk by shape
    bar = tqdm(total=len(todo), desc=f"faces ({detector.name})", unit="photo",
               disable=not progress)
    for start in range(0, len(todo), size):
        part = todo[start:start + size]
        chunk = _read_chunk(run, part)
        _detect_chunk(run, chunk)
        for i in part:
            records[i] = _record(run, chunk, i)
        bar.update(len(part))
    bar.close()
    df = _manifest(records)
    write_manifest(df, out)
    write_face_settings(out, settings, detector, max_side)
    df.attrs["faces"] = {"detected": run.stats["detected"], "cached": run.stats["cached"],
                         "detector": run.key}
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
