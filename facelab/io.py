"""Files that are never half-written: every stage writes through :func:`atomic_write_bytes`."""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes,
                       make_parents: bool = True) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    The temporary file is ``.<name>.<pid>-<thread>.tmp``: unique to the writing thread
    without ``tempfile``'s random names (the collector writes one per photo), and left
    only by a killed process (``.*.tmp`` is what to clean up).

    Args:
        path: Destination file.
        data: The bytes to write.
        make_parents: Create the parent folder if needed (``False`` saves a system call
            per file where the caller made it once).
    """
    folder, name = os.path.split(os.fspath(path))
    if make_parents and folder:
        os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{name}.{os.getpid()}-{threading.get_ident()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(tmp, flags, 0o666)
    except FileExistsError:       # left by a killed process that had the same ids
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder or None)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def user_cache_dir(*parts: str) -> str:
    """Return facelab's cache folder, or its sub-folder ``parts``, created if needed.

    ``$FACELAB_CACHE``, else ``$XDG_CACHE_HOME/facelab``, else ``~/.cache/facelab``.
    Only derived data lives there (converted network weights, face embeddings): deleting
    it costs time, never results.
    """
    base = os.environ.get("FACELAB_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "facelab")
    folder = os.path.join(base, *parts)
    os.makedirs(folder, exist_ok=True)
    return folder
