"""facelab fit with the pretrained face network: everyone in the model, folds, crops, export."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("face_recognition_models",
                    reason="face-recognition-models (the network's weights) is not installed")


@pytest.fixture(scope="module")
def chips(small_demo_faces: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the small demo's face stage (chips) and room for a model."""
    root = tmp_path_factory.mktemp("face-resnet")
    (root / "faces").symlink_to(small_demo_faces / "faces", target_is_directory=True)
    return root


@pytest.fixture(scope="module")
def model(chips: Path) -> Path:
    from facelab.cli import main

    assert main(["fit", str(chips / "faces"), "--out", str(chips / "model"),
                 "--epochs", "10", "--threshold", "50"]) in (0, 1)
    return chips / "model"


@pytest.mark.slow
def test_everyone_is_in_the_model_and_unknown_is_calibrated_in_folds(model: Path,
                                                                     chips: Path) -> None:
    faces = pd.read_csv(chips / "faces" / "manifest.csv", keep_default_na=False)
    people = sorted(faces.loc[faces["status"] == "ok", "person"].unique())
    labels = json.loads((model / "labels.json").read_text())
    assert [c["name"] for c in labels["classes"]] == people
    openset = json.loads((model / "openset.json").read_text())
    assert openset["folds"] == 5 and sorted(openset["held_out_in_turn"]) == people
    assert openset["method"].startswith("people held out in rotation")
    assert {"unknown_cal", "unknown_test"} <= set(pd.read_csv(
        model / "openset_scores.csv")["set"])
    metrics = json.loads((model / "metrics.json").read_text())
    assert metrics["recipe"]["arch"] == "face-resnet" and metrics["recipe"]["image_size"] == 150
    assert metrics["classes"] == people and set(metrics["people"]) == set(people)
    assert metrics["openset"]["held_out_in_turn"] == people
    assert metrics["openset"]["floor_note"] is None      # not fine-tuned
    assert json.loads((model / "recognizer.json").read_text())["arch"] == "face-resnet"
    assert (model / "gallery.npz").is_file() and (model / "head" / "history.csv").is_file()


@pytest.mark.slow
def test_predict_and_export_a_face_network_model(model: Path, small_demo: Path,
                                                 tmp_path: Path) -> None:
    from facelab import recognize
    from facelab.recognize.export import export_model, load_export

    photos = pd.read_csv(small_demo / "photos.csv")
    group = small_demo / photos.loc[photos["n_faces"] > 1, "path"].iloc[0]
    recognizer = recognize.load(model)
    table = recognizer.predict([group])
    assert len(table) >= 2 and table["decision"].isin([*recognizer.names, "unknown",
                                                       "skipped"]).all()
    target = export_model(model, tmp_path / "export")
    manifest = pd.read_csv(model / "manifest.csv")
    from PIL import Image

    chips = np.stack([np.asarray(Image.open(model / p).convert("RGB")) for p in
                      manifest.loc[manifest["split"] == "test", "path"].head(8)])
    out = load_export(target)(chips.astype(np.float32))
    assert out["embedding"].shape == (len(chips), 128)
    np.testing.assert_allclose(np.linalg.norm(out["embedding"], axis=1), 1, atol=1e-5)
    probs = recognizer.model.predict(chips.astype(np.float32), verbose=0)
    assert out["probabilities"].argmax(1).tolist() == probs.argmax(1).tolist()
    info = json.loads((target / "export.json").read_text())
    assert info["arch"] == "face-resnet" and "embedding" in info["output"]


@pytest.fixture(scope="module")
def ready_crops(tmp_path_factory: pytest.TempPathFactory, pubfig83_dir: Path
                ) -> tuple[Path, list[Path]]:
    """3 PubFig83 people's crops (one with 4 only), and those people's folders."""
    crops = tmp_path_factory.mktemp("ready") / "crops"
    people = sorted(p for p in pubfig83_dir.iterdir() if p.is_dir())[:3]
    for i, person in enumerate(people):
        (crops / person.name).mkdir(parents=True)
        for f in sorted(person.glob("*.jpg"))[: 4 if i == 0 else 16]:
            shutil.copy(f, crops / person.name / f.name)
    return crops, people


@pytest.mark.slow
def test_ready_crops_become_chips_and_predict_takes_crops(tmp_path: Path, ready_crops) -> None:
    from facelab import recognize
    from facelab.cli import main

    crops, people = ready_crops
    out = tmp_path / "model"
    assert main(["fit", str(crops), "--out", str(out), "--epochs", "10",
                 "--threshold", "50"]) in (0, 1)
    assert (out / "chips" / "face_settings.json").is_file()
    manifest = pd.read_csv(out / "manifest.csv")
    assert manifest["path"].str.startswith("chips/").all()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_classes"] == 3                         # the one with 4 faces too
    few = metrics["people"][people[0].name]
    assert few["faces"] <= 4 and "only" in few["note"]
    openset = json.loads((out / "openset.json").read_text())
    assert [len(g) for g in openset["fold_people"]] == [1, 1, 1]
    held = [str(f) for f in sorted(people[1].glob("*.jpg"))[20:26]]      # unseen crops
    table = recognize.load(out, crops=True).predict(held, crops=True)
    assert len(table) == len(held) and (table["face_index"] == 0).all()
    assert (table["name_1"] == people[1].name).mean() >= 0.8


@pytest.mark.slow
def test_fine_tuning_trains_the_last_stages(tmp_path: Path, ready_crops) -> None:
    from facelab.learn import fit, load_fit
    from facelab.learn.transfer import set_fine_tunable

    crops, _ = ready_crops
    result = fit(crops, tmp_path / "model", epochs=5, fine_tune_epochs=1, verbose=0,
                 threshold=50)
    assert result.metrics["recipe"]["fine_tune_epochs"] == 1
    state = json.loads((tmp_path / "model" / "train_state.json").read_text())
    assert state["completed"] and state["epochs"] == 1
    fitted = load_fit(tmp_path / "model")
    model = fitted.load_model()
    network = model.get_layer("face_resnet")
    assert set_fine_tunable(network) == 3 * 2 + 2 + 1   # 4 blocks' convolutions, projection
    assert len(fitted.predictions) == result.metrics["n"]
    # its threshold comes from the frozen network: said in openset.json and the summary
    from facelab.learn.cli import summary_lines

    assert result.metrics["epochs"] == 1
    assert "frozen network" in result.metrics["openset"]["floor_note"]
    assert any(line.startswith("NOTE: fine-tuned") for line in summary_lines(result.metrics))


def test_predict_crops_with_a_cnn_trained_on_ready_crops(tmp_path: Path) -> None:
    from facelab import recognize
    from facelab.learn.fitting import fit
    from facelab.recognize.folder import ModelFolderError
    from tests.test_fit import _crops

    crops = _crops(tmp_path / "crops")
    fit(crops, tmp_path / "model", arch="cnn", epochs=1, image_size=32, batch_size=16,
        verbose=0)
    with pytest.raises(ModelFolderError, match="--crops"):
        recognize.load(tmp_path / "model")
    files = sorted(crops.glob("*/*.jpg"))[:5]
    table = recognize.load(tmp_path / "model", crops=True).predict(files, crops=True)
    assert len(table) == 5 and (table["status"] == "ok").all()
    assert table["decision"].isin([*sorted(p.name for p in crops.iterdir()),
                                   "unknown"]).all()


def test_bad_arguments_for_the_face_network(tmp_path: Path) -> None:
    from facelab.learn.fitting import fit, resolved_recipe

    with pytest.raises(ValueError, match="150x150 chips"):
        resolved_recipe(image_size=64)
    with pytest.raises(ValueError, match="fine-tuning is for the pretrained"):
        resolved_recipe(arch="cnn", fine_tune_epochs=2)
    with pytest.raises(ValueError, match="unknown arch 'vgg'"):
        resolved_recipe(arch="vgg")
    out = tmp_path / "model"
    out.mkdir()
    (out / "recognizer.json").write_text(json.dumps({"arch": "cnn"}))
    with pytest.raises(ValueError, match="holds a cnn model.*--retrain"):
        fit(tmp_path / "nowhere", out)
