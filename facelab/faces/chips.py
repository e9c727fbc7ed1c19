"""Face chips cut the way dlib cuts them, from the detector's five landmarks.

dlib's face-embedding network (:mod:`facelab.learn.face_resnet`) was trained on "chips":
150 x 150 crops in which five landmarks sit at fixed places.  dlib finds those landmarks
with its 5-point shape predictor (two corners of each eye and the base of the nose) inside a
face box, fits a similarity transform (scale, rotation, shift) that takes the landmarks to
a template (``get_face_chip_details``, padding 0.25), and samples the chip bilinearly, from
an image pyramid when it shrinks the face.

facelab's detector gives other landmarks (MTCNN: the eye centres, the nose tip and the
mouth corners).  :data:`MTCNN_TEMPLATE` is where those five points fall, on average, in
dlib's own chips: measured once on real faces (``benchmarks/chip_alignment.py``, which also
measures how close the result is: the embedding of facelab's chip against that of dlib's
chip of the same face).  :func:`cut_chip` then does what dlib does with that template.
No dlib is needed at run time.

Coordinates follow dlib: the centre of pixel (i, j) is the point (i, j).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from PIL import Image

CHIP_SIZE = 150
CHIP_PADDING = 0.25
# dlib's 5-point template (interpolation.h, get_face_chip_details), unit frame before
# padding: right eye outer and inner corner, left eye outer and inner corner, nose base.
DLIB_TEMPLATE = ((0.8595674595992, 0.2134981538014), (0.6460604764104, 0.2289674387677),
                 (0.1205750620789, 0.2137274526848), (0.3340850613712, 0.2290642403242),
                 (0.4901123135679, 0.6277975316475))
# MTCNN's five landmarks in the same unit frame: the mean of where they fall in dlib's
# chips of 1,010 real faces (benchmarks/chip_alignment.py --derive; see docs/faces.md).
MTCNN_TEMPLATE: dict[str, tuple[float, float]] = {
    "left_eye": (0.2144, 0.1884),
    "right_eye": (0.7556, 0.1894),
    "nose": (0.4857, 0.5313),
    "mouth_left": (0.2370, 0.7722),
    "mouth_right": (0.7270, 0.7716),
}


def _image_sides(landmarks: Mapping[str, tuple[float, float]]
                 ) -> dict[str, tuple[float, float]]:
    """Name the eyes and mouth corners by their side in the image (left = smaller x).

    Detectors disagree on whose left is meant (MTCNN: the image's; Cloud Vision: the
    person's); the template's names are the image's.
    """
    named = dict(landmarks)
    for left, right in (("left_eye", "right_eye"), ("mouth_left", "mouth_right")):
        if left in named and right in named and named[left][0] > named[right][0]:
            named[left], named[right] = named[right], named[left]
    return named


def similarity(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares similarity transform (scale, rotation, shift; no reflection) src -> dst.

    Args:
        src: Points [N, 2].
        dst: Their images [N, 2] (N >= 2).

    Returns:
        ``M`` [2, 2] and ``t`` [2] with ``dst ~ src @ M.T + t`` (Umeyama's method, as
        dlib's ``find_similarity_transform``).
    """
    src, dst = np.asarray(src, float), np.asarray(dst, float)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    var = (s ** 2).sum() / len(src)
    cov = d.T @ s / len(src)
    u, sigma, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1
    rotation = u @ sign @ vt
    scale = float(np.trace(np.diag(sigma) @ sign) / var) if var > 0 else 1.0
    m = scale * rotation
    return m, mu_d - m @ mu_s


def template_points(names: list[str], size: int = CHIP_SIZE,
                    padding: float = CHIP_PADDING,
                    template: Mapping[str, tuple[float, float]] | None = None) -> np.ndarray:
    """The chip positions [N, 2] of the named landmarks (dlib's padding rule)."""
    table = MTCNN_TEMPLATE if template is None else template
    unit = np.array([table[name] for name in names], float)
    return (padding + unit) / (2 * padding + 1) * size


def chip_to_image(landmarks: Mapping[str, tuple[float, float]], size: int = CHIP_SIZE,
                  padding: float = CHIP_PADDING,
                  template: Mapping[str, tuple[float, float]] | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The affine map from chip pixels to photo pixels, as dlib extracts a chip.

    dlib fits the similarity template -> landmarks, keeps its rotation and scale, and
    stretches the chip's corner pixels onto the corners of a square of side
    ``size * scale - 1`` centred on the image of the chip's centre (``chip_details``).

    Args:
        landmarks: The face's landmarks by name (photo pixels); those in the template are
            used (at least two).
        size: Chip side.
        padding: dlib's padding around the template.
        template: Unit-frame positions by name (default :data:`MTCNN_TEMPLATE`).

    Returns:
        ``A`` [2, 2] and ``b`` [2]: photo point = ``A @ (column, row) + b``.

    Raises:
        ValueError: When fewer than two template landmarks are given.
    """
    table = MTCNN_TEMPLATE if template is None else template
    if template is None:
        landmarks = _image_sides(landmarks)
    names = [name for name in table if name in landmarks]
    if len(names) < 2:
        raise ValueError(f"a chip needs at least two of the landmarks {sorted(table)}; "
                         f"the face has {sorted(landmarks)}")
    chip = template_points(names, size, padding, table)
    photo = np.array([landmarks[name] for name in names], float)
    m, t = similarity(chip, photo)
    scale = math.hypot(m[0, 0], m[1, 0])
    rotation = m / scale
    centre = m @ np.array([size / 2.0, size / 2.0]) + t
    stretch = (size * scale - 1) / max(size - 1, 1)   # dlib's centered_drect: corner to corner
    a = rotation * stretch
    return a, centre - a @ np.array([(size - 1) / 2.0, (size - 1) / 2.0])


def cut_chip(image: Image.Image, landmarks: Mapping[str, tuple[float, float]],
             size: int = CHIP_SIZE, padding: float = CHIP_PADDING,
             template: Mapping[str, tuple[float, float]] | None = None) -> Image.Image:
    """Cut a dlib-style chip of a face out of a photo.

    Args:
        image: The RGB photo (landmarks in its pixels).
        landmarks: The detector's landmarks by name (MTCNN's five).
        size: Chip side (150 for the face network).
        padding: dlib's padding (0.25, as ``compute_face_descriptor``).
        template: Unit-frame landmark positions by name (default :data:`MTCNN_TEMPLATE`).

    Returns:
        A ``size`` x ``size`` RGB image; parts outside the photo are black.  A face much
        larger than the chip is shrunk by whole factors first (dlib uses an image pyramid),
        so that the bilinear sampling does not alias.
    """
    a, b = chip_to_image(landmarks, size, padding, template)
    step = math.sqrt(abs(np.linalg.det(a)))          # photo pixels per chip pixel
    source = image
    if step >= 2:
        factor = int(step)                           # leaves 1 to 2 photo pixels per chip pixel
        corners = np.array([[0, 0], [size - 1, 0], [0, size - 1], [size - 1, size - 1]], float)
        spots = corners @ a.T + b
        x0, y0 = (math.floor(v) - 2 * factor for v in spots.min(0))
        x1, y1 = (math.ceil(v) + 2 * factor for v in spots.max(0))
        x0, y0 = x0 - x0 % factor, y0 - y0 % factor     # whole blocks: exact geometry
        source = image.crop((x0, y0, x1, y1)).reduce(factor)
        # a reduced pixel k covers photo pixels [x0 + k f, x0 + (k + 1) f): centre at
        # x0 + k f + (f - 1) / 2
        a = a / factor
        b = (b - np.array([x0, y0]) - (factor - 1) / 2.0) / factor
    # PIL maps output pixel centres (u + 0.5) to input positions with centres at + 0.5
    shift = b + 0.5 - a @ np.array([0.5, 0.5])
    data = (a[0, 0], a[0, 1], shift[0], a[1, 0], a[1, 1], shift[1])
    return source.transform((size, size), Image.Transform.AFFINE, data,
                            resample=Image.Resampling.BILINEAR, fillcolor=(0, 0, 0))
