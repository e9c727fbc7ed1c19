"""facelab.lock: one writer per stage folder, an OS lock that a killed run does not leave behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from facelab.lock import (
    LOCK_NAME,
    FolderBusyError,
    check_complete,
    lock_folder,
    writer_of,
    writes_folder,
)

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
HOLD = """
import sys, time
from facelab.lock import lock_folder
held = lock_folder(sys.argv[1], "a test holder")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
held.release()
"""
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX flock semantics")


@contextmanager
def holder(folder: Path, seconds: float = 60.0) -> Iterator[subprocess.Popen]:
    """Another process that holds ``folder``'s lock (killed at the end if still running)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), str(seconds)], cwd=ROOT,
                            env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_the_lock_file_says_who_holds_it_and_goes_on_release(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b"
    with lock_folder(out, "collect") as held:
        assert held.folder == out.resolve()
        info = json.loads((out / LOCK_NAME).read_text())
        assert info["pid"] == os.getpid() and info["what"] == "collect"
        assert info["command"] and abs(info["since"] - time.time()) < 60
        (out / "manifest.csv").write_text("x\n")
    assert sorted(p.name for p in out.iterdir()) == ["manifest.csv"]   # nothing left behind
    # a folder the lock made and nothing was written into is removed, up to what existed
    with lock_folder(tmp_path / "c" / "d"):
        pass
    assert not (tmp_path / "c").exists()
    with pytest.raises(ValueError, match="not a folder"):
        lock_folder(out / "manifest.csv")


def test_reentrant_in_one_thread_refused_from_another(tmp_path: Path) -> None:
    with lock_folder(tmp_path, "fit"):
        with lock_folder(tmp_path, "split"), lock_folder(tmp_path / "sub", "split"):
            assert writer_of(tmp_path) is None        # the calling thread's own write
        assert (tmp_path / LOCK_NAME).exists()        # the outer hold is still there
        errors: list[BaseException] = []

        def other() -> None:
            try:
                lock_folder(tmp_path)
            except FolderBusyError as error:
                errors.append(error)

        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
        assert len(errors) == 1 and "another thread" in str(errors[0])
        assert "kill" not in str(errors[0])           # never tells a process to kill itself
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_second_process_is_refused_with_who_and_what_to_do(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with holder(out) as proc:
        started = time.monotonic()
        with pytest.raises(FolderBusyError) as caught:
            lock_folder(out, "collect")
        assert time.monotonic() - started < 5                   # at once, no waiting
        message = str(caught.value)
        assert str(out.resolve()) in message and f"pid {proc.pid}" in message
        assert "a test holder" in message and "another folder" in message
        assert f"kill {proc.pid}" in message
        assert caught.value.holder["pid"] == proc.pid
        assert writer_of(out)["pid"] == proc.pid
        with pytest.raises(FolderBusyError, match="still being written"):
            check_complete(out)


def test_a_killed_holder_blocks_nothing(tmp_path: Path) -> None:
    with holder(tmp_path) as proc:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert (tmp_path / LOCK_NAME).exists()           # left by the kill: it means nothing
    assert writer_of(tmp_path) is None
    check_complete(tmp_path)
    with lock_folder(tmp_path, "again"):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_neither_holds_nor_releases_the_parents_lock(tmp_path: Path) -> None:
    with lock_folder(tmp_path, "parent") as held:
        pid = os.fork()
        if pid == 0:         # the child: refused like any other process, releases nothing
            code = 3
            try:
                held.release()
                lock_folder(tmp_path)
            except FolderBusyError as error:
                code = 0 if f"pid {os.getppid()}" in str(error) else 4
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        with pytest.raises(subprocess.CalledProcessError):    # still ours
            subprocess.run([sys.executable, "-c", HOLD, str(tmp_path), "0"], cwd=ROOT,
                           env=ENV, check=True, capture_output=True)
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_reader_waits_for_the_writer_with_wait(tmp_path: Path, capsys) -> None:
    with holder(tmp_path, seconds=1.0):
        check_complete(tmp_path, wait=True)
        assert writer_of(tmp_path) is None
    assert "waiting for the run writing" in capsys.readouterr().err


def test_readers_probing_never_refuse_a_writer(tmp_path: Path) -> None:
    probe = ("import sys, time\nfrom facelab.lock import writer_of\nend = time.time() + 2\n"
             "while time.time() < end:\n    writer_of(sys.argv[1])\n")
    proc = subprocess.Popen([sys.executable, "-c", probe, str(tmp_path)], cwd=ROOT, env=ENV)
    try:
        time.sleep(0.5)
        for _ in range(200):
            with lock_folder(tmp_path, "writer"):
                pass
    finally:
        proc.wait()


def test_the_decorator_locks_the_named_argument(tmp_path: Path) -> None:
    seen: list[dict | None] = []

    @writes_folder("out", "stage")
    def stage(source: str, out: Path | None = None) -> None:
        seen.append(json.loads((out / LOCK_NAME).read_text()) if out else None)

    @writes_folder(lambda a: Path(a["model"]) / f"export-{a['fmt']}")
    def export(model: Path, fmt: str = "tflite") -> Path:
        return Path(model) / f"export-{fmt}" / LOCK_NAME

    stage("x", tmp_path)
    stage("x")
    assert seen[0]["what"] == "stage" and seen[1] is None
    (tmp_path / "m").mkdir()
    assert not export(tmp_path / "m").exists()       # released and removed
    assert stage.__name__ == "stage"


def test_the_command_line_exits_2_naming_the_holder(tmp_path: Path, capsys) -> None:
    from facelab.cli import main

    crops = tmp_path / "crops"
    for person in ("Ann", "Bob"):
        (crops / person).mkdir(parents=True)
    out = tmp_path / "split"
    with holder(out) as proc:
        assert main(["split", str(crops), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("facelab split: error: ") and f"pid {proc.pid}" in err
    assert str(out.resolve()) in err
