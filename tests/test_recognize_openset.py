"""The open-set threshold: hold-out of identities, calibration for a false-accept rate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from facelab.learn import openset


def test_holdout_count() -> None:
    assert openset.holdout_count(52, 0.1) == 5
    assert openset.holdout_count(8, 0.1) == 1            # at least one
    assert openset.holdout_count(4, 0.1) == 0            # too few people to spare one
    assert openset.holdout_count(52, 0.0) == 0
    assert openset.holdout_count(6, 0.9) == 4            # always >= 2 known classes
    with pytest.raises(ValueError, match="holdout"):
        openset.holdout_count(10, 1.0)


def test_hold_out_identities_is_seeded_and_whole() -> None:
    df = pd.DataFrame({"person": [f"P{i}" for i in range(20) for _ in range(3)]})
    known, held = openset.hold_out_identities(df, 0.1, seed=0)
    again, held2 = openset.hold_out_identities(df, 0.1, seed=0)
    assert held["person"].nunique() == 2 and held.equals(held2) and known.equals(again)
    assert not set(known["person"]) & set(held["person"])
    assert len(held) == 6                                 # every photo of a held-out person
    _, other = openset.hold_out_identities(df, 0.1, seed=1)
    assert set(other["person"]) != set(held["person"])


@pytest.mark.parametrize("target", [0.01, 0.05, 0.2])
def test_threshold_meets_the_false_accept_target(target: float) -> None:
    impostors = np.random.default_rng(0).uniform(0, 1, 1000)
    t = openset.threshold_for_far(impostors, target)
    far = (impostors >= t).mean()
    assert far <= target
    assert far >= target - 0.002                          # and is the lowest such threshold
    assert openset.threshold_for_far(np.array([]), target) == 0.0


def test_threshold_with_ties_and_tiny_sets() -> None:
    assert openset.threshold_for_far(np.array([0.5, 0.5, 0.5]), 0.01) > 0.5
    assert openset.threshold_for_far(np.array([0.2, 0.9]), 0.5) > 0.2
    assert openset.threshold_for_far(np.array([0.2, 0.9]), 0.5) <= 0.9


def test_rates_and_curve() -> None:
    known = np.array([0.9, 0.8, 0.3, 0.95])
    correct = np.array([True, False, True, True])
    unknown = np.array([0.1, 0.85, 0.2])
    r = openset.rates(0.5, known, correct, unknown)
    assert r == {"false_accept": pytest.approx(1 / 3), "false_reject": 0.25,
                 "correct_named": 0.5, "wrong_named": 0.25}
    curve = openset.openset_curve(known, correct, unknown, points=11)
    assert curve["threshold"].iloc[0] == 0 and curve["threshold"].iloc[-1] == 1
    assert curve["threshold"].is_monotonic_increasing and 11 <= len(curve) <= 13
    assert curve.iloc[0]["false_reject"] == 0
    assert curve["false_accept"].is_monotonic_decreasing
    assert np.isnan(openset.rates(0.5, known, correct, np.array([]))["false_accept"])


def test_leave_one_identity_out() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.9, 0.95, 0.92])
    persons = np.array(["a", "a", "a", "b", "b", "b"])
    far = openset.leave_one_out_far(scores, persons, 0.01)
    assert far == {"a": 0.0, "b": 1.0}    # calibrated on a alone, b's faces all pass


def test_scores_are_cosines_with_the_named_class() -> None:
    feats = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    labels = np.array([0, 1, 1])
    centroids = openset.class_centroids(feats, labels, 3)
    assert np.allclose(np.linalg.norm(centroids[:2], axis=1), 1) and not centroids[2].any()
    probs = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.6, 0.4, 0.0]])
    s = openset.open_scores(probs, feats, centroids)
    assert s[0] == pytest.approx(1.0) and s[2] == pytest.approx(np.sqrt(0.5))


def test_operating_points_and_stranger_summary() -> None:
    known = np.linspace(0.5, 1.0, 50)
    unknown = np.linspace(0.0, 0.9, 100)
    curve = openset.openset_curve(known, np.ones(50, bool), unknown)
    points = openset.operating_points(curve, (0.01, 0.1))
    assert list(points["target_far"]) == [0.01, 0.1]
    assert (points["false_accept"] <= points["target_far"]).all()
    assert points["threshold"].is_monotonic_decreasing
    scores = pd.DataFrame({"set": ["unknown_cal"] * 3 + ["unknown_test", "known_val"],
                           "person": ["x", "x", "x", "y", "z"],
                           "predicted": ["A", "A", "B", "C", "z"],
                           "score": [0.9, 0.8, 0.7, 0.5, 0.99]})
    summary = openset.stranger_summary(scores)
    assert list(summary.index) == ["x", "y"]
    assert summary.loc["x", "most often named"] == "A" and summary.loc["x", "faces"] == 3
    assert summary.loc["x", "share"] == pytest.approx(0.667, abs=1e-3)


def test_face_settings_travel_from_the_face_stage_to_the_model(tmp_path) -> None:
    import json

    from PIL import Image

    from facelab.data.split import split_stage

    faces_dir = tmp_path / "faces"
    rows = []
    for person in ("Ann", "Bob", "Cid"):
        for i in range(8):
            path = faces_dir / "faces" / f"{person}-{i}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (16, 16), (i * 20, 0, 0)).save(path)
            rows.append({"person": person, "path": f"faces/{person}-{i}.jpg", "status": "ok",
                         "reason": ""})
    pd.DataFrame(rows).to_csv(faces_dir / "manifest.csv", index=False)
    (faces_dir / "face_settings.json").write_text(json.dumps({"format": 1, "crop_size": 16}))
    split_stage(faces_dir, tmp_path / "split", (0.7, 0.15, 0.15))
    assert json.loads((tmp_path / "split" / "face_settings.json").read_text())["crop_size"] == 16
    assert openset.find_face_settings(tmp_path / "split") == tmp_path / "split" / \
        "face_settings.json"
    (tmp_path / "split" / "face_settings.json").unlink()          # an older split folder
    assert openset.find_face_settings(tmp_path / "split") == faces_dir / "face_settings.json"
    info = openset.write_recognizer_info(tmp_path / "split", tmp_path / "model", 32, True)
    assert info["face_settings"] == "face_settings.json" and info["centroids"]
    assert (tmp_path / "model" / "face_settings.json").is_file()
    crops_only = tmp_path / "crops"
    (crops_only / "Ann").mkdir(parents=True)
    assert openset.find_face_settings(crops_only) is None
    assert openset.write_recognizer_info(crops_only, tmp_path / "m2", 32, True)[
        "face_settings"] is None


def test_hold_out_identities_never_takes_kept_people() -> None:
    df = pd.DataFrame({"person": [f"p{i:02d}" for i in range(20) for _ in range(3)]})
    keep = [f"p{i:02d}" for i in range(10)]
    _, held = openset.hold_out_identities(df, 0.1, seed=0, keep=keep)
    assert held["person"].nunique() == 2 and not set(held["person"]) & set(keep)
    assert openset.hold_out_identities(df, 0.1, seed=0, keep=())[1]["person"].nunique() == 2
    with pytest.raises(ValueError, match="keep fewer"):
        openset.hold_out_identities(df, 0.1, seed=0, keep=[f"p{i:02d}" for i in range(19)])
    with pytest.raises(ValueError, match="without faces here.*'p99'"):
        openset.hold_out_identities(df, 0.1, seed=0, keep=["p00", "p99"])
