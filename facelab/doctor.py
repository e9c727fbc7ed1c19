"""``facelab doctor``: what this machine can run, and how to fix what it cannot.

Checks Python, the pinned packages, TensorFlow/Keras and the GPUs TensorFlow sees, and
whether the optional Google Cloud Vision backend is usable.  All well: one line; otherwise
only what is wrong, each with its fix (``--verbose`` lists every check).  Notebook setup
cells call :func:`notebook_setup`.

TensorFlow writes a dozen start-up lines to the process's standard error while it loads
(oneDNN, "Could not find cuda drivers", ``cuInit`` failures, CPU features), part of them
before its logging reads ``TF_CPP_MIN_LOG_LEVEL``.  :func:`quiet_tensorflow` sets that
variable and loads TensorFlow, when something first imports it, with file descriptor 2
captured: the known start-up lines are dropped and everything else is written back.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.abc
import importlib.metadata
import importlib.util
import os
import platform
import re
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MIN_PYTHON = (3, 11)
# distribution names whose installed version must match requirements.txt
CORE_PACKAGES = ("tensorflow", "keras", "numpy", "pandas", "matplotlib", "pillow", "mtcnn",
                 "requests", "google-cloud-vision", "papermill", "tqdm")
# set before TensorFlow loads (the CLI, notebook setup cells, the runner's and the
# registered kernel's environment): its C++ INFO and WARNING lines off, ERROR still shown
TF_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2"}
# TensorFlow's start-up lines on fd 2 that say nothing to act on (some come before its
# logging is set up, so TF_CPP_MIN_LOG_LEVEL does not reach them)
TF_STARTUP_NOISE = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called"
    r"|oneDNN custom operations are on"
    r"|Could not find cuda drivers on your machine"
    r"|cpu_feature_guard|To enable the following instructions:.*rebuild TensorFlow"
    r"|Unable to register cu(DNN|FFT|BLAS) factory|computation placer already registered"
    r"|TF-TRT Warning: Could not find TensorRT")
# without a driver, cuInit failing is expected (the doctor says "no GPU"); with one, it is
# a real error and stays
NO_DRIVER = "Could not find cuda drivers"
CUINIT_FAILED = "failed call to cuInit"
WIDTH = 92   # report lines are wrapped here (at spaces), not by the notebook's output area


@dataclass
class Check:
    """One line of the doctor's report."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    optional: bool = False


@dataclass
class Report:
    """All checks; ``ok`` is False when a required check failed."""

    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no required check failed."""
        return all(c.ok or c.optional for c in self.checks)

    @property
    def problems(self) -> list[Check]:
        """The failed checks, required or optional."""
        return [c for c in self.checks if not c.ok]

    def summary(self) -> str:
        """One line when nothing failed; else each failed check with its fix."""
        if not self.problems:
            return f"facelab doctor: ready: {self._essentials()}"
        lines = [_line(c) for c in self.problems]
        verdict = ("some required checks failed" if not self.ok
                   else f"ready, with a warning: {self._essentials()}")
        return "\n".join(lines + [f"facelab doctor: {verdict}"])

    def table(self) -> str:
        """Every check, one line each (``facelab doctor --verbose``)."""
        verdict = "everything required is in place" if self.ok else "some required checks failed"
        return "\n".join([_line(c) for c in self.checks] + [f"facelab doctor: {verdict}"])

    def _essentials(self) -> str:
        by_name = {c.name: c for c in self.checks}
        parts = [f"Python {platform.python_version()}", "the pinned packages"]
        if "tensorflow/keras" in by_name:
            parts[1] = by_name["tensorflow/keras"].detail
        if "GPUs" in by_name:
            parts.append(by_name["GPUs"].detail)
        return ", ".join(parts)

    def __str__(self) -> str:
        return self.summary()


def _line(check: Check) -> str:
    """A check as text, wrapped at :data:`WIDTH` between words."""
    mark = "ok " if check.ok else ("-- " if check.optional else "XX ")
    lines = [_wrap(f"[{mark}] {check.name:<20} {check.detail}", 27)]
    if not check.ok and check.fix:
        lines.append(_wrap(f"      fix: {check.fix}", 11))
    return "\n".join(lines)


def _wrap(text: str, indent: int) -> str:
    return textwrap.fill(text, WIDTH, subsequent_indent=" " * indent,
                         break_long_words=False, break_on_hyphens=False)


def pinned_versions(requirements: Path | None = None) -> dict[str, str]:
    """Read ``name==version`` pins from requirements.txt (lower-case names)."""
    path = requirements or Path(__file__).resolve().parent.parent / "requirements.txt"
    pins: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            match = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s;#]+)", line)
            if match:
                pins[match.group(1).lower().replace("_", "-")] = match.group(2)
    return pins


def _package_checks(pins: dict[str, str]) -> list[Check]:
    checks = []
    for name in CORE_PACKAGES:
        want = pins.get(name.lower())
        try:
            have = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            checks.append(Check(name, False, "not installed",
                                "make install   (or: pip install -r requirements.txt)"))
            continue
        if want and have != want:
            checks.append(Check(name, False, f"{have} installed, {want} pinned",
                                f"pip install '{name}=={want}' (or make install)"))
        else:
            checks.append(Check(name, True, have))
    return checks


def _tensorflow_checks() -> list[Check]:
    quiet_tensorflow()
    try:
        import keras
        import tensorflow as tf
    except Exception as error:  # a broken install raises many kinds of errors
        return [Check("tensorflow import", False, f"{type(error).__name__}: {error}",
                      "make install   (a fresh .venv with the pinned requirements)")]
    gpus = tf.config.list_physical_devices("GPU")
    where = (f"{len(gpus)} GPU{'s' if len(gpus) > 1 else ''} "
             f"({', '.join(g.name for g in gpus)})" if gpus else "no GPU (CPU training)")
    backend = keras.backend.backend()
    return [Check("tensorflow/keras", True, f"TensorFlow {tf.__version__}, Keras "
                  f"{keras.__version__}" + ("" if backend == "tensorflow"
                                            else f" ({backend} backend)")),
            Check("GPUs", True, where, optional=True)]


def _vision_check() -> Check:
    credentials = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS", "")
    fix = ("optional: set GOOGLE_APPLICATION_CREDENTIALS to a service-account JSON key with the "
           "Vision API enabled to use --backend vision; MTCNN works offline without it")
    if credentials and Path(credentials).is_file():
        return Check("vision credentials", True, f"credentials at {credentials}", optional=True)
    if credentials:
        return Check("vision credentials", False,
                     f"GOOGLE_APPLICATION_CREDENTIALS={credentials} does not exist", fix,
                     optional=True)
    adc = Path.home() / ".config" / "gcloud" / "application_default_credentials.json"
    if adc.is_file():
        return Check("vision credentials", True, f"application default credentials {adc}",
                     optional=True)
    # not set up is not a fault: the offline detector is the default
    return Check("vision credentials", True, "none (optional: only --backend vision needs "
                 "them; see docs/setup.md)", optional=True)


def check(tensorflow: bool = True) -> Report:
    """Run every check.

    Args:
        tensorflow: Also import TensorFlow to report its version and the GPUs it sees
            (takes a few seconds).

    Returns:
        The report; ``report.summary()`` (also ``str(report)``) is the printable form.
    """
    report = Report()
    py_ok = sys.version_info[:2] >= MIN_PYTHON
    report.checks.append(Check("python", py_ok, f"{platform.python_version()} ({sys.executable})",
                               "use Python 3.11 (make demo, or conda env create -f "
                               "environment.yml)"))
    report.checks.extend(_package_checks(pinned_versions()))
    if tensorflow:
        report.checks.extend(_tensorflow_checks())
    report.checks.append(_vision_check())
    return report


def tensorflow_startup_noise_removed(text: str) -> str:
    """``text`` (TensorFlow's fd-2 output while it loads) without its start-up lines.

    Drops the lines of :data:`TF_STARTUP_NOISE`, and the ``cuInit`` failure when the same
    start-up said that no CUDA driver exists; every other line is kept.
    """
    lines = text.splitlines(keepends=True)
    no_driver = any(NO_DRIVER in line for line in lines)
    return "".join(line for line in lines
                   if not TF_STARTUP_NOISE.search(line)
                   and not (no_driver and CUINIT_FAILED in line))


@contextlib.contextmanager
def _startup_lines_filtered() -> Iterator[None]:
    """Capture file descriptor 2; on exit write it back less TensorFlow's start-up lines."""
    for stream in (sys.stderr, sys.__stderr__):
        with contextlib.suppress(Exception):
            stream.flush()
    try:
        saved = os.dup(2)
    except OSError:   # no fd 2 to capture (a daemon): nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                sys.__stderr__.flush()   # Python's own writes to fd 2, in order
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            rest = tensorflow_startup_noise_removed(capture.read().decode(errors="replace"))
            if rest:
                sys.stderr.write(rest)
                sys.stderr.flush()


class _QuietLoader(importlib.abc.Loader):
    """TensorFlow's own loader, run with its start-up lines filtered out."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        with _startup_lines_filtered():
            self._loader.exec_module(module)
            # CUDA's lines come with the first device query: make it now, filtered
            with contextlib.suppress(Exception):
                module.config.list_physical_devices("GPU")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class _QuietTensorFlowFinder(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` once, through the other finders, with :class:`_QuietLoader`."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != "tensorflow":
            return None
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def quiet_tensorflow() -> None:
    """Set :data:`TF_ENV` and make the first ``import tensorflow`` filter its start-up lines.

    Call before anything imports TensorFlow (``facelab``'s CLI and notebook setup cells do);
    afterwards it changes nothing.  Real errors still print: only the lines of
    :func:`tensorflow_startup_noise_removed` are dropped.
    """
    for name, value in TF_ENV.items():
        os.environ.setdefault(name, value)
    if "tensorflow" in sys.modules:
        return
    if not any(isinstance(finder, _QuietTensorFlowFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowFinder())


def notebook_setup(tensorflow: bool = False) -> None:
    """A notebook's setup: quiet TensorFlow, hints for missing inputs, one line of checks.

    Prints one line when everything is in place, else what is wrong with its fix.

    Args:
        tensorflow: Check TensorFlow and GPUs too (for notebooks that use it).

    Raises:
        RuntimeError: When a required check fails, with the fixes in the message.
    """
    from facelab.notebook_runner import install_missing_input_hint

    quiet_tensorflow()
    install_missing_input_hint()
    report = check(tensorflow=tensorflow)
    if not report.ok:
        raise RuntimeError(f"environment problems:\n{report.summary()}")
    print(report.summary())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``facelab doctor``."""
    parser.add_argument("--no-tensorflow", action="store_true",
                        help="skip importing TensorFlow (faster)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="list every check, not only what is wrong")


def run_cli(args: argparse.Namespace) -> int:
    """Entry point of ``facelab doctor``; exit 1 when a required check fails."""
    report = check(tensorflow=not args.no_tensorflow)
    print(report.table() if args.verbose else report.summary())
    return 0 if report.ok else 1
