"""What :func:`facelab.learn.fitting.fit` trains, one class per kind of model.

Both learners answer the same three questions, so that ``fit`` runs every model over
the faces once and calibrates ``unknown`` the same way:

* :meth:`train_final`: train (or resume, or load) the model on everyone;
* :meth:`outputs`: probabilities and embeddings of faces (the ``softmax`` layer's output
  and input, flip-averaged as the recipe says);
* :meth:`score_without`: train a model without some people and score their faces as
  strangers (the calibration folds, :mod:`facelab.learn.folds`).

:class:`CnnLearner` is the from-scratch CNN (or a ``keras.applications`` backbone): a fold
is a whole training run.  :class:`FaceResnetLearner` is the pretrained face network: a head
on cached embeddings, so a fold takes seconds.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from facelab.learn.openset import ScoreModel, scored_table


def class_weight(df: pd.DataFrame, label_map: Any, balance: str,
                 always: bool = False) -> dict[int, float] | None:
    """Per-class loss weights for ``balance="weights"`` (or any balance, with ``always``)."""
    if balance == "none" or (balance != "weights" and not always):
        return None
    from facelab.data.balance import class_weights

    return class_weights(df[df["split"] == "train"], label_map)


def strangers_table(outputs: Callable[[pd.DataFrame], tuple[np.ndarray, np.ndarray]],
                    known: pd.DataFrame, rows: pd.DataFrame, label_map: Any) -> pd.DataFrame:
    """Score ``rows`` (people a fold model was not trained on) with that model.

    Args:
        outputs: The fold model's probabilities and embeddings of faces.
        known: The faces it was trained on (its training split makes the score model).
        rows: The held-out people's faces.
        label_map: Its label map.
    """
    train = known[known["split"] == "train"]
    _, train_feats = outputs(train)
    scorer = ScoreModel.from_training(train_feats, label_map.encode(train["person"].tolist()),
                                      len(label_map))
    probs, feats = outputs(rows)
    return scored_table("", rows, probs, feats, label_map.names, scorer)


class CnnLearner:
    """The from-scratch CNN (``arch="cnn"``) or a ``keras.applications`` backbone.

    Args:
        df: Every face (absolute ``path``, ``person``, ``label``, ``split``).
        label_map: The label map of everybody.
        recipe: The :class:`facelab.learn.fitting.Recipe`.
        out: The model folder.
    """

    def __init__(self, df: pd.DataFrame, label_map: Any, recipe: Any, out: Path) -> None:
        self.df, self.label_map, self.recipe, self.out = df, label_map, recipe, out
        self.model: Any = None

    def _run(self, df: pd.DataFrame, label_map: Any, out: Path, **options: Any) -> Any:
        from facelab.learn import training as train_lib

        train_ds, val_ds, steps = self._datasets(df, label_map)
        return train_lib.train(self._factory(len(label_map), steps), train_ds, val_ds, out,
                               epochs=self.recipe.epochs,
                               class_weight=class_weight(df, label_map, self.recipe.balance),
                               patience=self.recipe.patience, seed=self.recipe.seed,
                               backup_every=max(1, min(20, steps // 2)), **options)

    def train_final(self, *, interrupt_after_batches: int | None = None,
                    verbose: int | str = 2, retrain: bool = False) -> Any:
        """Train the model on everyone (resumable); the training result."""
        run = self._run(self.df, self.label_map, self.out,
                        interrupt_after_batches=interrupt_after_batches, verbose=verbose,
                        retrain=retrain)
        self.model = run.model
        return run

    def outputs(self, rows: pd.DataFrame, model: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities and embeddings of faces (any people), in row order."""
        from facelab.learn.openset import model_outputs

        model = model if model is not None else self.model
        if rows.empty:
            return (np.zeros((0, int(model.output_shape[-1])), np.float32),
                    np.zeros((0, 1), np.float32))
        return model_outputs(model, rows, self.label_map, self.recipe.image_size,
                             self.recipe.flip_average)

    def score_without(self, index: int, people: list[str], rows: pd.DataFrame
                      ) -> pd.DataFrame:
        """Train a CNN on ``people`` only (``OUT/folds/N-KEY``, resumable); score ``rows``.

        The folder's key is a digest of the people, so a finished fold is reused only for
        the same people.
        """
        from facelab.data.labels import LabelMap, add_labels

        known = self.df[self.df["person"].astype(str).isin(people)]
        known, label_map = add_labels(known.drop(columns="label", errors="ignore"),
                                     LabelMap.from_names(people))
        key = hashlib.sha1("\n".join(label_map.names).encode("utf-8")).hexdigest()[:8]
        run = self._run(known, label_map, self.out / "folds" / f"{index}-{key}", verbose=0)
        return strangers_table(lambda faces: self.outputs(faces, run.model), known, rows,
                               label_map)

    def _datasets(self, df: pd.DataFrame, label_map: Any) -> tuple[Any, Any, int]:
        """The training and validation datasets, and the training batches per epoch."""
        from facelab.data import pipeline

        recipe = self.recipe
        n_train = int((df["split"] == "train").sum())
        steps = max(1, math.ceil(n_train / recipe.batch_size))
        train_ds = pipeline.make_dataset(df, "train", image_size=recipe.image_size,
                                         batch_size=recipe.batch_size, balance=recipe.balance,
                                         augment=False, seed=recipe.seed,
                                         shuffle=recipe.shuffle, labels=label_map, cache=True)
        cardinality = int(train_ds.cardinality())
        if cardinality > 0:     # undersample/oversample change the batches per epoch
            steps = cardinality
        val_ds = pipeline.make_dataset(df, "val", image_size=recipe.image_size,
                                       batch_size=max(recipe.batch_size, 128),
                                       labels=label_map, cache=True)
        return train_ds, val_ds, steps

    def _factory(self, num_classes: int, steps: int) -> Any:
        """A function that builds and compiles a fresh model (training calls it)."""
        from facelab.learn import model as model_lib

        recipe = self.recipe

        def make() -> Any:
            augmentation = None
            if recipe.augment:
                from facelab.data.augment import fused_augmentation

                augmentation = fused_augmentation(seed=recipe.seed)
            extra: dict[str, Any] = {"dropout": recipe.dropout, "head": recipe.head}
            if recipe.arch == "cnn":
                extra.update(widths=recipe.widths, blocks=recipe.blocks, seed=recipe.seed)
            net = model_lib.build_model(num_classes, recipe.image_size, arch=recipe.arch,
                                        weights=recipe.weights, augmentation=augmentation,
                                        **extra)
            return model_lib.compile_model(net, recipe.epochs * steps, peak_lr=recipe.peak_lr,
                                           warmup_steps=recipe.warmup_epochs * steps,
                                           weight_decay=recipe.weight_decay,
                                           label_smoothing=recipe.label_smoothing,
                                           margin=recipe.margin)

        return make


class FaceResnetLearner:
    """The pretrained face network (``arch="face-resnet"``): a head on cached embeddings.

    Args:
        df: Every face (absolute ``path`` of 150 x 150 chips, ``person``, ``split``).
        label_map: The label map of everybody.
        recipe: The recipe (``fine_tune_epochs`` > 0 fine-tunes the network's last stages).
        out: The model folder (the head's run goes to ``OUT/head``).
        progress: Show a progress bar while embedding chips the cache lacks.
    """

    def __init__(self, df: pd.DataFrame, label_map: Any, recipe: Any, out: Path,
                 progress: bool = True) -> None:
        from facelab.learn.embeddings import chip_embeddings

        self.df, self.label_map, self.recipe, self.out = df, label_map, recipe, out
        self.emb = chip_embeddings(df["path"].astype(str).tolist(), progress=progress)
        self.row = {path: i for i, path in enumerate(df["path"].astype(str))}
        self.head: Any = None
        self.model: Any = None

    def _emb(self, rows: pd.DataFrame) -> np.ndarray:
        return self.emb[[self.row[p] for p in rows["path"].astype(str)]]

    def _head(self, rows: pd.DataFrame, label_map: Any, **options: Any) -> tuple[Any, Any]:
        from facelab.learn.transfer import train_head

        train, val = rows[rows["split"] == "train"], rows[rows["split"] == "val"]
        weights = class_weight(rows, label_map, self.recipe.balance, always=True)
        return train_head(self._emb(train), label_map.encode(train["person"].tolist()),
                          len(label_map), self.recipe,
                          val=(self._emb(val), label_map.encode(val["person"].tolist())),
                          class_weight=weights, **options)

    def train_final(self, *, interrupt_after_batches: int | None = None,
                    verbose: int | str = 2, retrain: bool = False) -> Any:
        """The head on everyone (``OUT/head``), fine-tuned when the recipe says; assembled."""
        from facelab.learn import transfer
        from facelab.learn.training import FINAL_NAME

        self.head, run = self._head(self.df, self.label_map, out_dir=self.out / "head",
                                    retrain=True)     # seconds: never a stale head
        if self.recipe.fine_tune_epochs:
            run = transfer.fine_tune(self.df, self.label_map, self.head, self.recipe,
                                     self.out, interrupt_after_batches=interrupt_after_batches,
                                     verbose=verbose, retrain=retrain)
            if run.interrupted:
                return run
            self.model = run.model
            self.emb = transfer.model_embeddings(run.model, self.df)
            self.head.get_layer("softmax").set_weights(
                run.model.get_layer("softmax").get_weights())
            return run
        self.model = transfer.assemble(self.head)
        tmp = self.out / f".{FINAL_NAME}.tmp.keras"
        self.model.save(tmp)
        os.replace(tmp, self.out / FINAL_NAME)
        run.model = self.model
        return run

    def outputs(self, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities and embeddings of faces, from the cached embeddings."""
        from facelab.learn.transfer import head_outputs

        return head_outputs(self.head, self._emb(rows), self.recipe.flip_average)

    def score_without(self, index: int, people: list[str], rows: pd.DataFrame
                      ) -> pd.DataFrame:
        """A head trained on ``people`` only (in memory, seconds); score ``rows``."""
        from facelab.data.labels import LabelMap
        from facelab.learn.transfer import head_outputs

        label_map = LabelMap.from_names(people)
        known = self.df[self.df["person"].astype(str).isin(people)]
        head, _ = self._head(known, label_map)
        return strangers_table(
            lambda faces: head_outputs(head, self._emb(faces), self.recipe.flip_average),
            known, rows, label_map)
