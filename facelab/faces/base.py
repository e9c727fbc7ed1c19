"""What every detector backend shares: :class:`Face`, :class:`DetectionFailure`, :class:`Detector`.

A backend is a class with a ``name``, a ``cache_key()`` and ``detect(images)``: a list of RGB
``uint8`` arrays in, one list of :class:`Face` (or a :class:`DetectionFailure`) per image out.
To add one, write ``facelab/faces/<backend>.py`` and name it in
:func:`facelab.faces.filter.make_detector`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

LANDMARKS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


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
