"""The notebook series: house rules on the committed files, then the smoke run of all of them."""

import json
from pathlib import Path

import pytest

from facelab import notebook_runner as runner

NOTEBOOKS = runner.list_notebooks(runner.project_root() / "notebooks")


def _cells(nb_path: Path) -> list[dict]:
    return json.loads(nb_path.read_text())["cells"]


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ holds no NN_*.ipynb"
    assert NOTEBOOKS[0].name.startswith("00_")


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_thin_and_stripped(nb):
    cells = _cells(nb)
    assert cells[0]["cell_type"] == "markdown", "first cell states the purpose"
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    assert "workdir" in "".join(tagged[0]["source"]), "parameters declare workdir"
    for cell in cells:
        if cell["cell_type"] != "code":
            continue
        assert not cell.get("outputs") and not cell.get("execution_count"), "outputs stripped"
        source = "".join(cell["source"])
        assert "\ndef " not in "\n" + source, "no def in notebooks: move it into facelab"


def test_runner_passes_only_declared_parameters(tmp_path):
    params = runner.notebook_parameters("smoke", {"workdir": {}, "scale": {}}, tmp_path)
    assert params == {"workdir": str(tmp_path), "scale": "small"}
    assert runner.notebook_parameters("demo", {"epochs": {}}, tmp_path) == {}


def test_runner_rejects_unknown_profile():
    with pytest.raises(ValueError, match="smoke"):
        runner.run_notebooks("fast")


@pytest.mark.slow
def test_smoke_run_of_every_notebook(tmp_path):
    """The main job in its smoke profile: every notebook, in order, headless."""
    done = runner.run_notebooks("smoke", out_root=tmp_path)
    assert [p.name for p in done] == [p.name for p in NOTEBOOKS]
    for executed in done:
        cells = _cells(executed)
        errors = [o for c in cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors, f"{executed.name} has an error output"
