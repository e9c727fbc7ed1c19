"""``facelab fit``: the whole recipe on a folder of faces, start to finish.

labels -> split (made once) -> the model -> bias analysis -> the ``unknown`` threshold.
The model is, by default, dlib's face network pretrained on millions of faces with a head
trained on its cached embeddings (``arch="face-resnet"``, :mod:`facelab.learn.transfer`);
``arch="cnn"`` is the blog post's road, a CNN trained from scratch through the balanced,
shuffled tf.data pipeline with augmentation inside the model and backup/restore
(:mod:`facelab.learn.learners`).  Every person of the source is in the model; ``unknown`` is
calibrated on people held out in rotation (:mod:`facelab.learn.folds`).  Writes, in ``OUT``:

* ``model.keras`` (takes float32 RGB [0, 255] images of ``image_size``: 150 x 150 chips for
  the face network), ``labels.json``, ``manifest.csv`` (with ``label`` and ``split``);
* ``metrics.json``: accuracy, balanced accuracy, macro-F1, per-class recall, predicted
  and true shares, the bias verdict (dominant and swallowed classes, one-way confused
  pairs), on the test split (the val split when there is no test split), scored once,
  plus the val figures, the calibration of ``unknown`` (``openset``), every person's face
  counts with a note when they are too few (``people``), the recipe and the training
  time/device;
* ``predictions.csv``, ``per_class.csv`` and the figures ``learning_curves.png``,
  ``confusion.png`` (row-normalised), ``confusion_counts.png``, ``shares.png``, ``recall.png``,
  ``misclassified.png``;
* the open-set files (:mod:`facelab.learn.openset`) and the training run's files
  (``backup/`` while running, ``history.csv/json``, ``train_state.json``, ``best.keras``;
  ``head/`` for the face network's head): run the same command again after an
  interruption and it continues.

The recipe (:class:`Recipe`) is the default; :meth:`Recipe.naive` replays the blog post's
pipeline (imbalanced, class-ordered, no augmentation) for comparison.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from facelab.io import atomic_write_bytes
from facelab.learn.openset import write_recognizer_info
from facelab.lock import writes_folder
from facelab.manifest import METRICS_NAME

PREDICTIONS_NAME = "predictions.csv"          # the scored split (test), one row per face
VAL_PREDICTIONS_NAME = "predictions_val.csv"  # the validation split, one row per face
DEFAULT_FOLDS = {"face-resnet": 5}   # by arch; 0 for the CNNs (a fold is a training run)
FEW_FACES = 5                          # a person with fewer faces gets a note
# measured on pubfig83-dev (benchmarks/face_network_quality.py --fine-tune 3): the folds'
# strangers were seen by the fine-tuning, and the floor is the frozen network's
FINE_TUNED_FLOOR = ("fine-tuned network: its threshold is the frozen network's stranger floor "
                    "and its folds' people were seen by the fine-tuning; on PubFig83 it named "
                    "82-84% of known faces (the frozen network: 98%) with no stranger accepted "
                    "(docs/learn.md)")

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
        arch: ``face-resnet`` (the default: dlib's face network, pretrained on millions of
            faces, with a head trained on its embeddings, :mod:`facelab.learn.transfer`),
            ``cnn`` (from scratch, the blog post's road) or a
            ``facelab.learn.model.BACKBONES`` name.  ``image_size`` and the CNN fields
            (``widths``, ``blocks``, ``dropout``, ``head``) apply to the CNNs; the face
            network takes 150 x 150 chips.
        weights: Backbone weights (``None`` offline, ``"imagenet"`` online).
        patience: Early-stopping patience (``None``: off).
        flip_average: Test-time averaging with flipped faces.
        seed: Seed of training (shuffles, draws, initialisation).
        fine_tune_epochs: Epochs of fine-tuning the face network's last two stages after
            its head (0: the network stays frozen).
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
    arch: str = "face-resnet"
    weights: str | None = None
    patience: int | None = None
    flip_average: bool = True
    seed: int = 0
    fine_tune_epochs: int = 0

    @classmethod
    def naive(cls, **overrides: Any) -> Recipe:
        """Return the blog post's pipeline.

        Imbalanced, class-ordered, no augmentation, a plain softmax with plain
        cross-entropy, no test-time flip; ``overrides`` replace fields.
        """
        base = cls(balance="none", shuffle=False, augment=False, label_smoothing=0.0,
                   head="softmax", flip_average=False, arch="cnn")
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


@dataclass
class FittedModel:
    """A finished ``fit`` read back from its folder (:func:`load_fit`): nothing re-scored.

    Attributes:
        out_dir: The model folder.
        recipe: The recipe it was trained with.
        label_map: Its label map.
        faces: Its manifest (absolute ``path``, ``person``, ``label``, ``split``).
        metrics: ``metrics.json``.
        predictions: The scored split's predictions (``predictions.csv``).
        val_predictions: The validation split's (``predictions_val.csv``).
    """

    out_dir: Path
    recipe: Recipe
    label_map: Any
    faces: pd.DataFrame
    metrics: dict[str, Any]
    predictions: pd.DataFrame
    val_predictions: pd.DataFrame

    @property
    def names(self) -> list[str]:
        """The class names in id order."""
        return list(self.label_map.names)

    @property
    def split(self) -> str:
        """The scored split (``test``, or ``val`` without one)."""
        return str(self.metrics.get("split", "test"))

    def load_model(self) -> Any:
        """The trained Keras model (loaded now, with facelab's own layers)."""
        from facelab.learn.model import load_model

        return load_model(self.out_dir / "model.keras")


def load_fit(out_dir: str | Path) -> FittedModel:
    """Read a finished ``facelab fit`` folder: recipe, labels, faces and both predictions.

    Raises:
        FileNotFoundError: When the folder lacks what a finished fit writes (names it).
    """
    from facelab.data.labels import LabelMap, load_faces

    out = Path(out_dir)
    for name in (METRICS_NAME, PREDICTIONS_NAME, VAL_PREDICTIONS_NAME):
        if not (out / name).is_file():
            raise FileNotFoundError(f"{out / name} is missing: {out} is not a finished "
                                    "`facelab fit` folder (run fit, or fit again to finish)")
    metrics = json.loads((out / METRICS_NAME).read_text(encoding="utf-8"))
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in metrics["recipe"].items()
              if k in Recipe.__dataclass_fields__}

    def read(name: str) -> pd.DataFrame:
        frame = pd.read_csv(out / name, keep_default_na=False)
        frame["path"] = [str((out / p).resolve()) for p in frame["path"]]
        return frame

    return FittedModel(out, Recipe(**fields), LabelMap.load(out), load_faces(out), metrics,
                       read(PREDICTIONS_NAME), read(VAL_PREDICTIONS_NAME))


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
        df = stratified_split(df, fractions, seed=split_seed, small="keep")
    return df, label_map


@writes_folder("out_dir", "fit")     # one writer per model folder (facelab.lock)
def fit(source: str | Path | pd.DataFrame, out_dir: str | Path, recipe: Recipe | None = None,
        *, fractions: Any = (0.7, 0.15, 0.15), split_seed: int = 0,
        threshold: float = 1.5, interrupt_after_batches: int | None = None,
        verbose: int | str = 2, retrain: bool = False, folds: int | None = None,
        target_far: float = 0.01, keep_known: Sequence[str] = (),
        set_aside: Sequence[str] = (), progress: bool = True, **overrides: Any) -> FitResult:
    """Run the whole recipe and write model, labels, manifest, metrics and figures.

    Every person in ``source`` is in the model.  The ``unknown`` threshold is calibrated
    on people held out in rotation (``folds``, :mod:`facelab.learn.folds`).

    Args:
        source: See :func:`prepare`.  With ``arch="face-resnet"`` (the default), faces that
            are not the face stage's chips are cut into chips first (``OUT/chips``).
        out_dir: Output folder (created); running again resumes or reuses a finished run.
        recipe: The recipe (default :class:`Recipe`); keyword ``overrides`` replace its
            fields (e.g. ``epochs=2``).
        fractions: Split fractions when the source has no split.
        split_seed: Seed of that split (and of the calibration folds).
        threshold: Dominant-class threshold of the bias verdict (predicted / true share).
        interrupt_after_batches: Simulate an interruption (see
            :func:`facelab.learn.training.train`);
            the result then has no metrics and ``train.interrupted`` is True.
        verbose: Keras verbosity (2 = one line per epoch).
        retrain: Start the training over even when ``out_dir`` holds a run.
        folds: Groups of people held out in turn to calibrate ``unknown`` (default
            :data:`DEFAULT_FOLDS` of the arch: 5 for the pretrained network, whose folds
            take seconds; 0 for a CNN trained from scratch, whose folds are whole training
            runs); 0: wrong validation answers stand in for strangers.
        target_far: The strangers' false-accept rate the threshold is calibrated for.
        keep_known: People never held out: those with a double among the others (the
            demo's look-alikes, twins): a stranger who is a known person's double scores
            like that person, so no threshold rejects one and keeps the other
            (``docs/recognize.md``).
        set_aside: People of the source left out of the model altogether (not trained, not
            calibrated on): strangers from outside, for experiments (notebook 07, the
            benchmarks); ``metrics.json`` lists them.  Empty for real use.
        progress: Progress bars for the chips and embeddings.
        **overrides: :class:`Recipe` fields to replace.

    Returns:
        A :class:`FitResult`.
    """
    from facelab.learn.plots import save_fit_figures

    start = time.perf_counter()
    recipe = resolved_recipe(recipe, **overrides)
    out = Path(out_dir)
    _check_same_arch(out, recipe.arch, retrain)
    out.mkdir(parents=True, exist_ok=True)
    source = chip_source(source, out, recipe, progress)
    df, label_map = prepare(source, fractions=fractions, split_seed=split_seed)
    if set_aside:
        df, label_map = _without(df, set_aside)
    splits = set(df["split"])
    if "train" not in splits or "val" not in splits:
        raise ValueError(f"the split has {sorted(splits)}; fit needs train and val "
                         "(and uses test for the final figures when present)")
    _write_inputs(df, label_map, out)
    learner = _learner(df, label_map, recipe, out, progress)
    run = learner.train_final(interrupt_after_batches=interrupt_after_batches,
                              verbose=verbose, retrain=retrain)
    if run.interrupted:
        return FitResult(run.model, label_map, df, {}, pd.DataFrame(), run, out)

    eval_split = "test" if "test" in splits else "val"
    outputs = {split: learner.outputs(df[df["split"] == split]) for split in
               ("train", "val", "test") if split in splits}     # each face inferred once
    metrics, preds, val_preds = _score(run, df, label_map, recipe, outputs, eval_split,
                                       threshold)
    info = _calibrate(learner, df, label_map, out, outputs, eval_split, folds, split_seed,
                      keep_known, target_far, recipe.arch, bool(recipe.fine_tune_epochs))
    metrics["openset"] = openset_summary(info)
    metrics["set_aside"] = sorted(map(str, set_aside))
    metrics["fit_seconds"] = round(time.perf_counter() - start, 1)
    metrics["people"] = people_report(df, eval_split)
    _write_scores(out, metrics, preds, val_preds, label_map.names)
    write_recognizer_info(source, out, recipe.image_size, recipe.flip_average, recipe.arch)
    figures = save_fit_figures(out, run, preds, list(label_map.names), eval_split, threshold)
    return FitResult(run.model, label_map, df, metrics, preds, run, out, figures)


def _without(df: pd.DataFrame, people: Sequence[str]) -> tuple[pd.DataFrame, Any]:
    """The faces without ``people``, relabelled (the split is kept).

    Raises:
        ValueError: When a name has no face, or fewer than 2 people would be left.
    """
    from facelab.data.labels import LabelMap, add_labels

    names = set(df["person"].astype(str))
    unknown = sorted(set(map(str, people)) - names)
    if unknown:
        raise ValueError(f"set_aside names people without faces here: {unknown}")
    rest = df[~df["person"].astype(str).isin(set(map(str, people)))]
    if rest["person"].nunique() < 2:
        raise ValueError("set_aside leaves fewer than 2 people to train on")
    rest = rest.drop(columns="label", errors="ignore").reset_index(drop=True)
    return add_labels(rest, LabelMap.from_manifest(rest))


def resolved_recipe(recipe: Recipe | None = None, **overrides: Any) -> Recipe:
    """The recipe with ``overrides``, checked (the face network takes 150 x 150 chips).

    Raises:
        ValueError: For an unknown arch, fine-tuning of a CNN, or a face network input
            size other than 150.
    """
    from facelab.learn.face_resnet import ARCH, CHIP_SIZE
    from facelab.learn.model import BACKBONES

    recipe = replace(recipe or Recipe(), **overrides)
    if recipe.arch not in (ARCH, "cnn", *BACKBONES):
        raise ValueError(f"unknown arch {recipe.arch!r}: use {ARCH} (the pretrained face "
                         f"network), cnn (from scratch) or one of {list(BACKBONES)}")
    if recipe.arch != ARCH:
        if recipe.fine_tune_epochs:
            raise ValueError("fine-tuning is for the pretrained face network (arch "
                             f"{ARCH!r}); a {recipe.arch} trains all its layers anyway")
        return recipe
    if "image_size" in overrides and recipe.image_size != CHIP_SIZE:
        raise ValueError(f"the face network takes {CHIP_SIZE}x{CHIP_SIZE} chips; image_size "
                         f"{recipe.image_size} is for the CNN")
    return replace(recipe, image_size=CHIP_SIZE)


def _check_same_arch(out: Path, arch: str, retrain: bool) -> None:
    """Refuse to resume a model folder that holds a model of another arch.

    Raises:
        ValueError: Naming both archs and the way out.
    """
    from facelab.learn.openset import RECOGNIZER_NAME

    info = out / RECOGNIZER_NAME
    if retrain or not info.is_file():
        return
    found = json.loads(info.read_text(encoding="utf-8")).get("arch", "cnn")
    if found != arch:
        raise ValueError(f"{out} holds a {found} model, this fit is {arch}: pass --retrain "
                         "(retrain=True) to replace it, or another --out")


def chip_source(source: Any, out: Path, recipe: Recipe, progress: bool = True) -> Any:
    """The source itself, or (the face network needs chips) its faces cut as chips.

    A face-stage folder of 150 x 150 chips (``crop_style`` ``chip``, the default), or
    anything behind one (a split folder), is used as it is.  Other faces (ready-made crops,
    square crops) go through the face stage into ``OUT/chips`` once: the detector finds each
    face's five landmarks in the crop, and a crop where it finds none becomes a row with a
    status and a reason there.
    """
    from facelab.faces.settings import read_face_settings
    from facelab.learn.face_resnet import ARCH, CHIP_SIZE

    if recipe.arch != ARCH or isinstance(source, pd.DataFrame):
        return source
    from facelab.learn.openset import find_face_settings

    found = find_face_settings(source)
    settings = read_face_settings(found.parent) if found is not None else {}
    if settings.get("crop_style") == "chip" and settings.get("crop_size") == CHIP_SIZE:
        return source
    from facelab.faces.filter import filter_faces

    target = out / "chips"
    print(f"the face network takes aligned chips: cutting them from {source} into {target} "
          "(the face stage; once)")
    filter_faces(source, target, crop_style="chip", progress=progress, verbose=True)
    return target


def _learner(df: pd.DataFrame, label_map: Any, recipe: Recipe, out: Path,
             progress: bool) -> Any:
    from facelab.learn.face_resnet import ARCH
    from facelab.learn.learners import CnnLearner, FaceResnetLearner

    if recipe.arch == ARCH:
        return FaceResnetLearner(df, label_map, recipe, out, progress)
    return CnnLearner(df, label_map, recipe, out)


def _score(run: Any, df: pd.DataFrame, label_map: Any, recipe: Recipe,
           outputs: dict[str, tuple[Any, Any]], eval_split: str, threshold: float
           ) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    """Score the held-out split once (and val, for reference): metrics, both predictions."""
    from facelab.analysis import bias
    from facelab.analysis.predictions import predictions_frame
    from facelab.learn import training as train_lib

    def frame(split: str) -> pd.DataFrame:
        return predictions_frame(df[df["split"] == split], outputs[split][0], label_map)

    preds = frame(eval_split)
    val_preds = preds if eval_split == "val" else frame("val")
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
               "num_classes": len(names), "classes": names,
               "train_rows": int((df["split"] == "train").sum()),
               "training_seconds_total": _training_seconds(run),
               "best_epoch": run.best_epoch,      # of the fine-tuning when there was one
               "epochs": recipe.fine_tune_epochs or recipe.epochs,
               "device": train_lib.device_summary(), "strategy": run.strategy,
               "recipe": asdict(recipe)}
    return metrics, preds, val_preds


def _calibrate(learner: Any, df: pd.DataFrame, label_map: Any, out: Path,
               outputs: dict[str, tuple[Any, Any]], eval_split: str, folds: int | None,
               seed: int, keep_known: Sequence[str], target_far: float, arch: str,
               fine_tuned: bool = False) -> dict[str, Any]:
    """The score model, the known faces' scores, the folds' strangers, the threshold."""
    from facelab.learn import openset
    from facelab.learn.face_resnet import ARCH, stranger_floor
    from facelab.learn.folds import fold_strangers, identity_folds

    train = df[df["split"] == "train"]
    scorer = openset.ScoreModel.from_training(outputs["train"][1], label_map.encode(
        train["person"].tolist()), len(label_map))
    scorer.save(out)
    names = label_map.names
    known = pd.concat([openset.scored_table(
        f"known_{kind}", df[df["split"] == split], *outputs[split], names, scorer)
        for kind, split in (("val", "val"), ("test", eval_split))], ignore_index=True)
    count = DEFAULT_FOLDS.get(arch, 0) if folds is None else int(folds)
    groups = identity_folds(names, count, seed, keep_known)
    strangers = fold_strangers(df, groups, learner.score_without)
    return openset.calibrate(out, known, strangers, target_far=target_far,
                             test_split=eval_split, score_model=scorer,
                             floor=stranger_floor(target_far) if arch == ARCH else None,
                             extra={"folds": len(groups), "fold_people": groups,
                                    "held_out_in_turn": sorted(p for g in groups for p in g),
                                    "never_held_out": sorted(map(str, keep_known)),
                                    "model_classes": "every person of the source",
                                    **({"floor_note": FINE_TUNED_FLOOR} if fine_tuned else {})})


def openset_summary(info: dict[str, Any]) -> dict[str, Any]:
    """The calibration in a few fields for ``metrics.json`` (``openset.json`` has it all)."""
    test = info.get("test", {})
    return {"threshold": info.get("threshold"), "target_far": info.get("target_far"),
            "method": info.get("method"), "folds": info.get("folds", 0),
            "held_out_in_turn": info.get("held_out_in_turn", []),
            "known_named_val": info.get("calibration", {}).get("correct_named"),
            "known_named_test": test.get("correct_named"),
            "strangers_accepted_test": test.get("false_accept"),
            "warning": info.get("warning"), "floor_note": info.get("floor_note")}


def people_report(df: pd.DataFrame, eval_split: str) -> dict[str, dict[str, Any]]:
    """Per person: faces per split, and a note when there are too few to train or score.

    Every person stays in the model; a person without an ``eval_split`` face has no figure
    in the scored metrics (the note says so) rather than a recall of 0.
    """
    report: dict[str, dict[str, Any]] = {}
    counts = df.groupby(["person", "split"]).size().unstack(fill_value=0)
    for person, row in counts.iterrows():
        n = {split: int(row.get(split, 0)) for split in ("train", "val", "test")}
        notes = []
        if sum(n.values()) < FEW_FACES:
            notes.append(f"only {sum(n.values())} faces: kept in the model, but its figures "
                         "are unreliable (20 or more photos a person serve best)")
        if n.get(eval_split, 0) == 0:
            notes.append(f"no {eval_split} face: not scored (no figure rather than a guess)")
        if n["val"] == 0:
            notes.append("no validation face: not in the calibration of 'unknown'")
        report[str(person)] = {"faces": sum(n.values()), **n, "note": "; ".join(notes)}
    return report


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


def _write_scores(out: Path, metrics: dict[str, Any], preds: pd.DataFrame,
                  val_preds: pd.DataFrame, names: Any) -> None:
    """Write the metrics, both splits' predictions and the per-class table into ``out``."""
    from facelab.analysis import bias
    from facelab.data.labels import relative_to

    atomic_write_bytes(out / METRICS_NAME,
                       (json.dumps(metrics, indent=2, ensure_ascii=False, default=str)
                        + "\n").encode("utf-8"))
    for name, frame in ((PREDICTIONS_NAME, preds), (VAL_PREDICTIONS_NAME, val_preds)):
        rel = frame.assign(path=relative_to(frame["path"].tolist(), out))
        atomic_write_bytes(out / name, rel.to_csv(index=False).encode("utf-8"))
    table = bias.per_class_table(preds["true"], preds["pred"], list(names))
    atomic_write_bytes(out / "per_class.csv", table.to_csv().encode("utf-8"))


def _training_seconds(run: Any) -> float:
    """Total training time over all runs that ended (a killed run's time is unknown)."""
    state_path = Path(run.out_dir) / "train_state.json"
    total = 0.0
    if state_path.is_file():
        total = float(json.loads(state_path.read_text()).get("seconds", 0.0))
    return total or float(run.seconds)
