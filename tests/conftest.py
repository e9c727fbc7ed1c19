"""Shared fixtures: real data from ../shared/data (skipped where absent) and demo data."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"


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
