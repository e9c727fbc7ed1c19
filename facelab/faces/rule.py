"""The one-face rule: which detection (if any) is the labelled person's face.

A photo is kept when exactly one confident face is found, or, when the source gives the
labelled face's ``rect``, when exactly one confident detection overlaps it.  Every other
photo gets one of the statuses below and a reason a person can read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from facelab.faces.base import Face
from facelab.manifest import (
    OK,
)

NO_FACE = "no_face"


LOW_CONFIDENCE = "low_confidence"


MULTIPLE_FACES = "multiple_faces"


RECT_MISMATCH = "rect_mismatch"


FACE_TOO_SMALL = "face_too_small"


UNREADABLE = "unreadable"


DETECTOR_ERROR = "detector_error"


STATUSES = (OK, NO_FACE, LOW_CONFIDENCE, MULTIPLE_FACES, RECT_MISMATCH, FACE_TOO_SMALL,
            UNREADABLE, DETECTOR_ERROR)


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``(x0, y0, x1, y1)`` boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


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
