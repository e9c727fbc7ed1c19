"""Sources of photos: PubFig-format URL lists and folders with one sub-folder per person.

PubFig's lists (``dev_urls.txt``, ``eval_urls.txt``) are tab-separated text files::

    # PubFig Dataset v1.2 - dev_urls.txt - http://www.cs.columbia.edu/CAVE/databases/pubfig/
    #	person	imagenum	url	rect	md5sum
    Abhishek Bachan	1	http://.../ash.jpg	183,60,297,174	f533da9fbd1c770428c8961f3fa48950

``rect`` is ``x0,y0,x1,y1`` of the labelled person's face in the original photo and
``md5sum`` the md5 of the original bytes.  Both sources produce the same kind of manifest.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from facelab.io import atomic_write_bytes
from facelab.manifest import OK, format_rect, parse_rect

PUBFIG_COLUMNS = ("person", "imagenum", "url", "rect", "md5sum")
BAD_ROW = "bad_row"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff")
_MD5 = re.compile(r"^[0-9a-fA-F]{32}$")


def _check_row(fields: list[str]) -> str:
    """Return why a split line is not a valid PubFig row ('' when it is)."""
    if len(fields) != len(PUBFIG_COLUMNS):
        return ("expected 5 tab-separated fields (person, imagenum, url, rect, md5sum), "
                f"got {len(fields)}")
    person, imagenum, url, rect, md5 = fields
    if not person.strip():
        return "empty person name"
    if not imagenum.strip().isdecimal():   # isdigit() accepts '²', which int() rejects
        return f"imagenum {imagenum!r} is not a whole number"
    if not url.strip():
        return "empty url"
    if parse_rect(rect) is None:
        return f"rect {rect!r} is not x0,y0,x1,y1 with x0<x1 and y0<y1"
    if not _MD5.match(md5.strip()):
        return f"md5sum {md5!r} is not 32 hex digits"
    return ""


def parse_pubfig_text(text: str) -> pd.DataFrame:
    """Parse the text of a PubFig-format URL list.

    Args:
        text: The file's contents.

    Returns:
        One row per non-comment, non-blank line, in file order, with columns ``line``
        (1-based line number), ``person``, ``imagenum``, ``url``, ``rect``,
        ``md5_expected``, ``status`` (``ok`` or ``bad_row``) and ``reason``.  A malformed
        line never raises: it becomes a ``bad_row`` with the line number in ``reason``.
    """
    rows = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip("\r\n")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split("\t")
        problem = _check_row(fields)
        if problem:
            padded = (fields + [""] * 5)[:5]
            rows.append({"line": number, "person": padded[0].strip(), "imagenum": -1,
                         "url": padded[2].strip(), "rect": padded[3].strip(),
                         "md5_expected": padded[4].strip().lower(), "status": BAD_ROW,
                         "reason": f"line {number}: {problem}"})
            continue
        person, imagenum, url, rect, md5 = (f.strip() for f in fields)
        rows.append({"line": number, "person": person, "imagenum": int(imagenum), "url": url,
                     "rect": rect, "md5_expected": md5.lower(), "status": OK, "reason": ""})
    columns = ["line", "person", "imagenum", "url", "rect", "md5_expected", "status", "reason"]
    return pd.DataFrame(rows, columns=columns)


def read_pubfig_list(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a PubFig-format URL list file (see :func:`parse_pubfig_text`).

    Args:
        path: The list, e.g. ``dev_urls.txt``.

    Raises:
        FileNotFoundError: When the file does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no URL list at {path}: pass a PubFig-format file such as "
                                "dev_urls.txt (tab-separated person, imagenum, url, rect, md5sum)")
    return parse_pubfig_text(path.read_text(encoding="utf-8", errors="replace"))


def write_pubfig_list(rows: Iterable[Mapping[str, object]], path: str | os.PathLike[str],
                      title: str = "PubFig Dataset v1.2 - dev_urls.txt") -> Path:
    """Write rows in PubFig's exact list format (two ``#`` header lines, tabs).

    Args:
        rows: Mappings with ``person``, ``imagenum``, ``url``, ``rect`` (a string or a box)
            and ``md5sum`` (or ``md5_expected``).
        path: Destination file, written atomically.
        title: The first header line's text (after ``# ``).

    Returns:
        The path written.
    """
    lines = [f"# {title} - facelab demo", "#\t" + "\t".join(PUBFIG_COLUMNS)]
    for row in rows:
        rect = row["rect"] if isinstance(row["rect"], str) else format_rect(row["rect"])
        md5 = row.get("md5sum", row.get("md5_expected"))
        person = str(row["person"])
        if "\t" in person or "\n" in person:
            raise ValueError(f"person name {person!r} contains a tab or newline")
        lines.append("\t".join([person, str(int(row["imagenum"])), str(row["url"]), rect,
                                str(md5)]))
    path = Path(path)
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode("utf-8"))
    return path


def read_folder(root: str | os.PathLike[str],
                suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> pd.DataFrame:
    """List a folder with one sub-folder per person (photos or face crops).

    Args:
        root: The folder; each direct sub-folder's name is a person's name.
        suffixes: File endings counted as images (case-insensitive); other files and
            hidden files are ignored.

    Returns:
        One row per image, sorted by person then file name, with ``person``,
        ``imagenum`` (1-based within the person), ``path`` (relative to ``root``),
        ``status`` (``ok``) and ``reason`` ('').

    Raises:
        FileNotFoundError: When ``root`` is not a folder.
        ValueError: When it holds no person sub-folder with images.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder: pass a folder with one sub-folder "
                                "of images per person")
    rows = []
    for person_dir in sorted(p for p in root.iterdir() if p.is_dir()
                             and not p.name.startswith(".")):
        files = sorted(f for f in person_dir.iterdir() if f.is_file()
                       and not f.name.startswith(".") and f.suffix.lower() in suffixes)
        for number, file in enumerate(files, start=1):
            rows.append({"person": person_dir.name, "imagenum": number,
                         "path": file.relative_to(root).as_posix(), "status": OK, "reason": ""})
    if not rows:
        raise ValueError(f"{root} has no sub-folder with images ({', '.join(suffixes)}): "
                         "expected ROOT/<person>/<image>")
    return pd.DataFrame(rows, columns=["person", "imagenum", "path", "status", "reason"])
