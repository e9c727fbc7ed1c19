"""The open-set threshold: identity folds, the score, calibration for a false-accept rate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from facelab.learn import openset
from facelab.learn.folds import fold_strangers, identity_folds


def test_identity_folds_hold_everyone_out_once_seeded() -> None:
    people = [f"P{i:02d}" for i in range(20)]
    groups = identity_folds(people, 5, seed=0)
    assert len(groups) == 5 and all(len(g) == 4 for g in groups)
    assert sorted(p for g in groups for p in g) == people        # everyone exactly once
    assert groups == identity_folds(people, 5, seed=0)
    assert groups != identity_folds(people, 5, seed=1)
    assert identity_folds(people, 0) == []


def test_identity_folds_with_few_people_and_kept_people() -> None:
    assert identity_folds(["a", "b"], 5) == []                  # a fold model needs 2 people
    three = identity_folds(["a", "b", "c"], 2)
    assert [len(g) for g in three] == [1, 1, 1]                 # groups shrink to leave 2
    five = identity_folds(["a", "b", "c", "d", "e"], 5)
    assert sorted(len(g) for g in five) == [1] * 5
    kept = identity_folds([f"p{i}" for i in range(10)], 3, keep=["p0", "p1"])
    assert not {"p0", "p1"} & {p for g in kept for p in g}
    assert sum(len(g) for g in kept) == 8
    with pytest.raises(ValueError, match="without faces here.*'p99'"):
        identity_folds(["p00", "p01", "p02"], 2, keep=["p00", "p99"])
    with pytest.raises(ValueError, match="folds -1"):
        identity_folds(["a", "b", "c"], -1)


def test_fold_strangers_scores_each_group_without_it() -> None:
    faces = pd.DataFrame({"person": [p for p in "abcd" for _ in range(3)],
                          "split": ["train", "val", "test"] * 4,
                          "path": [f"{p}{i}.jpg" for p in "abcd" for i in range(3)]})
    seen = []

    def score_without(index: int, people: list[str], rows: pd.DataFrame) -> pd.DataFrame:
        seen.append((index, people, sorted(set(rows["person"]))))
        return rows.assign(predicted=people[0], score=0.5, correct=False)

    table = fold_strangers(faces, [["a", "b"], ["c", "d"]], score_without)
    assert seen == [(0, ["c", "d"], ["a", "b"]), (1, ["a", "b"], ["c", "d"])]
    assert (table["set"] == "unknown_test").sum() == 4 and len(table) == 12
    assert set(table.loc[table["split"] == "test", "set"]) == {"unknown_test"}


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


def test_the_score_with_a_gallery_and_the_second_person() -> None:
    gallery = openset.unit(np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.0, 1.0]]))
    labels = np.array([0, 0, 1, 1])
    model = openset.ScoreModel.from_training(gallery, labels, 2, k=1, second_weight=0.5)
    probs = np.array([[0.9, 0.1], [0.1, 0.9]])
    feats = np.array([[0.8, 0.6], [0.6, 0.8]])
    # nearest own gallery face: 1.0 and 0.8; closest other centroid: cos with [0, 1], with
    # the unit mean of [1, 0] and [0.8, 0.6]
    other = openset.unit(np.array([[1.8, 0.6]]))[0]
    expected = [1.0 - 0.5 * 0.6, 0.8 - 0.5 * float(np.dot([0.6, 0.8], other))]
    assert model.scores(probs, feats) == pytest.approx(expected, abs=1e-6)
    k2 = openset.ScoreModel.from_training(gallery, labels, 2, k=2, second_weight=0.0)
    assert k2.scores(probs[:1], feats[:1])[0] == pytest.approx((0.8 + 1.0) / 2, abs=1e-6)


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


def test_openset_roc_and_choosing_a_model_on_validation(tmp_path) -> None:
    import json

    from facelab.learn.compare import choose_model, openset_roc

    known = pd.DataFrame({"score": [0.9, 0.8, 0.7, 0.6], "correct": [True, True, False, True]})
    strangers = pd.DataFrame({"score": [0.75, 0.5]})
    roc = openset_roc(known, strangers)
    assert roc["threshold"].is_monotonic_decreasing
    at = roc.set_index("threshold")
    assert at.loc[0.8, "known_named"] == 0.5 and at.loc[0.8, "strangers_accepted"] == 0.0
    assert at.loc[0.5, "known_named"] == 0.75 and at.loc[0.5, "strangers_accepted"] == 1.0
    fits = {}
    for label, val, test in (("a", 0.90, 0.99), ("b", 0.95, 0.50), ("c", 0.95, 0.60)):
        (tmp_path / label).mkdir()
        (tmp_path / label / "metrics.json").write_text(json.dumps(
            {"val": {"balanced_accuracy": val}, "balanced_accuracy": test}))
        fits[label] = tmp_path / label
    assert choose_model(fits) == "b"      # validation decides (the first of a tie), not test
    (tmp_path / "a" / "openset.json").write_text(json.dumps({"folds": 5}))
    assert choose_model(fits) == "a"      # ... among models calibrated on held-out people
