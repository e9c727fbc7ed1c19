"""Shared fixtures: real data from ../shared/data (skipped where absent) and demo data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def facelab_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """facelab's cache (converted weights, embeddings) in a folder of this session's own.

    Tests never read or fill the user's ~/.cache/facelab; subprocesses inherit the variable.
    """
    import os

    folder = tmp_path_factory.mktemp("facelab-cache")
    before = os.environ.get("FACELAB_CACHE")
    os.environ["FACELAB_CACHE"] = str(folder)
    yield folder
    if before is None:
        os.environ.pop("FACELAB_CACHE", None)
    else:
        os.environ["FACELAB_CACHE"] = before


def _shared(relative: str) -> Path:
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"real data {path} is absent (it lives beside the repository in "
                    "../shared/data and is never copied in)")
    return path


@pytest.fixture(scope="session")
def pubfig_dev_urls() -> Path:
    """PubFig v1.2 dev_urls.txt (16,336 rows, 60 people)."""
    return _shared("pubfig-lists/dev_urls.txt")


@pytest.fixture(scope="session")
def pubfig83_dir() -> Path:
    """40 PubFig83 identities, 100x100 face crops, one folder per person."""
    return _shared("pubfig83-dev")


@pytest.fixture(scope="session")
def five_celebrity_dir() -> Path:
    """118 whole photos of 5 people in train/ and val/ sub-folders."""
    return _shared("five-celebrity")


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `small` demo collection generated once per test session (seed 0)."""
    from facelab import demo

    out = tmp_path_factory.mktemp("demo-small")
    demo.generate(out, scale="small", seed=0)
    return out


@pytest.fixture(scope="session")
def small_demo_faces(small_demo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small demo's photos through the face stage (MTCNN, chips), once per session.

    Returns the folder holding ``manifest.csv`` (the photos) and ``faces/`` (the stage).
    """
    import pandas as pd

    pytest.importorskip("mtcnn")
    from facelab.faces.filter import filter_faces

    root = tmp_path_factory.mktemp("demo-faces")
    photos = pd.read_csv(small_demo / "photos.csv")
    photos["path"] = [str(small_demo / p) for p in photos["path"]]
    photos["status"], photos["reason"] = "ok", ""
    photos.to_csv(root / "manifest.csv", index=False)
    filter_faces(root, root / "faces", progress=False, verbose=False)
    return root
