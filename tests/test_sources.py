"""PubFig-format URL lists and person folders (facelab.collect.sources)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from facelab.collect.sources import (
    BAD_ROW,
    parse_pubfig_text,
    read_folder,
    read_pubfig_list,
    write_pubfig_list,
)
from facelab.manifest import format_rect, parse_rect

ROWS = [
    {"person": "Abhishek Bachan", "imagenum": 1,
     "url": "http://1.bp.blogspot.com/_Y7rzCyUABeI/s400/ash_abhishek_365x470.jpg",
     "rect": "183,60,297,174", "md5sum": "f533da9fbd1c770428c8961f3fa48950"},
    {"person": "Abhishek Bachan", "imagenum": 2,
     "url": "http://example.com/gallery/displayimage.php?album=3&pid=17",
     "rect": (49, 71, 143, 165), "md5sum": "E36A8B24F0761EC75BDC0489D8FD570B"},
    {"person": "Zoë Saldaña-Nazario", "imagenum": 1,
     "url": "http://127.0.0.1:8080/~fan/pics/zoe%20s_001.jpeg",
     "rect": "0,0,10,12", "md5_expected": "583608783525c2ac419b41e538a6925d"},
]


def test_round_trip(tmp_path: Path) -> None:
    path = write_pubfig_list(ROWS, tmp_path / "urls.txt")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("# PubFig Dataset v1.2 - dev_urls.txt")
    assert lines[1] == "#\tperson\timagenum\turl\trect\tmd5sum"
    assert len(lines) == 2 + len(ROWS)
    df = read_pubfig_list(path)
    assert (df["status"] == "ok").all() and (df["reason"] == "").all()
    assert df["person"].tolist() == [r["person"] for r in ROWS]
    assert df["imagenum"].tolist() == [1, 2, 1]
    assert df["url"].tolist() == [r["url"] for r in ROWS]
    assert df["rect"].tolist() == ["183,60,297,174", "49,71,143,165", "0,0,10,12"]
    assert df["md5_expected"].tolist() == ["f533da9fbd1c770428c8961f3fa48950",
                                           "e36a8b24f0761ec75bdc0489d8fd570b",
                                           "583608783525c2ac419b41e538a6925d"]
    assert df["line"].tolist() == [3, 4, 5]
    # writing what was read gives the same file
    again = write_pubfig_list(df.to_dict("records"), tmp_path / "again.txt")
    assert again.read_text(encoding="utf-8").splitlines()[2:] == [
        line.replace("E36A8B24F0761EC75BDC0489D8FD570B", "e36a8b24f0761ec75bdc0489d8fd570b")
        for line in lines[2:]]


def test_write_rejects_tabs_in_names(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="tab"):
        write_pubfig_list([dict(ROWS[0], person="A\tB")], tmp_path / "x.txt")


def test_real_dev_urls(pubfig_dev_urls: Path) -> None:
    df = read_pubfig_list(pubfig_dev_urls)
    assert len(df) == 16336
    assert (df["status"] == "ok").all()
    assert df["person"].nunique() == 60
    assert df.loc[0, "person"] == "Abhishek Bachan" and df.loc[0, "imagenum"] == 1
    assert df.loc[0, "rect"] == "183,60,297,174"
    assert df["md5_expected"].str.fullmatch(r"[0-9a-f]{32}").all()
    assert df["url"].str.startswith("http").all()
    assert df["rect"].map(parse_rect).notna().all()
    header = pubfig_dev_urls.read_text(encoding="utf-8").splitlines()[:2]
    assert header[1] == "#\tperson\timagenum\turl\trect\tmd5sum"


def test_malformed_lines_become_bad_rows() -> None:
    text = "\n".join([
        "# PubFig Dataset v1.2 - dev_urls.txt - http://example.com/",
        "#\tperson\timagenum\turl\trect\tmd5sum",
        "Good One\t1\thttp://a/b.jpg\t1,2,30,40\tf533da9fbd1c770428c8961f3fa48950",
        "",
        "Too Few\t2\thttp://a/c.jpg",
        "Bad Num\tx\thttp://a/d.jpg\t1,2,30,40\tf533da9fbd1c770428c8961f3fa48950",
        "Bad Rect\t3\thttp://a/e.jpg\t30,2,1,40\tf533da9fbd1c770428c8961f3fa48950",
        "Bad Md5\t4\thttp://a/f.jpg\t1,2,30,40\tnot-an-md5",
        "\t5\thttp://a/g.jpg\t1,2,30,40\tf533da9fbd1c770428c8961f3fa48950",
        "No Url\t6\t \t1,2,30,40\tf533da9fbd1c770428c8961f3fa48950",
        "Windows Line\t7\thttp://a/h.jpg\t1,2,30,40\tf533da9fbd1c770428c8961f3fa48950\r",
        "Superscript\t\u00b2\thttp://a/i.jpg\t1,2,30,40\tf533da9fbd1c770428c8961f3fa48950",
    ])
    df = parse_pubfig_text(text)
    assert df["line"].tolist() == [3, 5, 6, 7, 8, 9, 10, 11, 12]
    assert df["status"].tolist() == ["ok", BAD_ROW, BAD_ROW, BAD_ROW, BAD_ROW, BAD_ROW,
                                     BAD_ROW, "ok", BAD_ROW]
    bad = df[df["status"] == BAD_ROW]
    for row in bad.itertuples():
        assert row.reason.startswith(f"line {row.line}: ")
    reasons = dict(zip(bad["line"], bad["reason"], strict=True))
    assert "expected 5" in reasons[5] and "got 3" in reasons[5]
    assert "imagenum" in reasons[6] and "imagenum" in reasons[12]
    assert "rect" in reasons[7]
    assert "md5sum" in reasons[8]
    assert "person" in reasons[9]
    assert "url" in reasons[10]
    assert df.loc[df["line"] == 11, "md5_expected"].item() == "f533da9fbd1c770428c8961f3fa48950"


def test_empty_and_missing_lists(tmp_path: Path) -> None:
    df = parse_pubfig_text("# only a header\n")
    assert df.empty and "status" in df.columns
    with pytest.raises(FileNotFoundError, match="PubFig-format"):
        read_pubfig_list(tmp_path / "nope.txt")


def test_rects() -> None:
    assert parse_rect("183,60,297,174") == (183, 60, 297, 174)
    assert parse_rect(" 1, 2 ,3,4") == (1, 2, 3, 4)
    for bad in ("", "1,2,3", "5,5,5,9", "a,b,c,d", None):
        assert parse_rect(bad) is None
    assert format_rect((1.4, 2.6, 30.0, 40.49)) == "1,3,30,40"


def test_read_folder(tmp_path: Path) -> None:
    for name in ("Brad Pitt", "Angelina Jolie"):
        (tmp_path / name).mkdir()
    (tmp_path / "Brad Pitt" / "b.JPG").write_bytes(b"x")
    (tmp_path / "Brad Pitt" / "a.jpg").write_bytes(b"x")
    (tmp_path / "Brad Pitt" / "notes.txt").write_text("x")
    (tmp_path / "Brad Pitt" / ".hidden.jpg").write_bytes(b"x")
    (tmp_path / "Angelina Jolie" / "1.png").write_bytes(b"x")
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "x.jpg").write_bytes(b"x")
    df = read_folder(tmp_path)
    assert df["person"].tolist() == ["Angelina Jolie", "Brad Pitt", "Brad Pitt"]
    assert df["path"].tolist() == ["Angelina Jolie/1.png", "Brad Pitt/a.jpg", "Brad Pitt/b.JPG"]
    assert df["imagenum"].tolist() == [1, 1, 2]
    assert (df["status"] == "ok").all()
    with pytest.raises(FileNotFoundError):
        read_folder(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no sub-folder"):
        read_folder(empty)


def test_read_folder_real_pubfig83(pubfig83_dir: Path) -> None:
    df = read_folder(pubfig83_dir)
    assert df["person"].nunique() == 40
    assert len(df) == 6610
    counts = df.groupby("person").size()
    assert counts.min() == 100 and counts.max() == 367
    assert isinstance(df, pd.DataFrame)
