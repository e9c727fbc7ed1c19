"""One writer per stage folder, as a user meets it: two commands started on one folder.

Real ``facelab`` processes against a real HTTP server on 127.0.0.1 (collect, faces) and a
tiny ``facelab fit``: the second writer is refused at once with exit status 2 and the
holder's pid, the first finishes alone (one journal line per URL), a killed run blocks
nothing and resumes, and a reader of a folder being written says so, or waits.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from facelab.lock import LOCK_NAME
from facelab.manifest import read_manifest
from tests.test_collect import Web, md5, photo, write_list

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
N = 24
pytestmark = [pytest.mark.network_local,
              pytest.mark.skipif(sys.platform == "win32", reason="POSIX flock semantics")]


@pytest.fixture
def slow_list(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[Path, Web]]:
    """N photos behind a server that answers each after ``delay`` seconds (default 0.5)."""
    delay = getattr(request, "param", 0.5)
    web = Web()
    rows = [(f"P{i % 3}", i + 1, web.bytes(f"/s/{i}.jpg", photo(2000 + i), delay=delay),
             md5(photo(2000 + i))) for i in range(N)]
    yield write_list(tmp_path / "list.txt", rows), web
    web.close()


def collect_cmd(source: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "facelab", "collect", str(source), "--out", str(out),
            "--workers", "2", "--per-host", "2", "--timeout", "5", "--no-progress",
            "--processes", "1"]


def wait_for_holder(out: Path, pid: int, timeout: float = 60.0) -> None:
    """Wait until process ``pid`` holds ``out``'s lock (it wrote its pid into the file)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if json.loads((out / LOCK_NAME).read_text())["pid"] == pid:
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.02)
    pytest.fail(f"process {pid} never locked {out}")


def journal_lines(out: Path) -> list[dict]:
    lines = []
    for line in (out / "journal.jsonl").read_text().splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:            # a line torn by a kill
            pass
    return lines


def test_two_collects_into_one_folder_the_second_is_refused(slow_list, tmp_path: Path) -> None:
    source, web = slow_list
    out = tmp_path / "collected"
    first = subprocess.Popen(collect_cmd(source, out), cwd=ROOT, env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for_holder(out, first.pid)
    started = time.monotonic()
    second = subprocess.run(collect_cmd(source, out), cwd=ROOT, env=ENV, capture_output=True,
                            text=True, timeout=120)
    assert first.poll() is None, "the first run ended before the second was tried"
    assert second.returncode == 2, second.stderr
    assert time.monotonic() - started < 30
    err = second.stderr
    assert err.startswith("facelab collect: error: ") and "Traceback" not in err
    assert str(out.resolve()) in err and f"pid {first.pid}" in err
    assert "facelab collect" in err.split("(", 1)[1] and "another folder" in err
    _, first_err = first.communicate(timeout=120)
    assert first.returncode == 0, first_err
    lines = journal_lines(out)
    assert len(lines) == N and len({line["key"] for line in lines}) == N   # one line per URL
    assert all(web.hits[f"/s/{i}.jpg"] == 1 for i in range(N))             # fetched once
    assert (read_manifest(out)["status"] == "ok").all()
    assert not (out / LOCK_NAME).exists()


@pytest.mark.parametrize("slow_list", [0.2], indirect=True)
def test_a_killed_collect_blocks_nothing_and_resumes(slow_list, tmp_path: Path,
                                                      capsys) -> None:
    from facelab.cli import main

    source, web = slow_list
    out = tmp_path / "collected"
    proc = subprocess.Popen(collect_cmd(source, out), cwd=ROOT, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(journal_lines(out) if (out / "journal.jsonl").exists() else []) < 4:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = {line["key"] for line in journal_lines(out)}
    assert 4 <= len(finished) < N
    assert (out / LOCK_NAME).exists()      # the kill left the file: it locks nothing
    # a reader is told the collection never finished (not a half manifest taken whole)
    assert main(["faces", str(out), "--out", str(tmp_path / "faces")]) == 2
    assert "has not finished" in capsys.readouterr().err
    time.sleep(0.5)    # requests the killed run had sent reach the server first
    web.hits.clear()
    again = subprocess.run(collect_cmd(source, out), cwd=ROOT, env=ENV, capture_output=True,
                           text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert sum(web.hits.values()) == N - len(finished)          # it resumed
    assert {line["key"] for line in journal_lines(out)} == {
        f"url:{web.url(f'/s/{i}.jpg')}" for i in range(N)}
    assert len(read_manifest(out)) == N


def test_faces_on_a_collection_being_written_says_so_or_waits(slow_list,
                                                               tmp_path: Path) -> None:
    from facelab import faces
    from tests.test_faces import FakeDetector

    source, _ = slow_list
    collected, out = tmp_path / "collected", tmp_path / "faces"
    writer = subprocess.Popen(collect_cmd(source, collected), cwd=ROOT, env=ENV,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_holder(collected, writer.pid)
        reader = subprocess.run([sys.executable, "-m", "facelab", "faces", str(collected),
                                 "--out", str(out), "--no-progress"], cwd=ROOT, env=ENV,
                                capture_output=True, text=True, timeout=120)
        assert writer.poll() is None, "the collection ended before the reader was tried"
        assert reader.returncode == 2, reader.stderr
        assert "still being written" in reader.stderr and "incomplete" in reader.stderr
        assert f"pid {writer.pid}" in reader.stderr and "--wait" in reader.stderr
        assert not out.exists()            # the refused stage left no empty folder
        df = faces.filter_faces(collected, out, detector=FakeDetector(), wait=True,
                                progress=False, verbose=False)
        assert len(df) == N                # it read the collection once it was whole
        assert writer.wait(timeout=60) == 0
    finally:
        if writer.poll() is None:
            writer.kill()
        writer.wait()


@pytest.mark.slow
def test_two_fits_into_one_model_folder_the_second_is_refused(tmp_path: Path) -> None:
    from tests.test_fit import _crops

    crops = _crops(tmp_path / "crops")
    out = tmp_path / "model"
    cmd = [sys.executable, "-m", "facelab", "fit", str(crops), "--out", str(out),
           "--arch", "cnn", "--epochs", "1", "--image-size", "32", "--batch-size", "16",
           "--threshold", "50"]
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_holder(out, first.pid)
        second = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True,
                                timeout=120)
        assert first.poll() is None, "the first fit ended before the second was tried"
        assert second.returncode == 2, second.stderr
        assert second.stderr.startswith("facelab fit: error: ")
        assert str(out.resolve()) in second.stderr and f"pid {first.pid}" in second.stderr
        assert "running fit" in second.stderr
        assert first.wait(timeout=600) == 0, (tmp_path / "first.log").read_text()[-3000:]
    finally:
        if first.poll() is None:
            first.kill()
        first.wait()
    assert len(pd.read_csv(out / "history.csv")) == 1          # one training, one epoch
    assert (out / "metrics.json").is_file() and not (out / LOCK_NAME).exists()
