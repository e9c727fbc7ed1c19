"""facelab fit: the whole recipe on a small folder of face crops, within the smoke budget."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.conftest import SHARED_DATA

PEOPLE, PER_PERSON = 4, 20


def _crops(root: Path) -> Path:
    """A folder of crops per person: a sample of pubfig83-dev, or synthetic faces."""
    source = SHARED_DATA / "pubfig83-dev"
    if source.is_dir():
        for person in sorted(p for p in source.iterdir() if p.is_dir())[:PEOPLE]:
            (root / person.name).mkdir(parents=True)
            for f in sorted(person.glob("*.jpg"))[:PER_PERSON]:
                shutil.copy(f, root / person.name / f.name)
        return root
    rng = np.random.default_rng(0)
    for k in range(PEOPLE):
        (root / f"Person {k}").mkdir(parents=True)
        base = rng.uniform(0, 255, (8, 8, 3))
        for i in range(PER_PERSON):
            img = np.kron(base, np.ones((12, 12, 1))) + rng.normal(0, 20, (96, 96, 3))
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(
                root / f"Person {k}" / f"{i}.jpg")
    return root


def test_fit_cli_writes_everything_and_resumes(tmp_path: Path) -> None:
    from facelab.cli import main
    from facelab.learn.fitting import FIGURES, fit

    crops = _crops(tmp_path / "crops")
    out = tmp_path / "out"
    status = main(["fit", str(crops), "--out", str(out), "--epochs", "2",
                   "--image-size", "32", "--batch-size", "16", "--threshold", "50"])
    assert status == 0
    for name in ("model.keras", "labels.json", "manifest.csv", "metrics.json",
                 "history.csv", "per_class.csv", "predictions.csv", *FIGURES):
        assert (out / name).is_file(), name
    manifest = pd.read_csv(out / "manifest.csv")
    assert set(manifest["split"]) == {"train", "val", "test"}
    assert (out / manifest["path"].iloc[0]).is_file()           # relative to out
    labels = json.loads((out / "labels.json").read_text())
    assert labels["num_classes"] == PEOPLE
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split"] == "test"
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "per_class_recall",
                "predicted_share", "alarm", "device", "recipe"):
        assert key in metrics
    assert len(metrics["per_class_recall"]) == PEOPLE
    assert sum(metrics["predicted_share"].values()) == pytest.approx(1.0)
    assert not metrics["alarm"]["fired"]

    # the same call again reuses the finished run (an interrupted one resumes: test_train)
    again = fit(crops, out, epochs=2, image_size=32, batch_size=16, verbose=0)
    assert again.train.initial_epoch == 2 and again.metrics["accuracy"] == metrics["accuracy"]
    assert again.manifest["split"].tolist() == manifest["split"].tolist()


def test_fit_rejects_missing_source(tmp_path: Path) -> None:
    from facelab.cli import main

    assert main(["fit", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
