"""facelab.analysis: the bias verdict (dominant, swallowed, one-way pairs), tables, figures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from facelab import analysis

NAMES = [f"Person {i:02d} with a rather long name" for i in range(42)]


def _labels(k: int = 42, per_class: int = 10) -> np.ndarray:
    return np.repeat(np.arange(k), per_class)


def test_alarm_fires_on_a_one_class_model_and_stays_quiet_on_a_balanced_one() -> None:
    y = _labels()
    one_class = np.full_like(y, 7)                       # the "90% Brad Pitt" model
    alarm = analysis.dominant_class_alarm(y, one_class, NAMES)
    assert alarm.fired and alarm.worst_class == NAMES[7]
    assert alarm.predicted_share == 1.0 and alarm.ratio == pytest.approx(42.0)
    assert "ALARM" in alarm.message and alarm.offenders == [NAMES[7]]

    rng = np.random.default_rng(0)
    balanced = y.copy()                                  # 80% right, errors spread evenly
    wrong = rng.random(len(y)) < 0.2
    balanced[wrong] = (y[wrong] + rng.integers(1, 42, wrong.sum())) % 42
    quiet = analysis.dominant_class_alarm(y, balanced, NAMES)
    assert not quiet.fired and quiet.message.startswith("ok")
    assert analysis.dominant_class_alarm(y, balanced, NAMES, threshold=1.01,
                                         min_excess=0).fired

    half = y.copy()
    half[: len(y) // 2] = 3                              # 3 gets ~half the predictions
    assert analysis.dominant_class_alarm(y, half, NAMES, threshold=10).fired
    with pytest.raises(ValueError, match="threshold"):
        analysis.dominant_class_alarm(y, y, NAMES, threshold=1.0)


def test_alarm_ignores_a_rare_class_that_steals_little() -> None:
    # 50 classes; class 0 is 1% of the split and predicted for 2.5% of it (ratio 2.5), taking
    # 1.5 points from the others: not the "90% Brad Pitt" symptom, below one class's 2%.
    names = [f"c{i}" for i in range(50)]
    y = np.concatenate([np.zeros(10, int), np.repeat(np.arange(1, 50), 20)])
    pred = y.copy()
    pred[np.flatnonzero(y == 1)[:15]] = 0
    quiet = analysis.dominant_class_alarm(y, pred, names)
    assert not quiet.fired and quiet.worst_class == "c0" and quiet.ratio == pytest.approx(2.5)
    assert analysis.dominant_class_alarm(y, pred, names, min_excess=0).fired


def _healthy(y: np.ndarray, k: int, error: float = 0.2, seed: int = 0) -> np.ndarray:
    """Predictions of a balanced model: ``error`` of the answers wrong, spread evenly."""
    rng = np.random.default_rng(seed)
    pred = y.copy()
    wrong = rng.random(len(y)) < error
    pred[wrong] = (y[wrong] + rng.integers(1, k, wrong.sum())) % k
    return pred


def test_a_swallowed_class_fires_with_its_absorber() -> None:
    # the run: 23 of Emre's 24 faces were named Olga; the dominant alarm stayed quiet
    names = [f"c{i}" for i in range(40)]
    y = np.repeat(np.arange(40), 24)
    pred = _healthy(y, 40, error=0.1)
    emre = np.flatnonzero(y == 5)
    pred[emre[:23]] = 9
    pred[emre[23]] = 5
    assert not analysis.dominant_class_alarm(y, pred, names).fired
    swallowed = analysis.swallowed_class_alarm(y, pred, names)
    assert swallowed.fired and swallowed.classes == ["c5"]
    worst = swallowed.offenders[0]
    assert worst["absorber"] == "c9" and worst["absorbed"] == 23
    assert worst["recall"] == pytest.approx(1 / 24) and "recall" in worst["reasons"]
    assert "'c5'" in swallowed.message and "'c9'" in swallowed.message
    pairs = analysis.one_way_pair_alarm(y, pred, names)
    assert pairs.fired and (pairs.pairs[0]["true"], pairs.pairs[0]["predicted"]) == ("c5", "c9")
    verdict = analysis.bias_verdict(y, pred, names)
    assert verdict.fired and verdict.fired_checks == ["swallowed", "one_way_pairs"]
    assert verdict.message.startswith("ALARM (swallowed, one_way_pairs)")
    summary = analysis.summarise(y, pred, names)
    assert summary["alarm"]["swallowed"]["offenders"][0]["absorber"] == "c9"
    assert summary["min_recall"] == pytest.approx(1 / 24)


def test_a_class_named_too_rarely_fires_on_its_share() -> None:
    # a weak model (median recall ~0.35) that names one class for a tenth of its faces
    names = [f"c{i}" for i in range(20)]
    y = np.repeat(np.arange(20), 30)
    pred = _healthy(y, 20, error=0.65, seed=1)
    pred[(pred == 3) & (y != 3)] = 4
    pred[np.flatnonzero(y == 3)] = np.r_[3, 3, 3, (np.arange(27) % 19 + 4) % 20]
    swallowed = analysis.swallowed_class_alarm(y, pred, names)
    assert swallowed.classes == ["c3"] and "share" in swallowed.offenders[0]["reasons"]


def test_balanced_and_rare_but_right_models_stay_quiet() -> None:
    k = 42
    y = _labels(k, 10)
    for seed in range(5):                      # healthy: errors spread evenly
        verdict = analysis.bias_verdict(y, _healthy(y, k, seed=seed), NAMES)
        assert not verdict.fired and verdict.fired_checks == [], verdict.message
        assert verdict.message.startswith("ok")
    # one rare class (3 faces), always right; the others at 80%
    y_rare = np.concatenate([np.zeros(3, int), np.repeat(np.arange(1, k), 20)])
    pred = _healthy(y_rare, k, seed=7)
    pred[y_rare == 0] = 0
    pred[(pred == 0) & (y_rare != 0)] = 1
    verdict = analysis.bias_verdict(y_rare, pred, NAMES)
    assert not verdict.fired, verdict.message
    # a small class's unlucky draw (2 of 5 right) is not "far below the rest" by chance
    y_small = np.concatenate([np.zeros(5, int), np.repeat(np.arange(1, k), 20)])
    pred = _healthy(y_small, k, error=0.1, seed=3)
    pred[:5] = [0, 0, 11, 12, 13]
    assert not analysis.swallowed_class_alarm(y_small, pred, NAMES).fired
    # symmetric confusion of two look-alikes is not one-way
    y2 = np.repeat(np.arange(k), 20)
    pred = y2.copy()
    pred[np.flatnonzero(y2 == 1)[:7]] = 2
    pred[np.flatnonzero(y2 == 2)[:6]] = 1
    assert not analysis.one_way_pair_alarm(y2, pred, NAMES).fired


def test_confusion_shares_tables_and_summary() -> None:
    names = ["a", "b", "c"]
    y_true = [0, 0, 0, 0, 1, 1, 2, 2]
    y_pred = [0, 0, 1, 1, 1, 1, 1, 2]
    cm = analysis.confusion(y_true, y_pred, 3)
    assert cm.tolist() == [[2, 2, 0], [0, 2, 0], [0, 1, 1]]
    norm = analysis.confusion(y_true, y_pred, 3, normalize=True)
    assert np.allclose(norm.sum(axis=1), 1) and norm[0, 1] == 0.5

    shares = analysis.share_table(y_true, y_pred, names)
    assert shares.index[0] == "b" and shares.loc["b", "ratio"] == pytest.approx(2.5)
    table = analysis.per_class_table(y_true, y_pred, names)
    assert table.loc["b", "precision"] == pytest.approx(0.4)
    assert table.loc["a", "recall"] == 0.5 and table.loc["b", "recall"] == 1.0
    pairs = analysis.confused_pairs(y_true, y_pred, names)
    assert pairs.iloc[0][["true", "predicted", "count"]].tolist() == ["a", "b", 2]

    summary = analysis.summarise(y_true, y_pred, names)
    assert summary["accuracy"] == pytest.approx(5 / 8)
    assert summary["balanced_accuracy"] == pytest.approx((0.5 + 1 + 0.5) / 3)
    assert summary["alarm"]["fired"] and summary["alarm"]["dominant"]["worst_class"] == "b"
    assert "dominant" in summary["alarm"]["fired_checks"]
    assert summary["min_recall"] == 0.5
    assert set(summary["per_class_recall"]) == set(names)


def test_figures_with_many_classes(tmp_path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    y = _labels()
    pred = y.copy()
    pred[::5] = 0
    fig = analysis.plot_confusion(y, pred, NAMES)
    assert fig.get_size_inches()[1] >= 10           # grows with 42 classes
    analysis.plot_confusion(y[:30], pred[:30], NAMES[:3], normalize=False)
    analysis.plot_shares(y, pred, NAMES)
    paths = []
    for i in range(4):
        path = tmp_path / f"{i}.jpg"
        Image.fromarray(np.full((20, 20, 3), 40 * i, np.uint8)).save(path)
        paths.append(str(path))
    preds = pd.DataFrame({"path": paths, "person": ["a", "b", "c", "d"],
                          "predicted": ["b", "b", "a", "d"], "confidence": [.9, .8, .7, .6],
                          "correct": [False, True, False, True]})
    fig = analysis.plot_misclassified(preds, n=8, ncols=4)
    assert "2 of 4" in fig._suptitle.get_text()

    # swallowed classes: marked on the shares and recall bars, shown beside their absorber
    swallowed = y.copy()
    swallowed[y == 5] = 9
    verdict = analysis.bias_verdict(y, swallowed, NAMES)
    assert verdict.swallowed.classes == [NAMES[5]]
    fig = analysis.plot_shares(y, swallowed, NAMES, verdict=verdict)
    assert any(t.get_color() == "tab:orange" for t in fig.axes[0].get_xticklabels())
    fig = analysis.plot_recall(y, swallowed, NAMES)
    assert fig.axes[0].get_xticklabels()[0].get_text().startswith(NAMES[5][:14] + " -> ")
    manifest = pd.DataFrame({"path": paths, "person": [NAMES[5], NAMES[9], "a", "b"],
                             "split": "train"})
    portraits = analysis.portraits(manifest)
    assert portraits == {NAMES[5]: paths[0], NAMES[9]: paths[1], "a": paths[2], "b": paths[3]}
    faces = pd.DataFrame({"path": paths[2:], "person": [NAMES[5]] * 2,
                          "predicted": [NAMES[9]] * 2, "confidence": [.6, .9],
                          "correct": [False, False]})
    fig = analysis.plot_swallowed(faces, verdict, portraits, faces=3)
    assert sum(bool(ax.images) for ax in fig.axes) == 4        # 2 portraits + 2 faces
    fig = analysis.plot_top_losses(pd.concat([preds, faces]), portraits, n=3)
    assert "(0.90)" in fig.axes[0].get_title()                  # most confident first


def test_predict_probs_flip_average() -> None:
    import keras

    inputs = keras.Input((4, 4, 3))
    x = keras.layers.Flatten()(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    images = np.random.default_rng(0).uniform(0, 255, (5, 4, 4, 3)).astype("float32")
    plain = analysis.predict_probs(model, images, flip_average=False)
    both = analysis.predict_probs(model, images)
    flipped = analysis.predict_probs(model, images[:, :, ::-1], flip_average=False)
    assert np.allclose(both, (plain + flipped) / 2, atol=1e-6)


def test_a_large_test_set_does_not_overflow() -> None:
    # 5,000 examples per class: the binomial tail of the swallowed check is summed in logs
    y = np.repeat(np.arange(4), 5000)
    pred = _healthy(y, 4, error=0.1)
    pred[y == 1] = np.where(np.arange(5000) < 3000, 2, 1)      # 60% of class 1 go to class 2
    verdict = analysis.bias_verdict(y, pred, ["a", "b", "c", "d"])
    assert verdict.swallowed.classes == ["b"] and verdict.pairs.pairs[0]["predicted"] == "c"
