"""One writer per stage folder: an OS file lock held for the length of a write.

Every function that writes a stage folder (``collect``, ``merge``, ``filter_faces``,
``split_stage``, ``fit``, ``facelab predict --out``, ``export_model``, the notebook runner)
holds an exclusive ``flock`` on ``FOLDER/.facelab-lock`` while it writes
(:func:`lock_folder`, :func:`writes_folder`).  A second writer is refused at once with a
:class:`FolderBusyError` that names the folder and the holder (pid, host, command, since
when: the holder writes them into the lock file once it has the lock).

The lock belongs to the open file, not to the file's existence: the OS drops it when the
process ends in any way (SIGKILL, a kernel restart, a power cut), so a killed run leaves
nothing that blocks the next one.  The file is removed on release; a file left by a killed
run means nothing.

Readers take no lock: :func:`check_complete` says whether another run is writing a folder
(and raises, or waits with ``wait=True``), so nobody takes half a manifest for the whole.

Within one process the lock is re-entrant for the thread that holds it (a process-local
registry: ``flock`` locks belong to open file descriptions, so a second ``open`` in the same
process would refuse itself): a stage that calls another stage on the same folder goes on;
another thread of the same process is refused like another process.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import inspect
import json
import os
import shlex
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

try:
    import fcntl
except ImportError:      # Windows: msvcrt's byte-range lock instead (no shared mode)
    fcntl = None  # type: ignore[assignment]
    import msvcrt

LOCK_NAME = ".facelab-lock"
RETRY_S = 0.5      # a refused writer tries again this long: a reader's probe holds it for µs
POLL_S = 0.25      # how often a waiting reader looks again
_WIN_OFFSET = 1 << 30   # Windows locks this byte (the holder's text at 0 stays readable)
F = TypeVar("F", bound=Callable[..., Any])


class FolderBusyError(Exception):
    """Another run is writing the folder (the message names it and says what to do).

    Attributes:
        folder: The folder.
        holder: What the holder wrote into the lock file (``pid``, ``host``, ``command``,
            ``what``, ``since``), or ``None`` when it could not be read.
    """

    def __init__(self, message: str, folder: Path, holder: dict[str, Any] | None) -> None:
        super().__init__(message)
        self.folder = folder
        self.holder = holder


@dataclass
class _Held:
    """A lock this process holds: its file descriptor, owner thread and nesting depth."""

    fd: int
    folder: Path
    thread: int
    pid: int
    info: dict[str, Any]
    created: Path | None      # topmost folder the lock created (removed if left empty)
    count: int = 1


_HELD: dict[str, _Held] = {}
_GUARD = threading.Lock()


def _forget_after_fork() -> None:
    """In a forked child: hold nothing (the parent's locks stay the parent's).

    The child's copies of the lock files are closed, so a child that outlives its parent
    keeps no folder locked.
    """
    global _GUARD
    _GUARD = threading.Lock()
    for held in _HELD.values():
        with contextlib.suppress(OSError):
            os.close(held.fd)
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


# --------------------------------------------------------------------------- OS layer
def _try_lock(fd: int, shared: bool = False) -> bool:
    """Take the lock without waiting; ``False`` when another open file holds it."""
    if fcntl is None:
        os.lseek(fd, _WIN_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as error:   # a file system without locks: write, unprotected, and say so
        if error.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise
        warnings.warn(f"cannot lock files here ({error}): nothing stops a second run from "
                      "writing the same folder", RuntimeWarning, stacklevel=3)
    return True


def _unlock(fd: int) -> None:
    if fcntl is None:
        os.lseek(fd, _WIN_OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``fd`` is still the file at ``path`` (a releasing writer removes it)."""
    try:
        now = os.stat(path)
    except OSError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (now.st_dev, now.st_ino)


def _read_holder(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as handle:
            info = json.loads(handle.read(4096))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _command() -> str:
    """The command line of the running process, as a user would recognise it."""
    argv = list(sys.argv) or ["python"]
    if "ipykernel" in argv[0]:
        return "a Jupyter kernel (a notebook)"
    if Path(argv[0]).name == "facelab" or argv[0].endswith(os.path.join("facelab",
                                                                          "__main__.py")):
        argv[0] = "facelab"
    text = shlex.join(argv)
    return text if len(text) <= 300 else text[:297] + "..."


# --------------------------------------------------------------------------- messages
def describe(holder: dict[str, Any] | None) -> str:
    """One line about a holder: pid, host, its command, what it runs and since when."""
    if not holder or holder.get("pid") is None:
        return (f"a process that has not written who it is yet (the lock on {LOCK_NAME} "
                "is held)")
    text = f"pid {holder['pid']} on {holder.get('host', '?')}"
    if holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
        text += " (this process, another thread)"
    text += f", {holder.get('command', '?')}"
    if holder.get("what"):
        text += f", running {holder['what']}"
    since = holder.get("since")
    if isinstance(since, (int, float)):
        minutes = max(0.0, time.time() - since) / 60
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since))
        text += f" since {stamp}" + (f" ({minutes:.0f} min ago)" if minutes >= 1 else "")
    return text


def _busy_message(folder: Path, holder: dict[str, Any] | None) -> str:
    stop = ""
    if (holder and holder.get("pid") not in (None, os.getpid())
            and holder.get("host") == socket.gethostname()):
        stop = f" (or stop it: kill {holder['pid']})"
    return (f"{folder} is in use: another run is writing it ({describe(holder)}). Two runs "
            f"in one folder would mix their files. Wait for that run to finish{stop} and "
            "run this again (it continues from what is finished), or write to another "
            "folder.")


# --------------------------------------------------------------------------- the lock
class FolderLock:
    """A held lock on one folder; :meth:`release` (or the end of a ``with``) lets go.

    Attributes:
        folder: The folder (absolute).
    """

    def __init__(self, folder: Path, key: str) -> None:
        self.folder = folder
        self._key = key
        self._released = False

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        """Let go (the outermost release of a re-entrant lock unlocks and removes the file)."""
        if self._released:
            return
        self._released = True
        with _GUARD:
            held = _HELD.get(self._key)
            if held is None or held.pid != os.getpid():
                return
            held.count -= 1
            if held.count:
                return
            del _HELD[self._key]
        try:      # removed while still locked: a waiting writer then opens the new file
            with contextlib.suppress(OSError):
                os.unlink(held.folder / LOCK_NAME)
            if held.created is not None:
                _remove_empty(held.folder, held.created)
        finally:
            with contextlib.suppress(OSError):
                _unlock(held.fd)
            os.close(held.fd)


def _remove_empty(folder: Path, top: Path) -> None:
    """Remove ``folder`` and its parents up to ``top`` while they are empty."""
    current = folder
    while True:
        try:
            os.rmdir(current)
        except OSError:
            return
        if current == top or current.parent == current:
            return
        current = current.parent


def _first_missing(folder: Path) -> Path | None:
    """The topmost missing folder on the way to ``folder`` (``None``: it exists)."""
    missing = None
    current = folder
    while not current.exists() and current.parent != current:
        missing = current
        current = current.parent
    return missing


def _acquire(folder: Path, what: str) -> tuple[int, dict[str, Any]]:
    """Open and lock ``folder/LOCK_NAME`` (creating the folder); write who holds it."""
    path = folder / LOCK_NAME
    deadline = time.monotonic() + RETRY_S
    while True:
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"{folder} exists and is not a folder: choose a folder to write")
        folder.mkdir(parents=True, exist_ok=True)   # again: a releasing writer removes it
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        except FileNotFoundError:
            continue
        if _try_lock(fd):
            if _same_file(fd, path):
                break
            _unlock(fd)
            os.close(fd)
            continue
        os.close(fd)
        if time.monotonic() >= deadline:
            holder = _read_holder(path)
            raise FolderBusyError(_busy_message(folder, holder), folder, holder)
        time.sleep(0.02)
    info = {"pid": os.getpid(), "host": socket.gethostname(), "command": _command(),
            "what": what, "since": round(time.time(), 3)}
    try:
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, (json.dumps(info) + "\n").encode("utf-8"))
    except BaseException:     # e.g. a full disk: hold nothing
        _unlock(fd)
        os.close(fd)
        raise
    return fd, info


def lock_folder(folder: str | os.PathLike[str], what: str = "") -> FolderLock:
    """Take the write lock on a stage folder now (creating the folder); release it after.

    Use it as ``with lock_folder(out, "collect"): ...``, or keep the returned lock and
    call :meth:`FolderLock.release` in a ``finally``.  A folder the lock created and that is
    still empty at release (a run that failed before writing anything) is removed.

    Args:
        folder: The folder to write.
        what: What writes it (e.g. ``collect``), shown to a refused writer.

    Returns:
        The held lock.

    Raises:
        FolderBusyError: When another process (or another thread of this one) writes it.
        ValueError: When ``folder`` exists and is not a folder.
    """
    folder = Path(folder).resolve()
    key = str(folder)
    me = threading.get_ident()
    with _GUARD:
        held = _HELD.get(key)
        if held is not None and held.pid == os.getpid():
            if held.thread != me:
                raise FolderBusyError(_busy_message(folder, held.info), folder, held.info)
            held.count += 1
            return FolderLock(folder, key)
    created = _first_missing(folder)
    fd, info = _acquire(folder, what)    # another thread racing here is refused by the OS
    with _GUARD:
        _HELD[key] = _Held(fd, folder, me, os.getpid(), info, created)
    return FolderLock(folder, key)


def writes_folder(folder: str | Callable[[Mapping[str, Any]], Any], what: str = ""
                  ) -> Callable[[F], F]:
    """Decorate a function that writes a folder: it runs holding :func:`lock_folder`.

    Args:
        folder: The name of the argument that is the folder, or a function of the bound
            arguments (defaults applied) that returns it; ``None`` locks nothing.
        what: What writes it (default: the function's name).

    Returns:
        The decorator.
    """
    def decorate(function: F) -> F:
        signature = inspect.signature(function)

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            target = folder(bound.arguments) if callable(folder) else bound.arguments[folder]
            if target is None:
                return function(*args, **kwargs)
            with lock_folder(target, what or function.__name__):
                return function(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


# --------------------------------------------------------------------------- readers
def writer_of(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """Who is writing ``folder`` now, other than the calling thread (``None``: nobody).

    Takes no lock that a writer could trip over for longer than a system call, and
    creates nothing.

    Returns:
        The holder's details (see :class:`FolderBusyError`), ``{"pid": None}`` when it has
        not written them yet, or ``None``.
    """
    folder = Path(folder).resolve()
    with _GUARD:
        held = _HELD.get(str(folder))
    if held is not None and held.pid == os.getpid():
        return None if held.thread == threading.get_ident() else held.info
    path = folder / LOCK_NAME
    for _ in range(3):
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError:          # no lock file: nobody writes (or it cannot be read)
            return None
        try:
            if _try_lock(fd, shared=True):
                _unlock(fd)
                return None
            if _same_file(fd, path):
                return _read_holder(path) or {"pid": None}
        finally:
            os.close(fd)
    return None


def check_complete(folder: str | os.PathLike[str], *, wait: bool = False,
                   how_to_wait: str | None = "wait=True") -> None:
    """Make sure no other run is writing ``folder`` before reading it (or wait for it).

    Args:
        folder: A stage folder about to be read.
        wait: Wait until the writer is done instead of raising (a line on stderr says so).
        how_to_wait: How the caller asks for waiting, named in the message (``None``:
            the caller cannot wait).

    Raises:
        FolderBusyError: When another run is writing it and ``wait`` is False: what is
            there is incomplete.
    """
    holder = writer_of(folder)
    if holder is None:
        return
    folder = Path(folder).resolve()
    if not wait:
        raise FolderBusyError(
            f"{folder} is still being written ({describe(holder)}): what it holds now is "
            "incomplete. Wait for that run to finish and run this again"
            + (f", or pass {how_to_wait} to wait for it." if how_to_wait else "."),
            folder, holder)
    print(f"waiting for the run writing {folder} to finish ({describe(holder)})",
          file=sys.stderr, flush=True)
    while writer_of(folder) is not None:
        time.sleep(POLL_S)
