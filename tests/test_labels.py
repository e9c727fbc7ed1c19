import json

import pandas as pd
import pytest

from facelab.data.labels import LabelMap, UnknownLabelError, add_labels, load_faces, relative_to
from facelab.manifest import write_manifest


def test_sorted_ids_and_counts():
    lm = LabelMap.from_names(["Brad Pitt", "Angelina Jolie", "Brad Pitt", "Zoë", "Ähm"])
    assert lm.names == ("Angelina Jolie", "Brad Pitt", "Zoë", "Ähm")  # code point order
    assert [lm.index(n) for n in lm.names] == [0, 1, 2, 3]
    assert lm.counts["Brad Pitt"] == 2
    assert list(lm.encode(["Zoë", "Brad Pitt"])) == [2, 1]
    assert lm.decode([0, 3]) == ["Angelina Jolie", "Ähm"]
    assert lm.decode(1) == "Brad Pitt"
    assert lm.num_classes == len(lm) == 4


def test_round_trip(tmp_path):
    lm = LabelMap.from_names(["b", "a", "a", "Jöns Ärger"])
    path = lm.save(tmp_path)
    assert path.name == "labels.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["classes"][0] == {"id": 0, "name": "Jöns Ärger", "count": 1}
    back = LabelMap.load(tmp_path / "labels.json")
    assert back == lm
    assert back.counts == {"Jöns Ärger": 1, "a": 2, "b": 1}


def test_load_rejects_unsorted(tmp_path):
    (tmp_path / "labels.json").write_text(json.dumps(
        {"classes": [{"id": 0, "name": "b"}, {"id": 1, "name": "a"}]}))
    with pytest.raises(ValueError, match="sorted"):
        LabelMap.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="split stage"):
        LabelMap.load(tmp_path / "nothing")


def test_unknown_label_names_it():
    lm = LabelMap.from_names(["a", "b"])
    with pytest.raises(UnknownLabelError, match="'Brad Pitt'"):
        lm.index("Brad Pitt")
    with pytest.raises(UnknownLabelError, match="Brad Pitt"):
        lm.encode(["a", "Brad Pitt"])
    with pytest.raises(UnknownLabelError, match="outside 0..1"):
        lm.decode(2)
    with pytest.raises(UnknownLabelError, match="'x'"):
        add_labels(pd.DataFrame({"person": ["a", "x"]}), lm)


def test_bad_names():
    with pytest.raises(ValueError, match="empty or missing"):
        LabelMap.from_names(["a", ""])
    with pytest.raises(ValueError, match="at least one"):
        LabelMap(())


def _crops(root, people=("A b", "C d"), n=3):
    for p in people:
        (root / p).mkdir(parents=True)
        for i in range(n):
            (root / p / f"{i}.jpg").write_bytes(b"\xff\xd8\xff fake \xff\xd9")


def test_load_faces_person_folder(tmp_path):
    _crops(tmp_path)
    df = load_faces(tmp_path)
    assert len(df) == 6 and set(df["person"]) == {"A b", "C d"}
    assert all(p.startswith(str(tmp_path.resolve())) for p in df["path"])


def test_load_faces_stage_folder(tmp_path):
    _crops(tmp_path / "faces" / "crops")
    stage = tmp_path / "faces"
    rows = pd.DataFrame({"person": ["A b", "A b", "C d"],
                         "path": ["crops/A b/0.jpg", "", "crops/C d/1.jpg"],
                         "status": ["ok", "no_face", "ok"],
                         "reason": ["", "no face found", ""]})
    write_manifest(rows, stage)
    df = load_faces(stage)
    assert list(df["person"]) == ["A b", "C d"]
    assert df["path"][1] == str((stage / "crops/C d/1.jpg").resolve())
    assert load_faces(stage / "manifest.csv")["path"].tolist() == df["path"].tolist()
    assert relative_to(df["path"].tolist(), stage) == ["crops/A b/0.jpg", "crops/C d/1.jpg"]


def test_load_faces_bad_source(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_faces(tmp_path / "missing")
    write_manifest(pd.DataFrame({"person": ["a"], "path": ["x.jpg"], "status": ["no_face"],
                                 "reason": ["none"]}), tmp_path)
    with pytest.raises(ValueError, match="no kept face"):
        load_faces(tmp_path)


def test_load_faces_pubfig83(pubfig83_dir):
    df = load_faces(pubfig83_dir)
    assert len(df) == 6610 and df["person"].nunique() == 40
    lm = LabelMap.from_manifest(df)
    assert min(lm.counts.values()) >= 100
