"""Transfer from the pretrained face network (``arch="face-resnet"``): a head, then fine-tuning.

With twenty photos a person, a network trained from scratch cannot learn what makes a face
someone's; dlib's network (:mod:`facelab.learn.face_resnet`), trained on millions of faces,
already knows.  ``facelab fit --arch face-resnet`` therefore

1. embeds every chip once (cached: :mod:`facelab.learn.embeddings`), each chip and its
   mirror image;
2. trains a **head** on the training split's embeddings (both mirror images as samples): a
   unit-length normalisation and a dense softmax layer that starts as the nearest class
   mean (:func:`build_head`), balanced with class weights, the epoch of lowest validation
   loss kept: seconds on a CPU;
3. optionally **fine-tunes** (``fine_tune_epochs`` > 0): the last two stages of the network
   are unfrozen and trained with the head, a tenth of the recipe's learning rate, the
   recipe's augmentation and tf.data pipeline (:func:`fine_tune`);
4. assembles chip -> network -> head as one Keras model (:func:`assemble`), the
   ``model.keras`` that ``facelab predict`` and ``facelab export`` use.

Keras is imported inside the functions only.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from facelab.learn.openset import unit

HEAD_BATCH = 256
MIN_HEAD_STEPS = 8          # batches per epoch at least (smaller batches on few faces)
CENTROID_SCALE = 16.0       # the head starts as cosines to the class means x this
TRAINABLE_PREFIXES = ("s3_", "s4_", "embedding")  # the last two stages and the projection
FINE_TUNE_LR_FACTOR = 0.1


def build_head(num_classes: int, dim: int = 128, seed: int = 0,
               centroids: np.ndarray | None = None) -> Any:
    """The head on embeddings: unit length, then a dense softmax layer named ``softmax``.

    With ``centroids`` ([K, D], unit), the layer starts as the nearest class mean (its
    weights are ``CENTROID_SCALE`` x the centroids): training refines a good classifier
    instead of finding one from noise, which a few photos a person cannot do.
    """
    import keras

    inputs = keras.Input((dim,), name="embedding")
    x = keras.layers.UnitNormalization(name="unit")(inputs)
    init: Any = keras.initializers.GlorotUniform(seed=seed)
    if centroids is not None:
        init = keras.initializers.Constant(CENTROID_SCALE * np.asarray(centroids).T)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="softmax",
                                 kernel_initializer=init)(x)
    return keras.Model(inputs, outputs, name="face_head")


def head_outputs(head: Any, emb: np.ndarray, flip_average: bool = True
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and features of embeddings ``[N, 2, D]``, as the assembled model gives.

    The features are the head's ``softmax`` input (unit embeddings), averaged with the
    mirror image's when ``flip_average`` is on, exactly as
    :func:`facelab.learn.openset.probs_and_embeddings` averages the assembled model's.
    """
    if len(emb) == 0:
        k = int(head.output_shape[-1])
        return np.zeros((0, k), np.float32), np.zeros((0, emb.shape[-1]), np.float32)

    def run(x: np.ndarray) -> np.ndarray:       # eager calls: no tf.function to retrace
        return np.concatenate([np.asarray(head(x[i:i + 4096], training=False))
                               for i in range(0, len(x), 4096)])

    probs = run(emb[:, 0].astype(np.float32))
    feats = unit(emb[:, 0])
    if flip_average:
        probs = (probs + run(emb[:, 1].astype(np.float32))) / 2
        feats = (feats + unit(emb[:, 1])) / 2
    return probs, feats


def _head_data(emb: np.ndarray, labels: np.ndarray, num_classes: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """Both mirror images as samples, one-hot labels."""
    x = np.concatenate([emb[:, 0], emb[:, 1]]).astype(np.float32)
    y = np.eye(num_classes, dtype=np.float32)[np.concatenate([labels, labels])]
    return x, y


def _compiled_head(num_classes: int, dim: int, recipe: Any, steps: int,
                   centroids: np.ndarray) -> Any:
    from facelab.learn.model import compile_model

    head = build_head(num_classes, dim, recipe.seed, centroids)
    return compile_model(head, recipe.epochs * steps, peak_lr=recipe.peak_lr,
                         warmup_steps=recipe.warmup_epochs * steps,
                         weight_decay=recipe.weight_decay,
                         label_smoothing=recipe.label_smoothing)


def train_head(emb: np.ndarray, labels: np.ndarray, num_classes: int, recipe: Any, *,
               val: tuple[np.ndarray, np.ndarray] | None = None,
               class_weight: dict[int, float] | None = None,
               out_dir: str | Path | None = None, retrain: bool = False,
               verbose: int | str = 0) -> tuple[Any, Any]:
    """Train the head on embeddings of the training faces.

    Args:
        emb: Training embeddings ``[N, 2, D]`` (each face and its mirror image).
        labels: Their class ids ``[N]``.
        num_classes: K.
        recipe: The recipe (epochs, learning rate, warm-up, weight decay, smoothing, seed).
        val: Validation embeddings and ids: the best epoch is kept (with ``out_dir``).
        class_weight: Per-class loss weights (balance).
        out_dir: A run folder (:func:`facelab.learn.training.train`: history, best
            checkpoint, resumable); ``None`` trains in memory for the fixed epochs (folds).
        retrain: Start the run in ``out_dir`` over.
        verbose: Keras verbosity.

    Returns:
        The trained head and the :class:`facelab.learn.training.TrainResult` (``None`` in
        memory).
    """
    import keras

    from facelab.learn import training as train_lib
    from facelab.learn.openset import class_centroids

    labels = np.asarray(labels, int)
    x, y = _head_data(emb, labels, num_classes)
    batch = int(min(HEAD_BATCH, max(8, len(x) // MIN_HEAD_STEPS)))
    steps = max(1, math.ceil(len(x) / batch))
    dim = int(emb.shape[-1])
    centroids = class_centroids(unit(emb[:, 0]) + unit(emb[:, 1]), labels, num_classes)
    if out_dir is None:
        keras.utils.set_random_seed(recipe.seed)
        head = _compiled_head(num_classes, dim, recipe, steps, centroids)
        head.fit(x, y, batch_size=batch, epochs=recipe.epochs, verbose=0,
                 class_weight=class_weight, shuffle=True)
        return head, None
    val_data = None
    if val is not None and len(val[0]):
        val_data = (val[0][:, 0].astype(np.float32),
                    np.eye(num_classes, dtype=np.float32)[np.asarray(val[1], int)])
    run = train_lib.train(lambda: _compiled_head(num_classes, dim, recipe, steps, centroids),
                          (x, y), val_data, out_dir, epochs=recipe.epochs, batch_size=batch,
                          class_weight=class_weight, seed=recipe.seed, backup_every=0,
                          monitor="val_loss" if val_data else "loss",
                          verbose=verbose, retrain=retrain)
    return run.model, run


def assemble(head: Any, network: Any = None, augmentation: Any = None,
             name: str = "facelab_face_resnet") -> Any:
    """One model: 150 x 150 RGB chips [0, 255] -> network -> head (layers ``unit``, ``softmax``).

    Args:
        head: A :func:`build_head` model (its weights are copied).
        network: The face network (default: dlib's weights, :func:`load_face_resnet`).
        augmentation: A Keras layer applied first (training only), for fine-tuning.
        name: The model's name.
    """
    import keras

    from facelab.learn.face_resnet import CHIP_SIZE, load_face_resnet

    network = network if network is not None else load_face_resnet()
    inputs = keras.Input((CHIP_SIZE, CHIP_SIZE, 3), name="image")
    x = augmentation(inputs) if augmentation is not None else inputs
    x = network(x)
    x = keras.layers.UnitNormalization(name="unit")(x)
    dense = keras.layers.Dense(int(head.output_shape[-1]), activation="softmax",
                               name="softmax")
    model = keras.Model(inputs, dense(x), name=name)
    dense.set_weights(head.get_layer("softmax").get_weights())
    return model


def set_fine_tunable(network: Any) -> int:
    """Freeze the network but its last two stages and its projection; count what trains."""
    count = 0
    for layer in network.layers:
        layer.trainable = layer.name.startswith(TRAINABLE_PREFIXES)
        count += int(layer.trainable and bool(layer.weights))
    return count


def fine_tune(df: pd.DataFrame, label_map: Any, head: Any, recipe: Any, out_dir: str | Path,
              *, interrupt_after_batches: int | None = None, verbose: int | str = 2,
              retrain: bool = False) -> Any:
    """Fine-tune the network's last two stages with the head, on the chips themselves.

    Args:
        df: Faces with absolute ``path``, ``person``, ``split`` (chips).
        label_map: The label map.
        head: The trained head (the starting point).
        recipe: The recipe: ``fine_tune_epochs``, ``peak_lr`` (x 0.1), ``batch_size``,
            ``balance``, ``augment``, ``seed``.
        out_dir: The run folder (resumable, as :func:`facelab.learn.training.train`).
        interrupt_after_batches: Simulate an interruption.
        verbose: Keras verbosity.
        retrain: Start over.

    Returns:
        The :class:`facelab.learn.training.TrainResult`.
    """
    from facelab.data import pipeline
    from facelab.learn import training as train_lib
    from facelab.learn.face_resnet import CHIP_SIZE, load_face_resnet
    from facelab.learn.model import compile_model

    train_ds = pipeline.make_dataset(df, "train", image_size=CHIP_SIZE,
                                     batch_size=recipe.batch_size, balance=recipe.balance,
                                     seed=recipe.seed, shuffle=recipe.shuffle,
                                     labels=label_map, cache=True)
    val_ds = pipeline.make_dataset(df, "val", image_size=CHIP_SIZE, batch_size=128,
                                   labels=label_map, cache=True)
    cardinality = int(train_ds.cardinality())
    steps = cardinality if cardinality > 0 else max(1, math.ceil(
        int((df["split"] == "train").sum()) / recipe.batch_size))

    def make() -> Any:
        network = load_face_resnet()
        set_fine_tunable(network)
        augmentation = None
        if recipe.augment:
            from facelab.data.augment import fused_augmentation

            augmentation = fused_augmentation(seed=recipe.seed)
        model = assemble(head, network, augmentation)
        epochs = recipe.fine_tune_epochs
        return compile_model(model, epochs * steps,
                             peak_lr=recipe.peak_lr * FINE_TUNE_LR_FACTOR,
                             warmup_steps=min(steps, epochs * steps // 4),
                             weight_decay=recipe.weight_decay,
                             label_smoothing=recipe.label_smoothing)

    return train_lib.train(make, train_ds, val_ds, out_dir, epochs=recipe.fine_tune_epochs,
                           seed=recipe.seed, interrupt_after_batches=interrupt_after_batches,
                           backup_every=max(1, min(20, steps // 2)), verbose=verbose,
                           retrain=retrain)


def model_embeddings(model: Any, rows: pd.DataFrame, batch_size: int = 64) -> np.ndarray:
    """Embeddings ``[N, 2, D]`` (chip, mirror image) of an assembled model's network part."""
    import keras

    from facelab.learn.embeddings import chip_embeddings

    trunk = keras.Model(model.inputs[0], model.get_layer("unit").input)
    return chip_embeddings(rows["path"].astype(str).tolist(), batch_size=batch_size,
                           cache=False, network=trunk)
