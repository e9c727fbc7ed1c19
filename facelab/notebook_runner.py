"""Run the numbered notebooks headless, in order, with papermill.

Every notebook has one cell tagged ``parameters``.  Its defaults are the ``demo`` profile
(the full offline demo); the ``smoke`` profile overrides a few of them so that the whole
series runs in a few minutes (the tests use it).  Each notebook is given only the
parameters it declares, always including ``workdir``: the folder the stages share
(``runs/<profile>/work``), where each stage reads the previous stage's files and writes
its own.  Executed copies go to ``runs/<profile>/<notebook>.ipynb``.

:func:`extract_figures` takes one figure from each executed notebook (the output of the
cell tagged ``readme-figure``, else the notebook's last PNG) and writes ``NN.png`` files:
the README's ``docs/figures/`` (``make figures``).

The notebooks run on the project's kernel, ``facelab`` (:func:`install_jupyter`, run by
``make install``, registers it inside the environment and sets up the git filter that
strips outputs on ``git add``); the executed copies are signed, so JupyterLab opens them
trusted (widgets such as the progress bars render as they ended).  In a notebook,
:func:`install_missing_input_hint` makes a missing stage folder's error say what makes it.
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from facelab.lock import lock_folder

# Parameters the smoke profile overrides (each notebook receives those it declares).
PROFILES: dict[str, dict[str, Any]] = {
    "demo": {},
    "smoke": {
        "scale": "small",        # demo data: ~8 identities instead of 40+
        "max_photos": 200,       # notebooks that sample photos look at fewer
        "epochs": 2,             # training notebooks: a couple of epochs only
        "refine_epochs": 1,      # 08: the remedy's extra epochs
        "collect_timeout_s": 2.0,   # 01: hanging demo URLs give up sooner
        "collect_deadline_s": 3.0,  # 01: total time per URL
        "interrupt_at": 0.75,    # 07: mid-way through the 2nd epoch, so the run resumes at 1
        "set_aside_people": 2,   # 07: strangers given to neither model (of 8 people)
        "small_buffer": 16,      # 05: the too-small shuffle buffer, scaled to ~140 train faces
        "n_group": 4,            # 09: group photos annotated
        "n_strangers": 4,        # 09: photos of held-out people tried
    },
}
# --source: which notebooks a user's own data skips, and which one is given source=PATH
SOURCE_KINDS: dict[str, tuple[tuple[str, ...], str]] = {
    "list": (("00",), "01"),                 # a PubFig-format URL list: collect it
    "photos": (("00",), "01"),               # a folder of photos per person: import them
    "crops": (("00", "01", "02", "09"), "03"),   # ready face crops: no detector settings
}
NOTEBOOK_PATTERN = re.compile(r"^\d{2}_.+\.ipynb$")
# a notebook chooses its README figure by tagging the cell that draws it
FIGURE_TAG = "readme-figure"
FIGURE_DPI = 80           # figures are rescaled to about this resolution (they are committed)
FIGURE_MAX_WIDTH = 900    # ... at most this many pixels wide (a GitHub README's column)
FIGURE_COLOURS = 256      # ... and stored with a palette
# the project's Jupyter kernel (the notebooks' metadata names it; make install registers it)
KERNEL_NAME = "facelab"
KERNEL_DISPLAY_NAME = "Python 3 (facelab)"
# the git clean filter (also its diff view): nbstripout, keeping the cell ids JupyterLab keeps
STRIP_ARGS = ("-m", "nbstripout", "--keep-id")
# stage folder under workdir -> the notebook that writes it; notebook -> the folder it reads
STAGE_MAKERS = {"demo": "00", "collected": "01", "faces": "02", "split": "03", "model": "07"}
NOTEBOOK_INPUTS = {"01": "demo", "02": "collected", "03": "faces", "04": "split",
                   "05": "split", "06": "split", "07": "split", "08": "model", "09": "model"}


def project_root() -> Path:
    """The repository root (the folder holding ``notebooks/``)."""
    return Path(__file__).resolve().parent.parent


def list_notebooks(notebooks_dir: str | os.PathLike[str]) -> list[Path]:
    """The numbered notebooks (``NN_name.ipynb``) of a folder, in order."""
    folder = Path(notebooks_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"no notebooks folder at {folder}")
    return sorted(p for p in folder.iterdir() if NOTEBOOK_PATTERN.match(p.name))


def notebook_parameters(profile: str, declared: dict[str, Any], workdir: Path,
                        overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The parameters to inject into one notebook for a profile.

    Args:
        profile: A key of :data:`PROFILES`.
        declared: The notebook's declared parameters (name -> anything).
        workdir: The shared stage folder for this profile.
        overrides: ``-p name=value`` parameters (they win over the profile's).

    Returns:
        The subset of the profile's overrides and of ``overrides`` the notebook
        declares, plus ``workdir`` and ``profile`` where declared.
    """
    merged = {**PROFILES[profile], **(overrides or {})}
    params = {k: v for k, v in merged.items() if k in declared}
    if "workdir" in declared:
        params["workdir"] = str(workdir)
    if "profile" in declared:
        params["profile"] = profile
    return params


def parse_overrides(pairs: list[str] | None) -> dict[str, Any]:
    """``["epochs=30", "backend=vision"]`` -> ``{"epochs": 30, "backend": "vision"}``.

    Values are read as Python literals (numbers, None, True, lists, quoted strings) and
    fall back to plain text.

    Raises:
        ValueError: For an item without ``=`` or with an empty name.
    """
    import ast

    out: dict[str, Any] = {}
    for pair in pairs or []:
        name, sep, text = pair.partition("=")
        if not sep or not name.strip().isidentifier():
            raise ValueError(f"-p {pair!r}: write -p name=value (e.g. -p epochs=30)")
        try:
            out[name.strip()] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            out[name.strip()] = text
    return out


def source_kind(source: str | os.PathLike[str]) -> str:
    """Guess what a ``--source`` is: ``list`` (a file), ``crops`` or ``photos`` (folders).

    A folder of sub-folders whose sampled images are all small squares (<= 300 px, like
    PubFig83's 100x100 crops) is ``crops``; any other folder is ``photos``.

    Raises:
        FileNotFoundError: When the path does not exist.
    """
    from PIL import Image

    path = Path(source)
    if path.is_file():
        return "list"
    if not path.is_dir():
        raise FileNotFoundError(f"--source {path} does not exist: pass a PubFig-format list, "
                                "a folder of photos per person or a folder of face crops")
    images = sorted(p for p in path.glob("*/*") if p.suffix.lower() in (".jpg", ".jpeg",
                                                                         ".png"))[:20]
    sizes = []
    for image in images:
        try:
            with Image.open(image) as im:
                sizes.append(im.size)
        except OSError:
            continue
    square = sizes and all(abs(w - h) <= 2 and max(w, h) <= 300 for w, h in sizes)
    return "crops" if square else "photos"


def plan_source(notebooks: list[Path], source: str | os.PathLike[str] | None,
                kind: str = "auto") -> tuple[list[Path], dict[str, dict[str, Any]]]:
    """The notebooks to run on a user's own data, and the ``source`` each one is given.

    Args:
        notebooks: The numbered notebooks.
        source: A PubFig-format list, a folder of photos per person, a folder of face
            crops per person, or ``None`` (the demo: nothing changes).
        kind: ``auto`` (:func:`source_kind`), ``list``, ``photos`` or ``crops``.

    Returns:
        The notebooks to run and, per notebook name, extra parameters.
    """
    if source is None:
        return notebooks, {}
    kind = source_kind(source) if kind == "auto" else kind
    if kind not in SOURCE_KINDS:
        raise ValueError(f"unknown source kind {kind!r}: use auto or {sorted(SOURCE_KINDS)}")
    skip, target = SOURCE_KINDS[kind]
    kept = [nb for nb in notebooks if nb.name[:2] not in skip]
    where = str(Path(source).resolve())
    print(f"--source {where} ({kind}): skipping notebooks {', '.join(skip)}", flush=True)
    return kept, {nb.name: {"source": where} for nb in kept if nb.name.startswith(target)}


def run_notebooks(profile: str = "demo", notebooks_dir: str | os.PathLike[str] | None = None,
                  out_root: str | os.PathLike[str] | None = None,
                  only: list[str] | None = None, timeout_s: int = 3600,
                  source: str | os.PathLike[str] | None = None, source_kind: str = "auto",
                  overrides: dict[str, Any] | None = None) -> list[Path]:
    """Execute the numbered notebooks in order.

    Args:
        profile: ``demo`` (full offline demo) or ``smoke`` (tiny, for tests).
        notebooks_dir: Folder of notebooks (default: the repository's ``notebooks/``).
        out_root: Where executed copies go (default: the repository's ``runs/``); the
            copies land in ``out_root/<profile>/`` and the stages' files in
            ``out_root/<profile>/work/``.
        only: Run only notebooks whose name starts with one of these prefixes
            (e.g. ``["00", "01"]``); earlier stages' files must then exist.
        timeout_s: Per-cell timeout.
        source: Run on your own data instead of the demo (see :func:`plan_source`); the
            copies then go to ``out_root/own`` (``own-smoke`` for the smoke profile).
        source_kind: ``auto``, ``list``, ``photos`` or ``crops``.
        overrides: Parameters for every notebook that declares them (``-p name=value``).

    Returns:
        The executed notebooks' paths.

    Raises:
        ValueError: For an unknown profile or a prefix that matches no notebook.
        RuntimeError: When a notebook fails (the message names it and the executed copy,
            which shows the failing cell).
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}: use one of {sorted(PROFILES)}")
    root = project_root()
    notebooks_dir = Path(notebooks_dir or root / "notebooks").resolve()
    name = profile if source is None else ("own" if profile == "demo" else f"own-{profile}")
    out_dir = (Path(out_root or root / "runs") / name).resolve()
    workdir = out_dir / "work"
    workdir.mkdir(parents=True, exist_ok=True)
    notebooks, extra = plan_source(list_notebooks(notebooks_dir), source, source_kind)
    if only:
        notebooks = [nb for nb in notebooks if any(nb.name.startswith(p) for p in only)]
        if not notebooks:
            raise ValueError(f"no notebook in {notebooks_dir} starts with {only}")
        if source is None and "source" not in (overrides or {}):
            check_inputs(notebooks, workdir)
    import papermill

    kernel = runner_kernel()
    held = lock_folder(workdir, "run-notebooks")   # one run per work folder; released below
    done: list[Path] = []
    try:
        with _kernel_environment():
            for index, nb in enumerate(notebooks, start=1):
                declared = papermill.inspect_notebook(str(nb))
                params = notebook_parameters(profile, declared, workdir,
                                             {**(overrides or {}), **extra.get(nb.name, {})})
                target = out_dir / nb.name
                print(f"[{index}/{len(notebooks)}] {nb.name} ({profile}) -> {target}",
                      flush=True)
                start = time.perf_counter()
                execute_notebook(nb, target, params, kernel, timeout_s)
                print(f"    done in {time.perf_counter() - start:.0f}s", flush=True)
                done.append(target)
    finally:
        held.release()
    print(f"executed notebooks are in {out_dir}")
    return done


def execute_notebook(notebook: Path, target: Path, params: dict[str, Any], kernel: str,
                     timeout_s: int = 3600) -> None:
    """Run one notebook with papermill (in its own folder) and sign the executed copy.

    The copy is signed even when a cell fails, so it opens trusted with its traceback.

    Raises:
        RuntimeError: When the notebook fails: the message names the executed copy, which
            shows the failing cell, and carries papermill's traceback.
    """
    import papermill

    try:
        papermill.execute_notebook(str(notebook), str(target), parameters=params,
                                   cwd=str(notebook.parent), kernel_name=kernel,
                                   progress_bar=True, execution_timeout=timeout_s,
                                   config=_client_config())
    except Exception as error:  # papermill raises PapermillExecutionError & co
        raise RuntimeError(f"notebook {notebook.name} failed ({type(error).__name__}); "
                           f"the executed copy shows the failing cell: {target}\n"
                           f"{error}") from error
    finally:
        if target.is_file():
            try:
                sign_notebook(target)
            except Exception as error:  # e.g. an unwritable Jupyter data folder
                print(f"could not sign {target} ({error}): it opens untrusted",
                      file=sys.stderr)


@contextmanager
def _kernel_environment() -> Iterator[None]:
    """The kernels' environment while the runner runs (restored afterwards).

    Figures are captured into the executed copies (Agg would drop them silently), and
    TensorFlow's C++ logging is set before a kernel imports it (``facelab.doctor.TF_ENV``).
    """
    from facelab.doctor import TF_ENV

    wanted = {**{name: os.environ.get(name, value) for name, value in TF_ENV.items()},
              "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    before = {name: os.environ.get(name) for name in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _client_config() -> Any:
    """The notebook client's settings: CurveZMQ keys for the kernel where pyzmq has them.

    ipykernel warns on every start that runs over TCP without encryption; with keys
    (``transport_encryption="auto"``, for kernels whose spec declares support) it does not.
    The kernel's own log is quiet: jupyter_client interrupts a kernel before shutting it
    down, and a kernel still handling a message then logs "ERROR | KeyboardInterrupt caught
    in kernel" (about one run of ``make demo`` in six).  A failing cell still fails the run.
    """
    import zmq
    from traitlets.config import Config

    config = Config()
    if zmq.has("curve"):
        config.KernelManager.transport_encryption = "auto"
    config.NotebookClient.extra_arguments = ["--IPKernelApp.log_level=CRITICAL"]
    return config


def runner_kernel() -> str:
    """The kernel the runner starts: ``facelab`` when it is this Python's, else ``python3``.

    ``make install`` registers ``facelab`` (:func:`install_jupyter`); without it (e.g. a
    conda environment where only ``pip install -e .`` ran) this Python's own ipykernel
    runs the notebooks, and a line says so.
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(KERNEL_NAME)
    except NoSuchKernel:
        spec = None
    if spec is not None and os.path.abspath(spec.argv[0]) == os.path.abspath(sys.executable):
        return KERNEL_NAME
    print(f"the Jupyter kernel {KERNEL_NAME!r} is not registered for {sys.executable} "
          "(make install registers it): running on this Python's python3 kernel", flush=True)
    return "python3"


def sign_notebook(path: str | os.PathLike[str]) -> None:
    """Mark a notebook as trusted for this user (Jupyter's signature database).

    JupyterLab then renders its HTML, JavaScript and widget outputs (tqdm's bars show the
    state they ended in) instead of the plain-text fallback of an untrusted notebook.
    """
    import nbformat
    from nbformat.sign import NotebookNotary

    NotebookNotary().sign(nbformat.read(str(path), as_version=4))


def check_inputs(notebooks: list[Path], workdir: Path) -> None:
    """Raise when a notebook of a partial run (``--only``) lacks the stage folder it reads.

    Raises:
        ValueError: Naming the folder, the notebook that makes it and the ``--only`` to use.
    """
    made = set()
    for nb in notebooks:
        number = nb.name[:2]
        stage = NOTEBOOK_INPUTS.get(number)
        if stage and stage not in made and not (workdir / stage).is_dir():
            maker = STAGE_MAKERS[stage]
            raise ValueError(f"notebook {nb.name} reads {workdir / stage}, which does not "
                             f"exist: notebook {maker} makes it (run without --only, or "
                             f"with --only {maker} ... {number})")
        made.update(s for s, n in STAGE_MAKERS.items() if n == number)


def missing_input_hint(message: str, workdir: str | os.PathLike[str],
                       runs: str | os.PathLike[str] | None = None) -> str | None:
    """Say what makes the stage folder an error message says is missing, or ``None``.

    Args:
        message: The error's text (it names the missing path).
        workdir: The notebook's ``workdir`` (as written in its parameters cell).
        runs: Where the runner's work folders are (default: the repository's ``runs/``),
            searched for another ``workdir`` that has the folder.

    Returns:
        A few lines: the notebooks that make the folder in this ``workdir`` (or the
        command), and another ``workdir`` that already has it, if any.
    """
    work = Path(workdir)
    missing = [stage for stage in STAGE_MAKERS if not (work / stage).exists()]
    stage = next((s for s in missing if _mentions(message, work / s)), None)
    if stage is None:
        return None
    maker = STAGE_MAKERS[stage]
    first = STAGE_MAKERS[missing[0]]
    notebooks = f"notebook {maker}" if first == maker else f"notebooks {first} to {maker}"
    runs_dir = Path(runs) if runs is not None else project_root() / "runs"
    lines = [f"facelab: workdir {str(workdir)!r} has no {stage}/ yet (notebook {maker} "
             f"makes it). Run {notebooks} with this workdir"
             + (", or `make demo` (all of them)" if _same(work, runs_dir / "demo" / "work")
                else "") + "."]
    for other in sorted(runs_dir.glob("*/work")):
        if (other / stage).is_dir() and not _same(other, work):
            name = other.parent.name
            how = (f"`facelab run-notebooks --profile {name}`" if name in PROFILES
                   else "`facelab run-notebooks`")
            lines.append(f"Or set workdir = {_relative(other)!r} in the parameters cell: "
                         f"it has {stage}/ (made by {how}).")
    return "\n".join(textwrap.fill(line, 92, break_long_words=False, break_on_hyphens=False)
                     for line in lines)


def _mentions(message: str, path: Path) -> bool:
    forms = {str(path), os.path.normpath(path), str(path.absolute()), str(path.resolve())}
    return any(form in message for form in forms)


def _same(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


def _relative(path: Path) -> str:
    try:
        return os.path.relpath(path, Path.cwd())
    except ValueError:   # another drive (Windows)
        return str(path)


def install_missing_input_hint() -> None:
    """In IPython (a notebook's kernel), add :func:`missing_input_hint` to errors.

    A ``FileNotFoundError`` or ``ValueError`` whose message names a missing stage folder
    of the notebook's ``workdir`` gets the hint as a note under its traceback; every other
    error shows as before.  Outside IPython this does nothing.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return

    def handler(shell: Any, etype: type, value: BaseException, tb: Any,
                tb_offset: int | None = None) -> None:
        workdir = shell.user_ns.get("workdir")
        hint = (missing_input_hint(str(value), workdir)
                if isinstance(workdir, str | os.PathLike) else None)
        if hint and hint not in getattr(value, "__notes__", []):
            value.add_note(hint)
        shell.showtraceback((etype, value, tb), tb_offset=tb_offset)

    shell.set_custom_exc((FileNotFoundError, ValueError), handler)


def refresh_git_after_save(os_path: str = "", **_: Any) -> None:
    """JupyterLab's post-save hook (``make lab``): no phantom change in ``git status``.

    git takes a file whose size changed for modified without comparing contents, so a
    notebook saved with its outputs is listed by ``git status`` although the filter makes it
    identical to the committed one (``git diff`` shows nothing).  When the saved notebook,
    as git stores it, equals the index's copy, this refreshes the index entry
    (``git update-index``: what is staged stays the same).  A real change is left alone, and
    nothing here can fail a save.
    """
    if not os_path.endswith(".ipynb"):
        return
    folder = os.path.dirname(os_path) or "."

    def git(*args: str) -> int:
        return subprocess.run(["git", "-C", folder, *args, "--", os_path],
                              capture_output=True, check=False).returncode

    try:
        if git("ls-files", "--error-unmatch") == 0 and git("diff", "--quiet") == 0:
            git("update-index", "-q")
    except OSError:   # no git: nothing to refresh
        return


def install_jupyter(root: str | os.PathLike[str] | None = None) -> None:
    """``make install``'s Jupyter part: the project's kernel and the notebooks' git filter.

    Both are safe to redo.  See :func:`install_kernel` and :func:`install_git_filter`.
    """
    where = install_kernel()
    print(f"Jupyter kernel {KERNEL_NAME!r} ({KERNEL_DISPLAY_NAME}) registered in {where}")
    if install_git_filter(root):
        print("git filter 'nbstripout' set up: notebooks are committed without outputs")


def install_kernel(prefix: str | os.PathLike[str] | None = None) -> Path:
    """Register this Python as the Jupyter kernel ``facelab``, inside its environment.

    The kernel spec goes to ``<prefix>/share/jupyter/kernels/facelab`` (default: this
    Python's ``sys.prefix``, i.e. ``.venv``; nothing is written to the user's home) and
    carries ``facelab.doctor.TF_ENV`` in its environment.  Registering again replaces it.

    Returns:
        The kernel spec's folder.
    """
    from ipykernel.kernelspec import install

    from facelab.doctor import TF_ENV

    return Path(install(kernel_name=KERNEL_NAME, display_name=KERNEL_DISPLAY_NAME,
                        prefix=str(prefix or sys.prefix), env=dict(TF_ENV)))


def install_git_filter(root: str | os.PathLike[str] | None = None) -> bool:
    """Set up nbstripout as the git filter of the repository's notebooks (local config).

    ``.gitattributes`` sends ``*.ipynb`` through the filter ``nbstripout``; this defines it
    for this clone with this Python (the keys ``nbstripout --install`` writes, plus
    :data:`STRIP_ARGS`): ``git add`` stores a notebook without outputs, execution counts
    and widget state, so running notebooks in place leaves ``git status`` clean.

    Returns:
        False (and nothing changes) outside a git work tree or without git.
    """
    folder = str(root or project_root())
    try:
        inside = subprocess.run(["git", "-C", folder, "rev-parse", "--is-inside-work-tree"],
                                capture_output=True, text=True, check=False)
    except OSError:   # no git
        return False
    if inside.stdout.strip() != "true":
        return False
    command = " ".join([f'"{sys.executable}"', *STRIP_ARGS])
    for key, value in (("filter.nbstripout.clean", command),
                       ("filter.nbstripout.smudge", "cat"),
                       ("filter.nbstripout.required", "true"),
                       ("diff.ipynb.textconv", f"{command} -t")):
        subprocess.run(["git", "-C", folder, "config", key, value], check=True)
    return True


def _png_outputs(cell: Any) -> list[bytes]:
    """The PNG images a notebook cell displayed, in output order."""
    found = []
    for output in cell.get("outputs", []):
        data = output.get("data", {}).get("image/png")
        if data:
            text = "".join(data) if isinstance(data, list) else str(data)
            found.append(base64.b64decode(text))
    return found


def notebook_figure(notebook: str | os.PathLike[str]) -> bytes | None:
    """The PNG that stands for an executed notebook, or ``None`` when it shows none.

    That is the last PNG output of the first cell tagged :data:`FIGURE_TAG` that has one;
    without such a cell, the notebook's last PNG output.

    Args:
        notebook: An executed ``.ipynb`` file (with outputs).
    """
    import nbformat

    cells = nbformat.read(str(notebook), as_version=4).cells
    for cell in cells:
        images = _png_outputs(cell)
        if images and FIGURE_TAG in cell.get("metadata", {}).get("tags", []):
            return images[-1]
    every = [image for cell in cells for image in _png_outputs(cell)]
    return every[-1] if every else None


def shrink_png(data: bytes, dpi: float = FIGURE_DPI, max_width: int = FIGURE_MAX_WIDTH,
               colours: int = FIGURE_COLOURS) -> bytes:
    """Make a figure's PNG small enough to commit: about ``dpi``, 256 colours, optimised.

    The source resolution is read from the PNG's ``pHYs`` chunk (matplotlib writes it;
    100 dpi, matplotlib's default, is assumed without one); the image is never enlarged,
    is at most ``max_width`` px wide, is laid over white (figures may be transparent), and
    is stored as a palette of ``colours`` colours (plots lose nothing visible; a grid of
    face crops drops from about 1 MB to 200 KB).
    """
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        source_dpi = float(image.info.get("dpi", (100, 100))[0]) or 100.0
        scale = min(1.0, dpi / source_dpi, max_width / image.width)
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        picture = Image.alpha_composite(white, image.convert("RGBA")).convert("RGB")
    if scale < 1.0:
        size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
        picture = picture.resize(size, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    picture.quantize(colours, method=Image.Quantize.MEDIANCUT).save(
        buffer, format="PNG", optimize=True, dpi=(dpi, dpi))
    return buffer.getvalue()


def extract_figures(executed_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                    *, dpi: float = FIGURE_DPI, max_width: int = FIGURE_MAX_WIDTH
                    ) -> dict[str, Path]:
    """Write one figure per executed notebook as ``out_dir/NN.png`` (NN: its number).

    The figure is :func:`notebook_figure`'s choice, rescaled by :func:`shrink_png`.  A
    notebook without any PNG output is reported and skipped (an older ``NN.png`` stays).

    Args:
        executed_dir: A folder of executed notebooks, e.g. ``runs/demo`` after
            ``make demo`` (or ``runs/smoke``).
        out_dir: Where the PNGs go, e.g. ``docs/figures`` (created).
        dpi: Target resolution.
        max_width: Largest width in pixels.

    Returns:
        Notebook number -> the PNG written.

    Raises:
        FileNotFoundError: When ``executed_dir`` holds no executed ``NN_*.ipynb``.
    """
    folder = Path(executed_dir)
    notebooks = list_notebooks(folder) if folder.is_dir() else []
    if not notebooks:
        raise FileNotFoundError(f"no executed notebooks (NN_*.ipynb) in {folder}: run them "
                                "first (make demo, or facelab run-notebooks)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for notebook in notebooks:
        number = notebook.name[:2]
        data = notebook_figure(notebook)
        if data is None:
            print(f"{notebook.name}: no PNG output, no figure written", file=sys.stderr)
            continue
        target = out / f"{number}.png"
        target.write_bytes(shrink_png(data, dpi, max_width))
        written[number] = target
    print(f"wrote {len(written)} figure(s) to {out}")
    return written


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``facelab run-notebooks``."""
    parser.add_argument("--profile", choices=sorted(PROFILES), default="demo",
                        help="demo: full offline demo (default); smoke: tiny run for tests")
    parser.add_argument("--only", nargs="+", metavar="NN",
                        help="run only notebooks whose names start with these prefixes")
    parser.add_argument("--out", default=None, help="folder for executed copies (default runs/)")
    parser.add_argument("--source", default=None, metavar="PATH",
                        help="your own data instead of the demo: a PubFig-format list, a "
                        "folder of photos per person or a folder of face crops per person")
    parser.add_argument("--source-kind", default="auto",
                        choices=["auto", *sorted(SOURCE_KINDS)],
                        help="what --source is (default: guessed)")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                        help="set a notebook parameter wherever it is declared, e.g. "
                        "-p backend=vision -p epochs=30 (repeatable)")
    parser.add_argument("--figures", default=None, metavar="DIR",
                        help="afterwards, write one figure per notebook to DIR/NN.png (the "
                        "cell tagged readme-figure, else the last PNG), e.g. docs/figures")


def run_cli(args: argparse.Namespace) -> int:
    """Entry point of ``facelab run-notebooks``."""
    try:
        done = run_notebooks(args.profile, out_root=args.out, only=args.only,
                             source=args.source, source_kind=args.source_kind,
                             overrides=parse_overrides(args.param))
    except RuntimeError as error:
        print(f"facelab run-notebooks: {error}", file=sys.stderr)
        return 1
    if args.figures and done:
        extract_figures(done[0].parent, args.figures)
    return 0
