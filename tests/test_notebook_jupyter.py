"""The notebooks in Jupyter: the project's kernel, the git filter, signed copies, input hints."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from facelab import notebook_runner as runner

ROOT = runner.project_root()
NOTEBOOK = ROOT / "notebooks" / "03_labels_and_split.ipynb"


def _git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(folder), "-c", "user.name=t", "-c",
                           "user.email=t@example.org", *args], capture_output=True, text=True,
                          check=True).stdout


def _run_in_place(source: Path, target: Path) -> None:
    """What Run All + save in JupyterLab adds: outputs, counts, widget state, cell flags."""
    nb = nbformat.read(str(source), as_version=4)
    for number, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        cell.execution_count = number + 1
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="ran\n")]
        cell.metadata["scrolled"] = True
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    nbformat.write(nb, str(target))


def test_install_kernel_registers_this_python_inside_the_prefix(tmp_path, monkeypatch):
    (tmp_path / "home").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for _ in range(2):   # make install runs it every time
        folder = runner.install_kernel(prefix=tmp_path / "env")
    assert folder == tmp_path / "env" / "share" / "jupyter" / "kernels" / "facelab"
    spec = json.loads((folder / "kernel.json").read_text())
    assert spec["argv"][0] == sys.executable and spec["display_name"] == "Python 3 (facelab)"
    assert spec["env"] == {"TF_CPP_MIN_LOG_LEVEL": "2"}
    assert not (tmp_path / "home" / ".local").exists(), "nothing in the user's home"


def test_runner_uses_the_project_kernel_only_when_it_is_this_python(tmp_path, monkeypatch,
                                                                    capsys):
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "env" / "share" / "jupyter"))
    runner.install_kernel(prefix=tmp_path / "env")
    assert runner.runner_kernel() == "facelab"
    spec = tmp_path / "env" / "share" / "jupyter" / "kernels" / "facelab" / "kernel.json"
    other = json.loads(spec.read_text())
    other["argv"][0] = "/elsewhere/bin/python"
    spec.write_text(json.dumps(other))
    assert runner.runner_kernel() == "python3"
    assert "make install registers it" in capsys.readouterr().out


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_filter_stores_a_notebook_run_in_place_stripped(tmp_path):
    repo = tmp_path / "repo"
    (repo / "notebooks").mkdir(parents=True)
    _git(repo, "init", "-q")
    shutil.copy(ROOT / ".gitattributes", repo / ".gitattributes")
    committed = repo / "notebooks" / NOTEBOOK.name
    clean = subprocess.run([sys.executable, *runner.STRIP_ARGS], input=NOTEBOOK.read_bytes(),
                           capture_output=True, check=True).stdout   # even if run in place here
    committed.write_bytes(clean)
    assert runner.install_git_filter(repo) and runner.install_git_filter(repo)  # twice: same
    assert "--keep-id" in _git(repo, "config", "filter.nbstripout.clean")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "notebook")
    _run_in_place(committed, committed)
    assert json.loads(committed.read_text())["cells"][1]["outputs"], "the file has outputs"
    assert _git(repo, "diff") == "", "as git stores it, the notebook did not change"
    # git lists a file whose size changed without comparing contents: make lab's save hook
    runner.refresh_git_after_save(os_path=str(committed))
    assert _git(repo, "status", "--porcelain") == "", "a run in place leaves git clean"
    _git(repo, "add", ".")
    assert _git(repo, "show", f":notebooks/{NOTEBOOK.name}").encode() == clean
    committed.write_text(committed.read_text().replace("seed = 0 ", "seed = 1 "))
    runner.refresh_git_after_save(os_path=str(committed))
    assert _git(repo, "status", "--porcelain").startswith(" M"), "a real edit still shows"
    assert _git(repo, "diff", "--cached") == "", "and the hook staged nothing"


def test_install_git_filter_outside_a_repository_does_nothing(tmp_path):
    assert runner.install_git_filter(tmp_path) is False


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_this_clone_strips_notebooks_when_make_install_ran():
    clean = subprocess.run(["git", "-C", str(ROOT), "config", "filter.nbstripout.clean"],
                           capture_output=True, text=True, check=False).stdout
    if not clean:
        pytest.skip("the nbstripout git filter is not set up in this clone (make install "
                    "sets it up)")
    attribute = _git(ROOT, "check-attr", "filter", f"notebooks/{NOTEBOOK.name}")
    assert attribute.strip().endswith("filter: nbstripout")
    assert sys.executable in clean, "the filter runs this environment's nbstripout"


def test_missing_input_hint_names_the_notebooks_and_another_workdir(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    (runs / "demo" / "work").mkdir(parents=True)
    (runs / "smoke" / "work" / "faces").mkdir(parents=True)
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    message = "../runs/demo/work/faces does not exist: pass a stage folder with manifest.csv"
    hint = " ".join(runner.missing_input_hint(message, "../runs/demo/work", runs=runs).split())
    assert "has no faces/ yet (notebook 02 makes it)" in hint
    assert "Run notebooks 00 to 02 with this workdir, or `make demo`" in hint
    assert "workdir = '../runs/smoke/work'" in hint and "--profile smoke" in hint
    assert runner.missing_input_hint("some other error", "../runs/demo/work", runs=runs) is None
    assert runner.missing_input_hint("../runs/smoke/work/faces is broken", "../runs/smoke/work",
                                     runs=runs) is None, "the folder exists: not a missing input"


def test_a_partial_run_names_the_notebook_that_makes_its_input(tmp_path):
    with pytest.raises(ValueError, match=r"faces, which does not exist: notebook 02 makes it"):
        runner.run_notebooks("smoke", out_root=tmp_path, only=["03"])


def _notebook(folder: Path, name: str, *code: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"display_name": runner.KERNEL_DISPLAY_NAME,
                                 "language": "python", "name": runner.KERNEL_NAME}
    parameters = nbformat.v4.new_code_cell('workdir = "work"')
    parameters.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# test"),
                nbformat.v4.new_code_cell("import facelab.doctor\n\n"
                                          "facelab.doctor.notebook_setup()"),
                parameters, *(nbformat.v4.new_code_cell(c) for c in code)]
    nbformat.write(nb, str(folder / name))


# Runs the runner in a process of its own, as `facelab run-notebooks` does: inside pytest's
# fd capture, kernels started after TensorFlow was imported in-process (other tests) leave
# pytest's own capture file closed.
RUN_AND_REPORT = """
import sys
from facelab import notebook_runner as runner
try:
    runner.run_notebooks("smoke", notebooks_dir=sys.argv[1], out_root=sys.argv[2])
except RuntimeError as error:
    print("RUNTIME-ERROR:" + str(error))
"""


@pytest.mark.slow
def test_executed_copies_are_signed_and_a_failure_keeps_its_traceback(tmp_path) -> None:
    from nbformat.sign import NotebookNotary

    env = {**os.environ, "JUPYTER_DATA_DIR": str(tmp_path / "jupyter-data")}  # its own notary
    folder = tmp_path / "notebooks"
    folder.mkdir()
    _notebook(folder, "00_fine.ipynb", 'print("hello")',
              "from ipykernel.kernelapp import IPKernelApp\n\n"
              'print("kernel log level", IPKernelApp.instance().log_level)')
    _notebook(folder, "01_fails.ipynb", "from facelab import data",
              'data.load_faces(workdir + "/faces")')
    done = subprocess.run([sys.executable, "-c", RUN_AND_REPORT, str(folder),
                           str(tmp_path / "out")], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=600)
    assert "RUNTIME-ERROR:" in done.stdout, done.stderr[-2000:]
    message = done.stdout.split("RUNTIME-ERROR:", 1)[1]
    assert "01_fails.ipynb failed" in message and "FileNotFoundError" in message
    assert "data.load_faces(" in message, "papermill's traceback is in the message"
    assert "has no faces/ yet (notebook 02 makes it)" in " ".join(message.split()), "the hint"
    executed = tmp_path / "out" / "smoke"
    os.environ["JUPYTER_DATA_DIR"], before = env["JUPYTER_DATA_DIR"], \
        os.environ.get("JUPYTER_DATA_DIR")
    try:
        notary = NotebookNotary()
        for name in ("00_fine.ipynb", "01_fails.ipynb"):
            assert notary.check_signature(nbformat.read(str(executed / name), as_version=4)), \
                name
    finally:
        if before is None:
            os.environ.pop("JUPYTER_DATA_DIR")
        else:
            os.environ["JUPYTER_DATA_DIR"] = before
    errors = [o for c in nbformat.read(str(executed / "01_fails.ipynb"), as_version=4).cells
              for o in c.get("outputs", []) if o.output_type == "error"]
    assert errors and errors[0].ename == "FileNotFoundError"
    assert "without encryption" not in done.stdout + done.stderr
    fine = nbformat.read(str(executed / "00_fine.ipynb"), as_version=4)
    assert fine.cells[1].outputs[0].text.startswith("facelab doctor: ready")
    # the kernel's own log is quiet (its shutdown interrupt); the failing cell still failed
    assert fine.cells[-1].outputs[0].text.strip() == "kernel log level 50"
