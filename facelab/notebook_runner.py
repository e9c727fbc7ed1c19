"""Run the numbered notebooks headless, in order, with papermill.

Every notebook has one cell tagged ``parameters``.  Its defaults are the ``demo`` profile
(the full offline demo); the ``smoke`` profile overrides a few of them so that the whole
series runs in a few minutes (the tests use it).  Each notebook is given only the
parameters it declares, always including ``workdir``: the folder the stages share
(``runs/<profile>/work``), where each stage reads the previous stage's files and writes
its own.  Executed copies go to ``runs/<profile>/<notebook>.ipynb``.
"""

from __future__ import annotations

import argparse
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
        "collect_timeout_s": 2.0,   # 01: hanging demo URLs give up sooner
        "collect_deadline_s": 3.0,  # 01: total time per URL
        "small_buffer": 16,      # 05: the too-small shuffle buffer, scaled to ~140 train faces
    },
}
NOTEBOOK_PATTERN = re.compile(r"^\d{2}_.+\.ipynb$")


def project_root() -> Path:
    """The repository root (the folder holding ``notebooks/``)."""
    return Path(__file__).resolve().parent.parent


def list_notebooks(notebooks_dir: str | os.PathLike[str]) -> list[Path]:
    """The numbered notebooks (``NN_name.ipynb``) of a folder, in order."""
    folder = Path(notebooks_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"no notebooks folder at {folder}")
    return sorted(p for p in folder.iterdir() if NOTEBOOK_PATTERN.match(p.name))


def notebook_parameters(profile: str, declared: dict[str, Any],
                        workdir: Path) -> dict[str, Any]:
    """The parameters to inject into one notebook for a profile.

    Args:
        profile: A key of :data:`PROFILES`.
        declared: The notebook's declared parameters (name -> anything).
        workdir: The shared stage folder for this profile.

    Returns:
        The subset of the profile's overrides the notebook declares, plus ``workdir``
        and ``profile`` where declared.
    """
    params = {k: v for k, v in PROFILES[profile].items() if k in declared}
    if "workdir" in declared:
        params["workdir"] = str(workdir)
    if "profile" in declared:
        params["profile"] = profile
    return params


def run_notebooks(profile: str = "demo", notebooks_dir: str | os.PathLike[str] | None = None,
                  out_root: str | os.PathLike[str] | None = None,
                  only: list[str] | None = None, timeout_s: int = 3600) -> list[Path]:
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
    out_dir = (Path(out_root or root / "runs") / profile).resolve()
    workdir = out_dir / "work"
    workdir.mkdir(parents=True, exist_ok=True)
    notebooks = list_notebooks(notebooks_dir)
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
            params = notebook_parameters(profile, declared, workdir)
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``facelab run-notebooks``."""
    parser.add_argument("--profile", choices=sorted(PROFILES), default="demo",
                        help="demo: full offline demo (default); smoke: tiny run for tests")
    parser.add_argument("--only", nargs="+", metavar="NN",
                        help="run only notebooks whose names start with these prefixes")
    parser.add_argument("--out", default=None, help="folder for executed copies (default runs/)")


def run_cli(args: argparse.Namespace) -> int:
    """Entry point of ``facelab run-notebooks``."""
    try:
        run_notebooks(args.profile, out_root=args.out, only=args.only)
    except RuntimeError as error:
        print(f"facelab run-notebooks: {error}", file=sys.stderr)
        return 1
    return 0
