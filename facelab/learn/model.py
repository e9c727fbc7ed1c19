"""The model: a compact from-scratch CNN (the default) or a Keras application backbone.

The blog post's network never converged on 45 classes x 50 photos.  Pretrained weights
are not assumed (they need the internet), so the default is a small VGG-style CNN that
trains from scratch on a CPU in minutes:

* input: float32 RGB in [0, 255] (what :func:`facelab.data.pipeline.make_dataset` yields),
  rescaled inside the model, so a saved ``model.keras`` takes raw pixels;
* optional augmentation block (:func:`facelab.data.augment.fused_augmentation`, as
  ``facelab fit`` uses, or :func:`facelab.data.augment.make_augmentation`) as the first layer:
  active only in training, saved with the model (load with :func:`load_model`);
* a stride-2 stem, then stages of 3x3 conv + BatchNorm + ReLU with max-pooling between
  them, global average pooling, dropout and the head (:mod:`facelab.learn.heads`: a dense
  softmax layer by default, or a cosine head trained with a margin).  BatchNorm's moving
  statistics use momentum 0.9 (Keras' 0.99 needs hundreds of steps to settle, more than
  a small data set gives in a few epochs).

:func:`compile_model` sets the recipe's optimiser: AdamW with a linear warm-up then
cosine decay (a ``LearningRateSchedule`` driven by the optimiser's step counter, so a
resumed run continues the schedule), and the head's loss (label-smoothed cross-entropy,
or the cosine margin loss for a cosine head).

Keras is imported inside the functions only.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from facelab.learn.heads import add_head, cosine_layer_class, head_loss, margin_loss_class

if TYPE_CHECKING:
    import keras

DEFAULT_WIDTHS = (32, 64, 128, 256)
DEFAULT_BLOCKS = (1, 2, 2, 1)
BACKBONES = ("MobileNetV2", "MobileNetV3Small", "EfficientNetB0", "ResNet50")


def build_cnn(num_classes: int, image_size: int = 64, *,
              widths: Sequence[int] = DEFAULT_WIDTHS, blocks: Sequence[int] = DEFAULT_BLOCKS,
              stem_stride: int = 2, dropout: float = 0.3, augmentation: Any = None,
              head: str = "softmax", seed: int | None = 0, name: str = "facelab_cnn"
              ) -> keras.Model:
    """Build the from-scratch CNN (the default model).

    Args:
        num_classes: K, the softmax size.
        image_size: Input height and width (square crops).
        widths: Filters of each stage (the first is also the stem's).
        blocks: Conv layers per stage (same length as ``widths``).
        stem_stride: Stride of the first conv (2 halves the resolution cheaply).
        dropout: Dropout rate before the head.
        augmentation: A Keras layer applied first (active only in training), e.g.
            :func:`facelab.data.augment.make_augmentation`; ``None`` for none.
        head: ``"cosine"`` or ``"softmax"`` (see :func:`facelab.learn.heads.add_head`).
        seed: Seed of the weight initialisers and dropout.
        name: The model's name.

    Returns:
        An uncompiled ``keras.Model`` taking float32 [0, 255] RGB images.

    Raises:
        ValueError: For fewer than 2 classes, a tiny image size or mismatched stages.
    """
    import keras
    from keras import layers

    _check(num_classes, image_size)
    if len(widths) != len(blocks) or not widths:
        raise ValueError(f"widths {tuple(widths)} and blocks {tuple(blocks)} must have the "
                         "same, non-zero length")
    init = keras.initializers.HeNormal(seed=seed)
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = inputs
    if augmentation is not None:
        x = augmentation(x)
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(x)
    x = layers.Conv2D(widths[0], 3, strides=stem_stride, padding="same", use_bias=False,
                      kernel_initializer=init, name="stem_conv")(x)
    x = layers.BatchNormalization(momentum=0.9, name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    for stage, (width, count) in enumerate(zip(widths, blocks, strict=True)):
        for i in range(int(count)):
            prefix = f"s{stage}_c{i}"
            x = layers.Conv2D(int(width), 3, padding="same", use_bias=False,
                              kernel_initializer=init, name=f"{prefix}_conv")(x)
            x = layers.BatchNormalization(momentum=0.9, name=f"{prefix}_bn")(x)
            x = layers.ReLU(name=f"{prefix}_relu")(x)
        if stage < len(widths) - 1:
            x = layers.MaxPooling2D(name=f"s{stage}_pool")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = add_head(x, num_classes, head=head, dropout=dropout, seed=seed)
    return keras.Model(inputs, outputs, name=name)


def build_backbone_model(num_classes: int, image_size: int = 96, *,
                         backbone: str = "MobileNetV2", weights: str | None = None,
                         dropout: float = 0.3, augmentation: Any = None,
                         trainable: bool = True, head: str = "softmax") -> keras.Model:
    """Build a classifier on a ``keras.applications`` backbone.

    Args:
        num_classes: K.
        image_size: Input height and width (>= 32; ImageNet weights prefer 96-224).
        backbone: One of :data:`BACKBONES`.
        weights: ``None`` (random init, works offline) or ``"imagenet"`` (downloads the
            weights once: needs the internet).
        dropout: Dropout before the softmax layer.
        augmentation: Optional Keras layer applied first (training only).
        trainable: Whether the backbone's weights are trained (set False to train only
            the head on top of frozen ImageNet features first).
        head: ``"cosine"`` or ``"softmax"`` (see :func:`facelab.learn.heads.add_head`).

    Returns:
        An uncompiled model taking float32 [0, 255] RGB images (each backbone's own
        ``preprocess_input`` is applied inside).

    Raises:
        ValueError: For an unknown backbone or weights value.
    """
    import keras
    from keras import layers

    _check(num_classes, image_size)
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}: use one of {list(BACKBONES)}")
    if weights not in (None, "imagenet"):
        raise ValueError(f"weights={weights!r}: use None (offline) or 'imagenet' (internet)")
    apps = keras.applications
    constructors = {"MobileNetV2": (apps.MobileNetV2, apps.mobilenet_v2.preprocess_input),
                    "MobileNetV3Small": (apps.MobileNetV3Small, None),
                    "EfficientNetB0": (apps.EfficientNetB0, None),
                    "ResNet50": (apps.ResNet50, apps.resnet50.preprocess_input)}
    constructor, preprocess = constructors[backbone]
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = inputs
    if augmentation is not None:
        x = augmentation(x)
    if preprocess is not None:
        x = layers.Lambda(preprocess, name="preprocess")(x)
    base = constructor(include_top=False, weights=weights,
                       input_shape=(image_size, image_size, 3), pooling="avg")
    base.trainable = trainable
    x = base(x)
    outputs = add_head(x, num_classes, head=head, dropout=dropout, seed=None)
    return keras.Model(inputs, outputs, name=f"facelab_{backbone.lower()}")


def build_model(num_classes: int, image_size: int = 64, *, arch: str = "cnn",
                weights: str | None = None, augmentation: Any = None,
                **kwargs: Any) -> keras.Model:
    """Build the default CNN (``arch="cnn"``) or a backbone model.

    ``arch`` is ``"cnn"`` or a name in :data:`BACKBONES`; extra keyword arguments go to
    the chosen builder (:func:`build_cnn` or :func:`build_backbone_model`).
    """
    if arch == "cnn":
        if weights is not None:
            raise ValueError("the from-scratch CNN has no pretrained weights: pass "
                             "weights=None or choose a backbone arch")
        return build_cnn(num_classes, image_size, augmentation=augmentation, **kwargs)
    return build_backbone_model(num_classes, image_size, backbone=arch, weights=weights,
                                augmentation=augmentation, **kwargs)


def load_model(path: str | os.PathLike[str], compile: bool = True) -> keras.Model:  # noqa: A002
    """Load a saved ``.keras`` model, including facelab's own layers and loss.

    Args:
        path: A ``model.keras`` written by :mod:`facelab.learn.training` / ``facelab fit``.
        compile: Restore the optimiser and loss too (``False``: inference only, faster).
    """
    import keras

    from facelab.data.augment import fused_layer_class
    from facelab.learn.face_resnet import pad_add_class

    fused_layer_class()     # registers facelab>FaceAugment for deserialisation
    cosine_layer_class()    # and facelab>CosineSoftmax, facelab>CosineMarginLoss
    margin_loss_class()
    pad_add_class()         # and the face network's facelab>PadAdd
    return keras.models.load_model(path, compile=compile)


def lr_schedule(total_steps: int, peak_lr: float = 3e-3, warmup_steps: int = 0,
                final_fraction: float = 0.01) -> Any:
    """Linear warm-up from ``peak_lr / 10`` to ``peak_lr``, then cosine decay.

    Args:
        total_steps: Optimiser steps of the whole run (epochs x steps per epoch).
        peak_lr: The learning rate after warm-up.
        warmup_steps: Warm-up steps (0: start at the peak).
        final_fraction: The last learning rate as a fraction of the peak.

    Returns:
        A ``keras.optimizers.schedules.CosineDecay`` (serialisable, resumable).
    """
    import keras

    warmup_steps = int(max(0, min(warmup_steps, total_steps - 1)))
    decay = max(1, int(total_steps) - warmup_steps)
    if warmup_steps:
        return keras.optimizers.schedules.CosineDecay(
            peak_lr / 10.0, decay_steps=decay, alpha=final_fraction,
            warmup_target=peak_lr, warmup_steps=warmup_steps)
    return keras.optimizers.schedules.CosineDecay(peak_lr, decay_steps=decay,
                                                  alpha=final_fraction)


def compile_model(model: keras.Model, total_steps: int, *, peak_lr: float = 3e-3,
                  warmup_steps: int = 0, weight_decay: float = 5e-4,
                  label_smoothing: float = 0.1, margin: float = 0.35) -> keras.Model:
    """Compile with the recipe: AdamW + warm-up/cosine schedule + label smoothing.

    Args:
        model: A model whose last layer is named ``softmax`` (either head).
        total_steps: Optimiser steps of the whole run (for the schedule).
        peak_lr: Peak learning rate.
        warmup_steps: Linear warm-up steps.
        weight_decay: AdamW's decoupled weight decay.
        label_smoothing: Cross-entropy label smoothing of a softmax head (0 = none).
        margin: The cosine margin of a cosine head's loss.

    Returns:
        The same model, compiled with accuracy as metric.
    """
    import keras

    optimizer = keras.optimizers.AdamW(lr_schedule(total_steps, peak_lr, warmup_steps),
                                       weight_decay=weight_decay)
    model.compile(optimizer=optimizer, loss=head_loss(model, margin, label_smoothing),
                  metrics=["accuracy"])
    return model


def _check(num_classes: int, image_size: int) -> None:
    if int(num_classes) < 2:
        raise ValueError(f"num_classes={num_classes}: a classifier needs at least 2 classes")
    if int(image_size) < 32:
        raise ValueError(f"image_size={image_size} is too small: use 32 or more")
