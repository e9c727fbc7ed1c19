"""facelab export: SavedModel and TFLite exports load with plain TensorFlow, same answers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.test_recognize import trained  # noqa: F401 - the module's trained model fixture

# Loads an export the way a user without facelab would, and prints top-1 and scores.
PLAIN = """
import json, sys
import numpy as np, tensorflow as tf
folder, fmt, crops = sys.argv[1], sys.argv[2], np.load(sys.argv[3])
if fmt == "tflite":
    runner = tf.lite.Interpreter(model_path=folder + "/model.tflite").get_signature_runner()
    out = runner(images=crops)
else:
    loaded = tf.saved_model.load(folder + "/saved_model")   # keep it: it owns the variables
    out = loaded.serve(tf.constant(crops))
out = {k: np.asarray(v) for k, v in out.items()}
labels = json.load(open(folder + "/labels.json"))
threshold = json.load(open(folder + "/openset.json"))["threshold"]
assert "facelab" not in sys.modules
print(json.dumps({"top1": out["probabilities"].argmax(1).tolist(),
                  "score": out["score"].tolist(), "k": labels["num_classes"],
                  "threshold": threshold}))
"""


def _crops(model_dir: Path, size: int) -> np.ndarray:
    """Test-split crops read exactly like the training pipeline reads them."""
    import tensorflow as tf

    manifest = pd.read_csv(model_dir / "manifest.csv")
    paths = [model_dir / p for p in manifest.loc[manifest["split"] == "test", "path"]]
    return np.stack([tf.image.resize(tf.io.decode_image(tf.io.read_file(str(p)), channels=3,
                                                        expand_animations=False),
                                     (size, size)).numpy() for p in paths]).astype(np.float32)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["savedmodel", "tflite"])
def test_export_round_trip_gives_the_same_top1(trained: Path, tmp_path: Path,  # noqa: F811
                                               fmt: str) -> None:
    from facelab.cli import main
    from facelab.learn.model import load_model
    from facelab.learn.openset import probs_and_embeddings, two_headed
    from facelab.recognize.folder import read_model_folder

    model_dir = trained / "model"
    out = tmp_path / f"export-{fmt}"
    assert main(["export", str(model_dir), "--format", fmt, "--out", str(out)]) == 0
    for name in ("labels.json", "openset.json", "face_settings.json", "export.json"):
        assert (out / name).is_file(), name
    crops = _crops(model_dir, 32)
    np.save(tmp_path / "crops.npy", crops)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-c", PLAIN, str(out), fmt,
                           str(tmp_path / "crops.npy")], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    plain = json.loads(done.stdout.strip().splitlines()[-1])

    probs, feats = probs_and_embeddings(two_headed(load_model(model_dir / "model.keras")),
                                        [crops], flip_average=False)
    assert plain["top1"] == probs.argmax(1).tolist()
    scorer = read_model_folder(model_dir).score_model         # centroids and gallery
    np.testing.assert_allclose(plain["score"], scorer.scores(probs, feats), atol=1e-4)
    assert plain["k"] == probs.shape[1]


def test_export_refuses_an_unknown_format(trained: Path, tmp_path: Path) -> None:  # noqa: F811
    from facelab.cli import main
    from facelab.recognize.export import export_model

    with pytest.raises(ValueError, match="unknown export format"):
        export_model(trained / "model", tmp_path / "x", "onnx")
    assert main(["export", str(tmp_path / "missing")]) == 2
