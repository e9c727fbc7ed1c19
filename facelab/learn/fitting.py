"""``facelab fit``: the whole recipe on a folder of face crops, start to finish.

labels -> split (made once) -> balanced, shuffled tf.data pipeline -> augmentation inside
the model -> from-scratch CNN trained with backup/restore -> bias analysis.  Writes, in
``OUT``:

* ``model.keras`` (best validation checkpoint; takes float32 RGB [0, 255] images of
  ``image_size``), ``labels.json``, ``manifest.csv`` (with ``label`` and ``split``);
* ``metrics.json``: accuracy, balanced accuracy, macro-F1, per-class recall, predicted
  and true shares, the bias verdict (dominant and swallowed classes, one-way confused
  pairs), on the test split (the val split when there
  is no test split), plus the val figures, the recipe and the training time/device;
* ``predictions.csv``, ``per_class.csv`` and the figures ``learning_curves.png``,
  ``confusion.png`` (row-normalised), ``confusion_counts.png``, ``shares.png``, ``recall.png``,
  ``misclassified.png``;
* the training run's files (``backup/`` while running, ``history.csv/json``,
  ``train_state.json``, ``best.keras``): run the same command again after an
  interruption and it continues.

The recipe (:class:`Recipe`) is the default; ``naive=True`` replays the blog post's
pipeline (imbalanced, class-ordered, no augmentation) for comparison.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from facelab.io import atomic_write_bytes
from facelab.manifest import METRICS_NAME

FIGURES = ("learning_curves.png", "confusion.png", "confusion_counts.png", "shares.png",
           "recall.png", "misclassified.png")


@dataclass(frozen=True)
class Recipe:
    """The training recipe (defaults = facelab's, tuned on a validation split only).

    Attributes:
        epochs: Training epochs.
        image_size: Square input size (crops are resized to it).
        batch_size: Batch size.
        balance: ``facelab.data.pipeline.make_dataset`` balance mode (``sample``: uniform class
            draws).
        shuffle: Shuffle the training files (``False`` = class-ordered, the post's bug).
        augment: Augmentation layers inside the model.
        peak_lr: Peak AdamW learning rate (linear warm-up, cosine decay).
        warmup_epochs: Warm-up length.
        weight_decay: AdamW weight decay.
        label_smoothing: Cross-entropy label smoothing (softmax head only).
        dropout: Dropout before the head.
        head: ``softmax`` (a dense softmax layer) or ``cosine`` (an embedding and a cosine
            softmax trained with a margin); see :mod:`facelab.learn.heads`.
        margin: The cosine head's margin.
        widths: CNN stage widths.
        blocks: Conv layers per stage.
        arch: ``cnn`` or a ``facelab.learn.model.BACKBONES`` name.
        weights: Backbone weights (``None`` offline, ``"imagenet"`` online).
        patience: Early-stopping patience (``None``: off).
        flip_average: Test-time averaging with flipped faces.
        seed: Seed of training (shuffles, draws, initialisation).
    """

    epochs: int = 30
    image_size: int = 64
    batch_size: int = 64
    balance: str = "sample"
    shuffle: bool = True
    augment: bool = True
    peak_lr: float = 3e-3
    warmup_epochs: int = 2
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    dropout: float = 0.3
    head: str = "softmax"
    margin: float = 0.35
    widths: tuple[int, ...] = (32, 64, 128, 256)
    blocks: tuple[int, ...] = (1, 2, 2, 1)
    arch: str = "cnn"
    weights: str | None = None
    patience: int | None = None
    flip_average: bool = True
    seed: int = 0

    @classmethod
    def naive(cls, **overrides: Any) -> Recipe:
        """Return the blog post's pipeline.

        Imbalanced, class-ordered, no augmentation, a plain softmax with plain
        cross-entropy, no test-time flip; ``overrides`` replace fields.
        """
        base = cls(balance="none", shuffle=False, augment=False, label_smoothing=0.0,
                   head="softmax", flip_average=False)
        return replace(base, **overrides)


@dataclass
class FitResult:
    """What :func:`fit` returns: the trained model, its labels and split, the metrics."""

    model: Any
    label_map: Any
    manifest: pd.DataFrame
    metrics: dict[str, Any]
    predictions: pd.DataFrame
    train: Any
    out_dir: Path
    figures: dict[str, Path] = field(default_factory=dict)


def prepare(source: str | Path | pd.DataFrame, *, fractions: Any = (0.7, 0.15, 0.15),
            split_seed: int = 0) -> tuple[pd.DataFrame, Any]:
    """Load faces, make integer labels and the split (kept when the source has one).

    Args:
        source: A split stage folder (``workdir/split``: its split and labels.json are
            reused), a face-stage folder with ``manifest.csv`` (``workdir/faces``), a
            folder of crops per person, or a DataFrame (with ``person``, absolute
            ``path`` and optionally ``split``).
        fractions: Split fractions when a split has to be made (train, val, test).
        split_seed: Seed of that split.

    Returns:
        The manifest (absolute paths, ``label``, ``split``) and the label map.
    """
    from facelab.data.labels import LabelMap, add_labels, load_faces
    from facelab.data.split import stratified_split
    from facelab.manifest import LABELS_NAME

    faces = load_faces(source)
    label_map = None
    if not isinstance(source, pd.DataFrame) and (Path(source) / LABELS_NAME).is_file():
        label_map = LabelMap.load(source)
    df, label_map = add_labels(faces, label_map)
    if "split" not in df.columns or df["split"].isna().any() or (df["split"] == "").any():
        df = stratified_split(df, fractions, seed=split_seed)
    return df, label_map


def fit(source: str | Path | pd.DataFrame, out_dir: str | Path, recipe: Recipe | None = None,
        *, fractions: Any = (0.7, 0.15, 0.15), split_seed: int = 0,
        threshold: float = 1.5, interrupt_after_batches: int | None = None,
        verbose: int | str = 2, retrain: bool = False, holdout: float = 0.1,
        target_far: float = 0.01, keep_known: Sequence[str] = (), **overrides: Any
        ) -> FitResult:
    """Run the whole recipe and write model, labels, manifest, metrics and figures.

    Args:
        source: See :func:`prepare`.
        out_dir: Output folder (created); running again resumes or reuses a finished run.
        recipe: The recipe (default :class:`Recipe`); keyword ``overrides`` replace its
            fields (e.g. ``epochs=2``).
        fractions: Split fractions when the source has no split.
        split_seed: Seed of that split.
        threshold: Dominant-class threshold of the bias verdict (predicted / true share).
        interrupt_after_batches: Simulate an interruption (see
            :func:`facelab.learn.training.train`);
            the result then has no metrics and ``train.interrupted`` is True.
        verbose: Keras verbosity (2 = one line per epoch).
        retrain: Start the training over even when ``out_dir`` holds a run.
        holdout: Share of identities never trained on: the strangers that calibrate the
            open-set threshold (:mod:`facelab.learn.openset`; 0 = none).
        target_far: The strangers' false-accept rate the threshold is calibrated for.
        keep_known: People never held out: those with a double among the others (the
            demo's look-alikes, twins): a stranger who is a known person's double scores
            like that person, so no threshold rejects one and keeps the other
            (``docs/recognize.md``).
        **overrides: :class:`Recipe` fields to replace.

    Returns:
        A :class:`FitResult`.
    """
    from facelab.learn import openset
    from facelab.learn import training as train_lib
    from facelab.learn.plots import save_fit_figures

    recipe = replace(recipe or Recipe(), **overrides)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    df, label_map = prepare(source, fractions=fractions, split_seed=split_seed)
    df, label_map, strangers = openset.split_off_strangers(df, label_map, holdout, split_seed,
                                                           keep_known)
    splits = set(df["split"])
    if "train" not in splits or "val" not in splits:
        raise ValueError(f"the split has {sorted(splits)}; fit needs train and val "
                         "(and uses test for the final figures when present)")
    _write_inputs(df, label_map, out)
    train_ds, val_ds, steps = _datasets(df, label_map, recipe)
    run = train_lib.train(_model_factory(recipe, len(label_map), steps), train_ds, val_ds, out,
                          epochs=recipe.epochs, class_weight=_class_weight(df, label_map, recipe),
                          patience=recipe.patience, seed=recipe.seed,
                          interrupt_after_batches=interrupt_after_batches,
                          backup_every=max(1, min(20, steps // 2)),
                          verbose=verbose, retrain=retrain)
    if run.interrupted:
        return FitResult(run.model, label_map, df, {}, pd.DataFrame(), run, out)

    eval_split = "test" if "test" in splits else "val"
    metrics, preds = _score(run, df, label_map, recipe, eval_split, threshold)
    _write_scores(out, metrics, preds, label_map.names)
    openset.calibrate(run.model, df, strangers, label_map, out,
                      image_size=recipe.image_size, flip_average=recipe.flip_average,
                      target_far=target_far, test_split=eval_split, kept_known=keep_known)
    openset.write_recognizer_info(source, out, recipe.image_size, recipe.flip_average)
    figures = save_fit_figures(out, run, preds, list(label_map.names), eval_split, threshold)
    return FitResult(run.model, label_map, df, metrics, preds, run, out, figures)


def _write_inputs(df: pd.DataFrame, label_map: Any, out: Path) -> None:
    """Write the manifest the model is trained from (paths relative to ``out``) and labels."""
    from facelab.data.labels import relative_to
    from facelab.manifest import write_manifest

    written = df.copy()
    written["path"] = relative_to(written["path"].tolist(), out)
    for column, default in (("status", "ok"), ("reason", "")):
        if column not in written.columns:
            written[column] = default
    write_manifest(written, out)
    label_map.save(out)


def _datasets(df: pd.DataFrame, label_map: Any, recipe: Recipe) -> tuple[Any, Any, int]:
    """The training and validation datasets, and the training batches per epoch."""
    from facelab.data import pipeline

    n_train = int((df["split"] == "train").sum())
    steps = max(1, math.ceil(n_train / recipe.batch_size))
    train_ds = pipeline.make_dataset(df, "train", image_size=recipe.image_size,
                                     batch_size=recipe.batch_size, balance=recipe.balance,
                                     augment=False, seed=recipe.seed, shuffle=recipe.shuffle,
                                     labels=label_map, cache=True)
    cardinality = int(train_ds.cardinality())
    if cardinality > 0:     # undersample/oversample change the batches per epoch
        steps = cardinality
    val_ds = pipeline.make_dataset(df, "val", image_size=recipe.image_size,
                                   batch_size=max(recipe.batch_size, 128), labels=label_map,
                                   cache=True)
    return train_ds, val_ds, steps


def _class_weight(df: pd.DataFrame, label_map: Any, recipe: Recipe) -> dict[int, float] | None:
    """Per-class loss weights for ``balance="weights"`` (else ``None``)."""
    if recipe.balance != "weights":
        return None
    from facelab.data.balance import class_weights

    return class_weights(df[df["split"] == "train"], label_map)


def _model_factory(recipe: Recipe, num_classes: int, steps: int) -> Any:
    """A function that builds and compiles a fresh model for the recipe (training calls it)."""
    from facelab.learn import model as model_lib

    def make() -> Any:
        augmentation = None
        if recipe.augment:
            from facelab.data.augment import fused_augmentation

            augmentation = fused_augmentation(seed=recipe.seed)
        extra: dict[str, Any] = {"dropout": recipe.dropout, "head": recipe.head}
        if recipe.arch == "cnn":
            extra.update(widths=recipe.widths, blocks=recipe.blocks, seed=recipe.seed)
        net = model_lib.build_model(num_classes, recipe.image_size, arch=recipe.arch,
                                    weights=recipe.weights, augmentation=augmentation, **extra)
        return model_lib.compile_model(net, recipe.epochs * steps, peak_lr=recipe.peak_lr,
                                       warmup_steps=recipe.warmup_epochs * steps,
                                       weight_decay=recipe.weight_decay,
                                       label_smoothing=recipe.label_smoothing,
                                       margin=recipe.margin)

    return make


def _score(run: Any, df: pd.DataFrame, label_map: Any, recipe: Recipe, eval_split: str,
           threshold: float) -> tuple[dict[str, Any], pd.DataFrame]:
    """Score the held-out split once (and val, for reference): the metrics and predictions."""
    from facelab.analysis import bias
    from facelab.analysis.predictions import predict_split
    from facelab.learn import training as train_lib

    preds = predict_split(run.model, df, eval_split, label_map, image_size=recipe.image_size,
                          flip_average=recipe.flip_average)
    val_preds = preds if eval_split == "val" else predict_split(
        run.model, df, "val", label_map, image_size=recipe.image_size,
        flip_average=recipe.flip_average)
    names = list(label_map.names)
    metrics = bias.summarise(preds["true"], preds["pred"], names, threshold)
    val_metrics = bias.summarise(val_preds["true"], val_preds["pred"], names, threshold)
    metrics = {"split": eval_split, "scored": (
                   "test split, scored once: the validation split chose the best epoch"
                   if eval_split == "test" else "validation split (no test split): it also "
                   "chose the best epoch, so these figures are optimistic"), **metrics,
               "val": {key: val_metrics[key] for key in
                       ("n", "accuracy", "balanced_accuracy", "macro_f1", "min_recall",
                        "max_share_ratio")},
               "num_classes": len(names), "train_rows": int((df["split"] == "train").sum()),
               "training_seconds_total": _training_seconds(run),
               "best_epoch": run.best_epoch, "epochs": recipe.epochs,
               "device": train_lib.device_summary(), "strategy": run.strategy,
               "recipe": asdict(recipe)}
    return metrics, preds


def _write_scores(out: Path, metrics: dict[str, Any], preds: pd.DataFrame,
                  names: Any) -> None:
    """Write ``metrics.json``, ``predictions.csv`` and ``per_class.csv`` into ``out``."""
    from facelab.analysis import bias
    from facelab.data.labels import relative_to

    atomic_write_bytes(out / METRICS_NAME,
                       (json.dumps(metrics, indent=2, ensure_ascii=False, default=str)
                        + "\n").encode("utf-8"))
    rel = preds.assign(path=relative_to(preds["path"].tolist(), out))
    atomic_write_bytes(out / "predictions.csv", rel.to_csv(index=False).encode("utf-8"))
    table = bias.per_class_table(preds["true"], preds["pred"], list(names))
    atomic_write_bytes(out / "per_class.csv", table.to_csv().encode("utf-8"))


def _training_seconds(run: Any) -> float:
    """Total training time over all runs that ended (a killed run's time is unknown)."""
    state_path = Path(run.out_dir) / "train_state.json"
    total = 0.0
    if state_path.is_file():
        total = float(json.loads(state_path.read_text()).get("seconds", 0.0))
    return total or float(run.seconds)
