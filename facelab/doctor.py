"""``facelab doctor``: what this machine can run, and how to fix what it cannot.

Checks Python, the pinned packages, TensorFlow/Keras and the GPUs TensorFlow sees, and
whether the optional Google Cloud Vision backend is usable.  Notebook setup cells call
:func:`notebook_setup`.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

MIN_PYTHON = (3, 11)
# distribution names whose installed version must match requirements.txt
CORE_PACKAGES = ("tensorflow", "keras", "numpy", "pandas", "matplotlib", "pillow", "mtcnn",
                 "requests", "google-cloud-vision", "papermill", "tqdm")


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

    def __str__(self) -> str:
        lines = []
        for c in self.checks:
            mark = "ok " if c.ok else ("-- " if c.optional else "XX ")
            lines.append(f"[{mark}] {c.name:<22} {c.detail}")
            if not c.ok and c.fix:
                lines.append(f"{'':28}fix: {c.fix}")
        verdict = "everything required is in place" if self.ok else "some required checks failed"
        return "\n".join(lines + [f"facelab doctor: {verdict}"])


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
    try:
        import keras
        import tensorflow as tf
    except Exception as error:  # a broken install raises many kinds of errors
        return [Check("tensorflow import", False, f"{type(error).__name__}: {error}",
                      "make install   (a fresh .venv with the pinned requirements)")]
    gpus = tf.config.list_physical_devices("GPU")
    names = ", ".join(g.name for g in gpus) or "none (training runs on the CPU, slower)"
    return [Check("tensorflow/keras", True, f"TensorFlow {tf.__version__}, Keras "
                  f"{keras.__version__}, backend {keras.backend.backend()}"),
            Check("GPUs", True, f"{len(gpus)}: {names}", optional=True)]


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
    return Check("vision credentials", False, "no credentials found", fix, optional=True)


def check(tensorflow: bool = True) -> Report:
    """Run every check.

    Args:
        tensorflow: Also import TensorFlow to report its version and the GPUs it sees
            (takes a few seconds).

    Returns:
        The report; ``str(report)`` is the printable form.
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


def notebook_setup(tensorflow: bool = False) -> Report:
    """Print the doctor's report at the top of a notebook; raise if something required fails.

    Args:
        tensorflow: Check TensorFlow and GPUs too (for notebooks that train).

    Raises:
        RuntimeError: When a required check fails, with the fixes in the message.
    """
    report = check(tensorflow=tensorflow)
    print(report)
    if not report.ok:
        raise RuntimeError(f"environment problems, see the fixes above:\n{report}")
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``facelab doctor``."""
    parser.add_argument("--no-tensorflow", action="store_true",
                        help="skip importing TensorFlow (faster)")


def run_cli(args: argparse.Namespace) -> int:
    """Entry point of ``facelab doctor``; exit 1 when a required check fails."""
    report = check(tensorflow=not args.no_tensorflow)
    print(report)
    return 0 if report.ok else 1
