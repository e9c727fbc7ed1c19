"""Synthetic celebrities: the offline demo photo collection.

:func:`generate` writes, deterministically from a seed, a collection of JPEG photos of
made-up celebrities that reproduces the 2017 blog post's situation without the internet:
a skewed number of photos per person (a few with 200-250, most with 50-100), ~10% group
photos with 2-4 faces, web-like photo sizes, and faces drawn well enough for the real
MTCNN detector to find them.

Layout written into ``out_dir``::

    photos/<identity-id>/<n>.jpg   one folder per identity, n = 1..count
    photos.csv                     person, imagenum, path, width, height, rect, n_faces, md5
    identities.csv                 identity, person, photos, lookalike_of, traits (JSON)

Each identity is a fixed set of facial traits (face shape, skin tone, hair colour and
style, eye colour and spacing, brows, nose, mouth, facial hair, glasses); a few identities
are look-alikes of another one.  Each photo varies pose, in-plane rotation, scale,
position, lighting, expression, background, blur and JPEG quality, all drawn from
distributions that do not depend on the identity (so neither the background nor the
image size gives the person away).

Every photo is drawn from its own ``numpy.random.Generator`` seeded with
``(seed, identity index, photo number)``, so photos can be rendered in parallel
processes and the same seed always gives the same bytes.  :func:`plan` returns the list
of photos (who, how many, which size, which are group photos) without rendering anything.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image

from facelab.demo.identities import (
    Identity,
    PhotoPlan,
    check_scale,
    photo_path,
    plan_photos,
)
from facelab.demo.render import render_photo
from facelab.io import atomic_write_bytes
from facelab.manifest import parse_rect

PHOTOS_CSV = "photos.csv"


IDENTITIES_CSV = "identities.csv"


PHOTO_COLUMNS = ("person", "imagenum", "path", "width", "height", "rect", "n_faces", "md5")


# --------------------------------------------------------------------------------------
# Generation
_WORKER: dict[str, Any] = {}


def _init_worker(identities: list[Identity], seed: int, out_dir: str) -> None:
    _WORKER.update(identities=identities, seed=seed, out_dir=out_dir)


def _work(photos: list[PhotoPlan]) -> list[dict[str, Any]]:
    identities = _WORKER["identities"]
    seed = _WORKER["seed"]
    out_dir = Path(_WORKER["out_dir"])
    rows = []
    for photo in photos:
        ident = identities[photo.identity_index]
        data, rect = render_photo(identities, photo, seed)
        rel = photo_path(ident, photo.imagenum)
        atomic_write_bytes(out_dir / rel, data)
        rows.append({"person": ident.person, "imagenum": photo.imagenum, "path": rel,
                     "width": photo.width, "height": photo.height, "rect": rect,
                     "n_faces": photo.n_faces, "md5": hashlib.md5(data).hexdigest(),
                     "_order": (photo.identity_index, photo.imagenum)})
    return rows


def generate(out_dir: str | os.PathLike[str], scale: str = "full", seed: int = 0,
             progress: bool = True, workers: int | None = None) -> pd.DataFrame:
    """Generate the demo photo collection into ``out_dir``.

    Args:
        out_dir: Destination folder (created if needed).  Existing photos are overwritten.
        scale: ``"small"`` (~8 identities, 20-60 photos each, for tests) or ``"full"``
            (52 identities, 50-250 photos each, about 6,000 photos).
        seed: Random seed; the same seed gives byte-identical photos.
        progress: Show a progress bar.
        workers: Processes to render with (default: the number of CPUs, at most 8).

    Returns:
        The ``photos.csv`` table: ``person``, ``imagenum``, ``path`` (relative to
        ``out_dir``), ``width``, ``height``, ``rect``, ``n_faces``, ``md5``.
    """
    from tqdm.auto import tqdm

    check_scale(scale)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    identities, photos = plan_photos(scale, seed)
    chunks = [photos[i:i + 16] for i in range(0, len(photos), 16)]
    if workers is None:
        workers = min(os.cpu_count() or 1, 8)
    rows: list[dict[str, Any]] = []
    bar = tqdm(total=len(photos), desc=f"demo photos ({scale})", unit="photo",
               disable=not progress)
    if workers <= 1 or len(chunks) < 2:
        _init_worker(identities, seed, str(out))
        for chunk in chunks:
            rows.extend(_work(chunk))
            bar.update(len(chunk))
    else:
        import multiprocessing

        # fork is fastest; spawn where fork is unsafe (macOS, or TensorFlow's threads loaded).
        fork_ok = sys.platform.startswith("linux") and "tensorflow" not in sys.modules
        ctx = multiprocessing.get_context("fork" if fork_ok else "spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                 initargs=(identities, seed, str(out))) as pool:
            for chunk_rows in pool.map(_work, chunks):
                rows.extend(chunk_rows)
                bar.update(len(chunk_rows))
    bar.close()
    df = pd.DataFrame(rows).sort_values("_order").drop(columns="_order")
    df = df.reset_index(drop=True)[list(PHOTO_COLUMNS)]
    atomic_write_bytes(out / PHOTOS_CSV, df.to_csv(index=False).encode("utf-8"))
    counts = df.groupby("person").size()
    ident_df = pd.DataFrame([{
        "identity": i.identity, "person": i.person, "photos": int(counts.get(i.person, 0)),
        "lookalike_of": i.lookalike_of, "traits": json.dumps(_traits_summary(i.traits),
                                                             ensure_ascii=False),
    } for i in identities])
    atomic_write_bytes(out / IDENTITIES_CSV, ident_df.to_csv(index=False).encode("utf-8"))
    return df


def _traits_summary(traits: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in traits.items():
        if isinstance(value, float):
            out[key] = round(value, 3)
        elif isinstance(value, list):
            out[key] = [round(float(c), 3) for c in value]
        else:
            out[key] = value
    return out


def read_photos(out_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """Read ``photos.csv`` of a generated collection."""
    path = Path(out_dir) / PHOTOS_CSV
    if not path.exists():
        raise FileNotFoundError(f"no {PHOTOS_CSV} in {out_dir}: run 'facelab demo-data "
                                f"{out_dir}' first")
    return pd.read_csv(path, keep_default_na=False, dtype={"person": str, "rect": str})


def read_identities(out_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """Read ``identities.csv`` of a generated collection."""
    path = Path(out_dir) / IDENTITIES_CSV
    if not path.exists():
        raise FileNotFoundError(f"no {IDENTITIES_CSV} in {out_dir}: run 'facelab demo-data "
                                f"{out_dir}' first")
    return pd.read_csv(path, keep_default_na=False, dtype=str)


def lookalike_people(out_dir: str | os.PathLike[str]) -> list[str]:
    """The people of a generated collection who have a deliberate look-alike (both sides).

    A look-alike differs from its model by a few percent of face geometry, so one of them
    as a stranger is the other's double: :func:`facelab.learn.fit` keeps them known
    (``keep_known``).  An empty list when ``out_dir`` has no ``identities.csv`` (not the
    demo).
    """
    if not (Path(out_dir) / IDENTITIES_CSV).is_file():
        return []
    table = read_identities(out_dir)
    pairs = table[table["lookalike_of"] != ""]
    models = table[table["identity"].isin(pairs["lookalike_of"])]
    return sorted(set(pairs["person"]) | set(models["person"]))


def face_crop(image_path: str | os.PathLike[str], rect: str, size: int = 96,
              margin: float = 0.25) -> Image.Image:
    """Crop the labelled face of a photo (rect widened by ``margin``) to a square image.

    Args:
        image_path: The photo.
        rect: The face's ``"x0,y0,x1,y1"`` (the whole photo when empty or malformed).
        size: Side of the square result in pixels.
        margin: Extra room on each side of the rect, as a share of its longer side.
    """
    with Image.open(image_path) as image:
        image = image.convert("RGB")
        box = parse_rect(rect) or (0, 0, image.width, image.height)
        x0, y0, x1, y1 = box
        side = max(x1 - x0, y1 - y0) * (1 + 2 * margin)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        crop = image.crop((round(cx - side / 2), round(cy - side / 2),
                           round(cx + side / 2), round(cy + side / 2)))
        return crop.resize((size, size), Image.Resampling.LANCZOS)


def identity_faces(out_dir: str | os.PathLike[str], photos: pd.DataFrame | None = None,
                   size: int = 96, margin: float = 0.35) -> list[tuple[str, Image.Image]]:
    """Cut one face per identity: its first single-face photo, cropped square.

    Args:
        out_dir: A generated collection (the photos' paths are relative to it).
        photos: Its photos table or a part of it (default: ``photos.csv``); without an
            ``n_faces`` column any photo counts as single-face.
        size: Side of each square face in pixels.
        margin: Extra room around the labelled rect, as a share of its size.

    Returns:
        ``(person, image)`` pairs in the order of ``photos``.
    """
    photos = photos if photos is not None else read_photos(out_dir)
    single = photos[photos["n_faces"] == 1] if "n_faces" in photos.columns else photos
    first = single.groupby("person", sort=False).head(1)
    return [(str(row.person), face_crop(Path(out_dir) / str(row.path), str(row.rect),
                                        size=size, margin=margin))
            for row in first.itertuples(index=False)]


def portraits(out_dir: str | os.PathLike[str], size: int = 96,
              margin: float = 0.35) -> list[tuple[str, Image.Image]]:
    """Cut one face per identity (its first single-face photo) for a grid of identities.

    Args:
        out_dir: A generated collection.
        size: Side of each square portrait in pixels.
        margin: Extra room around the labelled rect, as a share of its size.

    Returns:
        ``(person, image)`` pairs in the order of ``identities.csv`` (see
        :func:`identity_faces`).
    """
    faces = dict(identity_faces(out_dir, size=size, margin=margin))
    return [(person, faces[person]) for person in read_identities(out_dir)["person"]
            if person in faces]
