"""facelab.recognize: predict on files, folders, manifests and URLs; open set; bad input.

A fake detector (no MTCNN) keeps these fast: the photo's top-left pixel says how many
faces it shows (0-3, in fixed slots), and each person's face is a fixed random pattern.
A tiny model is trained once per module on such photos with ``facelab fit``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from facelab.faces.base import Face

PEOPLE = 6
PER_PERSON = 10
SLOTS = [(20, 60), (130, 60), (240, 60)]       # top-left corners of 64 px faces in 320x240
SIDE = 64


class SlotDetector:
    """Faces in fixed slots; the count is written in the top-left pixel (40 per face)."""

    name = "slots"

    def cache_key(self) -> str:
        return "slots-v1"

    def detect(self, images):
        out = []
        for im in images:
            h, w = im.shape[:2]
            f = w / 320.0
            n = int(round(float(im[0:2, 0:2, 2].mean()) / 40.0))
            faces = []
            for x, y in SLOTS[:n]:
                box = (x * f, y * f, (x + SIDE) * f, (y + SIDE) * f)
                eyes = {"left_eye": ((x + 20) * f, (y + 25) * f),
                        "right_eye": ((x + 44) * f, (y + 25) * f)}
                faces.append(Face(box, 0.99, eyes))
            out.append(faces)
        return out


def _pattern(person: int) -> np.ndarray:
    base = np.random.default_rng(100 + person).uniform(0, 255, (4, 4, 3))
    return np.kron(base, np.ones((SIDE // 4, SIDE // 4, 1)))


def photo(people: list[int], seed: int = 0, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A photo showing ``people`` (person ids) in the slots, with a little noise."""
    rng = np.random.default_rng(seed)
    a = np.full((240, 320, 3), 128.0) + rng.normal(0, 6, (240, 320, 3))
    for (x, y), person in zip(SLOTS, people, strict=False):
        a[y:y + SIDE, x:x + SIDE] = _pattern(person) + rng.normal(0, 12, (SIDE, SIDE, 3))
    a[0:4, 0:4] = (128, 128, 40 * len(people))
    image = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))
    return image.resize(size) if size != (320, 240) else image


def _save(image: Image.Image, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, quality=95)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A face stage (slot detector) and a model trained on it, with one held-out person."""
    from facelab.faces.filter import filter_faces
    from facelab.learn.fitting import fit

    root = tmp_path_factory.mktemp("recognize")
    rows = []
    for person in range(PEOPLE):
        for i in range(PER_PERSON):
            p = _save(photo([person], seed=person * 100 + i), root / "photos" / f"{person}-{i}.jpg")
            rows.append({"person": f"Person {person}", "path": str(p.relative_to(root)),
                         "status": "ok", "reason": ""})
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    filter_faces(root, root / "faces", detector=SlotDetector(), crop_size=64,
                 crop_style="square", progress=False, verbose=False)
    fit(root / "faces", root / "model", arch="cnn", epochs=3, image_size=32, batch_size=16,
        verbose=0, folds=2)
    return root


def _recognizer(trained: Path):
    from facelab import recognize

    return recognize.load(trained / "model", detector=SlotDetector())


def test_fit_writes_what_predict_needs(trained: Path) -> None:
    model = trained / "model"
    info = json.loads((model / "recognizer.json").read_text())
    assert info["format"] == 1 and info["image_size"] == 32 and info["face_settings"]
    faces = json.loads((model / "face_settings.json").read_text())
    assert faces["backend"] == "slots" and faces["crop_size"] == 64
    assert faces["detector_key"] == "slots-v1" and faces["detect_max_side"] == 640
    openset = json.loads((model / "openset.json").read_text())
    held = openset["held_out_in_turn"]
    assert openset["folds"] == 2 and openset["method"].startswith("people held out in rotation")
    labels = json.loads((model / "labels.json").read_text())
    assert labels["num_classes"] == PEOPLE                      # everybody is in the model
    assert set(held) == {c["name"] for c in labels["classes"]}  # ... and held out once
    assert sorted(p for g in openset["fold_people"] for p in g) == sorted(held)
    assert 0 <= openset["threshold"] <= 1 and openset["target_far"] == 0.01
    assert openset["calibration"]["false_accept"] <= 0.01
    assert openset["test"]["unknown_faces"] >= 1 and "top-1" in openset["score"]
    assert openset["score_k"] == 3 and openset["second_weight"] == 0.25
    curve = pd.read_csv(model / "openset_curve.csv")
    assert {"threshold", "false_accept", "false_reject", "correct_named"} <= set(curve.columns)
    assert curve["false_accept"].is_monotonic_decreasing
    scores = pd.read_csv(model / "openset_scores.csv")
    assert {"known_val", "known_test", "unknown_cal", "unknown_test"} <= set(scores["set"])


def test_predict_one_row_per_face_and_a_row_per_bad_photo(trained: Path, tmp_path: Path
                                                          ) -> None:
    group = _save(photo([0, 1, 2], seed=7), tmp_path / "in" / "group.jpg")
    single = _save(photo([3], seed=8), tmp_path / "in" / "sub" / "single.png")
    empty = _save(photo([], seed=9), tmp_path / "empty.jpg")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"<html>not a photo</html>")
    recognizer = _recognizer(trained)
    df = recognizer.predict([tmp_path / "in", empty, broken, tmp_path / "nowhere.jpg"],
                            threshold=0.0)
    by_photo = df.groupby("photo").size()
    assert by_photo[str(group)] == 3 and by_photo[str(single)] == 1
    faces = df[df["face_index"].notna()]
    assert (faces["status"] == "ok").all() and faces["decision"].isin(
        recognizer.names).all()
    assert list(faces.loc[faces["photo"] == str(group), "face_index"]) == [0, 1, 2]
    assert faces["box"].str.count(",").eq(3).all()
    for column in ("name_1", "prob_1", "name_3", "prob_3", "score", "reason"):
        assert column in df.columns
    assert (faces["prob_1"] >= faces["prob_2"]).all()
    status = dict(zip(df["photo"], df["status"], strict=True))
    assert status[str(empty)] == "no_face"
    assert status[str(broken)] == "unreadable"
    assert status[str(tmp_path / "nowhere.jpg")] == "missing"
    bad = df[df["face_index"].isna()]
    assert (bad["decision"] == "skipped").all() and (bad["reason"].str.len() > 5).all()


def test_known_faces_are_named_and_the_threshold_makes_unknowns(trained: Path,
                                                                tmp_path: Path) -> None:
    recognizer = _recognizer(trained)
    names = recognizer.names
    known = [int(n.split()[-1]) for n in names][:3]
    files = [_save(photo([k], seed=500 + k), tmp_path / f"k{k}.jpg") for k in known]
    df = recognizer.predict(files, threshold=0.0, top_k=2)
    assert list(df.columns).count("name_2") == 1 and "name_3" not in df.columns
    assert (df["decision"] == df["name_1"]).all()
    strict = recognizer.predict(files, threshold=1.0)
    assert (strict["decision"] == "unknown").all()
    assert strict["reason"].str.contains("< threshold 1.000").all()
    auto = recognizer.predict(files)          # the calibrated threshold
    threshold = recognizer.folder.threshold
    assert ((auto["score"] >= threshold) == (auto["decision"] != "unknown")).all()
    with pytest.raises(ValueError, match="threshold"):
        recognizer.predict(files, threshold=1.5)


def test_manifest_and_in_memory_images(trained: Path, tmp_path: Path) -> None:
    a = _save(photo([0], seed=21), tmp_path / "m" / "a.jpg")
    _save(photo([0, 1], seed=22), tmp_path / "m" / "b.jpg")
    pd.DataFrame({"person": ["x", "y", "z"], "path": ["m/a.jpg", "m/b.jpg", ""],
                  "status": ["ok", "ok", "http_404"], "reason": ["", "", "HTTP 404"]}
                 ).to_csv(tmp_path / "list.csv", index=False)
    recognizer = _recognizer(trained)
    df = recognizer.predict(tmp_path / "list.csv", threshold=0.0)
    assert len(df) == 4                                    # 1 + 2 faces + the dead row
    assert df.iloc[-1]["status"] == "missing" and "HTTP 404" in df.iloc[-1]["reason"]
    arrays = recognizer.predict([Image.open(a), np.asarray(photo([1, 2], seed=3))],
                                threshold=0.0)
    assert list(arrays["photo"]) == ["<image 0>", "<image 1>", "<image 1>"]


def test_huge_photos_are_read_or_refused_with_a_reason(trained: Path, tmp_path: Path) -> None:
    big = _save(photo([2], seed=4, size=(10_000, 10_000)), tmp_path / "100mp.jpg")
    recognizer = _recognizer(trained)
    df = recognizer.predict(big, threshold=0.0)                # 100 megapixels: read
    assert len(df) == 1 and df.iloc[0]["status"] == "ok"
    refused = recognizer.predict(big, max_pixels=50_000_000)
    assert refused.iloc[0]["status"] == "too_large"
    assert "100 megapixels" in refused.iloc[0]["reason"]


def _copy_model(trained: Path, tmp_path: Path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(trained / "model", target,
                    ignore=shutil.ignore_patterns("backup", "*.png", "export-*"))
    return target


@pytest.mark.parametrize("damage, message", [
    ("labels", "labels.json"),
    ("version", "facelab 9.9.0"),
    ("crops", "ready-made crops"),
    ("settings", "face_settings.json is missing"),
    ("recognizer", "recognizer.json is missing"),
])
def test_unusable_model_folders_are_refused_clearly(trained: Path, tmp_path: Path, damage: str,
                                                    message: str) -> None:
    from facelab.recognize import ModelFolderError, read_model_folder

    model = _copy_model(trained, tmp_path)
    info = json.loads((model / "recognizer.json").read_text())
    if damage == "labels":
        (model / "labels.json").unlink()
    elif damage == "version":
        info["facelab_version"] = "9.9.0"
    elif damage == "crops":
        info["face_settings"] = None
    elif damage == "settings":
        (model / "face_settings.json").unlink()
    else:
        (model / "recognizer.json").unlink()
    if damage != "recognizer":
        (model / "recognizer.json").write_text(json.dumps(info))
    with pytest.raises(ModelFolderError, match=message):
        read_model_folder(model)


def test_cli_predict_annotates_and_reports_bad_folders(trained: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture) -> None:
    import facelab.recognize.folder as folder
    from facelab.cli import main

    monkeypatch.setattr(folder, "detector_from_settings", lambda info, **kw: SlotDetector())
    _save(photo([0, 1], seed=31), tmp_path / "in" / "two.jpg")
    _save(photo([2], seed=32), tmp_path / "in" / "one.jpg")
    out = tmp_path / "out"
    assert main(["predict", str(tmp_path / "in"), "--model", str(trained / "model"),
                 "--out", str(out), "--annotate", "--top-k", "2", "--threshold", "0",
                 "--no-progress"]) == 0
    table = pd.read_csv(out / "predictions.csv")
    assert len(table) == 3 and "name_2" in table.columns
    assert len(list((out / "annotated").glob("*.jpg"))) == 2
    assert (out / "contact_sheet.jpg").is_file()
    assert "3 faces: 3 named" in capsys.readouterr().out
    assert main(["predict", str(tmp_path / "in"), "--model", str(tmp_path / "nomodel")]) == 2
    err = capsys.readouterr().err
    assert "nomodel does not exist" in err and "Traceback" not in err


@pytest.mark.network_local
def test_predict_urls_from_the_demo_web(trained: Path, small_demo: Path, tmp_path: Path
                                        ) -> None:
    from facelab.demo.urls import Shares
    from facelab.demo.web import serve

    folder = tmp_path / "demo"
    shutil.copytree(small_demo, folder)
    recognizer = _recognizer(trained)
    with serve(folder, seed=0, shares=Shares(slow=0.0), progress=False) as web:
        ok = web.truth.loc[web.truth["kind"] == "ok", "url"].iloc[0]
        dead = web.truth.loc[web.truth["kind"] == "http_404", "url"].iloc[0]
        html = web.truth.loc[web.truth["kind"] == "html", "url"].iloc[0]
        df = recognizer.predict([ok, dead, html], downloads=tmp_path / "dl", threshold=0.0)
    status = dict(zip(df["photo"], df["status"], strict=False))
    assert status[ok] in ("ok", "no_face")                    # it was downloaded and read
    assert status[dead] == "http_error" and status[html] == "not_image"
    assert dead in df.loc[df["photo"] == dead, "reason"].iloc[0]
    assert any((tmp_path / "dl").iterdir())
