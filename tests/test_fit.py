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
    first = sorted(p.name for p in crops.iterdir())[0]
    status = main(["fit", str(crops), "--out", str(out), "--arch", "cnn", "--epochs", "2",
                   "--image-size", "32", "--batch-size", "16", "--threshold", "50",
                   "--head", "cosine", "--folds", "2", "--keep-known", first])
    assert status == 0
    openset = json.loads((out / "openset.json").read_text())
    assert openset["never_held_out"] == [first] and openset["folds"] == 2
    assert first not in openset["held_out_in_turn"] and len(openset["held_out_in_turn"]) == 3
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
    assert metrics["recipe"]["head"] == "cosine" and metrics["recipe"]["margin"] == 0.35
    assert sum(metrics["predicted_share"].values()) == pytest.approx(1.0)
    assert not metrics["alarm"]["fired"]

    # the same call again reuses the finished run (an interrupted one resumes: test_train)
    again = fit(crops, out, arch="cnn", epochs=2, image_size=32, batch_size=16, verbose=0,
                folds=2)
    assert again.train.initial_epoch == 2 and again.metrics["accuracy"] == metrics["accuracy"]
    assert again.manifest["split"].tolist() == manifest["split"].tolist()


def test_fit_rejects_missing_source(tmp_path: Path) -> None:
    from facelab.cli import main

    assert main(["fit", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2


def test_pairs_to_refine_and_pair_aware_refining(tmp_path: Path) -> None:
    from facelab import analysis
    from facelab.data.labels import LabelMap, add_labels, load_faces
    from facelab.data.split import stratified_split
    from facelab.learn import build_cnn, pair_aware_dataset, pairs_to_refine, refine

    faces = load_faces(_crops(tmp_path / "crops"))
    df, label_map = add_labels(stratified_split(faces, (0.6, 0.4), seed=0), None)
    names = list(label_map.names)
    a, b, c = names[0], names[1], names[2]
    # validation: a is swallowed by b; c loses a quarter of its faces to a (an extra pair)
    val = df[df["split"] == "val"].reset_index(drop=True)
    predicted = val["person"].copy()
    predicted[val["person"] == a] = b
    c_rows = val.index[val["person"] == c]
    predicted[c_rows[: max(3, len(c_rows) // 4)]] = a
    preds = val.assign(true=label_map.encode(val["person"].tolist()), predicted=predicted,
                       pred=label_map.encode(predicted.tolist()))
    verdict = analysis.bias_verdict(preds["true"], preds["pred"], names)
    assert verdict.swallowed.classes == [a]
    assert pairs_to_refine(verdict) == [(a, b)]
    assert pairs_to_refine(verdict, preds) == [(a, b), (c, a)]

    # pair-aware batches: about half hold only the pairs' faces
    data = pair_aware_dataset(df, label_map, [(a, b)], image_size=32, batch_size=8,
                              pair_share=0.5, seed=0)
    only_pair = [set(np.asarray(y).argmax(axis=1)) <= {0, 1} for _, y in data]
    assert len(only_pair) == -(-int((df["split"] == "train").sum()) // 8)
    assert 0 < sum(only_pair) < len(only_pair)
    with pytest.raises(ValueError, match="no confused pairs"):
        pair_aware_dataset(df, label_map, [], image_size=32)

    model = build_cnn(len(names), 32, widths=(8, 16), blocks=(1, 1))
    before = [w.copy() for w in model.get_layer("softmax").get_weights()]
    stats = [w.copy() for w in model.get_layer("stem_bn").get_weights()]
    assert refine(model, df, LabelMap.from_names(names), [], image_size=32) is model
    refine(model, df, label_map, [(a, b)], image_size=32, epochs=1, batch_size=8,
           keep_best=False)
    after = model.get_layer("softmax").get_weights()
    assert not np.allclose(before[0], after[0])                 # trained
    frozen = model.get_layer("stem_bn").get_weights()
    assert all(np.allclose(x, y) for x, y in zip(stats, frozen, strict=True))   # BN frozen

    # keep_best: validation scored before and after each epoch; no epoch beats the model
    # as it came (a learning rate of 0 changes nothing), so that model is kept
    start = [w.copy() for w in model.get_weights()]
    refine(model, df, label_map, [(a, b)], image_size=32, epochs=2, batch_size=8, peak_lr=0.0)
    history = model.history.history
    assert len(history["val_lowest_recall"]) == len(history["val_balanced_accuracy"]) == 2
    assert history["refined_epoch"] == [0]
    assert all(np.allclose(x, y) for x, y in zip(start, model.get_weights(), strict=True))
