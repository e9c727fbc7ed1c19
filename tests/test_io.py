"""facelab.io: files are written whole or not at all."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from facelab.io import atomic_write_bytes


def test_writes_whole_files_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "new" / "folder" / "photo.jpg"
    atomic_write_bytes(target, b"x" * 300_000)
    assert target.read_bytes() == b"x" * 300_000
    atomic_write_bytes(target, b"second")                  # replaces
    assert target.read_bytes() == b"second"
    assert os.listdir(target.parent) == ["photo.jpg"]


def test_a_temporary_file_left_by_a_killed_writer_does_not_block(tmp_path: Path) -> None:
    stale = tmp_path / f".photo.jpg.{os.getpid()}-{threading.get_ident()}.tmp"
    stale.write_bytes(b"half")                             # same process and thread ids
    atomic_write_bytes(tmp_path / "photo.jpg", b"whole")
    assert (tmp_path / "photo.jpg").read_bytes() == b"whole"
    assert stale.read_bytes() == b"half"                   # untouched; the collector cleans
    assert sorted(p.name for p in tmp_path.iterdir()) == [stale.name, "photo.jpg"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "photo.jpg"
    target.write_bytes(b"old")
    with pytest.raises(TypeError):
        atomic_write_bytes(target, "not bytes")            # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["photo.jpg"]
    with pytest.raises(FileNotFoundError):
        atomic_write_bytes(tmp_path / "missing" / "x.jpg", b"data", make_parents=False)
