import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from facelab.data.labels import LabelMap, UnknownLabelError

tf = pytest.importorskip("tensorflow")
from facelab.data import pipeline  # noqa: E402
from facelab.data import plots as data_plots  # noqa: E402

SIZES = (12, 18, 24, 30, 36, 48, 60, 72)   # 8 classes, imbalance ratio 6


@pytest.fixture(scope="module")
def sorted_manifest(tmp_path_factory):
    """A class-sorted manifest of tiny JPEGs (one colour per class), all in train + 4 val."""
    root = tmp_path_factory.mktemp("crops")
    rows = []
    for c, n in enumerate(SIZES):
        (root / f"person {c}").mkdir()
        for i in range(n + 4):
            path = root / f"person {c}" / f"{i}.jpg"
            Image.new("RGB", (20, 24), (30 * c, 255 - 30 * c, (97 * i) % 256)).save(path)
            rows.append({"person": f"person {c}", "path": str(path), "status": "ok",
                         "reason": "", "split": "train" if i < n else "val"})
    return pd.DataFrame(rows)


def _labels(ds, batches=None):
    return pipeline.dataset_labels(ds, max_batches=batches)


def test_import_does_not_import_tensorflow():
    code = ("import sys, facelab, facelab.data.pipeline, facelab.data.augment, "
            "facelab.data.balance, "
            "facelab.data.split, facelab.data.labels; assert 'tensorflow' not in sys.modules; "
            "assert 'keras' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_batches_shapes_and_one_hot(sorted_manifest):
    ds = pipeline.make_dataset(sorted_manifest, "train", image_size=(16, 12), batch_size=32)
    x, y = next(iter(ds))
    assert x.shape == (32, 16, 12, 3) and x.dtype == tf.float32
    assert y.shape == (32, 8) and np.allclose(np.asarray(y).sum(axis=1), 1)
    assert 0 <= float(tf.reduce_min(x)) and float(tf.reduce_max(x)) <= 255
    # every image keeps its class colour: red channel 30 * class id
    red = np.asarray(x)[:, 8, 6, 0]
    assert np.allclose(red, 30 * np.asarray(y).argmax(1), atol=12)


@pytest.mark.parametrize("balance", ["sample", "none"])
def test_first_batches_mix_many_classes(sorted_manifest, balance):
    # Files arrive sorted by class.  Fed as they are, a batch of 32 holds 2-3 classes.
    # Perfectly mixed, a batch of b=32 independent draws with class probabilities p_k
    # holds E = sum_k 1 - (1 - p_k)^b distinct classes: 7.86 of 8 for uniform draws
    # ("sample"), 7.5 for draws proportional to the class sizes ("none").  Each class is
    # missing from a batch with probability <= (1 - 12/300)^32 = 0.27 (smallest class,
    # "none"), so >= 5 distinct classes in every one of the first 4 batches fails only
    # for a badly mixed pipeline (the seed makes the test deterministic anyway).
    ds = pipeline.make_dataset(sorted_manifest, "train", image_size=8, batch_size=32,
                               balance=balance, seed=0)
    labels = _labels(ds, 4).reshape(4, 32)
    distinct = [len(np.unique(b)) for b in labels]
    probs = np.full(8, 1 / 8) if balance == "sample" else np.array(SIZES) / sum(SIZES)
    expected = pipeline.expected_distinct_classes(32, probs)
    assert min(distinct) >= 5, distinct
    assert np.mean(distinct) >= expected - 1.5, (distinct, expected)
    ordered = pipeline.make_dataset(sorted_manifest, "train", image_size=8, batch_size=32,
                                    balance="none", shuffle=False)
    # class-ordered: a batch spans at most the 2-3 classes whose runs it covers
    assert max(len(np.unique(b)) for b in _labels(ordered, 4).reshape(4, 32)) <= 3


def test_balanced_sampling_is_uniform(sorted_manifest):
    # 40 epochs' worth of draws (300 rows each) over classes of 12..72 photos: uniform
    # class frequencies pass a chi-square test (7 dof, 0.1% critical value 24.32), and
    # no class is more than 10% off the mean (4 standard deviations at n=1500/class).
    ds = pipeline.make_dataset(sorted_manifest, "train", batch_size=100, epoch_size=12000,
                               labels_only=True, seed=3)
    counts = np.bincount(_labels(ds), minlength=8)
    expected = counts.sum() / 8
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert counts.sum() == 12000 and chi2 < 24.32, counts
    assert np.abs(counts / expected - 1).max() < 0.10
    none = pipeline.make_dataset(sorted_manifest, "train", batch_size=100, balance="none",
                                 labels_only=True)
    assert np.bincount(_labels(none)).tolist() == list(SIZES)     # unbalanced baseline


def test_other_balance_modes(sorted_manifest):
    under = pipeline.make_dataset(sorted_manifest, "train", batch_size=64,
                                  balance="undersample", labels_only=True)
    assert np.bincount(_labels(under)).tolist() == [12] * 8
    over = pipeline.make_dataset(sorted_manifest, "train", batch_size=64,
                                 balance="oversample", labels_only=True)
    assert np.bincount(_labels(over)).tolist() == [72] * 8
    with pytest.raises(ValueError, match="unknown balance"):
        pipeline.make_dataset(sorted_manifest, balance="smote")


def test_labels_only_matches_decoded_order(sorted_manifest):
    kw = {"batch_size": 16, "seed": 7, "image_size": 8}
    full = _labels(pipeline.make_dataset(sorted_manifest, "train", **kw), 5)
    fast = _labels(pipeline.make_dataset(sorted_manifest, "train", labels_only=True, **kw), 5)
    cached = _labels(pipeline.make_dataset(sorted_manifest, "train", cache=True, **kw), 5)
    assert full.tolist() == fast.tolist() == cached.tolist()


def test_reshuffled_every_epoch_and_seeded(sorted_manifest):
    ds = pipeline.make_dataset(sorted_manifest, "train", batch_size=300, balance="none",
                               labels_only=True, seed=1)
    first, second = _labels(ds), _labels(ds)
    assert sorted(first) == sorted(second) and first.tolist() != second.tolist()
    again = pipeline.make_dataset(sorted_manifest, "train", batch_size=300, balance="none",
                                  labels_only=True, seed=1)
    assert _labels(again).tolist() == first.tolist()
    sampled = pipeline.make_dataset(sorted_manifest, "train", batch_size=300, labels_only=True)
    epoch1 = _labels(sampled)
    assert _labels(sampled).tolist() != epoch1.tolist()             # new draws every epoch
    same = pipeline.make_dataset(sorted_manifest, "train", batch_size=300, labels_only=True)
    assert _labels(same).tolist() == epoch1.tolist()                # reproducible from the seed


def test_split_folder_source(sorted_manifest, tmp_path):
    from facelab.data.split import write_split

    lm = LabelMap.from_manifest(sorted_manifest)
    write_split(sorted_manifest.assign(label=lm.encode(sorted_manifest["person"])), tmp_path,
                lm)
    ds = pipeline.make_dataset(tmp_path, "val", image_size=8, batch_size=64)
    x, y = next(iter(ds))
    assert x.shape == (32, 8, 8, 3) and y.shape == (32, 8)


def test_validation_never_shuffled_or_balanced(sorted_manifest):
    ds = pipeline.make_dataset(sorted_manifest, "val", image_size=8, batch_size=10,
                               augment=True)
    want = LabelMap.from_manifest(sorted_manifest).encode(
        sorted_manifest.loc[sorted_manifest["split"] == "val", "person"])
    assert _labels(ds).tolist() == want.tolist()


def test_bad_inputs(sorted_manifest, tmp_path):
    with pytest.raises(ValueError, match="split 'test' is empty"):
        pipeline.make_dataset(sorted_manifest, "test")
    with pytest.raises(ValueError, match="no split column"):
        pipeline.make_dataset(sorted_manifest.drop(columns="split"))
    with pytest.raises(UnknownLabelError, match="'person 1'"):
        pipeline.make_dataset(sorted_manifest, labels=LabelMap.from_names(["person 0"]))


def test_unreadable_image_named_or_skipped(sorted_manifest, tmp_path):
    good = Image.new("RGB", (20, 24), (1, 2, 3))
    good.save(tmp_path / "ok.jpg")
    truncated = (tmp_path / "ok.jpg").read_bytes()[:200]
    (tmp_path / "truncated.jpg").write_bytes(truncated)
    (tmp_path / "html.jpg").write_text("<html>404 Not Found</html>")
    # passes the header check but its data is garbage: skipped by ignore_errors
    (tmp_path / "garbage.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x13" * 300 + b"\xff\xd9")
    extra = pd.DataFrame([{"person": "person 0", "path": str(tmp_path / n), "status": "ok",
                           "reason": "", "split": "train"}
                          for n in ("truncated.jpg", "html.jpg", "missing.jpg", "garbage.jpg")])
    m = pd.concat([sorted_manifest, extra], ignore_index=True)
    with pytest.raises(ValueError, match=r"3 unreadable.*truncated\.jpg.*html\.jpg.*missing"):
        pipeline.make_dataset(m, "train", image_size=8, balance="none")
    bad = pipeline.check_files(extra["path"])
    assert sorted(bad["path"].str.rsplit("/", n=1).str[-1]) == \
        ["html.jpg", "missing.jpg", "truncated.jpg"]
    ds = pipeline.make_dataset(m, "train", image_size=8, balance="none", on_error="skip",
                               batch_size=64)
    assert len(_labels(ds)) == sum(SIZES)                       # all four bad rows skipped


def test_label_order_diagnostic(sorted_manifest):
    scenarios = pipeline.label_order_scenarios(sorted_manifest, batch_size=16, n_batches=6,
                                               small_buffer=16)
    table = pipeline.label_order_table(scenarios, 8)
    assert table.loc["class-ordered", "mean_distinct"] <= 2
    assert table.loc["shuffle(buffer=16)", "mean_distinct"] < 4
    assert table.loc["facelab", "mean_distinct"] > 6
    fig = data_plots.plot_label_order(scenarios, 8, show_batches=4)
    assert len(fig.axes) == 4
    assert pipeline.expected_distinct_classes(32, 40) == pytest.approx(22.21, abs=0.01)
