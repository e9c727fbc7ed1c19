"""Augmentation with Keras preprocessing layers (the post's never-finished next step).

With 45 classes x 50 photos the post's model never converged; colour and orientation
augmentation was the plan.  :func:`make_augmentation` returns one ``keras.Sequential`` of
Keras 3 preprocessing layers, tuned for aligned face crops:

* ``RandomFlip("horizontal")`` - faces are left/right symmetric, never upside down;
* ``RandomRotation`` (default +-0.03 turn, about +-11 degrees), ``RandomZoom``,
  ``RandomTranslation`` - small, since the crops are already aligned;
* ``RandomBrightness``, ``RandomContrast``, ``RandomSaturation`` and ``RandomHue`` (colour:
  Keras 3.15 has these; ``RandomColorJitter`` bundles the same four).

The layers are active only when called with ``training=True``, so the same object works

* inside the model (``keras.Sequential([make_augmentation(), ...])``): it is saved and
  exported with the model and is an identity at inference; or
* in the input pipeline (``facelab.data.pipeline.make_dataset(..., augment=layer)``), where it
  runs on the CPU in tf.data, batch by batch.

Eight stock layers mean three separate bilinear warps and two HSV round trips per image,
slow on a CPU (about 90 images/s on the shared 2-core machine).  :func:`fused_augmentation`
is one registered Keras layer (``facelab>FaceAugment``) with the same kinds and strengths:
one warp and one colour matrix per image, about 3.5x faster; ``make_dataset(augment=True)``
uses it.

Images are expected as float32 in ``value_range`` (default [0, 255], what the pipeline
yields).  Keras and TensorFlow are imported inside the functions only.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import keras


def make_augmentation(seed: int | None = None, *, flip: bool = True, rotation: float = 0.03,
                      zoom: float = 0.08, translation: float = 0.06, brightness: float = 0.15,
                      contrast: float = 0.2, saturation: float = 0.08, hue: float = 0.03,
                      value_range: tuple[float, float] = (0, 255),
                      name: str = "augmentation") -> keras.Sequential:
    """Build the augmentation block (a value of 0 leaves that layer out).

    Args:
        seed: Base seed; each layer gets ``seed + i`` (``None``: unseeded).
        flip: Random horizontal flip.
        rotation: Max rotation as a fraction of a full turn (0.03 = +-10.8 degrees).
        zoom: Max zoom in/out as a fraction of the size.
        translation: Max shift as a fraction of height and width.
        brightness: Max brightness change as a fraction of ``value_range``.
        contrast: Max contrast change (factor 1 +- contrast).
        saturation: Saturation change around neutral: the factor is drawn from
            ``0.5 +- saturation`` (Keras: 0.5 is the identity, 0 grey, 1 fully saturated;
            0.08 scales saturation by about 0.7x to 1.4x).
        hue: Max hue shift: Keras shifts by up to ``hue / 2`` of the colour circle.
        value_range: The images' value range.
        name: The Sequential's name.

    Returns:
        A ``keras.Sequential`` of preprocessing layers (identity unless ``training=True``).
    """
    import keras

    def s(i: int) -> int | None:
        return None if seed is None else int(seed) + i

    layers: list[Any] = []
    if flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=s(0)))
    if rotation:
        layers.append(keras.layers.RandomRotation(rotation, fill_mode="reflect", seed=s(1)))
    if zoom:
        layers.append(keras.layers.RandomZoom(zoom, fill_mode="reflect", seed=s(2)))
    if translation:
        layers.append(keras.layers.RandomTranslation(translation, translation,
                                                     fill_mode="reflect", seed=s(3)))
    if brightness:
        layers.append(keras.layers.RandomBrightness(brightness, value_range=value_range,
                                                    seed=s(4)))
    if contrast:
        layers.append(keras.layers.RandomContrast(contrast, value_range=value_range,
                                                  seed=s(5)))
    if saturation:
        layers.append(keras.layers.RandomSaturation((0.5 - saturation, 0.5 + saturation),
                                                    value_range=value_range, seed=s(6)))
    if hue:
        layers.append(keras.layers.RandomHue(hue, value_range=value_range, seed=s(7)))
    return keras.Sequential(layers, name=name)


def load_image(path: str | os.PathLike[str], image_size: int | Sequence[int] | None = None
               ) -> np.ndarray:
    """Read one image as float32 RGB in [0, 255] (optionally resized), with Pillow."""
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert("RGB")
        if image_size is not None:
            size = (image_size, image_size) if isinstance(image_size, int) else \
                (int(image_size[1]), int(image_size[0]))
            img = img.resize(size, Image.Resampling.BILINEAR)
        return np.asarray(img, dtype=np.float32)


def augment_examples(image: np.ndarray | str | os.PathLike[str], layer: Any = None,
                     n: int = 15, seed: int = 0) -> np.ndarray:
    """Return ``n`` augmented copies of one image (float32 [n, H, W, 3], same range).

    Args:
        image: An (H, W, 3) array in [0, 255] or an image file.
        layer: The augmentation (default :func:`make_augmentation` with ``seed``).
        n: Copies.
        seed: Seed of the default augmentation.
    """
    if not isinstance(image, np.ndarray):
        image = load_image(image)
    layer = layer if layer is not None else make_augmentation(seed=seed)
    batch = np.repeat(np.asarray(image, dtype=np.float32)[None], n, axis=0)
    return np.asarray(layer(batch, training=True))


_FUSED: dict[str, type] = {}


# RGB <-> YIQ (NTSC): saturation scales I and Q, a hue shift rotates them.
_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114],
                        [0.595716, -0.274453, -0.321263],
                        [0.211456, -0.522591, 0.311135]], dtype=np.float32)


_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ).astype(np.float32)


def _affine_warp(layer: Any, images: Any, n: Any) -> Any:
    """Flip, rotate, zoom and shift each image with one bilinear affine warp.

    Output pixel -> input pixel = s R F (p - c) + c + t (zoom s, rotation R, mirror F,
    centre c, shift t), drawn per image from ``layer``'s strengths and seed generator.
    """
    from keras import ops

    shape = ops.shape(images)
    h, w = ops.cast(shape[1], "float32"), ops.cast(shape[2], "float32")
    angle = layer._uniform(n, layer.rotation * 2 * np.pi)
    scale = layer._uniform(n, layer.zoom, 1.0)
    mirror = ops.where(layer._uniform(n, 0.5, 0.5) < 0.5, -1.0, 1.0) if layer.flip \
        else ops.ones((n,))
    tx, ty = layer._uniform(n, layer.translation) * w, layer._uniform(n, layer.translation) * h
    cos, sin = ops.cos(angle) * scale, ops.sin(angle) * scale
    a0, a1, b0, b1 = cos * mirror, -sin, sin * mirror, cos
    cx, cy = (w - 1) / 2, (h - 1) / 2
    a2 = cx - a0 * cx - a1 * cy + tx
    b2 = cy - b0 * cx - b1 * cy + ty
    zero = ops.zeros_like(a0)
    transform = ops.stack([a0, a1, a2, b0, b1, b2, zero, zero], axis=1)
    return ops.image.affine_transform(images, transform, interpolation="bilinear",
                                      fill_mode="reflect")


def _recolour(layer: Any, images: Any, n: Any) -> Any:
    """Saturation and hue (one 3x3 YIQ matrix per image), then contrast and brightness.

    Works on values scaled to [0, 1] from ``layer.value_range`` and clipped there.
    """
    from keras import ops

    low, high = layer.value_range
    x = (images - low) / (high - low)
    m = layer._uniform(n, layer.saturation, 0.5)
    m = m / (1.0 - m)                                   # Keras' saturation factor
    theta = layer._uniform(n, layer.hue * np.pi)        # hue shift <= hue / 2 turn
    one, zero = ops.ones_like(m), ops.zeros_like(m)
    chroma = ops.stack([ops.stack([one, zero, zero], 1),
                        ops.stack([zero, m * ops.cos(theta), -m * ops.sin(theta)], 1),
                        ops.stack([zero, m * ops.sin(theta), m * ops.cos(theta)], 1)],
                       axis=1)                         # (n, 3, 3)
    matrix = ops.matmul(ops.matmul(ops.convert_to_tensor(_YIQ_TO_RGB), chroma),
                        ops.convert_to_tensor(_RGB_TO_YIQ))
    x = ops.einsum("nhwc,ndc->nhwd", x, matrix)
    mean = ops.mean(x, axis=(1, 2), keepdims=True)
    c = ops.reshape(layer._uniform(n, layer.contrast, 1.0), (-1, 1, 1, 1))
    delta = ops.reshape(layer._uniform(n, layer.brightness), (-1, 1, 1, 1))
    x = ops.clip((x - mean) * c + mean + delta, 0.0, 1.0)
    return x * (high - low) + low


def fused_layer_class() -> type:
    """Return (defining and registering it once) the fused ``facelab>FaceAugment`` layer.

    Call this before ``keras.models.load_model`` of a model that contains the layer
    (importing Keras at facelab import time is avoided on purpose).
    """
    if "FaceAugment" in _FUSED:
        return _FUSED["FaceAugment"]
    import keras
    from keras import ops

    @keras.saving.register_keras_serializable(package="facelab")
    class FaceAugment(keras.layers.Layer):
        """Flip, rotation, zoom, translation (one affine warp) and colour (one matrix).

        The same kinds and default strengths as :func:`make_augmentation`, fused: the
        geometric part is a single bilinear ``affine_transform`` per image (instead of
        three), brightness and contrast are an affine map of the values, and saturation and
        hue one 3x3 matrix per image in YIQ space (saturation scales the chroma, hue
        rotates it).  Identity unless ``training=True``.
        """

        def __init__(self, flip: bool = True, rotation: float = 0.03, zoom: float = 0.08,
                     translation: float = 0.06, brightness: float = 0.15,
                     contrast: float = 0.2, saturation: float = 0.08, hue: float = 0.03,
                     value_range: Sequence[float] = (0, 255), seed: int | None = None,
                     **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.flip, self.rotation, self.zoom = bool(flip), float(rotation), float(zoom)
            self.translation, self.brightness = float(translation), float(brightness)
            self.contrast, self.saturation, self.hue = (float(contrast), float(saturation),
                                                        float(hue))
            self.value_range = tuple(float(v) for v in value_range)
            self.seed = seed
            self.seed_generator = keras.random.SeedGenerator(seed)
            self.supports_masking = False

        def _uniform(self, n: Any, bound: float, centre: float = 0.0) -> Any:
            return keras.random.uniform((n,), centre - bound, centre + bound,
                                        seed=self.seed_generator)

        def call(self, images: Any, training: bool = True) -> Any:
            if not training:
                return images
            images = ops.cast(images, "float32")
            n = ops.shape(images)[0]
            return _recolour(self, _affine_warp(self, images, n), n)

        def compute_output_shape(self, input_shape: Any) -> Any:
            return input_shape

        def get_config(self) -> dict[str, Any]:
            config = super().get_config()
            config.update(flip=self.flip, rotation=self.rotation, zoom=self.zoom,
                          translation=self.translation, brightness=self.brightness,
                          contrast=self.contrast, saturation=self.saturation, hue=self.hue,
                          value_range=list(self.value_range), seed=self.seed)
            return config

    _FUSED["FaceAugment"] = FaceAugment
    return FaceAugment


def fused_augmentation(seed: int | None = None, **strengths: Any) -> keras.layers.Layer:
    """Build the fused augmentation layer (about 3-5x faster than :func:`make_augmentation`).

    Same kinds and default strengths; one warp and one colour matrix per image.  The
    default of ``facelab.data.pipeline.make_dataset(augment=True)``.  Inside a saved model it
    needs :func:`fused_layer_class` (or ``import facelab.data.augment`` + that call) before
    loading; :func:`make_augmentation` (stock Keras layers) has no such need.

    Args:
        seed: Seed of the random draws.
        **strengths: ``flip``, ``rotation``, ``zoom``, ``translation``, ``brightness``,
            ``contrast``, ``saturation``, ``hue``, ``value_range`` as in
            :func:`make_augmentation`.
    """
    return fused_layer_class()(seed=seed, name="face_augment", **strengths)
