"""Predictions of a trained model on one split of a stage folder, one row per face.

TensorFlow is imported inside the functions that need it only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:

    from facelab.data.labels import LabelMap


def predict_probs(model: Any, images: Any, *, flip_average: bool = True,
                  batch_size: int = 128) -> np.ndarray:
    """Class probabilities for images (an array, or a dataset of (images, labels) batches).

    Args:
        model: A Keras model with a softmax output.
        images: float32 [N, H, W, 3] in [0, 255], or a ``tf.data.Dataset`` of batches.
        flip_average: Average with the horizontally flipped images (test-time
            augmentation; faces are left/right symmetric).
        batch_size: Batch size for arrays.

    Returns:
        [N, K] probabilities.
    """
    if hasattr(images, "element_spec"):
        out = [predict_probs(model, np.asarray(batch[0] if isinstance(batch, tuple) else batch),
                             flip_average=flip_average, batch_size=batch_size)
               for batch in images]
        return np.concatenate(out) if out else np.zeros((0, model.output_shape[-1]))
    x = np.asarray(images, dtype=np.float32)
    probs = np.asarray(model.predict(x, batch_size=batch_size, verbose=0))
    if flip_average:
        probs = (probs + np.asarray(model.predict(x[:, :, ::-1], batch_size=batch_size,
                                                  verbose=0))) / 2.0
    return probs


def predict_split(model: Any, manifest: pd.DataFrame, split: str, label_map: LabelMap, *,
                  image_size: int, batch_size: int = 128,
                  flip_average: bool = True) -> pd.DataFrame:
    """Predict every face of one split (in manifest order).

    Args:
        model: The trained model.
        manifest: Manifest with absolute ``path``, ``person`` and ``split``.
        split: ``val`` or ``test`` (or ``train``, read without shuffling/augmentation).
        label_map: The map the model was trained with.
        image_size: The model's input size.
        batch_size: Batch size.
        flip_average: Test-time flip averaging.

    Returns:
        One row per face: ``path``, ``person``, ``true`` and ``pred`` (ids),
        ``predicted`` (name), ``confidence``, ``correct``.
    """
    from facelab.data.pipeline import make_dataset

    rows = manifest[manifest["split"] == split].reset_index(drop=True)
    if rows.empty:
        raise ValueError(f"split {split!r} has no rows")
    view = rows.assign(split="val")      # read like val: manifest order, no augmentation
    ds = make_dataset(view, "val", image_size=image_size, batch_size=batch_size,
                      labels=label_map)
    probs = predict_probs(model, ds, flip_average=flip_average, batch_size=batch_size)
    return predictions_frame(rows, probs, label_map)


def predictions_frame(rows: pd.DataFrame, probs: np.ndarray, label_map: LabelMap
                      ) -> pd.DataFrame:
    """One row per face from probabilities already computed (see :func:`predict_split`).

    Args:
        rows: The faces (``path``, ``person``), in the order of ``probs``.
        probs: [N, K] class probabilities.
        label_map: The model's label map.
    """
    rows = rows.reset_index(drop=True)
    probs = np.asarray(probs)
    pred = probs.argmax(axis=1)
    true = label_map.encode(rows["person"].tolist())
    return pd.DataFrame({"path": rows["path"], "person": rows["person"], "true": true,
                         "pred": pred, "predicted": [label_map.names[i] for i in pred],
                         "confidence": probs.max(axis=1), "correct": pred == true})


def portraits(manifest: pd.DataFrame, split: str = "train") -> dict[str, str]:
    """Pick one image per person from one split (the first in manifest order), for galleries.

    Args:
        manifest: Manifest with absolute ``path``, ``person`` and ``split``.
        split: The split to take them from (training portraits by default: the images
            that were scored are never shown as the person's reference).

    Returns:
        Person -> image path.
    """
    rows = manifest[manifest["split"] == split]
    first = rows.drop_duplicates("person", keep="first")
    return dict(zip(first["person"].astype(str), first["path"].astype(str), strict=True))
