"""The local demo web: every misbehaviour observed over real HTTP on 127.0.0.1."""

from __future__ import annotations

import hashlib
import io
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
from PIL import Image

from facelab.collect.sources import read_pubfig_list
from facelab.demo import plots as demo_plots
from facelab.demo import web as demoweb
from facelab.demo.urls import Shares, plan_urls
from facelab.demo.web import KINDS, MISBEHAVING, DemoWeb, serve
from facelab.manifest import parse_rect

pytestmark = pytest.mark.network_local

# more slow URLs than the default (to see both stall and trickle), short delays
TEST_SHARES = Shares(slow=0.02, slow_s=3.0, huge_mb=16)
TIMEOUT = (2.0, 5.0)


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _decodes(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
        return True
    except Exception:
        return False


def _fake_photos(n_people: int = 40, seed: int = 1) -> pd.DataFrame:
    """A photos.csv-like table without files (enough for plan_urls)."""
    import random

    rng = random.Random(seed)
    rows = []
    for p in range(n_people):
        for k in range(1, rng.randint(50, 250) + 1):
            rows.append({"person": f"Person {p:02d}", "imagenum": k,
                         "path": f"photos/p{p:02d}/{k}.jpg", "width": 400, "height": 300,
                         "rect": "100,80,180,160", "n_faces": 1 if rng.random() > 0.1 else 3,
                         "md5": _md5(f"{p}-{k}".encode())})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def web(small_demo: Path, tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("demoweb") / "demo"
    shutil.copytree(small_demo, folder)
    with serve(folder, seed=0, shares=TEST_SHARES, progress=False) as running:
        yield running


@pytest.fixture
def demo_copy(small_demo: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "demo"
    shutil.copytree(small_demo, folder,
                    ignore=shutil.ignore_patterns("urls.txt", "url_truth*", "web_cache"))
    return folder


def _rows(web: DemoWeb, kind: str, mode: str | None = None) -> pd.DataFrame:
    truth = web.truth
    rows = truth[truth["kind"] == kind]
    if mode is not None:
        rows = rows[rows["mode"] == mode]
    assert len(rows), f"the demo web has no {kind} URL ({mode})"
    return rows


def _get(url: str, **kwargs) -> requests.Response:
    return requests.get(url, timeout=kwargs.pop("timeout", TIMEOUT), **kwargs)


# ----------------------------------------------------------------- plan (no server)


def test_plan_is_deterministic_and_respects_shares() -> None:
    photos = _fake_photos()
    shares = Shares()
    plan = plan_urls(photos, seed=3, shares=shares)
    again = plan_urls(photos, seed=3, shares=shares)
    pd.testing.assert_frame_equal(plan, again)
    assert not plan["url_path"].equals(plan_urls(photos, seed=4, shares=shares)["url_path"])

    n = len(photos)
    counts = plan["kind"].value_counts()
    for kind in ("http_404", "placeholder", "html", "truncated", "changed", "slow",
                 "redirect_chain", "redirect_loop"):
        assert abs(counts[kind] / n - getattr(shares, kind)) < 0.002, kind
    assert counts["huge"] == 1
    dups = counts["duplicate_exact"] + counts["duplicate_reencoded"]
    assert len(plan) == n + dups
    misbehaving = plan["kind"].isin(MISBEHAVING).mean()
    assert 0.25 <= misbehaving <= 0.35
    assert set(plan["kind"]) == set(KINDS)
    assert plan["url_path"].is_unique


def test_plan_rows_look_like_a_pubfig_list() -> None:
    photos = _fake_photos(n_people=12)
    plan = plan_urls(photos, seed=0)
    # grouped by person in the photos' order, imagenum 1..n within each person
    assert list(dict.fromkeys(plan["person"])) == list(dict.fromkeys(photos["person"]))
    for _, group in plan.groupby("person"):
        assert list(group["imagenum"]) == list(range(1, len(group) + 1))
    # duplicates copy an ok photo of the same person, and are mixed in (not all at the end)
    by_path = plan.set_index("url_path")
    dups = plan[plan["kind"].str.startswith("duplicate")]
    for row in dups.itertuples():
        source = by_path.loc[row.duplicate_of]
        assert source["kind"] == "ok" and source["person"] == row.person
        assert source["photo"] == row.photo
    last = plan.groupby("person")["imagenum"].transform("max")
    assert (dups["imagenum"] < last[dups.index]).any()
    # URLs look like varied web URLs: several path styles, some with query strings
    first = plan["url_path"].str.extract(r"^/([^/?]+)")[0]
    assert first.nunique() > 20
    assert plan["url_path"].str.contains(r"\?").any()
    assert plan["url_path"].str.match(r"^/[A-Za-z0-9_.~/?&=%-]+$").all()


def test_bad_shares_raise_early() -> None:
    with pytest.raises(ValueError, match="fraction"):
        Shares(http_404=1.5).validate()
    with pytest.raises(ValueError, match="add up"):
        Shares(http_404=0.5, placeholder=0.5).validate()
    with pytest.raises(ValueError, match="lacks"):
        plan_urls(pd.DataFrame({"person": ["a"]}))


def test_placeholder_looks_like_one() -> None:
    data = demoweb.placeholder_jpeg()
    assert data == demoweb.placeholder_jpeg()
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG" and image.size == (400, 300)
        grey = np.asarray(image.convert("L"), dtype=float)
        assert 180 < grey.mean() < 235   # mostly light grey


# ----------------------------------------------------------------- the lists


def test_urls_txt_is_pubfig_format(web: DemoWeb) -> None:
    lines = web.urls_path.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("# PubFig Dataset v1.2 - urls.txt - ")
    assert lines[1] == "#\tperson\timagenum\turl\trect\tmd5sum"
    assert all(line.count("\t") == 4 for line in lines[2:])
    listed = read_pubfig_list(web.urls_path)
    assert (listed["status"] == "ok").all()
    assert len(listed) == len(web.truth)
    assert listed["url"].tolist() == web.truth["url"].tolist()
    assert listed["url"].str.startswith(web.base_url + "/").all()
    assert listed["rect"].map(parse_rect).notna().all()
    # md5 and rect of the photos as they were when the list was made
    photos = pd.read_csv(web.demo_dir / "photos.csv", dtype={"rect": str})
    originals = listed[web.truth["kind"].isin(["ok", "http_404", "truncated", "changed"])
                       .to_numpy()]
    by_md5 = photos.set_index("md5")
    assert originals["md5_expected"].isin(by_md5.index).all()
    assert (by_md5.loc[originals["md5_expected"], "rect"].to_numpy()
            == originals["rect"].to_numpy()).all()


def test_header_style_matches_the_real_list(web: DemoWeb, pubfig_dev_urls: Path) -> None:
    real = pubfig_dev_urls.read_text(encoding="utf-8").splitlines()[:2]
    ours = web.urls_path.read_text(encoding="utf-8").splitlines()[:2]
    assert ours[1] == real[1]
    assert ours[0].split(" - ")[0] == real[0].split(" - ")[0]
    assert len(ours[0].split(" - ")) == len(real[0].split(" - ")) == 3


def test_truth_csv_maps_every_url(web: DemoWeb) -> None:
    truth = demoweb.read_truth(web.demo_dir)
    assert truth["url"].tolist() == web.truth["url"].tolist()
    assert set(truth["kind"]) == set(KINDS)
    assert (truth.loc[truth["kind"] == "http_404", "final_status"] == 404).all()
    assert truth.loc[truth["kind"] == "redirect_loop", "final_status"].isna().all()
    assert (truth.loc[truth["kind"] == "ok", "final_status"] == 200).all()
    for row in truth.itertuples():
        assert (web.demo_dir / row.photo).is_file()


# ----------------------------------------------------------------- each misbehaviour


def test_ok_urls_serve_the_listed_photo(web: DemoWeb) -> None:
    for row in _rows(web, "ok").head(8).itertuples():
        response = _get(row.url)
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "image/jpeg"
        assert _md5(response.content) == row.md5_listed
        assert response.content == (web.demo_dir / row.photo).read_bytes()


def test_http_404(web: DemoWeb) -> None:
    for row in _rows(web, "http_404").head(3).itertuples():
        assert _get(row.url).status_code == 404
    assert _get(web.base_url + "/no/such/photo.jpg").status_code == 404


def test_placeholder_behind_many_urls_and_redirects(web: DemoWeb) -> None:
    rows = _rows(web, "placeholder")
    assert rows["person"].nunique() >= 3
    bodies = set()
    for row in rows.itertuples():
        response = _get(row.url)
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "image/jpeg"
        assert bool(response.history) == (row.mode == "redirect")
        assert _decodes(response.content)
        bodies.add(_md5(response.content))
    assert bodies == {_md5(demoweb.placeholder_jpeg())}
    assert "redirect" in set(rows["mode"]) and "direct" in set(rows["mode"])


def test_html_served_as_200_some_labelled_jpeg(web: DemoWeb) -> None:
    rows = _rows(web, "html")
    labels = set()
    for row in rows.itertuples():
        response = _get(row.url)
        assert response.status_code == 200
        assert response.content.startswith(b"<!DOCTYPE html>")
        assert not _decodes(response.content)
        labels.add(response.headers["Content-Type"].split(";")[0])
    assert labels == {"text/html", "image/jpeg"}


def test_truncated_jpegs_do_not_decode(web: DemoWeb) -> None:
    for row in _rows(web, "truncated", "short").head(3).itertuples():
        response = _get(row.url)
        original = (web.demo_dir / row.photo).read_bytes()
        assert response.status_code == 200
        assert len(response.content) < len(original)
        assert original.startswith(response.content)
        assert _md5(response.content) == row.md5_served != row.md5_listed
        assert not _decodes(response.content)
    for row in _rows(web, "truncated", "dropped").head(2).itertuples():
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            _get(row.url)


def test_changed_photos_are_fine_but_md5_differs(web: DemoWeb) -> None:
    for row in _rows(web, "changed").itertuples():
        response = _get(row.url)
        assert response.status_code == 200
        assert _md5(response.content) == row.md5_served != row.md5_listed
        assert _decodes(response.content)
        with Image.open(io.BytesIO(response.content)) as image, \
                Image.open(web.demo_dir / row.photo) as original:
            if row.mode == "resized":
                assert image.width < original.width
            else:
                assert image.size == original.size
    assert set(web.truth.loc[web.truth["kind"] == "changed", "mode"]) == {"resized", "reencoded"}


def test_duplicates_serve_copies_of_another_url(web: DemoWeb) -> None:
    for row in _rows(web, "duplicate_exact").itertuples():
        copy, source = _get(row.url).content, _get(row.duplicate_of).content
        assert copy == source and _md5(copy) == row.md5_listed
    for row in _rows(web, "duplicate_reencoded").itertuples():
        copy, source = _get(row.url).content, _get(row.duplicate_of).content
        assert copy != source and _md5(copy) == row.md5_listed   # listed as it was served
        with Image.open(io.BytesIO(copy)) as a, Image.open(io.BytesIO(source)) as b:
            small_a = np.asarray(a.convert("L").resize((32, 32)), dtype=float)
            small_b = np.asarray(b.convert("L").resize((32, 32)), dtype=float)
            assert np.abs(small_a - small_b).mean() < 8   # the same picture


def test_slow_urls_time_out(web: DemoWeb) -> None:
    stall = _rows(web, "slow", "stall").iloc[0]
    start = time.perf_counter()
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(stall["url"], timeout=(2.0, 0.5))
    assert time.perf_counter() - start < 2.0
    trickle = _rows(web, "slow", "trickle").iloc[0]
    # headers come at once and bytes keep coming: only a total deadline catches it
    start = time.perf_counter()
    with requests.get(trickle["url"], timeout=(2.0, 1.0), stream=True) as response:
        assert response.status_code == 200
        received = b""
        for chunk in response.iter_content(1024):
            received += chunk
            if time.perf_counter() - start > 1.0:
                break
    expected = (web.demo_dir / trickle["photo"]).read_bytes()
    assert 0 < len(received) < len(expected)


def test_redirect_chain_resolves(web: DemoWeb) -> None:
    for row in _rows(web, "redirect_chain").head(4).itertuples():
        response = _get(row.url)
        assert response.status_code == 200
        assert len(response.history) == row.hops
        assert response.url != row.url
        assert _md5(response.content) == row.md5_listed


def test_redirect_loop_raises(web: DemoWeb) -> None:
    with requests.Session() as session:
        session.max_redirects = 8
        for row in _rows(web, "redirect_loop").itertuples():
            with pytest.raises(requests.exceptions.TooManyRedirects):
                session.get(row.url, timeout=TIMEOUT)


def test_huge_response_exceeds_a_byte_cap(web: DemoWeb) -> None:
    row = _rows(web, "huge").iloc[0]
    cap = 2 * 1024 * 1024
    received = 0
    with requests.get(row["url"], timeout=TIMEOUT, stream=True) as response:
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "image/jpeg"
        assert "Content-Length" not in response.headers
        for chunk in response.iter_content(64 * 1024):
            received += len(chunk)
            if received > cap:
                break
    assert received > cap


def test_hits_are_logged(web: DemoWeb) -> None:
    row = _rows(web, "ok").iloc[0]
    before = web.hit_count(row["url"])
    total = web.hit_count()
    for _ in range(3):
        _get(row["url"])
    assert web.hit_count(row["url"]) == before + 3
    assert web.hit_count(row["url_path"]) == before + 3
    assert web.hit_count() >= total + 3
    hits = web.hits()
    assert list(hits.columns) == ["time", "method", "path", "status", "bytes", "duration_s",
                                  "kind"]
    mine = hits[hits["path"] == row["url_path"]]
    assert (mine["status"] == 200).all() and (mine["kind"] == "ok").all()
    assert (mine["bytes"] == (web.demo_dir / row["photo"]).stat().st_size).all()


def test_hit_log_is_thread_safe(web: DemoWeb) -> None:
    row = _rows(web, "http_404").iloc[0]
    before = web.hit_count(row["url"])
    threads = [threading.Thread(target=lambda: [_get(row["url"]) for _ in range(5)])
               for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert web.hit_count(row["url"]) == before + 30


# ----------------------------------------------------------------- lifecycle


def test_same_seed_same_web_and_quick_clean_stop(demo_copy: Path) -> None:
    shares = Shares(slow=0.02, slow_s=30.0, huge_mb=64)
    with serve(demo_copy, seed=5, shares=shares, progress=False) as first:
        truth_a = first.truth.drop(columns=["url", "duplicate_of"])
        urls_a = first.urls_path.read_text().replace(first.base_url, "BASE")
        slow = _rows(first, "slow", "stall").iloc[0]["url"]
        errors: list[BaseException] = []

        def hang() -> None:
            try:
                requests.get(slow, timeout=(2, 60))
            except requests.RequestException as error:
                errors.append(error)

        client = threading.Thread(target=hang)
        client.start()
        time.sleep(0.3)
        start = time.perf_counter()
    stop_s = time.perf_counter() - start
    client.join(timeout=5)
    assert stop_s < 2.0 and not client.is_alive()
    assert not first.running
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(first.base_url + "/", timeout=1)
    assert any((demo_copy / "web_cache").glob("*.jpg"))   # re-encoded photos kept for restarts
    with serve(demo_copy, seed=5, shares=shares, progress=False) as second:
        pd.testing.assert_frame_equal(truth_a, second.truth.drop(columns=["url", "duplicate_of"]))
        assert second.urls_path.read_text().replace(second.base_url, "BASE") == urls_a
    with serve(demo_copy, seed=6, shares=shares, progress=False) as third:
        assert not third.truth["url_path"].equals(truth_a["url_path"])


def test_generates_the_demo_when_the_folder_is_empty(tmp_path: Path, small_demo: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from facelab.demo import photos as demo_photos

    calls = []

    def fake_generate(out_dir, scale="full", seed=0, progress=True):
        calls.append((scale, seed))
        shutil.copytree(small_demo, out_dir, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("urls.txt", "url_truth*", "web_cache"))

    monkeypatch.setattr(demo_photos, "generate", fake_generate)
    folder = tmp_path / "empty"
    with serve(folder, seed=2, scale="small", shares=TEST_SHARES, progress=False) as running:
        assert calls == [("small", 2)]
        assert running.urls_path.is_file() and running.truth_path.is_file()
    with serve(folder, seed=2, scale="small", shares=TEST_SHARES, progress=False):
        assert calls == [("small", 2)]   # complete collection reused, not regenerated
    with pytest.raises(ValueError, match="is a file"):
        demoweb.ensure_demo(folder / "photos.csv")


def test_cli_serves_until_interrupted(demo_copy: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    from facelab import cli

    def interrupt(_seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(demoweb.time, "sleep", interrupt)
    status = cli.main(["demo-web", str(demo_copy), "--seed", "1", "--slow-s", "2"])
    out = capsys.readouterr().out
    assert status == 0
    assert "http://127.0.0.1:" in out and str(demo_copy / "urls.txt") in out
    args = cli.build_parser("demo-web").parse_args(["demo-web", "d", "--port", "8123",
                                                    "--scale", "small"])
    assert (args.port, args.scale, args.seed) == (8123, "small", 0)


# ----------------------------------------------------------------- notebook helpers


def test_notebook_helpers(web: DemoWeb) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    photos = pd.read_csv(web.demo_dir / "photos.csv", dtype={"rect": str})
    grid = demo_plots.identity_grid(web.demo_dir, photos)
    assert len([ax for ax in grid.axes if ax.images]) == photos["person"].nunique()
    bars = demo_plots.photos_per_identity_plot(photos)
    heights = [p.get_height() for p in bars.axes[0].patches]
    assert heights == sorted(heights, reverse=True) and sum(heights) == len(photos)
    plt.close("all")
    sample = demoweb.misbehaving_sample(web.truth, per_kind=2)
    assert set(sample["kind"]) == set(KINDS) - {"ok"}
    assert list(sample.columns) == ["kind", "person", "url", "detail"]
    table = demoweb.kind_table(web.truth)
    assert table["urls"].sum() == len(web.truth)
    assert 0.2 < table.loc[table["misbehaves"], "share"].sum() < 0.4


def test_probe_sees_every_misbehaviour(web: DemoWeb) -> None:
    seen = demoweb.probe(web, per_kind=1, timeout_s=0.8, max_bytes=1024 * 1024)
    assert seen["kind"].tolist() == list(KINDS)
    by_kind = seen.set_index("kind")
    for kind in ("ok", "changed", "duplicate_exact", "duplicate_reencoded", "redirect_chain",
                 "placeholder"):
        assert by_kind.loc[kind, "decodes"] and by_kind.loc[kind, "status"] == 200, kind
    assert by_kind.loc["ok", "md5_matches"] and not by_kind.loc["changed", "md5_matches"]
    assert by_kind.loc["http_404", "status"] == 404
    assert not by_kind.loc["html", "decodes"] and not by_kind.loc["truncated", "decodes"]
    assert by_kind.loc["redirect_loop", "error"] == "TooManyRedirects"
    assert by_kind.loc["huge", "error"].startswith("more than")
    assert by_kind.loc["slow", "error"] != ""
    assert seen["seconds"].sum() < 10


def test_head_and_server_errors(demo_copy: Path) -> None:
    with serve(demo_copy, seed=0, shares=TEST_SHARES, progress=False) as running:
        row = _rows(running, "ok").iloc[0]
        head = requests.head(row["url"], timeout=TIMEOUT)
        size = (demo_copy / row["photo"]).stat().st_size
        assert head.status_code == 200 and head.content == b""
        assert int(head.headers["Content-Length"]) == size
        (demo_copy / row["photo"]).unlink()   # a photo deleted under a running server
        assert _get(row["url"]).status_code == 500
        other = _rows(running, "ok").iloc[1]
        assert _get(other["url"]).status_code == 200   # still serving
