"""What ``facelab predict`` reads: photos, folders, URLs, manifests, in-memory images.

:func:`expand_inputs` turns the command line's INPUT list into one :class:`Item` per photo;
:func:`open_item` reads one into an RGB image, or says why it cannot (a row, never an
exception).
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from facelab.collect.sources import IMAGE_SUFFIXES, read_pubfig_list
from facelab.manifest import OK

MISSING = "missing"
UNREADABLE = "unreadable"
TOO_LARGE = "too_large"
DEFAULT_MAX_PIXELS = 150_000_000   # a 100-megapixel photo is read; bigger ones are refused


@dataclass
class Item:
    """One photo to look at.

    Attributes:
        photo: How the photo is named in the output (the path or URL as given).
        kind: ``file``, ``url``, ``image`` (in memory) or ``missing``.
        value: The path, URL or image.
        reason: Why a ``missing`` item cannot be read.
    """

    photo: str
    kind: str
    value: Any = None
    reason: str = ""


def is_url(text: str) -> bool:
    """Whether ``text`` is an http(s) URL."""
    return str(text).lower().startswith(("http://", "https://"))


def _folder_items(folder: Path) -> list[Item]:
    files = sorted(p for p in folder.rglob("*") if p.is_file()
                   and p.suffix.lower() in IMAGE_SUFFIXES
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    return [Item(str(p), "file", p) for p in files]


def _manifest_items(path: Path) -> list[Item]:
    """Rows of a manifest CSV (``path`` relative to it, or ``url``) or a PubFig list."""
    if path.suffix.lower() == ".txt":
        table = read_pubfig_list(path)
    else:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    items = []
    for row in table.to_dict("records"):
        status = str(row.get("status", OK) or OK)
        if "path" in row and str(row["path"]).strip():
            file = Path(path.parent, str(row["path"]))
            items.append(Item(str(file), "file", file))
        elif "url" in row and is_url(str(row["url"])):
            items.append(Item(str(row["url"]), "url", str(row["url"])))
        else:
            label = str(row.get("url") or row.get("path") or row.get("person") or "?")
            reason = f"manifest row has no file (status {status}: {row.get('reason', '')})"
            items.append(Item(label, MISSING, None, reason.strip()))
    return items


def is_manifest(path: Path) -> bool:
    """A CSV file, or a ``.txt`` PubFig list (``person imagenum url rect md5sum``)."""
    return path.suffix.lower() in (".csv", ".txt")


def expand_inputs(inputs: Any) -> list[Item]:
    """One :class:`Item` per photo of INPUT (a path, URL, image, or a list of them).

    Folders are listed recursively (image files only, sorted); a ``.csv`` manifest gives
    its rows' ``path`` (relative to the CSV) or ``url``; a ``.txt`` is read as a PubFig
    list.  A path that does not exist becomes a ``missing`` item, not an error.
    """
    if isinstance(inputs, (str, os.PathLike, Image.Image, np.ndarray)):
        inputs = [inputs]
    items: list[Item] = []
    for index, value in enumerate(inputs):
        if isinstance(value, Image.Image | np.ndarray):
            items.append(Item(f"<image {index}>", "image", value))
            continue
        text = os.fspath(value)
        if is_url(text):
            items.append(Item(text, "url", text))
            continue
        path = Path(text)
        if path.is_dir():
            items.extend(_folder_items(path))
        elif path.is_file() and is_manifest(path):
            items.extend(_manifest_items(path))
        elif path.is_file():
            items.append(Item(text, "file", path))
        else:
            items.append(Item(text, MISSING, None, f"no such file or folder: {text}"))
    return items


def _image_from_array(value: Any) -> Image.Image:
    from facelab.faces.crops import to_rgb

    if isinstance(value, Image.Image):
        return to_rgb(value)
    array = np.asarray(value)
    if array.dtype != np.uint8:
        array = np.clip(array, 0, 255).astype(np.uint8)
    return to_rgb(Image.fromarray(array))


def read_file(path: Path, max_pixels: int) -> tuple[Image.Image | None, str, str]:
    """Read a photo file: (image, status, reason); status is ``ok`` or why not."""
    from facelab.faces.crops import UnreadablePhoto, load_photo

    try:
        data = Path(path).read_bytes()
    except OSError as error:
        return None, UNREADABLE, f"cannot read {path}: {type(error).__name__}: {error}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as probe:
                pixels = probe.width * probe.height
    except Exception:  # noqa: BLE001 - load_photo says why below
        pixels = 0
    if max_pixels and pixels > max_pixels:
        return None, TOO_LARGE, (f"{pixels / 1e6:.0f} megapixels is over the limit of "
                                 f"{max_pixels / 1e6:.0f} (max_pixels); downscale the photo")
    try:
        return load_photo(data), OK, ""
    except UnreadablePhoto as error:
        return None, UNREADABLE, f"{path}: {error}"


def fetch(url: str, downloads: Path, timeout: float = 10.0) -> tuple[Path | None, str, str]:
    """Download a URL into ``downloads`` (content-addressed): (file, status, reason)."""
    from facelab.collect.fetch import CollectSettings, fetch_url

    downloads.mkdir(parents=True, exist_ok=True)
    outcome = fetch_url(url, CollectSettings(timeout=timeout, retries=1), downloads)
    if outcome.status != OK:
        return None, outcome.status, f"{url}: {outcome.reason}"
    return downloads / f"{outcome.sha256}{outcome.ext}", OK, ""


def open_item(item: Item, downloads: Path, max_pixels: int = DEFAULT_MAX_PIXELS,
              timeout: float = 10.0) -> tuple[Image.Image | None, str, str]:
    """Read one item into an upright RGB image: (image, status, reason)."""
    if item.kind == MISSING:
        return None, MISSING, item.reason
    if item.kind == "image":
        try:
            return _image_from_array(item.value), OK, ""
        except (TypeError, ValueError) as error:
            return None, UNREADABLE, f"not an image array: {error}"
    path = item.value
    if item.kind == "url":
        path, status, reason = fetch(str(item.value), downloads, timeout)
        if path is None:
            return None, status, reason
    return read_file(Path(path), max_pixels)
