"""Photos in, aligned square face crops out: decoding, the detection copy, eye alignment."""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
from PIL import Image, ImageOps

from facelab.faces.base import Face

CROP_STYLES = ("chip", "square")


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


def cut_face(image: Image.Image, face: Face, style: str = "chip", size: int = 150,
             margin: float = 0.25) -> Image.Image:
    """Cut a face in the face stage's ``crop_style``.

    Args:
        image: The full-resolution RGB photo (``face`` in its coordinates).
        face: The face.
        style: ``"chip"`` (dlib's alignment from the landmarks,
            :func:`facelab.faces.chips.cut_chip`) or ``"square"`` (:func:`align_crop`).
        size: Output side in pixels.
        margin: The square crop's margin (a chip's padding is dlib's, 0.25).

    Raises:
        ValueError: For an unknown style, or a chip of a face without landmarks.
    """
    if style == "square":
        return align_crop(image, face, size, margin)
    if style != "chip":
        raise ValueError(f"unknown crop style {style!r}: use one of {list(CROP_STYLES)}")
    from facelab.faces.chips import cut_chip

    return cut_chip(image, face.landmarks, size)
