"""analysis.explore: the confusion-matrix widget; choosing a cell changes the gallery."""

from __future__ import annotations

import ipywidgets as widgets
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from facelab import analysis

NAMES = ["Ann", "Bob", "Cid", "Dee"]


@pytest.fixture
def faces(tmp_path) -> pd.DataFrame:
    """Ten faces per person; Cid's go to Dee 8 times (one way), Ann -> Bob twice."""
    true = np.repeat(np.arange(4), 10)
    pred = true.copy()
    pred[20:28] = 3
    pred[0:2] = 1
    paths = []
    for i in range(len(true)):
        path = tmp_path / f"{i}.png"
        Image.fromarray(np.full((40, 30, 3), 6 * i, np.uint8)).save(path)
        paths.append(str(path))
    paths[21] = str(tmp_path / "lost.png")                   # a missing file: a placeholder
    return pd.DataFrame({"person": [NAMES[i] for i in true],
                         "predicted": [NAMES[i] for i in pred], "path": paths,
                         "confidence": np.linspace(0.2, 0.99, len(true))})


def _captions(explorer: analysis.Explorer) -> list[str]:
    return [card.children[1].value for card in explorer.gallery.children]


def test_choosing_a_cell_changes_the_gallery(faces: pd.DataFrame) -> None:
    explorer = analysis.explore(faces["person"], faces["predicted"], images=faces["path"],
                                scores=faces["confidence"])
    assert isinstance(explorer, widgets.VBox) and explorer.names == NAMES
    assert explorer.gallery.children == () and explorer.selected is None
    assert "ALARM" in explorer.children[0].value                 # the verdict on top

    # counts on hover; the alarm's classes marked (swallowed row, one-way pair outlined)
    cid_dee = explorer.cell("Cid", "Dee")
    assert cid_dee.tooltip == "Cid \u2192 Dee: 8 (80% of Cid)"
    assert "#c62828" in cid_dee.layout.border
    assert cid_dee.description == "8"                            # K <= 15: counts in cells
    with pytest.raises(KeyError):
        explorer.cell("Ann", "Dee")                              # empty cell: no button

    cid_dee.click()                                              # what a click does
    assert explorer.selected == ("Cid", "Dee")
    assert explorer.pairs.value == (2, 3)                        # the list follows
    assert "8 wrong" in explorer.title.value
    captions = _captions(explorer)
    assert len(captions) == 8 and "#27 score 0.75" in captions[0]  # highest score first
    pictures = [card.children[0] for card in explorer.gallery.children]
    assert sum(isinstance(p, widgets.Image) for p in pictures) == 7
    assert "missing: lost.png" in next(p.value for p in pictures
                                       if isinstance(p, widgets.HTML))
    assert cid_dee.layout.border == "3px solid black"

    # choosing from the count-sorted list
    assert [value for _, value in explorer.pairs.options] == [(2, 3), (0, 1)]
    assert explorer.pairs.options[0][0].startswith("Cid \u2192 Dee: 8 (80% of Cid)")
    explorer.pairs.value = (0, 1)
    assert explorer.selected == ("Ann", "Bob") and len(explorer.gallery.children) == 2
    assert "#c62828" in cid_dee.layout.border                    # the old cell is restored
    explorer.cell("Bob", "Bob").click()                          # a diagonal cell: right ones
    assert len(explorer.gallery.children) == 10 and explorer.pairs.value is None
    assert "10 right" in explorer.title.value


def test_without_images_the_rows_are_listed_and_ids_work() -> None:
    true = np.repeat(np.arange(20), 3)
    pred = true.copy()
    pred[:3] = 5
    explorer = analysis.explore(true, pred, names=[f"p{i}" for i in range(20)])
    assert explorer.cell(0, 5).description == ""                 # K > 15: counts on hover
    assert explorer.cell(0, 5).tooltip == "p0 \u2192 p5: 3 (100% of p0)"
    explorer.select("p0", "p5")
    assert "#0, #1, #2" in explorer.gallery.children[0].value
    grid = explorer.children[1].children[0]
    assert len(grid.children) == 21 * 21                         # headers + 20 x 20 cells
    assert len({id(c) for c in grid.children}) < 2 * 21 + 25     # empty cells: one widget
    with pytest.raises(ValueError, match="'nobody' is not a class"):
        explorer.select("nobody", "p1")
