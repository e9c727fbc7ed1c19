"""A remedy for swallowed classes: more training on the look-alike pairs, drawn together.

A model that merges two look-alikes (A's faces named B) has not learned what tells them
apart: a per-class threshold cannot fix that, because A's and B's faces get the same
scores.  :func:`refine` continues training a finished model for a few epochs with
**pair-aware sampling**: part of the batches hold only the confused classes (each pair's
faces drawn together, class-balanced), so every such step is about telling A from B; the
other batches are the usual balanced draws over all classes, so the rest is not forgotten.
BatchNorm statistics stay frozen (pair-only batches would skew them).  A single run of it
is a gamble on a small class (one seed lifts it, the next sinks it), so by default the
validation split is scored after every epoch and the best epoch is kept, never one that
lowers the balanced accuracy (``docs/analysis.md`` has the spread over seeds).

The pairs come from :func:`facelab.analysis.bias_verdict` **on the validation split**
(:func:`pairs_to_refine`): the split that chooses; the test split is scored once, after.

TensorFlow is imported inside the functions only.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
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
           pairs: Sequence[tuple[str, str]], *, image_size: int, epochs: int = 10,
           batch_size: int = 64, peak_lr: float = 1e-3, pair_share: float = 0.5,
           weight_decay: float = 5e-4, label_smoothing: float = 0.1, keep_best: bool = True,
           flip_average: bool = True, seed: int = 0, verbose: int | str = 0) -> Any:
    """Continue training ``model`` on pair-aware batches (in place) and return it.

    Args:
        model: A trained Keras model (e.g. ``facelab.learn.load_model(".../model.keras")``).
        manifest: Manifest with absolute ``path``, ``person`` and ``split``.
        label_map: The model's label map.
        pairs: (class, absorber) names from the **validation** verdict
            (:func:`pairs_to_refine`).
        image_size: The model's input size.
        epochs: Extra epochs (each as many batches as one pass over the training split);
            with ``keep_best``, the most that are kept.
        batch_size: Batch size.
        peak_lr: Learning rate at the start (cosine decay to 1% of it).
        pair_share: Share of the batches that hold only the pairs' faces.
        weight_decay: AdamW weight decay.
        label_smoothing: Cross-entropy label smoothing.
        keep_best: Score the validation split before refining and after each epoch, and
            keep the weights with the highest lowest class recall (then balanced accuracy)
            among those whose balanced accuracy is not below the model's as it came: the
            model as it came when no epoch beats it.  Without validation faces, the last
            epoch's weights.
        flip_average: Score the validation split with test-time flip averaging (as the
            recipe).
        seed: Seed of the draws and of Keras.
        verbose: ``model.fit`` verbosity.

    Returns:
        The same model, refined (its Keras ``History`` is ``model.history``; with
        ``keep_best``, the validation figures per epoch are in its ``history`` as
        ``val_lowest_recall`` and ``val_balanced_accuracy``, the epoch kept as
        ``refined_epoch``: 0 is the model as it came); unchanged when ``pairs`` is empty
        (a quiet verdict: nothing to refine).
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
    watch = _best_on_val(manifest, label_map, image_size, flip_average) \
        if keep_best and (manifest["split"] == "val").any() else None
    compile_model(model, epochs * steps, peak_lr=peak_lr, weight_decay=weight_decay,
                  label_smoothing=label_smoothing)
    model.fit(data.repeat(), epochs=epochs, steps_per_epoch=steps, verbose=verbose,
              shuffle=False,   # the dataset comes shuffled (Keras warns otherwise)
              callbacks=[watch] if watch else None)
    if watch is not None:
        watch.restore(model)
    return model


def _val_figures(model: Any, images: np.ndarray, labels: np.ndarray, names: list[str],
                 flip_average: bool) -> tuple[float, float]:
    """The lowest class recall and the balanced accuracy of ``model`` on ``images``."""
    from facelab.analysis.bias import per_class_table
    from facelab.analysis.predictions import predict_probs

    pred = predict_probs(model, images, flip_average=flip_average).argmax(axis=1)
    table = per_class_table(labels, pred, names)
    recall = table.loc[table["support"] > 0, "recall"]
    return float(recall.min()), float(recall.mean())


def _best_on_val(manifest: pd.DataFrame, label_map: Any, image_size: int,
                 flip_average: bool) -> Any:
    """A Keras callback that keeps the weights of the best validation epoch (see refine)."""
    import keras

    from facelab.data.pipeline import make_dataset

    rows = manifest[manifest["split"] == "val"]
    images = np.concatenate([np.asarray(x) for x, _ in make_dataset(   # decoded once
        rows, "val", image_size=image_size, batch_size=128, labels=label_map)])
    labels = np.asarray(label_map.encode(rows["person"].tolist()))
    names = list(label_map.names)

    class BestOnVal(keras.callbacks.Callback):
        """Score val before training and after each epoch; keep the best weights."""

        def __init__(self) -> None:
            super().__init__()
            self.scores: list[tuple[float, float]] = []
            self.best: tuple[tuple[float, float], int, list[Any]] | None = None

        def _score(self, epoch: int) -> tuple[float, float]:
            score = _val_figures(self.model, images, labels, names, flip_average)
            self.scores.append(score)
            if self.best is None or (score[1] >= self.scores[0][1] and score > self.best[0]):
                self.best = (score, epoch, self.model.get_weights())
            return score

        def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
            self._score(0)

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            lowest, balanced = self._score(epoch + 1)
            if logs is not None:
                logs.update(val_lowest_recall=lowest, val_balanced_accuracy=balanced)

        def restore(self, model: Any) -> None:
            if self.best is None:       # training never began
                return
            (lowest, balanced), epoch, weights = self.best
            model.set_weights(weights)
            if model.history is not None:
                model.history.history["refined_epoch"] = [epoch]
            log.info("refining kept epoch %d of %d (validation: lowest recall %.2f, "
                     "balanced accuracy %.3f; before: %.2f, %.3f)", epoch,
                     len(self.scores) - 1, lowest, balanced, *self.scores[0])

    return BestOnVal()
