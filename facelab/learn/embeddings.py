"""Face embeddings of chips, computed once per chip and network, cached on disk.

Training a head on a frozen pretrained network needs each face's embedding, not the face:
:func:`chip_embeddings` runs the network (:mod:`facelab.learn.face_resnet`) over the
chips that the cache lacks, on each chip and its mirror image, and keeps both in an SQLite
file per network in ``user_cache_dir("embeddings")`` (``~/.cache/facelab/embeddings/``
unless ``FACELAB_CACHE`` says otherwise), keyed by the SHA-256 of the chip file's bytes.
A second fit, the calibration folds, another model folder over the same faces: all read
the cache and take seconds.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from facelab.io import user_cache_dir


class ChipError(ValueError):
    """A chip that cannot be embedded (unreadable, or not the network's input size)."""


class EmbeddingCache:
    """Embeddings by chip SHA-256 for one network, in an SQLite file.

    Args:
        network: The network's key (:data:`facelab.learn.face_resnet.NETWORK_KEY`).
        folder: Where the file lives (default ``user_cache_dir("embeddings")``).
    """

    def __init__(self, network: str, folder: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(folder or user_cache_dir("embeddings")) / f"{network}.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS emb (sha TEXT PRIMARY KEY, "
                       "dim INTEGER, data BLOB)")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=60)

    def get(self, shas: Sequence[str]) -> dict[str, np.ndarray]:
        """The cached ``[2, D]`` arrays (chip, mirrored chip) of the shas that have one."""
        found: dict[str, np.ndarray] = {}
        unique = list(dict.fromkeys(shas))
        with self._connect() as db:
            for start in range(0, len(unique), 500):
                part = unique[start:start + 500]
                marks = ",".join("?" * len(part))
                for sha, dim, data in db.execute(
                        f"SELECT sha, dim, data FROM emb WHERE sha IN ({marks})", part):
                    found[sha] = np.frombuffer(data, np.float32).reshape(2, dim)
        return found

    def put(self, items: dict[str, np.ndarray]) -> None:
        """Store ``[2, D]`` arrays by sha (one transaction)."""
        rows = [(sha, int(a.shape[-1]), np.ascontiguousarray(a, np.float32).tobytes())
                for sha, a in items.items()]
        with self._connect() as db:
            db.executemany("INSERT OR REPLACE INTO emb VALUES (?, ?, ?)", rows)


@functools.cache
def _network() -> Any:
    """The pretrained network, loaded once per process."""
    from facelab.learn.face_resnet import load_face_resnet

    return load_face_resnet()


def read_chip(path: str | os.PathLike[str], size: int) -> np.ndarray:
    """A chip file as an RGB uint8 array.

    Raises:
        ChipError: When it cannot be read or is not ``size`` x ``size``.
    """
    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB"))
    except (OSError, ValueError) as error:
        raise ChipError(f"cannot read the chip {path}: {error}") from error
    if array.shape[:2] != (size, size):
        raise ChipError(f"{path} is {array.shape[1]}x{array.shape[0]}, the face network takes "
                        f"{size}x{size} chips: cut faces with `facelab faces` (crop style "
                        "'chip', the default)")
    return array


def embed_arrays(chips: np.ndarray, batch_size: int = 64, network: Any = None
                 ) -> np.ndarray:
    """Embeddings ``[N, 2, D]`` of chip arrays ``[N, S, S, 3]`` and of their mirror images."""
    net = network if network is not None else _network()
    out = []
    for start in range(0, len(chips), batch_size):
        x = np.asarray(chips[start:start + batch_size], np.float32)
        both = np.asarray(net(np.concatenate([x, x[:, :, ::-1]]), training=False))
        out.append(np.stack([both[:len(x)], both[len(x):]], axis=1))
    dim = int(net.output_shape[-1])
    return np.concatenate(out) if out else np.zeros((0, 2, dim), np.float32)


def chip_embeddings(paths: Sequence[str | os.PathLike[str]], *, batch_size: int = 64,
                    cache: bool = True, progress: bool = False,
                    network: Any = None) -> np.ndarray:
    """The embeddings of chip files and of their mirror images, from the cache when there.

    Args:
        paths: Chip files (150 x 150 RGB, as ``facelab faces`` cuts them).
        batch_size: Chips per network call.
        cache: Read and fill the on-disk cache (``False``: compute everything).
        progress: Show a progress bar while computing.
        network: A ready network (default: dlib's, loaded once per process).

    Returns:
        ``[N, 2, 128]`` float32: each chip's embedding and its mirror image's.

    Raises:
        ChipError: For a chip that cannot be read or has the wrong size (names it).
    """
    from tqdm.auto import tqdm

    from facelab.learn.face_resnet import CHIP_SIZE, EMBEDDING_SIZE, NETWORK_KEY

    shas = [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths]
    store = EmbeddingCache(NETWORK_KEY) if cache and network is None else None
    found = store.get(shas) if store else {}
    todo = [i for i, sha in enumerate(shas) if sha not in found]
    todo = list({shas[i]: i for i in todo}.values())          # each distinct chip once
    bar = tqdm(total=len(todo), desc="embeddings", unit="face",
               disable=not progress or not todo)
    for start in range(0, len(todo), 512):
        part = todo[start:start + 512]
        arrays = np.stack([read_chip(paths[i], CHIP_SIZE) for i in part])
        new = dict(zip((shas[i] for i in part), embed_arrays(arrays, batch_size, network),
                       strict=True))
        found.update(new)
        if store:
            store.put(new)
        bar.update(len(part))
    bar.close()
    if not shas:
        return np.zeros((0, 2, EMBEDDING_SIZE), np.float32)
    return np.stack([found[sha] for sha in shas]).astype(np.float32)
