"""Export a trained model so that it loads without facelab: SavedModel or TFLite.

The export is traced in inference mode, so the fused augmentation layer (facelab's own
Keras class) becomes an identity and leaves no trace: plain TensorFlow
(``tf.saved_model.load``, endpoint ``serve``; keep the loaded object alive while calling
it) or the TFLite interpreter (its one signature) runs it.  Input ``images``: float32
``[N, S, S, 3]`` RGB in [0, 255] (a face crop cut like ``facelab predict`` does, resized
to S; 150 x 150 chips for the face network); outputs: ``probabilities`` ``[N, K]``, the
open-set ``score`` ``[N]`` (the class centroids and the gallery of training embeddings are
baked in) and the unit-length ``embedding`` ``[N, D]`` (no flip averaging, so numbers
differ slightly from facelab's, which averages each face with its mirror image).  Beside
the model: ``labels.json`` (class names in id order), ``openset.json`` (the threshold and
what the score is) and ``face_settings.json`` (how to detect and crop faces), plus
``export.json`` saying all this.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from facelab.io import atomic_write_bytes
from facelab.lock import writes_folder
from facelab.manifest import FACE_SETTINGS_NAME, LABELS_NAME
from facelab.recognize.folder import read_model_folder

FORMATS = ("savedmodel", "tflite")
TFLITE_NAME = "model.tflite"
SAVEDMODEL_DIR = "saved_model"


def _score_fn(score_model: Any) -> Any:
    """The open-set score in TensorFlow (as :meth:`ScoreModel.scores`, on one image)."""
    import tensorflow as tf

    centroids = tf.constant(score_model.centroids, tf.float32)
    k, weight = int(score_model.k), float(score_model.second_weight)
    gallery = labels = None
    if score_model.gallery is not None and k:
        gallery = tf.constant(score_model.gallery, tf.float32)
        labels = tf.constant(score_model.gallery_labels, tf.int64)

    def score(probs: Any, unit_feats: Any) -> Any:
        top = tf.argmax(probs, axis=1)
        cos = tf.matmul(unit_feats, centroids, transpose_b=True)
        mine = tf.one_hot(top, tf.shape(cos)[1], on_value=True, off_value=False)
        own = tf.reduce_sum(tf.where(mine, cos, 0.0), axis=1)
        if gallery is not None:
            sims = tf.matmul(unit_feats, gallery, transpose_b=True)
            same = tf.equal(labels[None, :], top[:, None])
            best = tf.math.top_k(tf.where(same, sims, -3.0), k=min(k, int(gallery.shape[0])))
            real = best.values > -2.0
            count = tf.reduce_sum(tf.cast(real, tf.float32), axis=1)
            total = tf.reduce_sum(tf.where(real, best.values, 0.0), axis=1)
            own = tf.where(count > 0, total / tf.maximum(count, 1.0), own)
        if weight and int(centroids.shape[0]) > 1:
            own = own - weight * tf.reduce_max(tf.where(mine, -3.0, cos), axis=1)
        return own

    return score


def _save_savedmodel(model: Any, score_model: Any, image_size: int, target: Path) -> Path:
    """Trace the model in inference mode into a SavedModel (endpoint ``serve``).

    ``serve(images)`` returns ``{"probabilities": [N, K], "score": [N], "embedding": [N, D]}``
    (no flip averaging).
    """
    import keras
    import tensorflow as tf

    from facelab.learn.openset import two_headed

    if target.exists():
        shutil.rmtree(target)
    heads = two_headed(model)
    score = _score_fn(score_model)

    def serve(images: Any) -> dict[str, Any]:
        probs, feats = heads(images, training=False)
        unit = tf.math.l2_normalize(feats, axis=1)
        return {"probabilities": probs, "score": score(probs, unit), "embedding": unit}

    archive = keras.export.ExportArchive()
    archive.track(heads)
    archive.add_endpoint(name="serve", fn=serve,
                         input_signature=[tf.TensorSpec([None, image_size, image_size, 3],
                                                        tf.float32, name="images")])
    archive.write_out(str(target), verbose=False)
    return target


def _save_tflite(saved: Path, target: Path) -> Path:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
    atomic_write_bytes(target, converter.convert())
    return target


@writes_folder(lambda a: a["out"] if a["out"] is not None       # one writer (facelab.lock)
               else Path(a["model_dir"]) / f"export-{a['fmt']}", "export")
def export_model(model_dir: str | os.PathLike[str], out: str | os.PathLike[str] | None = None,
                 fmt: str = "savedmodel") -> Path:
    """Write the model of ``model_dir`` as a SavedModel folder or a ``.tflite`` file.

    Args:
        model_dir: A ``facelab fit`` output folder.
        out: Where to write (default ``MODEL_DIR/export-<format>``); created.
        fmt: ``savedmodel`` or ``tflite``.

    Returns:
        The export folder (the model, ``labels.json``, ``openset.json``,
        ``face_settings.json`` and ``export.json`` inside).

    Raises:
        ValueError: For an unknown format.
        facelab.recognize.folder.ModelFolderError: For an unusable model folder.
    """
    import tempfile

    from facelab.learn.model import load_model
    from facelab.learn.openset import OPENSET_NAME

    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}: use one of {list(FORMATS)}")
    folder = read_model_folder(model_dir, crops=True)
    target = Path(out) if out is not None else folder.path / f"export-{fmt}"
    target.mkdir(parents=True, exist_ok=True)
    model = load_model(folder.model_path, compile=False)
    if fmt == "savedmodel":
        file = _save_savedmodel(model, folder.score_model, folder.image_size,
                                target / SAVEDMODEL_DIR)
    else:
        with tempfile.TemporaryDirectory(prefix="facelab-export-") as scratch:
            saved = _save_savedmodel(model, folder.score_model, folder.image_size,
                                     Path(scratch) / "sm")
            file = _save_tflite(saved, target / TFLITE_NAME)
    for name in (LABELS_NAME, OPENSET_NAME, FACE_SETTINGS_NAME):
        if (folder.path / name).is_file():
            shutil.copyfile(folder.path / name, target / name)
    info = {"format": fmt, "model": file.name, "input": {
        "name": "images", "shape": [None, folder.image_size, folder.image_size, 3],
        "dtype": "float32", "range": "RGB 0..255, a face crop resized to the input size"
        + (" (a 150x150 chip cut as face_settings.json says)" if folder.arch == "face-resnet"
           else "")},
        "output": {"probabilities": "[N, K], K = labels.json classes in id order",
                   "score": "[N] open-set score: 'unknown' when below threshold",
                   "embedding": "[N, D] the unit-length face embedding"},
        "arch": folder.arch,
        "threshold": folder.threshold, "flip_average": folder.flip_average,
        "names": list(folder.names)}
    atomic_write_bytes(target / "export.json",
                       (json.dumps(info, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    return target


def load_export(path: str | os.PathLike[str]) -> Any:
    """Load an export with plain TensorFlow: ``images -> {"probabilities", "score", ...}``.

    Works for both formats (SavedModel via ``tf.saved_model.load``, TFLite via the
    interpreter's signature runner); uses no facelab class, as a user without facelab would.
    """
    import numpy as np
    import tensorflow as tf

    folder = Path(path)
    if (folder / TFLITE_NAME).is_file():
        interpreter = tf.lite.Interpreter(model_path=str(folder / TFLITE_NAME))
        runner = interpreter.get_signature_runner()

        def run_tflite(images: Any) -> dict[str, np.ndarray]:
            out = runner(images=np.asarray(images, np.float32))
            return {k: np.asarray(v) for k, v in out.items()}

        return run_tflite
    loaded = tf.saved_model.load(str(folder / SAVEDMODEL_DIR))

    def run_saved(images: Any) -> dict[str, np.ndarray]:
        out = loaded.serve(tf.constant(np.asarray(images, np.float32)))
        return {k: np.asarray(v) for k, v in out.items()}

    return run_saved
