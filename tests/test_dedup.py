"""Placeholder and duplicate detection (facelab.collect.dedup), on synthetic and real photos."""

from __future__ import annotations

import hashlib
import io
import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from facelab.collect import dedup


def picture(seed: int, size: tuple[int, int] = (160, 120)) -> Image.Image:
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)
    return Image.fromarray(blocks).resize(size, Image.Resampling.BICUBIC)


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def row(person: str, num: int, data: bytes, rect: str = "10,10,60,60",
        status: str = "ok") -> dict:
    image = decoded(data)
    phash, dhash = dedup.image_hashes(image)
    return {"person": person, "imagenum": num, "status": status, "reason": "",
            "sha256": hashlib.sha256(data).hexdigest(), "phash": phash, "dhash": dhash,
            "width": image.width, "height": image.height, "rect": rect, "dup_group": ""}


def test_image_hashes_match_imagehash_text_and_survive_reencoding() -> None:
    import imagehash

    image = picture(1)
    phash, dhash = dedup.image_hashes(image)
    small = image.resize((64, 64), Image.Resampling.BOX).convert("L")
    assert phash == str(imagehash.phash(small)) and dhash == str(imagehash.dhash(small))
    copy = decoded(jpeg(image.resize((80, 60)), quality=50))
    p2, d2 = dedup.image_hashes(copy)
    assert dedup.hamming(phash, p2) <= 4 and dedup.hamming(dhash, d2) <= 6
    # palette and alpha images hash too
    assert len(dedup.image_hashes(image.convert("P"))[0]) == 16
    assert len(dedup.image_hashes(image.convert("RGBA"))[1]) == 16


def test_near_pairs_equals_brute_force() -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2**63, 50, dtype=np.uint64)
    flips = np.uint64(1) << rng.integers(0, 64, 50).astype(np.uint64)
    hashes = np.concatenate([base, base ^ flips, base[:5]])
    got = {tuple(p) for p in dedup.near_pairs(hashes, 3, block=7)}
    want = {(i, j) for i, j in itertools.combinations(range(len(hashes)), 2)
            if bin(int(hashes[i]) ^ int(hashes[j])).count("1") <= 3}
    assert got == want
    assert dedup.near_pairs(np.zeros(0, dtype=np.uint64), 3).shape == (0, 2)


def test_cluster_needs_both_hashes_and_the_same_aspect() -> None:
    keys = ["a", "b", "c", "a"]
    ph = ["0000000000000000", "0000000000000001", "0000000000000003", "ffffffffffffffff"]
    dh = ["0000000000000000", "0000000000000000", "ffffffffffffffff", "0000000000000000"]
    assert dedup.cluster(keys, ph, 2, second=dh) == [0, 0, 2, 0]   # c: dhash far
    assert dedup.cluster(keys, ph, 2, aspects=[1.0, 1.5, 1.0, 1.0]) == [0, 1, 0, 0]
    assert dedup.cluster(keys, ph, -1) == [0, 1, 2, 0]             # exact copies only


def test_placeholders_need_several_different_people() -> None:
    placeholder = jpeg(picture(99))
    resized = jpeg(picture(99).resize((200, 150)))
    rows = [row("Ann", 1, placeholder), row("ann ", 2, placeholder),   # same person twice
            row("Bob", 1, jpeg(picture(1)))]
    out = dedup.mark_placeholders_and_duplicates(pd.DataFrame(rows))
    assert out["status"].tolist() == ["ok", "duplicate", "ok"]       # only one person
    rows += [row("Cid", 1, resized), row("Dee", 1, placeholder)]
    out = dedup.mark_placeholders_and_duplicates(pd.DataFrame(rows))
    assert out["status"].tolist() == ["placeholder", "placeholder", "ok", "placeholder",
                                      "placeholder"]
    assert "3 different people" in out["reason"].iloc[0]
    out = dedup.mark_placeholders_and_duplicates(pd.DataFrame(rows), min_people=4)
    assert "placeholder" not in set(out["status"])
    with pytest.raises(ValueError, match="min_people"):
        dedup.mark_placeholders_and_duplicates(pd.DataFrame(rows), min_people=1)


def test_known_placeholder_folder(tmp_path: Path) -> None:
    (tmp_path / "README.txt").write_text("not an image")
    picture(7).resize((300, 225)).save(tmp_path / "na.png")
    known = dedup.load_known_placeholders(tmp_path)
    assert [k.name for k in known] == ["na.png"]
    out = dedup.mark_placeholders_and_duplicates(
        pd.DataFrame([row("Ann", 1, jpeg(picture(7))), row("Ann", 2, jpeg(picture(8)))]),
        known=known)
    assert out["status"].tolist() == ["placeholder", "ok"]
    assert dedup.load_known_placeholders(None) == []
    with pytest.raises(FileNotFoundError):
        dedup.load_known_placeholders(tmp_path / "missing")


def test_duplicates_keep_the_largest_then_the_earliest_one_per_face() -> None:
    big = picture(3, size=(320, 240))
    rows = [
        row("Ann", 1, jpeg(big.resize((160, 120))), rect="10,10,60,60"),
        row("Ann", 2, jpeg(big), rect="20,20,120,120"),               # the largest: kept
        row("Ann", 3, jpeg(big), rect="20,20,120,120"),               # exact copy of 2
        row("Ann", 4, jpeg(big), rect="200,100,300,200"),             # another face: kept
        row("Bob", 1, jpeg(picture(4))), row("Bob", 2, jpeg(picture(4))),
        row("Cid", 1, jpeg(picture(5)), status="http_error"),
        row("Dan", 1, jpeg(picture(4))),                               # label conflict
    ]
    out = dedup.mark_placeholders_and_duplicates(pd.DataFrame(rows))
    assert out["status"].tolist() == ["duplicate", "ok", "duplicate", "ok", "ok",
                                      "duplicate", "http_error", "duplicate"]
    assert out["dup_group"].tolist() == ["d00001"] * 4 + ["d00002"] * 2 + ["", "d00002"]
    assert out["reason"].iloc[0].startswith("duplicate of Ann #2 (near copy")
    assert out["reason"].iloc[2] == "duplicate of Ann #2 (same bytes)"
    assert "different face" in out["reason"].iloc[3]
    assert "label conflict" in out["reason"].iloc[7] and "'Bob'" in out["reason"].iloc[7]
    assert "label conflict" in out["reason"].iloc[4]          # noted on the kept row too
    # deterministic: the same input gives the same output
    again = dedup.mark_placeholders_and_duplicates(pd.DataFrame(rows))
    assert again.equals(out)


def test_real_photos_one_true_near_duplicate_and_every_copy_found(
        five_celebrity_dir: Path) -> None:
    files = sorted(p for p in five_celebrity_dir.rglob("*") if p.is_file())
    rows = [row(f.parent.name, n, f.read_bytes(), rect="") for n, f in enumerate(files)]
    out = dedup.mark_placeholders_and_duplicates(pd.DataFrame(rows))
    groups = out[out["dup_group"] != ""].groupby("dup_group")
    # the only near duplicate of the set: one Ben Affleck photo in both train/ and val/
    assert groups.ngroups == 1
    members = [files[i] for i in groups.get_group("d00001").index]
    assert {p.parent.parent.name for p in members} == {"train", "val"}
    # and a resized, re-encoded copy of every photo is found
    copies = []
    for n, f in enumerate(files):
        image = Image.open(f).convert("RGB")
        small = image.resize((image.width * 2 // 3, image.height * 2 // 3))
        copies.append(row(f.parent.name, 1000 + n, jpeg(small, quality=70), rect=""))
    out = dedup.mark_placeholders_and_duplicates(pd.DataFrame(rows + copies))
    assert (out["status"].iloc[len(rows):] == "duplicate").all()
