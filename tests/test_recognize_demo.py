"""facelab predict end to end with MTCNN: small demo -> faces -> fit -> predict group photos."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest


@pytest.fixture(scope="module")
def demo_model(small_demo_faces: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from facelab.learn.fitting import fit

    root = tmp_path_factory.mktemp("recognize-demo")
    fit(small_demo_faces / "faces", root / "model", arch="cnn", epochs=3, image_size=32,
        verbose=0)
    return root


@pytest.mark.slow
def test_group_photos_get_one_row_per_face(demo_model: Path, small_demo: Path) -> None:
    from facelab import recognize

    model = demo_model / "model"
    settings = json.loads((model / "face_settings.json").read_text())
    assert settings["backend"] == "mtcnn" and settings["detect_max_side"] == 320
    recognizer = recognize.load(model)
    photos = pd.read_csv(small_demo / "photos.csv")
    groups = photos[photos["n_faces"] > 1].head(6)
    table = recognizer.predict([small_demo / p for p in groups["path"]])
    found = table.groupby("photo").size()
    expected = dict(zip([str(small_demo / p) for p in groups["path"]], groups["n_faces"],
                        strict=True))
    assert sum(found.get(p, 0) == n for p, n in expected.items()) >= 5   # MTCNN finds them
    named = table[table["status"] == "ok"]
    assert named["decision"].isin([*recognizer.names, "unknown"]).all()
    openset = json.loads((model / "openset.json").read_text())
    assert openset["folds"] == 0 and openset["method"].startswith("wrong validation")
    assert len(recognizer.names) == 8                            # every demo person


@pytest.mark.slow
def test_cli_predict_with_the_real_detector(demo_model: Path, small_demo: Path,
                                            tmp_path: Path) -> None:
    from facelab.cli import main

    photos = pd.read_csv(small_demo / "photos.csv")
    one = small_demo / photos.loc[photos["n_faces"] == 1, "path"].iloc[0]
    assert main(["predict", str(one), "--model", str(demo_model / "model"), "--out",
                 str(tmp_path), "--annotate", "--no-progress"]) == 0
    table = pd.read_csv(tmp_path / "predictions.csv")
    assert len(table) == 1 and table.iloc[0]["status"] == "ok"
    assert len(list((tmp_path / "annotated").glob("*.jpg"))) == 1
