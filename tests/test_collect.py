"""Collection stage against a real, misbehaving HTTP server on 127.0.0.1 (counted server-side)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from facelab import collect as C
from facelab.collect import run as collect_run
from facelab.collect.sources import read_pubfig_list
from facelab.manifest import read_manifest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.network_local


# ----------------------------------------------------------------------------- fixtures

def photo(seed: int, size: tuple[int, int] = (160, 120), quality: int = 90,
          fmt: str = "JPEG") -> bytes:
    """A distinct little photo (smooth random blocks: distinct perceptual hashes)."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)
    image = Image.fromarray(blocks).resize(size, Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    image.save(buf, fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    return buf.getvalue()


def bomb_png(width: int = 40_000, height: int = 40_000) -> bytes:
    """A tiny PNG whose header claims a huge image (a decompression bomb)."""
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4:ihdr + 12] = struct.pack(">II", width, height)
    data[ihdr + 17:ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr:ihdr + 17])))
    return bytes(data)


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128   # the default 5 drops SYNs when many workers connect at once


class Web:
    """A threading HTTP server whose routes are plain functions; every request is counted."""

    def __init__(self) -> None:
        self.routes: dict[str, Callable[[BaseHTTPRequestHandler], None]] = {}
        self.hits: Counter[str] = Counter()
        self.lock = threading.Lock()
        web = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                with web.lock:
                    web.hits[self.path] += 1
                    count = web.hits[self.path]
                route = web.routes.get(self.path)
                try:
                    if route is None:
                        self.send_error(404)
                    else:
                        route(self, count)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args) -> None:
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return self.base + path

    # route makers ---------------------------------------------------------------------
    def bytes(self, path: str, data: bytes, ctype: str = "image/jpeg",
              delay: float = 0.0) -> str:
        def route(h, count):
            if delay:
                time.sleep(delay)
            h.send_response(200)
            h.send_header("Content-Type", ctype)
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)
        self.routes[path] = route
        return self.url(path)

    def status(self, path: str, code: int, fail_times: int | None = None,
               then: bytes = b"", retry_after: str | None = None) -> str:
        def route(h, count):
            if fail_times is None or count <= fail_times:
                h.send_response(code)
                if retry_after is not None:
                    h.send_header("Retry-After", retry_after)
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
            h.send_response(200)
            h.send_header("Content-Type", "image/jpeg")
            h.send_header("Content-Length", str(len(then)))
            h.end_headers()
            h.wfile.write(then)
        self.routes[path] = route
        return self.url(path)

    def redirect(self, path: str, to: str) -> str:
        def route(h, count):
            h.send_response(302)
            h.send_header("Location", to)
            h.send_header("Content-Length", "0")
            h.end_headers()
        self.routes[path] = route
        return self.url(path)

    def trickle(self, path: str, data: bytes, every: float) -> str:
        def route(h, count):
            h.send_response(200)
            h.send_header("Content-Type", "image/jpeg")
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            for i in range(0, len(data), 64):
                h.wfile.write(data[i:i + 64])
                h.wfile.flush()
                time.sleep(every)
        self.routes[path] = route
        return self.url(path)

    def dropped(self, path: str, data: bytes) -> str:
        def route(h, count):
            h.send_response(200)
            h.send_header("Content-Type", "image/jpeg")
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data[: len(data) // 2])
            h.wfile.flush()
            h.close_connection = True
        self.routes[path] = route
        return self.url(path)

    def endless(self, path: str, announce: int | None = None, limit: int = 64_000_000) -> str:
        def route(h, count):
            h.send_response(200)
            h.send_header("Content-Type", "image/jpeg")
            if announce is not None:
                h.send_header("Content-Length", str(announce))
            h.end_headers()
            chunk = b"\xff" * 65536
            sent = 0
            while sent < limit:
                h.wfile.write(chunk)
                sent += len(chunk)
        self.routes[path] = route
        return self.url(path)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def web() -> Iterator[Web]:
    server = Web()
    yield server
    server.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_list(path: Path, rows: list[tuple], extra_lines: tuple[str, ...] = ()) -> Path:
    lines = ["# PubFig Dataset v1.2 - dev_urls.txt - test",
             "#\tperson\timagenum\turl\trect\tmd5sum"]
    for person, num, url, md5sum, *rect in rows:
        lines.append(f"{person}\t{num}\t{url}\t{rect[0] if rect else '10,10,60,60'}\t{md5sum}")
    lines.extend(extra_lines)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


FAST = {"workers": 8, "per_host": 8, "timeout": 2.0, "connect_timeout": 2.0, "retries": 2,
        "backoff": 0.01,
        "max_bytes": 2_000_000, "progress": False, "verbose": False}


# ----------------------------------------------------------------------------- every status

@pytest.fixture
def every_status(web: Web, tmp_path: Path) -> tuple[Path, Web, dict[str, bytes]]:
    img = {n: photo(n) for n in range(1, 8)}
    big = photo(20, size=(320, 240))
    small_copy = photo(20, size=(160, 120), quality=60)       # re-encoded, resized copy
    placeholder = photo(99, size=(200, 150))
    trunc = img[6][: len(img[6]) // 2]
    w = web
    rows = [
        ("Ann", 1, w.bytes("/ok/1.jpg", img[1]), md5(img[1])),
        ("Ann", 2, w.bytes("/copy/1.jpg", img[1]), md5(img[1])),        # exact duplicate
        ("Ann", 3, w.bytes("/big.jpg", big), md5(big), "20,20,120,120"),
        ("Ann", 4, w.bytes("/small.jpg", small_copy), md5(small_copy), "10,10,60,60"),
        ("Bob", 1, w.status("/gone.jpg", 404), md5(b"x")),
        ("Bob", 2, w.status("/flaky.jpg", 500, fail_times=1, then=img[2]), md5(img[2])),
        ("Bob", 3, w.status("/down.jpg", 503), md5(b"x")),
        ("Bob", 4, w.status("/busy.jpg", 429, fail_times=1, then=img[3], retry_after="0"),
         md5(img[3])),
        ("Cid", 1, w.bytes("/ph/a.jpg", placeholder), md5(img[4])),
        ("Dee", 1, w.bytes("/ph/b.jpg", placeholder), md5(img[4])),
        ("Eve", 1, w.redirect("/ph/c", "/ph/a.jpg"), md5(img[4])),
        ("Cid", 2, w.bytes("/page.jpg", b"<!DOCTYPE html><html>404 not found</html>"),
         md5(b"x")),
        ("Cid", 3, w.bytes("/trunc.jpg", trunc), md5(img[6])),
        ("Dee", 2, w.bytes("/changed.jpg", img[4]), md5(b"the original")),  # md5 mismatch
        ("Dee", 3, w.bytes("/slow.jpg", img[5], delay=7.0), md5(img[5])),
        ("Dee", 4, w.redirect("/loop", "/loop"), md5(b"x")),
        ("Eve", 2, w.endless("/huge-announced.jpg", announce=10**9, limit=200_000), md5(b"x")),
        ("Eve", 3, w.endless("/huge-streamed.jpg", limit=8_000_000), md5(b"x")),
        ("Eve", 4, "ftp://127.0.0.1/photo.jpg", md5(b"x")),
        ("Fay", 1, w.bytes("/bomb.png", bomb_png(), "image/png"), md5(b"x")),
        ("Fay", 2, f"http://127.0.0.1:{closed_port()}/nothing.jpg", md5(b"x")),
        ("Fay", 3, w.trickle("/trickle.jpg", img[7], every=0.15), md5(img[7])),
        ("Fay", 4, w.redirect("/hop1", "/hop2"), md5(img[1])),
        ("Gus", 1, w.url("/ok/1.jpg"), md5(img[1])),     # same photo as Ann 1: label conflict
        ("Gus", 2, w.bytes("/ok/2.png", photo(30, fmt="PNG"), "image/png"),
         md5(photo(30, fmt="PNG"))),
        ("Gus", 3, w.dropped("/dropped.jpg", photo(31)), md5(photo(31))),
    ]
    w.redirect("/hop2", "/hop3")
    w.bytes("/hop3", photo(8))
    source = write_list(tmp_path / "urls.txt", rows,
                        extra_lines=("Hal\tnot-a-number\thttp://x/y.jpg\t1,2,3,4\t" + "0" * 32,))
    return source, web, img


EXPECTED = [
    ("Ann", "ok"), ("Ann", "duplicate"), ("Ann", "ok"), ("Ann", "duplicate"),
    ("Bob", "http_error"), ("Bob", "ok"), ("Bob", "http_error"), ("Bob", "ok"),
    ("Cid", "placeholder"), ("Dee", "placeholder"), ("Eve", "placeholder"),
    ("Cid", "not_image"), ("Cid", "corrupt"), ("Dee", "ok"), ("Dee", "timeout"),
    ("Dee", "too_many_redirects"), ("Eve", "too_large"), ("Eve", "too_large"),
    ("Eve", "unsupported_url"), ("Fay", "too_large"), ("Fay", "host_unreachable"),
    ("Fay", "timeout"), ("Fay", "ok"), ("Gus", "duplicate"), ("Gus", "ok"), ("Gus", "corrupt"),
    ("Hal", "bad_row"),
]


def by_url(df: pd.DataFrame, ending: str) -> str:
    return df.loc[df["url"].str.endswith(ending), "reason"].iloc[0]


def test_every_status_over_real_http(every_status, tmp_path: Path, capsys) -> None:
    source, web, img = every_status
    out = tmp_path / "collected"
    df = C.collect(source, out, deadline=3.0, **{**FAST, "verbose": True})
    printed = capsys.readouterr().out
    got = list(zip(df["person"], df["status"], strict=True))
    assert got == EXPECTED, "\n".join(f"{g} {e} {r}" for g, e, r in
                                      zip(got, EXPECTED, df["reason"], strict=True))
    # connection_error: a host that stops answering mid-run (its connect probe passed)
    assert set(df["status"]) | {"md5_mismatch", "connection_error"} == set(C.STATUSES)
    assert "connection refused" in by_url(df, "/nothing.jpg")
    assert list(df.columns) == list(C.MANIFEST_COLUMNS)
    assert (out / "manifest.csv").read_text(encoding="utf-8") == df.to_csv(index=False)
    assert read_manifest(out)["status"].tolist() == df["status"].tolist()
    by = df.set_index(["person", "imagenum"])
    # reasons: every dropped row says why
    assert (df.loc[df["status"] != "ok", "reason"] != "").all()
    assert by.loc[("Bob", 1), "reason"] == "HTTP 404 Not Found"
    assert "503" in by.loc[("Bob", 3), "reason"]
    assert by.loc[("Hal", -1), "reason"].startswith("line 29:")
    assert "decompression bomb" in by.loc[("Fay", 1), "reason"]
    assert "not downloaded" in by.loc[("Eve", 2), "reason"]
    assert "deadline" in by.loc[("Fay", 3), "reason"]
    # retries: urllib3 Retry retried the 500, 429 and 503 (2 retries), server-side counts
    assert web.hits["/flaky.jpg"] == 2 and web.hits["/busy.jpg"] == 2
    assert web.hits["/down.jpg"] == 3
    assert web.hits["/huge-announced.jpg"] == 1
    # one download per distinct URL even when rows share it
    assert web.hits["/ok/1.jpg"] == 1   # Ann 1 and Gus 1 share the URL
    # md5: flagged (kept) by default
    assert by.loc[("Dee", 2), "md5_ok"] is not pd.NA and not by.loc[("Dee", 2), "md5_ok"]
    assert bool(by.loc[("Ann", 1), "md5_ok"])
    # duplicates: exact + near grouped; the larger resolution kept; label conflict noted
    ann = df[df["person"] == "Ann"]
    assert ann["dup_group"].iloc[0] == ann["dup_group"].iloc[1] != ""
    assert ann["dup_group"].iloc[2] == ann["dup_group"].iloc[3] != ann["dup_group"].iloc[0]
    assert "near copy" in ann["reason"].iloc[3]
    assert "label conflict" in by.loc[("Gus", 1), "reason"]
    assert web.hits["/hop1"] == web.hits["/hop2"] == web.hits["/hop3"] == 1
    assert "truncated" in by.loc[("Gus", 3), "reason"]
    # content-addressed files with the decoded format's extension
    ok = df[df["path"] != ""]
    for _, row in ok.iterrows():
        file = out / row["path"]
        assert file.name == row["sha256"] + Path(row["path"]).suffix
        assert hashlib.sha256(file.read_bytes()).hexdigest() == row["sha256"]
    assert by.loc[("Gus", 2), "path"].endswith(".png")
    assert sorted(p.name for p in out.iterdir()) == ["hosts.csv", "images", "journal.jsonl",
                                                     "manifest.csv"]
    assert not [p for p in (out / "images").iterdir() if p.name.startswith(".")]
    # printed summary: statuses, photos per person, speed
    assert "http_error" in printed and "photos per person" in printed and "images/s" in printed


def test_worker_processes_give_the_same_manifest(every_status, tmp_path: Path) -> None:
    source, web, _ = every_status
    one = C.collect(source, tmp_path / "one", deadline=3.0, processes=1, **FAST)
    two = C.collect(source, tmp_path / "two", deadline=3.0, processes=2, **FAST)
    assert list(zip(two["person"], two["status"], strict=True)) == EXPECTED
    assert two.attrs["collect"]["processes"] == 2 and one.attrs["collect"]["processes"] == 1
    same = ["person", "imagenum", "status", "path", "sha256", "width", "height", "bytes",
            "md5_ok", "dup_group", "phash", "dhash"]
    pd.testing.assert_frame_equal(one[same], two[same])
    assert not [p for p in (tmp_path / "two" / "images").iterdir() if p.name.startswith(".")]


def test_a_script_without_a_main_guard_can_use_worker_processes(web: Web,
                                                                 tmp_path: Path) -> None:
    rows = [(f"P{i % 3}", i + 1, web.bytes(f"/s/{i}.jpg", photo(700 + i)), md5(photo(700 + i)))
            for i in range(12)]
    source = write_list(tmp_path / "list.txt", rows)
    script = tmp_path / "collect_script.py"
    script.write_text("from facelab import collect\n"
                      f"df = collect.collect({str(source)!r}, {str(tmp_path / 'out')!r}, "
                      "processes=2, workers=4, progress=False, verbose=False)\n"
                      "print((df['status'] == 'ok').sum(), df.attrs['collect']['processes'])\n")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["12", "2"]
    assert sum(web.hits.values()) == 12          # each URL fetched once, no re-run script


@pytest.mark.skipif(not Path("/bin/false").exists(), reason="needs /bin/false")
def test_workers_that_cannot_start_raise_with_what_to_do(web: Web, tmp_path: Path,
                                                        monkeypatch) -> None:
    rows = [("P", i + 1, web.bytes(f"/f/{i}.jpg", photo(800 + i)), md5(photo(800 + i)))
            for i in range(4)]
    source = write_list(tmp_path / "list.txt", rows)
    monkeypatch.setattr(sys, "executable", "/bin/false")   # every worker exits at once
    with pytest.raises(RuntimeError, match="--processes 1"):
        C.collect(source, tmp_path / "out", processes=2, **FAST)
    monkeypatch.undo()
    assert sum(web.hits.values()) == 0
    df = C.collect(source, tmp_path / "out", processes=1, **FAST)
    assert (df["status"] == "ok").all()


def test_process_count_choice_and_argument_check(tmp_path: Path) -> None:
    assert C.choose_processes(None, C.PROCESS_MIN_JOBS - 1, 16) == 1
    assert C.choose_processes(None, 10_000, 16) == min(C.usable_cpus(), 16, C.MAX_PROCESSES)
    assert C.choose_processes(None, 10_000, 1) == 1
    assert C.choose_processes(4, 10, 2) == 2          # every process needs a thread
    with pytest.raises(ValueError, match="--processes"):
        C.collect(write_list(tmp_path / "l.txt", []), tmp_path / "o", processes=0,
                  progress=False)


def test_md5_reject_from_the_journal(every_status, tmp_path: Path) -> None:
    source, web, _ = every_status
    out = tmp_path / "c"
    C.collect(source, out, deadline=3.0, **FAST)
    before = sum(web.hits.values())
    df = C.collect(source, out, md5="reject", deadline=3.0, **FAST)
    assert sum(web.hits.values()) == before      # decided from the journal: no new request
    by = df.set_index(["person", "imagenum"])
    assert by.loc[("Dee", 2), "status"] == "md5_mismatch"
    assert "--md5 reject" in by.loc[("Dee", 2), "reason"]


# ----------------------------------------------------------------------------- safety, folder

def test_names_never_steer_paths(web: Web, tmp_path: Path) -> None:
    names = ["../../evil", "a/b", "..", "Beyoncé Knowles", "名前/../x", "/etc/passwd"]
    rows = [(name, i + 1, web.bytes(f"/p{i}.jpg", photo(200 + i)), md5(photo(200 + i)))
            for i, name in enumerate(names)]
    source = write_list(tmp_path / "list.txt", rows)
    before = set(tmp_path.parent.rglob("*"))
    out = tmp_path / "out"
    df = C.collect(source, out, **FAST)
    assert (df["status"] == "ok").all()
    assert df["person"].tolist() == names
    assert all(p.startswith("images/") and "/" not in p[len("images/"):] for p in df["path"])
    created = set(tmp_path.parent.rglob("*")) - before
    assert created and all(p.is_relative_to(out) for p in created)


@pytest.mark.parametrize("processes", [1, 2])
def test_folder_source_imports_with_the_same_manifest(tmp_path: Path, processes: int) -> None:
    src = tmp_path / "people"
    for person, seeds in {"Zoë Saldaña": [1, 2], "Brad Pitt": [3, 3, 4]}.items():
        (src / person).mkdir(parents=True)
        for n, seed in enumerate(seeds):
            (src / person / f"{n}.jpg").write_bytes(photo(seed))
    (src / "Brad Pitt" / "notes.txt").write_text("not a photo")
    (src / "Brad Pitt" / "fake.jpg").write_bytes(b"<html>nope</html>")
    out = tmp_path / "out"
    df = C.collect(src, out, processes=processes, **FAST)
    assert df.attrs["collect"]["processes"] == processes
    assert list(df.columns) == list(C.MANIFEST_COLUMNS)
    assert df["status"].tolist() == ["ok", "duplicate", "ok", "not_image", "ok", "ok"]
    assert df["source"].tolist()[0] == "Brad Pitt/0.jpg"
    assert (out / df["path"].iloc[0]).read_bytes() == (src / "Brad Pitt" / "0.jpg").read_bytes()
    with pytest.raises(ValueError, match="inside the source folder"):
        C.collect(src, src / "out", **FAST)


def test_bad_arguments_raise_early(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="PubFig-format"):
        C.collect(tmp_path / "missing.txt", tmp_path / "o", **FAST)
    source = write_list(tmp_path / "l.txt", [])
    with pytest.raises(ValueError, match="--md5"):
        C.collect(source, tmp_path / "o", md5="maybe", progress=False)
    with pytest.raises(ValueError, match="--workers"):
        C.collect(source, tmp_path / "o", workers=0, progress=False)


def test_limit_and_known_placeholders(web: Web, tmp_path: Path) -> None:
    known = photo(77, size=(120, 90))
    folder = tmp_path / "known"
    folder.mkdir()
    buf = io.BytesIO()
    Image.open(io.BytesIO(known)).resize((240, 180)).save(buf, "PNG")   # another size/format
    (folder / "unavailable.png").write_bytes(buf.getvalue())
    rows = [("Ann", 1, web.bytes("/k.jpg", known), md5(known)),
            ("Ann", 2, web.bytes("/o.jpg", photo(1)), md5(photo(1))),
            ("Bob", 1, web.bytes("/never.jpg", photo(2)), md5(photo(2)))]
    source = write_list(tmp_path / "l.txt", rows)
    df = C.collect(source, tmp_path / "out", placeholders=folder, limit=2, **FAST)
    assert df["status"].tolist() == ["placeholder", "ok"]
    assert "unavailable.png" in df["reason"].iloc[0]
    assert web.hits["/never.jpg"] == 0


# ----------------------------------------------------------------------------- resume

def _journal_keys(path: Path) -> set[str]:
    keys = set()
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                keys.add(json.loads(line)["key"])
            except (json.JSONDecodeError, KeyError):
                pass
    return keys


@pytest.mark.parametrize("processes", ["1", "2"])
def test_killed_run_resumes_without_refetching_and_ends_identical(web: Web, tmp_path: Path,
                                                                   processes: str) -> None:
    placeholder = photo(500)
    rows = []
    for i in range(48):
        person = f"Person {i % 6}"
        if i % 16 == 5:      # placeholders behind URLs of different people
            url = web.bytes(f"/ph/{i}.jpg", placeholder, delay=0.1)
        elif i % 16 == 9:    # an exact copy of the previous photo
            url = web.bytes(f"/copy/{i}.jpg", photo(i - 1), delay=0.1)
        elif i % 16 == 13:
            url = web.url(f"/missing/{i}.jpg")
        else:
            url = web.bytes(f"/p/{i}.jpg", photo(i), delay=0.25 if i % 3 else 0.05)
        rows.append((person, i + 1, url, md5(photo(i))))
    source = write_list(tmp_path / "list.txt", rows)
    whole = C.collect(source, tmp_path / "whole", **{**FAST, "workers": 3})
    reference = (tmp_path / "whole" / "manifest.csv").read_bytes()
    assert (whole["status"] == "placeholder").sum() == 3
    assert (whole["status"] == "duplicate").sum() == 3

    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "facelab", "collect", str(source), "--out", str(out),
           "--workers", "3", "--timeout", "2", "--no-progress", "--processes", processes]
    journal = out / "journal.jsonl"
    web.hits.clear()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + 60
    while len(_journal_keys(journal)) < 12 and time.monotonic() < deadline:
        assert proc.poll() is None, "the run finished before it could be killed"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = _journal_keys(journal)
    assert 12 <= len(finished) < len(rows)
    assert not (out / "manifest.csv").exists()
    # simulate a line torn by the kill
    with open(journal, "a", encoding="utf-8") as handle:
        handle.write('{"key": "url:http://torn')

    time.sleep(0.5)   # requests the killed process had already sent reach the server first
    web.hits.clear()
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    refetched = {key for key in finished if web.hits[key[len("url:") + len(web.base):]]}
    assert not refetched, f"finished photos fetched again: {sorted(refetched)[:5]}"
    assert sum(web.hits.values()) == len(rows) - len(finished)
    assert (out / "manifest.csv").read_bytes() == reference
    # a third run fetches nothing and changes nothing
    web.hits.clear()
    again = C.collect(source, out, **FAST)
    assert sum(web.hits.values()) == 0
    assert (out / "manifest.csv").read_bytes() == reference
    assert again["status"].tolist() == whole["status"].tolist()


@pytest.mark.parametrize("processes", ["1", "2"])
def test_ctrl_c_keeps_finished_work(web: Web, tmp_path: Path, processes: str) -> None:
    rows = [(f"P{i % 3}", i + 1, web.bytes(f"/c/{i}.jpg", photo(900 + i), delay=0.3),
             md5(photo(900 + i))) for i in range(16)]
    source = write_list(tmp_path / "list.txt", rows)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "facelab", "collect", str(source), "--out", str(out),
           "--workers", "2", "--no-progress", "--processes", processes]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # a suite started in the background (nohup, &) ignores SIGINT, and so would the child
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while len(_journal_keys(out / "journal.jsonl")) < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err
    finished = _journal_keys(out / "journal.jsonl")
    assert 4 <= len(finished) < 16
    time.sleep(0.5)
    web.hits.clear()
    df = C.collect(source, out, **FAST)
    assert sum(web.hits.values()) == 16 - len(finished)
    assert (df["status"] == "ok").all()


def _worker_pids() -> list[int]:
    """This process's running collection workers (read from /proc)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            command = (stat.parent / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == os.getpid() and b"worker_main" in command:
            pids.append(int(stat.parent.name))
    return pids


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_a_dead_worker_process_leaves_rows_not_a_crash(web: Web, tmp_path: Path) -> None:
    rows = [(f"P{i % 4}", i + 1, web.bytes(f"/w/{i}.jpg", photo(1000 + i), delay=0.2),
             md5(photo(1000 + i))) for i in range(40)]
    source = write_list(tmp_path / "list.txt", rows)
    out = tmp_path / "out"
    result: dict[str, pd.DataFrame] = {}
    run = threading.Thread(target=lambda: result.update(df=C.collect(
        source, out, processes=2, **{**FAST, "workers": 4})))
    run.start()
    deadline = time.monotonic() + 60
    while len(_journal_keys(out / "journal.jsonl")) < 6 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(_worker_pids()[0], signal.SIGKILL)
    run.join(timeout=120)
    df = result["df"]
    lost = df[df["status"] == "connection_error"]
    assert 1 <= len(lost) <= 4          # at most 2 jobs per thread were in flight there
    assert lost["reason"].str.contains("worker process fetching it died").all()
    assert lost["reason"].str.contains("signal 9").all()
    assert (df["status"] != "connection_error").sum() == 40 - len(lost)   # replaced: the rest ran
    assert not _worker_pids()
    again = C.collect(source, out, retry_failed=True, processes=2, **FAST)
    assert (again["status"] == "ok").all()


# ----------------------------------------------------------------------------- real list, CLI

def test_real_dev_urls_parse_into_16336_rows(pubfig_dev_urls: Path) -> None:
    rows = read_pubfig_list(pubfig_dev_urls)
    assert len(rows) == 16336
    assert rows["person"].nunique() == 60
    keys = [collect_run._row_key(row, None) for _, row in rows.iterrows()]
    assert all(status == "ok" and key.startswith("url:http") for key, status in keys)
    assert len({key for key, _ in keys}) == rows["url"].nunique()


def test_cli_help_lists_every_option() -> None:
    result = subprocess.run([sys.executable, "-m", "facelab", "collect", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for option in ("--out", "--workers", "--timeout", "--retries", "--max-bytes", "--md5",
                   "--limit"):
        assert option in result.stdout


def test_plot_helpers_smoke(every_status, tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    source, _, _ = every_status
    out = tmp_path / "c"
    df = C.collect(source, out, deadline=3.0, **FAST)
    assert C.plot_status_counts(df) is not None
    assert C.plot_photos_per_person(df) is not None
    assert C.plot_placeholders(df, out) is not None
    assert C.plot_duplicate_groups(df, out) is not None
    assert C.plot_placeholders(df.assign(status="ok"), out) is None
    assert "ok" in C.summary(df)
    truth = pd.DataFrame({"url": df["url"].iloc[:3], "kind": ["ok", "ok", "dup"]})
    table = C.compare_with_truth(df, truth)
    assert table.loc["ok", "ok"] == 1 and table.loc["ok", "duplicate"] == 2  # Gus 1 too
    assert table.loc["(not in truth)"].sum() == len(df) - 4
    plt.close("all")


def _colour_decode_ok(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
        return True
    except Exception:  # noqa: BLE001
        return False


@pytest.mark.parametrize("progressive", [False, True])
def test_luma_decode_fails_exactly_where_a_colour_decode_fails(progressive: bool) -> None:
    rng = np.random.default_rng(5)
    image = Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).resize(
        (320, 240), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=85, progressive=progressive, subsampling=2)
    data = buf.getvalue()
    variants = [data] + [data[: int(len(data) * f)] for f in (0.3, 0.5, 0.8, 0.95, 0.995)]
    scan = data.rindex(b"\xff\xda")                   # start of the (last) scan
    for offset in (scan + 40, (scan + len(data)) // 2, len(data) - 60):
        flipped = bytearray(data)
        flipped[offset] ^= 0x5A
        variants.append(bytes(flipped))
    for variant in variants:
        expected = "ok" if _colour_decode_ok(variant) else "corrupt"
        assert C.inspect_image(variant)[0] == expected
    assert C.inspect_image(data[: len(data) // 2])[0] == "corrupt"


def test_inspect_image_rejects_what_is_not_a_photo() -> None:
    assert C.inspect_image(photo(1))[0] == "ok"
    assert C.inspect_image(b"")[0] == "not_image"
    assert C.inspect_image(b"GIF89a" + b"\0" * 10)[0] in ("corrupt", "not_image")
    assert C.inspect_image(photo(1)[:300])[0] == "corrupt"
    assert C.inspect_image(bomb_png(3000, 3000), max_pixels=1_000_000)[0] == "too_large"
    status, _, info = C.inspect_image(photo(1, fmt="PNG"))
    assert status == "ok" and info["ext"] == ".png"
    assert pd.notna(info["width"])
