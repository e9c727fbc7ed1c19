"""The tf.data input pipeline: shuffled file list -> parallel decode -> one-hot batches.

The blog post fed its model class by class (20 photos of Brad Pitt, then 20 of Angelina
Jolie, ...), and the model leaned toward some classes even after balancing.  A shuffle
buffer smaller than the data does not fix that either: over class-ordered files,
``Dataset.shuffle(buffer_size=small)`` only mixes neighbours, so each batch still holds
one or two classes (TensorFlow issue 36626).  :func:`make_dataset` therefore

1. shuffles the **file list** (paths and integer labels, not decoded images) with a
   buffer as large as the split, reshuffled every epoch, *before* decoding - or, by
   default (``balance="sample"``), draws classes uniformly with
   ``tf.data.Dataset.sample_from_datasets`` over one fully shuffled, repeating dataset
   per class;
2. reads, decodes and resizes in parallel (``num_parallel_calls=AUTOTUNE``, order kept,
   so a seed gives one sequence), makes the one-hot vector with ``tf.one_hot``;
3. batches, optionally augments (Keras layers, :mod:`facelab.data.augment`), prefetches.

Images come out as float32 in [0, 255] (like ``keras.utils.image_dataset_from_directory``),
shape ``(batch, height, width, 3)``; the model rescales.  Validation and test datasets
are never shuffled, balanced or augmented.

Unreadable files (missing, empty, not an image, truncated) are found up front by
:func:`check_files` (a cheap look at each file's first and last bytes): by default
``make_dataset`` raises naming them; with ``on_error="skip"`` it drops and logs them and
also skips any file that still fails to decode (``Dataset.ignore_errors``), never hangs.

:func:`label_order_scenarios` and :func:`plot_label_order` measure and draw the label
order of the first batches for class-ordered feeding, a too-small shuffle buffer, and
this pipeline.  TensorFlow is imported inside the functions only.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from facelab.data.labels import LabelMap, load_faces
from facelab.manifest import LABELS_NAME

if TYPE_CHECKING:
    import tensorflow as tf


log = logging.getLogger(__name__)


BALANCE_MODES = ("sample", "undersample", "oversample", "weights", "none")


TRAIN = "train"


# ---------------------------------------------------------------------------- files
def _magic_problem(head: bytes, tail: bytes, size: int) -> str:
    """Return why bytes do not look like a whole image ('' when they do)."""
    if size == 0:
        return "empty file"
    if head.startswith(b"\xff\xd8\xff"):
        if b"\xff\xd9" not in tail:
            return "truncated JPEG (no end-of-image marker)"
        return ""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "" if b"IEND" in tail else "truncated PNG (no IEND chunk)"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "" if tail.rstrip(b"\x00").endswith(b";") else "truncated GIF"
    if head.startswith(b"BM"):
        return ""
    return "not a JPEG, PNG, GIF or BMP image"


def check_files(paths: Iterable[str]) -> pd.DataFrame:
    """Find files TensorFlow could not decode, cheaply (first 16 and last 64 bytes).

    Args:
        paths: Image files.

    Returns:
        One row per bad file: ``path`` and ``reason`` (empty when all are fine).
    """
    bad = []
    for path in paths:
        try:
            size = os.path.getsize(path)
            with open(path, "rb") as handle:
                head = handle.read(16)
                if size > 64:
                    handle.seek(-64, os.SEEK_END)
                tail = handle.read(64) if size > 64 else head
        except OSError as error:
            bad.append((path, f"cannot read: {error.strerror or error}"))
            continue
        problem = _magic_problem(head, tail, size)
        if problem:
            bad.append((path, problem))
    return pd.DataFrame(bad, columns=["path", "reason"])


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


# ---------------------------------------------------------------------------- dataset
def _split_rows(manifest: pd.DataFrame, split: str) -> pd.DataFrame:
    if "split" not in manifest.columns:
        raise ValueError("the manifest has no split column: make the split first "
                         "(facelab.data.split.split_stage / stratified_split, notebook 03)")
    rows = manifest[manifest["split"] == split]
    if rows.empty:
        present = sorted(manifest["split"].astype(str).unique())
        raise ValueError(f"split {split!r} is empty (splits present: {present}): "
                         "check the split name and fractions")
    return rows


def _size(image_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(image_size, (int, np.integer)):
        return int(image_size), int(image_size)
    h, w = (int(v) for v in image_size)
    return h, w


def _open_manifest(manifest: pd.DataFrame | str | os.PathLike[str], labels: LabelMap | None
                   ) -> tuple[pd.DataFrame, LabelMap | None]:
    """The manifest table, and the folder's ``labels.json`` when one is passed and none given."""
    if isinstance(manifest, pd.DataFrame):
        return manifest, labels
    folder = Path(manifest)
    table = load_faces(folder)
    if labels is None and (folder / LABELS_NAME).is_file():
        labels = LabelMap.load(folder)
    return table, labels


def _balance_mode(balance: str | None, on_error: str, batch_size: int) -> str:
    """Check the dataset options; return the balance mode (``"none"`` for ``None``)."""
    mode = "none" if balance is None else str(balance)
    if mode not in BALANCE_MODES:
        raise ValueError(f"unknown balance {balance!r}: use one of {list(BALANCE_MODES)}")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error={on_error!r}: use 'raise' or 'skip'")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    return mode


def _drop_unreadable(rows: pd.DataFrame, split: str, on_error: str) -> pd.DataFrame:
    """Raise naming the unreadable files (``on_error="raise"``), or drop and log them."""
    bad = check_files(rows["path"].tolist())
    if not len(bad):
        return rows
    listing = "; ".join(f"{p} ({r})" for p, r in bad.head(5).itertuples(index=False))
    more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
    if on_error == "raise":
        raise ValueError(f"{len(bad)} unreadable image file(s) in split {split!r}: "
                         f"{listing}{more}. Fix or drop those rows, or pass "
                         "on_error='skip'")
    log.warning("skipping %d unreadable image file(s) in split %r: %s%s",
                len(bad), split, listing, more)
    rows = rows[~rows["path"].isin(set(bad["path"]))]
    if rows.empty:
        raise ValueError(f"every file of split {split!r} is unreadable")
    return rows


def _resampled(rows: pd.DataFrame, mode: str, seed: int) -> pd.DataFrame:
    """The rows under- or oversampled to equal classes (as they are for other modes)."""
    if mode == "undersample":
        from facelab.data.balance import undersample

        return undersample(rows, seed=seed)
    if mode == "oversample":
        from facelab.data.balance import oversample

        return oversample(rows, seed=seed)
    return rows


def _slices(items: list[Any], ids: np.ndarray) -> tf.data.Dataset:
    """A dataset of (path or bytes, integer label) pairs."""
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices((tf.constant(items, tf.string),
                                               tf.constant(ids, tf.int32)))


def _class_draws(items: list[Any], ids: np.ndarray, seed: int,
                 epoch_size: int | None) -> tf.data.Dataset:
    """Uniform class draws over one shuffled, repeating dataset per class (an epoch long)."""
    import tensorflow as tf

    per_class = []
    for k in np.unique(ids):
        members = np.flatnonzero(ids == k)
        ds_k = _slices([items[i] for i in members], ids[members])
        ds_k = ds_k.shuffle(len(members), seed=seed * 1009 + int(k) + 1,
                            reshuffle_each_iteration=True).repeat()
        per_class.append(ds_k)
    ds = tf.data.Dataset.sample_from_datasets(
        per_class, weights=[1.0 / len(per_class)] * len(per_class), seed=seed,
        rerandomize_each_iteration=True)
    return ds.take(int(epoch_size or len(ids)))


def _decoded(ds: tf.data.Dataset, read_bytes: bool, size: tuple[int, int], depth: int,
             skip_errors: bool) -> tf.data.Dataset:
    """Read (unless cached), decode and resize each image in parallel; one-hot its label."""
    import tensorflow as tf

    height, width = size

    def load(item: tf.Tensor, k: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        data = item if read_bytes else tf.io.read_file(item)
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
        image = tf.image.resize(image, (height, width))
        image.set_shape((height, width, 3))
        return image, tf.one_hot(k, depth, dtype=tf.float32)

    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    if skip_errors:
        ds = ds.ignore_errors(log_warning=True)
    return ds


def _augmented(ds: tf.data.Dataset, augment: Any, seed: int) -> tf.data.Dataset:
    """Batches through the augmentation (``True``: the fused layer seeded with ``seed``)."""
    import tensorflow as tf

    if augment is True:
        from facelab.data.augment import fused_augmentation

        layer = fused_augmentation(seed=seed)
    else:
        layer = augment
    return ds.map(lambda x, y: (layer(x, training=True), y),
                  num_parallel_calls=tf.data.AUTOTUNE)


def make_dataset(manifest: pd.DataFrame | str | os.PathLike[str], split: str = TRAIN, *,
                 image_size: int | Sequence[int] = 100, batch_size: int = 32,
                 balance: str | None = "sample", augment: Any = False, seed: int = 0,
                 shuffle: bool = True, labels: LabelMap | None = None,
                 epoch_size: int | None = None, cache: bool = False,
                 on_error: str = "raise", drop_remainder: bool = False,
                 labels_only: bool = False) -> tf.data.Dataset:
    """Build the tf.data dataset of (image batch, one-hot batch) for one split.

    Args:
        manifest: A manifest with ``path``, ``person`` and ``split`` (e.g. from
            :func:`facelab.data.split.split_stage`), or a split stage folder (its
            ``labels.json`` is then used when ``labels`` is not given).
        split: ``train``, ``val`` or ``test``.  Only ``train`` is shuffled, balanced and
            augmented; the others keep manifest order and ignore those arguments.
        image_size: Output height and width (an int for square).
        batch_size: Examples per batch.
        balance: ``"sample"`` (default: uniform class draws with
            ``sample_from_datasets``), ``"undersample"`` (k = smallest class per class,
            fixed subset), ``"oversample"`` (repeat rows up to the largest class),
            ``"weights"`` or ``"none"``/``None`` (the data as it is; for ``weights`` pass
            :func:`facelab.data.balance.class_weights` to ``fit``).
        augment: ``False``, ``True`` (``facelab.data.augment.fused_augmentation(seed=seed)``:
            the fast fused layer) or any Keras layer (e.g.
            ``facelab.data.augment.make_augmentation()``) applied to training batches.
        seed: Seed of the shuffles, the class draws and the default augmentation.
        shuffle: Shuffle the training file list (``False`` shows class-ordered feeding;
            with ``balance="sample"`` the class draws are random regardless).
        labels: The label map (default: built from all rows of the manifest, so every
            split has the same ids).
        epoch_size: Examples per epoch for ``balance="sample"`` (default: the split's
            size); the other modes use every row once per epoch.
        cache: Read every file's bytes once, now, and keep them in memory (the
            compressed JPEGs: about 4 KB per 100x100 crop); the shuffle still happens
            before decoding.  Unlike ``Dataset.cache`` it never discards a partial cache
            when an epoch ends before a class was read in full.
        on_error: ``"raise"`` (default: a ValueError naming the unreadable files) or
            ``"skip"`` (drop them, log a warning with their count and names).
        drop_remainder: Drop the last partial batch.
        labels_only: Yield batches of integer labels only, without reading any file (the
            same order as the full dataset with the same arguments, unreadable files
            aside: they are not checked; for diagnostics).

    Returns:
        A ``tf.data.Dataset`` of ``(float32 [B, H, W, 3] in [0, 255], float32 [B, K])``.

    Raises:
        ValueError: Empty split, unknown balance mode, or unreadable files with
            ``on_error="raise"``.
        facelab.data.labels.UnknownLabelError: A person not in ``labels``.
    """
    import tensorflow as tf

    manifest, labels = _open_manifest(manifest, labels)
    mode = _balance_mode(balance, on_error, batch_size)
    size = _size(image_size)
    label_map = labels or LabelMap.from_manifest(manifest)
    rows = _split_rows(manifest, split)
    training = split == TRAIN
    if not training:
        mode, shuffle, augment = "none", False, False
    if not labels_only:
        rows = _drop_unreadable(rows, split, on_error)
    rows = _resampled(rows, mode, seed)
    ids = label_map.encode(rows["person"].tolist())
    paths = rows["path"].astype(str).tolist()
    read_bytes = cache and not labels_only
    if read_bytes:   # the cache: every file's bytes, read once, here (no partial caches)
        unique = {p: _read_bytes(p) for p in dict.fromkeys(paths)}
        items: list[Any] = [unique[p] for p in paths]
    else:
        items = paths
    if mode == "sample":
        ds = _class_draws(items, ids, seed, epoch_size)
    else:
        ds = _slices(items, ids)
        if training and shuffle:
            ds = ds.shuffle(len(ids), seed=seed, reshuffle_each_iteration=True)
    if labels_only:
        return ds.map(lambda f, k: k).batch(batch_size, drop_remainder=drop_remainder)
    ds = _decoded(ds, read_bytes, size, len(label_map), on_error == "skip")
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    if training and augment is not False and augment is not None:
        ds = _augmented(ds, augment, seed)
    return ds.prefetch(tf.data.AUTOTUNE)


def dataset_labels(dataset: Iterable[Any], max_batches: int | None = None) -> np.ndarray:
    """Integer labels of a dataset's batches, concatenated in order.

    Accepts batches of (images, one-hot) or of integer labels (``labels_only``).
    """
    out = []
    for i, batch in enumerate(dataset):
        if max_batches is not None and i >= max_batches:
            break
        y = batch[1] if isinstance(batch, (tuple, list)) else batch
        y = np.asarray(y)
        out.append(y.argmax(axis=-1) if y.ndim == 2 else y)
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def label_counts(labels: np.ndarray, label_map: LabelMap) -> pd.Series:
    """Occurrences of each class id in ``labels``, indexed by name."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(label_map))
    return pd.Series(counts, index=list(label_map.names))


# ---------------------------------------------------------------------------- diagnostic
def expected_distinct_classes(batch_size: int, probs: Sequence[float] | int) -> float:
    """Return the expected number of distinct classes in a batch of independent draws.

    With class probabilities p_k, class k is absent from a batch of b draws with
    probability (1 - p_k)^b, so the expectation is sum_k 1 - (1 - p_k)^b; with K equally
    likely classes that is K (1 - (1 - 1/K)^b) (e.g. K=40, b=32: 22.2 classes).

    Args:
        batch_size: Draws per batch, b.
        probs: The class probabilities, or K for uniform classes.
    """
    p = np.full(int(probs), 1.0 / int(probs)) if isinstance(probs, (int, np.integer)) \
        else np.asarray(probs, dtype=float) / np.sum(probs)
    return float(np.sum(1.0 - (1.0 - p) ** batch_size))


def batch_stats(batches: np.ndarray) -> pd.DataFrame:
    """Per batch: distinct classes and the largest class's share."""
    rows = []
    for i, b in enumerate(np.asarray(batches)):
        _, counts = np.unique(b, return_counts=True)
        rows.append({"batch": i, "distinct": len(counts), "top_share": counts.max() / len(b)})
    return pd.DataFrame(rows)


def label_order_scenarios(manifest: pd.DataFrame, split: str = TRAIN, *, batch_size: int = 32,
                          n_batches: int = 20, small_buffer: int = 128, seed: int = 0,
                          labels: LabelMap | None = None) -> dict[str, np.ndarray]:
    """Label sequences of the first batches under three ways of feeding class-ordered files.

    The files of ``split`` are first sorted by class (as a folder-per-person listing or
    the post's CSV gives them).  Then:

    * ``class-ordered``: fed as they are (the post's first model);
    * ``shuffle(buffer=small_buffer)``: ``Dataset.shuffle`` with a buffer smaller than the
      data (still nearly ordered: TensorFlow issue 36626);
    * ``facelab``: :func:`make_dataset` with its defaults (labels only, no decoding).

    Args:
        manifest: Manifest with ``person`` and ``split``.
        split: The split to feed.
        batch_size: Batch size.
        n_batches: Batches to record (fewer if the split is smaller).
        small_buffer: The too-small shuffle buffer.
        seed: Seed of the shuffles.
        labels: Label map (default: built from the manifest).

    Returns:
        ``{scenario: int array (batches, batch_size)}`` of class ids.
    """
    import tensorflow as tf

    label_map = labels or LabelMap.from_manifest(manifest)
    rows = _split_rows(manifest, split).sort_values("person", kind="stable")
    ids = label_map.encode(rows["person"].tolist())
    n = min(n_batches, len(ids) // batch_size)
    if n < 1:
        raise ValueError(f"split {split!r} has {len(ids)} rows, fewer than one batch of "
                         f"{batch_size}")

    def first(ds: tf.data.Dataset) -> np.ndarray:
        got = dataset_labels(ds.batch(batch_size, drop_remainder=True), max_batches=n)
        return got.reshape(n, batch_size)

    ordered = tf.data.Dataset.from_tensor_slices(tf.constant(ids, tf.int32))
    small = ordered.shuffle(small_buffer, seed=seed, reshuffle_each_iteration=True)
    facelab_ds = make_dataset(rows, split, batch_size=batch_size, seed=seed, labels=label_map,
                              drop_remainder=True, labels_only=True)
    return {"class-ordered": first(ordered),
            f"shuffle(buffer={small_buffer})": first(small),
            "facelab": dataset_labels(facelab_ds, max_batches=n).reshape(n, batch_size)}


def label_order_table(scenarios: Mapping[str, np.ndarray], num_classes: int) -> pd.DataFrame:
    """Mean/min distinct classes per batch and mean top-class share, per scenario.

    The ``uniform_expectation`` column is :func:`expected_distinct_classes` for K equally
    likely classes: what perfect mixing gives.
    """
    rows = []
    for name, batches in scenarios.items():
        stats = batch_stats(batches)
        rows.append({"scenario": name, "mean_distinct": stats["distinct"].mean(),
                     "min_distinct": int(stats["distinct"].min()),
                     "mean_top_share": stats["top_share"].mean(),
                     "uniform_expectation": expected_distinct_classes(batches.shape[1],
                                                                      num_classes)})
    return pd.DataFrame(rows).set_index("scenario").round(3)
