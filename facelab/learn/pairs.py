"""A remedy for swallowed classes: more training on the look-alike pairs, drawn together.

A model that merges two look-alikes (A's faces named B) has not learned what tells them
apart: a per-class threshold cannot fix that, because A's and B's faces get the same
scores.  :func:`refine` continues training a finished model for a few epochs with
**pair-aware sampling**: part of the batches hold only the confused classes (each pair's
faces drawn together, class-balanced), so every such step is about telling A from B; the
other batches are the usual balanced draws over all classes, so the rest is not forgotten.
BatchNorm statistics stay frozen (pair-only batches would skew them).

The pairs come from :func:`facelab.analysis.bias_verdict` **on the validation split**
(:func:`pairs_to_refine`): the split that chooses; the test split is scored once, after.

TensorFlow is imported inside the functions only.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import pandas as pd

from facelab.analysis.bias import Verdict

log = logging.getLogger(__name__)


def pairs_to_refine(verdict: Verdict, predictions: pd.DataFrame | None = None, *,
                    min_share: float = 0.2, min_count: int = 3) -> list[tuple[str, str]]:
    """The pairs to refine on: what the verdict found, and other strongly confused pairs.

    Args:
        verdict: :func:`facelab.analysis.bias_verdict`, on the **validation** split.
        predictions: The same split's predictions
            (:func:`facelab.analysis.predict_split`); when given, any (A, B) that takes
            ``min_share`` of A's faces (and ``min_count`` of them) is added: a pair that
            is only starting to merge.
        min_share: Smallest share of A's faces named B for such an extra pair.
        min_count: Smallest count of them.

    Returns:
        Unique (class, absorber) name pairs: swallowed classes first, then one-way pairs,
        then the extra pairs (a pair and its reverse count once).
    """
    found = [(str(o["class"]), str(o["absorber"])) for o in verdict.swallowed.offenders
             if o["absorber"]]
    found += [(str(p["true"]), str(p["predicted"])) for p in verdict.pairs.pairs]
    if predictions is not None and len(predictions):
        support = predictions["person"].value_counts()
        wrong = predictions[predictions["person"] != predictions["predicted"]]
        counts = wrong.groupby(["person", "predicted"]).size().sort_values(ascending=False)
        found += [(str(a), str(b)) for (a, b), n in counts.items()
                  if n >= min_count and n / support[a] >= min_share]
    unique: list[tuple[str, str]] = []
    for pair in found:
        if pair not in unique and pair[::-1] not in unique:
            unique.append(pair)
    return unique


def pair_aware_dataset(manifest: pd.DataFrame, label_map: Any,
                       pairs: Sequence[tuple[str, str]], *, image_size: int,
                       batch_size: int = 64, pair_share: float = 0.5, seed: int = 0) -> Any:
    """Training batches of which ``pair_share`` hold only the confused pairs' faces.

    Args:
        manifest: Manifest with absolute ``path``, ``person`` and ``split``.
        label_map: The model's label map.
        pairs: (class, absorber) names, e.g. :func:`pairs_to_refine`.
        image_size: The model's input size.
        batch_size: Batch size.
        pair_share: Share of the batches drawn from the pairs only.
        seed: Seed of the draws.

    Returns:
        A finite ``tf.data.Dataset`` of (images, one-hot) batches: one epoch of as many
        batches as the training split fills.

    Raises:
        ValueError: No pairs, a share outside (0, 1), or a class without training faces.
    """
    import tensorflow as tf

    from facelab.data.pipeline import make_dataset

    if not pairs:
        raise ValueError("no confused pairs to refine on: the verdict found none")
    if not 0 < pair_share < 1:
        raise ValueError(f"pair_share={pair_share} must be between 0 and 1")
    train = manifest[manifest["split"] == "train"]
    classes = sorted({name for pair in pairs for name in pair})
    missing = [c for c in classes if c not in set(train["person"])]
    if missing:
        raise ValueError(f"no training faces for {missing}: check the pairs' names")
    n_batches = max(1, -(-len(train) // batch_size))
    common = {"image_size": image_size, "batch_size": batch_size, "labels": label_map,
              "cache": True, "drop_remainder": True}
    everyone = make_dataset(train, "train", seed=seed, **common,
                            epoch_size=n_batches * batch_size).repeat()
    together = make_dataset(train[train["person"].isin(classes)], "train", seed=seed + 1,
                            **common, epoch_size=n_batches * batch_size).repeat()
    mixed = tf.data.Dataset.sample_from_datasets([everyone, together],
                                                 weights=[1 - pair_share, pair_share],
                                                 seed=seed)
    return mixed.take(n_batches).prefetch(tf.data.AUTOTUNE)


def refine(model: Any, manifest: pd.DataFrame, label_map: Any,
           pairs: Sequence[tuple[str, str]], *, image_size: int, epochs: int = 4,
           batch_size: int = 64, peak_lr: float = 1e-3, pair_share: float = 0.5,
           weight_decay: float = 5e-4, label_smoothing: float = 0.1, seed: int = 0,
           verbose: int | str = 0) -> Any:
    """Continue training ``model`` on pair-aware batches (in place) and return it.

    Args:
        model: A trained Keras model (e.g. ``facelab.learn.load_model(".../model.keras")``).
        manifest: Manifest with absolute ``path``, ``person`` and ``split``.
        label_map: The model's label map.
        pairs: (class, absorber) names from the **validation** verdict
            (:func:`pairs_to_refine`).
        image_size: The model's input size.
        epochs: Extra epochs (each as many batches as one pass over the training split).
        batch_size: Batch size.
        peak_lr: Learning rate at the start (cosine decay to 1% of it).
        pair_share: Share of the batches that hold only the pairs' faces.
        weight_decay: AdamW weight decay.
        label_smoothing: Cross-entropy label smoothing.
        seed: Seed of the draws and of Keras.
        verbose: ``model.fit`` verbosity.

    Returns:
        The same model, refined (its Keras ``History`` is ``model.history``); unchanged
        when ``pairs`` is empty (a quiet verdict: nothing to refine).
    """
    import keras

    from facelab.learn.model import compile_model

    if epochs < 1:
        raise ValueError(f"epochs={epochs} must be >= 1")
    if not pairs:
        log.info("no confused pairs: the model is left as it is")
        return model
    keras.utils.set_random_seed(seed)
    data = pair_aware_dataset(manifest, label_map, pairs, image_size=image_size,
                              batch_size=batch_size, pair_share=pair_share, seed=seed)
    steps = int(data.cardinality())
    for layer in model.layers:     # pair-only batches must not move the BatchNorm statistics
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    compile_model(model, epochs * steps, peak_lr=peak_lr, weight_decay=weight_decay,
                  label_smoothing=label_smoothing)
    model.fit(data.repeat(), epochs=epochs, steps_per_epoch=steps, verbose=verbose)
    return model
