"""The notebook series: house rules on the committed files, then the smoke run of all of them."""

import functools
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from facelab import doctor
from facelab import notebook_runner as runner

NOTEBOOKS = runner.list_notebooks(runner.project_root() / "notebooks")
# what JupyterLab writes into a notebook it opens with the project's kernel: committed as is,
# so merely opening a notebook changes nothing
KERNELSPEC = {"display_name": runner.KERNEL_DISPLAY_NAME, "language": "python",
              "name": runner.KERNEL_NAME}
LANGUAGE_INFO_KEYS = {"codemirror_mode", "file_extension", "mimetype", "name",
                      "nbconvert_exporter", "pygments_lexer", "version"}


def _cells(nb_path: Path) -> list[dict]:
    return json.loads(nb_path.read_text())["cells"]


@functools.cache
def _stripped(nb_path: Path) -> bytes:
    """What git stores for the file: the nbstripout filter's output (outputs run in place go)."""
    return subprocess.run([sys.executable, *runner.STRIP_ARGS], input=nb_path.read_bytes(),
                          capture_output=True, check=True).stdout


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ holds no NN_*.ipynb"
    assert NOTEBOOKS[0].name.startswith("00_")


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_thin_and_stripped(nb):
    """The notebook as git stores it (a Run All + save in place does not change that)."""
    notebook = json.loads(_stripped(nb))
    cells = notebook["cells"]
    assert cells[0]["cell_type"] == "markdown", "first cell states the purpose"
    setup = "".join(cells[1]["source"])
    assert cells[1]["cell_type"] == "code" and re.search(
        r"^facelab\.doctor\.notebook_setup\((tensorflow=True)?\)$", setup, re.M), \
        "second cell is the setup cell: imports, then facelab.doctor.notebook_setup(...)"
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    assert "workdir" in "".join(tagged[0]["source"]), "parameters declare workdir"
    for cell in cells:
        assert cell.get("id"), "every cell has an id (nbformat 4.5, as JupyterLab writes)"
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        assert "\ndef " not in "\n" + source, "no def in notebooks: move it into facelab"
    assert notebook["metadata"]["kernelspec"] == KERNELSPEC, "the project's kernel, by name"
    assert set(notebook["metadata"]["language_info"]) == LANGUAGE_INFO_KEYS
    assert (notebook["nbformat"], notebook["nbformat_minor"]) == (4, 5)


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_without_outputs_is_in_the_filters_form(nb):
    """A clean notebook is byte for byte what the git filter makes of it (on CI: the commit)."""
    has_run = any(c.get("outputs") or c.get("execution_count") for c in _cells(nb))
    if has_run:
        pytest.skip(f"{nb.name} was run in place: git stores it stripped, nothing to compare")
    assert nb.read_bytes() == _stripped(nb), (
        f"{nb.name} is not in the layout the nbstripout filter writes: run `make install` (it "
        "sets up the git filter), then `git add --renormalize notebooks`")


def test_setup_cells_check_tensorflow_where_the_notebook_uses_it():
    checked = {nb.name[:2] for nb in NOTEBOOKS
               if "notebook_setup(tensorflow=True)" in "".join(_cells(nb)[1]["source"])}
    assert {"02", "04", "05", "06", "07", "08", "09"} <= checked   # MTCNN, tf.data, Keras


def test_runner_passes_only_declared_parameters(tmp_path):
    params = runner.notebook_parameters("smoke", {"workdir": {}, "scale": {}}, tmp_path)
    assert params == {"workdir": str(tmp_path), "scale": "small"}
    assert runner.notebook_parameters("demo", {"epochs": {}}, tmp_path) == {}


def test_runner_rejects_unknown_profile():
    with pytest.raises(ValueError, match="smoke"):
        runner.run_notebooks("fast")


def _stderr_texts(cells: list[dict]) -> str:
    return "".join("".join(o.get("text", "")) for c in cells for o in c.get("outputs", [])
                   if o.get("output_type") == "stream" and o.get("name") == "stderr")


@pytest.mark.slow
def test_smoke_run_of_every_notebook(tmp_path, capfd):
    """The main job in its smoke profile: every notebook, in order, headless, quiet."""
    from nbformat import read
    from nbformat.sign import NotebookNotary

    done = runner.run_notebooks("smoke", out_root=tmp_path)
    assert [p.name for p in done] == [p.name for p in NOTEBOOKS]
    printed = capfd.readouterr()
    said = printed.out + printed.err
    assert not doctor.TF_STARTUP_NOISE.search(said), "TensorFlow's start-up lines in the output"
    assert "cuInit" not in said and "without encryption" not in said
    notary = NotebookNotary()
    for executed in done:
        cells = _cells(executed)
        errors = [o for c in cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors, f"{executed.name} has an error output"
        stderr = _stderr_texts(cells)
        assert not doctor.TF_STARTUP_NOISE.search(stderr) and "cuInit" not in stderr, \
            f"{executed.name} shows TensorFlow's start-up lines"
        assert "shuffle=True" not in stderr, f"{executed.name}: Keras' shuffle warning"
        setup = "".join("".join(o.get("text", "")) for o in cells[1]["outputs"])
        assert setup.count("\n") == 1 and setup.startswith("facelab doctor: ready"), setup
        assert notary.check_signature(read(str(executed), as_version=4)), \
            f"{executed.name} is not signed: JupyterLab would open it untrusted"
    training = "".join("".join(o.get("text", "")) for c in _cells(done[7])
                       for o in c.get("outputs", []))
    resumed = re.search(r"runs started at epochs: \[0, (\d+)\]", training)
    assert resumed and int(resumed.group(1)) >= 1, "07 must resume after at least one epoch"
