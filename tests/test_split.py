import json

import numpy as np
import pandas as pd
import pytest

from facelab.data.split import (
    leaked_groups,
    min_class_size,
    read_split,
    split_report,
    split_stage,
    stratified_split,
)


def _manifest(sizes=(10, 15, 23, 40), groups=False, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for c, n in enumerate(sizes):
        g = 0
        i = 0
        while i < n:
            size = int(rng.integers(1, 4)) if groups else 1
            for _ in range(min(size, n - i)):
                rows.append({"person": f"person {c}", "path": f"/x/{c}/{i}.jpg",
                             "status": "ok", "reason": "",
                             "dup_group": f"g{c}-{g}" if size > 1 else ""})
                i += 1
            g += 1
    return pd.DataFrame(rows)


def _check_proportions(df, fractions, slack=1):
    for _, g in df.groupby("person"):
        for name, f in fractions.items():
            assert abs((g["split"] == name).sum() - len(g) * f) <= slack


def test_proportions_within_one_photo():
    df = stratified_split(_manifest(), seed=1)
    assert set(df["split"]) == {"train", "val"}
    _check_proportions(df, {"train": 0.7, "val": 0.3})
    assert stratified_split(_manifest(), seed=1)["split"].tolist() == df["split"].tolist()
    assert stratified_split(_manifest(), seed=2)["split"].tolist() != df["split"].tolist()


def test_three_way_split():
    df = stratified_split(_manifest(sizes=(20, 33, 50)), (0.7, 0.15, 0.15), seed=0)
    _check_proportions(df, {"train": 0.7, "val": 0.15, "test": 0.15})
    assert min_class_size((0.7, 0.15, 0.15)) == 7
    assert min_class_size() == 4


def test_duplicate_groups_never_straddle():
    m = _manifest(sizes=(12, 30, 41, 57), groups=True)
    # a label conflict: one group across two people
    m.loc[0, "dup_group"] = "shared"
    m.loc[len(m) - 1, "dup_group"] = "shared"
    df = stratified_split(m, seed=3)
    assert leaked_groups(df).empty
    _check_proportions(df, {"train": 0.7, "val": 0.3}, slack=3)   # groups are <= 3 rows
    df["split"] = np.where(df.index % 2 == 0, "train", "val")     # a naive split leaks
    assert not leaked_groups(df).empty


def test_small_class_raises_with_name_and_minimum():
    with pytest.raises(ValueError, match=r"'person 0'.*at least 4"):
        stratified_split(_manifest(sizes=(3, 20)))
    m = _manifest(sizes=(5, 20))
    m.loc[m["person"] == "person 0", "dup_group"] = "all-one-photo"
    with pytest.raises(ValueError, match="'person 0'"):
        stratified_split(m)


def test_bad_arguments():
    with pytest.raises(ValueError, match="empty"):
        stratified_split(_manifest().iloc[:0])
    with pytest.raises(ValueError, match="sum"):
        stratified_split(_manifest(), {"train": 0.7, "val": 0.2})
    with pytest.raises(ValueError, match="unknown split"):
        stratified_split(_manifest(), {"train": 0.7, "dev": 0.3})


def test_pubfig83_stratified_and_groups(pubfig83_dir):
    from facelab.data.labels import load_faces

    faces = load_faces(pubfig83_dir)
    df = stratified_split(faces, seed=0)
    _check_proportions(df, {"train": 0.7, "val": 0.3})
    report = split_report(df)
    assert report["val_share"].between(0.29, 0.31).all()
    # duplicate groups of 1-4 photos (synthetic ids on the real rows) stay whole
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 5, size=len(faces))
    faces["dup_group"] = [f"{p}/{k}" for p, k in zip(faces["person"],
                                                     np.repeat(np.arange(len(faces)),
                                                               sizes)[:len(faces)],
                                                     strict=True)]
    df = stratified_split(faces, (0.7, 0.15, 0.15), seed=0)
    assert leaked_groups(df).empty
    _check_proportions(df, {"train": 0.7, "val": 0.15, "test": 0.15}, slack=4)


def test_split_stage_made_once(tmp_path):
    src = tmp_path / "crops"
    for c, n in enumerate((6, 9)):
        (src / f"p {c}").mkdir(parents=True)
        for i in range(n):
            (src / f"p {c}" / f"{i}.jpg").write_bytes(b"\xff\xd8\xff\xd9")
    out = tmp_path / "split"
    df, lm = split_stage(src, out, seed=5)
    assert (out / "labels.json").is_file() and (out / "manifest.csv").is_file()
    raw = pd.read_csv(out / "manifest.csv")
    assert raw["path"].str.startswith("../crops/").all()     # relative to the stage folder
    assert set(raw.columns) >= {"person", "label", "split", "status", "reason", "path"}
    info = json.loads((out / "split.json").read_text())
    assert info["seed"] == 5
    again, lm2 = split_stage(src, out, seed=5)                # read back, not remade
    assert again["split"].tolist() == df["split"].tolist() and lm2 == lm
    with pytest.raises(ValueError, match="made once"):
        split_stage(src, out, seed=6)
    back, _ = read_split(out)
    assert back["path"].tolist() == df["path"].tolist()
