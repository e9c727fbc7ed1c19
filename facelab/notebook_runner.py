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
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

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
    import papermill

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
    env_backup = os.environ.get("MPLBACKEND")
    # figures are captured into the executed copies (Agg would drop them silently)
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # no CUDA/absl chatter in the outputs
    done: list[Path] = []
    try:
        for index, nb in enumerate(notebooks, start=1):
            declared = papermill.inspect_notebook(str(nb))
            params = notebook_parameters(profile, declared, workdir,
                                         {**(overrides or {}), **extra.get(nb.name, {})})
            target = out_dir / nb.name
            print(f"[{index}/{len(notebooks)}] {nb.name} ({profile}) -> {target}", flush=True)
            start = time.perf_counter()
            try:
                papermill.execute_notebook(str(nb), str(target), parameters=params,
                                           cwd=str(notebooks_dir), kernel_name="python3",
                                           progress_bar=True, execution_timeout=timeout_s)
            except Exception as error:  # papermill raises PapermillExecutionError & co
                raise RuntimeError(f"notebook {nb.name} failed ({type(error).__name__}); "
                                   f"the executed copy shows the failing cell: {target}\n"
                                   f"{error}") from error
            print(f"    done in {time.perf_counter() - start:.0f}s", flush=True)
            done.append(target)
    finally:
        if env_backup is None:
            os.environ.pop("MPLBACKEND", None)
        else:
            os.environ["MPLBACKEND"] = env_backup
    print(f"executed notebooks are in {out_dir}")
    return done


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
