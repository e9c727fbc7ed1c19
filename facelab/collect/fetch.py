"""Collection, one photo at a time: download or read it, check it by decoding, hash it, store it.

:mod:`facelab.collect` runs the stage; this module is the per-photo work it hands to its
threads, and the worker processes it starts for large lists (:func:`start_worker`).  It
imports only the standard library at import time, so a worker process starts in a fraction
of a second (no pandas, no SciPy, no TensorFlow).

Every photo ends as one :class:`Outcome` (one line of the collection journal) with a
status of :data:`PHOTO_STATUSES`; nothing the web or a file does raises.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facelab.io import atomic_write_bytes
from facelab.manifest import OK

HTTP_ERROR = "http_error"
TIMEOUT = "timeout"
CONNECTION_ERROR = "connection_error"
TOO_MANY_REDIRECTS = "too_many_redirects"
NOT_IMAGE = "not_image"
CORRUPT = "corrupt"
TOO_LARGE = "too_large"
UNSUPPORTED_URL = "unsupported_url"
# what one URL or file can end as (placeholders, duplicates and md5 are decided later,
# across photos, by facelab.collect)
PHOTO_STATUSES = (OK, HTTP_ERROR, TIMEOUT, CONNECTION_ERROR, TOO_MANY_REDIRECTS, NOT_IMAGE,
                  CORRUPT, TOO_LARGE, UNSUPPORTED_URL)

FORMAT_EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "BMP": ".bmp",
                     "WEBP": ".webp", "TIFF": ".tif", "MPO": ".jpg"}
RETRY_STATUSES = (429, 500, 502, 503, 504)
# "come back later" answers: not retried inside a worker thread (that would hold the thread
# for the whole wait) but handed back to the host scheduler, which pauses the host
# (:mod:`facelab.collect.hosts`)
RETRY_LATER_STATUSES = (429, 503)
_IN_THREAD_RETRY = tuple(s for s in RETRY_STATUSES if s not in RETRY_LATER_STATUSES)
CHUNK = 64 * 1024
ERROR_BODY_KEPT = 64 * 1024   # error answers up to this long are read to keep the connection
USER_AGENT = "facelab-collect/0.1 (+research; PubFig-format list downloader)"
HASH_SIDE = 64  # images are box-reduced to HASH_SIDE x HASH_SIDE before hashing (speed)


@dataclass(frozen=True)
class CollectSettings:
    """Settings of one collection run (see :func:`facelab.collect.collect`)."""

    workers: int = 16
    timeout: float = 10.0
    connect_timeout: float = 5.0
    deadline: float | None = None
    retries: int = 2
    backoff: float = 0.5
    max_bytes: int = 20_000_000
    max_pixels: int = 50_000_000
    max_redirects: int = 10
    md5: str = "flag"
    placeholder_people: int = 3
    placeholder_distance: int = 4
    near_threshold: int = 8
    user_agent: str = USER_AGENT
    per_host: int = 2
    breaker: int = 3
    max_retry_after: float = 60.0
    probe: bool = True

    @property
    def cap_can_bind(self) -> bool:
        """Whether the per-host cap can hold a host back while workers are free."""
        return 0 < self.per_host < self.workers

    @property
    def total_deadline(self) -> float:
        """Seconds one URL may take in all (default: three read timeouts)."""
        return self.deadline if self.deadline is not None else 3 * self.timeout

    def check(self) -> None:
        """Raise ``ValueError`` for settings that cannot work."""
        if self.workers < 1:
            raise ValueError(f"--workers must be at least 1 (got {self.workers})")
        for name in ("timeout", "connect_timeout", "total_deadline"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive (got {getattr(self, name)})")
        if self.retries < 0:
            raise ValueError(f"--retries must be 0 or more (got {self.retries})")
        if self.max_bytes < 1 or self.max_pixels < 1:
            raise ValueError("--max-bytes and max_pixels must be positive")
        if self.md5 not in ("flag", "reject"):
            raise ValueError(f"--md5 must be 'flag' or 'reject' (got {self.md5!r})")
        if self.per_host < 0 or self.breaker < 0:
            raise ValueError(f"--per-host and --breaker must be 0 (off) or more (got "
                             f"{self.per_host} and {self.breaker})")
        if self.max_retry_after < 0:
            raise ValueError(f"--max-retry-after must be 0 or more (got {self.max_retry_after})")


@dataclass
class Outcome:
    """What happened to one URL or file: one line of the journal."""

    key: str
    status: str
    reason: str = ""
    sha256: str = ""
    ext: str = ""
    width: int | None = None
    height: int | None = None
    bytes: int | None = None
    md5: str = ""
    phash: str = ""
    dhash: str = ""
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- hashing

_DCT: Any = None


def _dct_matrix():
    """The first 8 rows of SciPy's unnormalised 32-point DCT-II (``dct(x)[:8] == M @ x``)."""
    global _DCT
    if _DCT is None:
        import numpy as np

        n = np.arange(32)
        _DCT = 2.0 * np.cos(np.pi * np.outer(n[:8], 2 * n + 1) / 64)
    return _DCT


def image_hashes(image) -> tuple[str, str]:
    """ImageHash's ``phash`` and ``dhash`` of a decoded PIL image, as 16 hex digits each.

    The image is first box-resized to 64x64 grey (fast, deterministic, and the same for
    a photo and its resized copies), so hashing costs far less than decoding.  The bits
    are exactly ``imagehash.phash`` / ``imagehash.dhash`` of that 64x64 image (the DCT is
    two small matrix products here, only for the 8x8 low frequencies the hash keeps,
    without importing SciPy).  Two independent hashes make near-duplicate detection far
    safer than one: a near copy must be close in both.

    Args:
        image: A loaded ``PIL.Image.Image``.

    Returns:
        ``(phash, dhash)`` as lower-case hex strings.
    """
    import numpy as np
    from PIL import Image

    box, lanczos = Image.Resampling.BOX, Image.Resampling.LANCZOS
    if image.mode in ("RGB", "L"):   # shrink first: cheaper than converting every pixel
        gray = image.resize((HASH_SIDE, HASH_SIDE), box).convert("L")
    else:                            # palette, alpha, CMYK, 16-bit...: convert first
        gray = image.convert("L").resize((HASH_SIDE, HASH_SIDE), box)
    dct = _dct_matrix()
    # frombuffer(tobytes()) rather than asarray(image): the same bytes, without the slower
    # array-interface path
    pixels = np.frombuffer(gray.resize((32, 32), lanczos).tobytes(), np.uint8)
    low = dct @ pixels.reshape(32, 32).astype(np.float64) @ dct.T
    # the median of 64 values, as np.median computes it, without its overhead
    middle = np.sort(low, axis=None)[31:33]
    median = (middle[0] + middle[1]) / 2
    steps = np.frombuffer(gray.resize((9, 8), lanczos).tobytes(), np.uint8).reshape(8, 9)
    return (np.packbits(low > median).tobytes().hex(),
            np.packbits(steps[:, 1:] > steps[:, :-1]).tobytes().hex())


# --------------------------------------------------------------------------- decoding

def _preview(data: bytes) -> str:
    head = data[:40].decode("ascii", errors="replace")
    return "".join(c if c.isprintable() else "." for c in head)


def _decode(image) -> None:
    """Decode the whole image (truncated or corrupt data raises here).

    An RGB JPEG is decoded to its luma plane at full resolution: libjpeg still reads and
    entropy-decodes every block of every component (truncation and corrupt data fail just
    as in a colour decode), but skips the chroma upsampling and colour conversion that
    neither the check nor the hashes need (about a third of the decode's CPU).
    """
    if image.format == "JPEG" and image.mode == "RGB":
        image.draft("L", image.size)
    image.load()


def inspect_image(data: bytes, max_pixels: int = 50_000_000) -> tuple[str, str, dict[str, Any]]:
    """Decode bytes with Pillow and say whether they are a usable photo.

    Magic bytes are not trusted: the whole image is decoded (RGB JPEGs to their luma plane,
    see :func:`_decode`; formats whose Pillow plugin checks more in ``verify``, such as PNG's
    chunk CRCs, are verified first).

    Args:
        data: The file's bytes.
        max_pixels: Larger images are refused as decompression bombs (before decoding).

    Returns:
        ``(status, reason, info)``: status ``ok``, ``not_image``, ``corrupt`` or
        ``too_large``; ``info`` has ``format``, ``ext``, ``width``, ``height``, ``phash``
        and ``dhash`` for ``ok``.
    """
    from PIL import Image, ImageFile, UnidentifiedImageError

    # ``verify`` methods that check nothing a decode does not (Pillow's defaults); a plugin
    # with its own (PNG: chunk CRCs) is verified before the decode
    plain_verify = (Image.Image.verify, ImageFile.ImageFile.verify)
    if not data:
        return NOT_IMAGE, "empty response body", {}
    fmt = ""
    try:
        with Image.open(io.BytesIO(data)) as image:
            fmt = image.format or ""
            width, height = image.size
            if width * height > max_pixels:
                return TOO_LARGE, (f"decompression bomb refused: {width}x{height} = "
                                   f"{width * height:,} pixels > {max_pixels:,}"), {}
            if fmt not in FORMAT_EXTENSIONS:
                return NOT_IMAGE, f"{fmt} is not a photo format facelab keeps", {}
            if type(image).verify not in plain_verify:
                # the format checks more than a decode does (PNG: chunk CRCs); verify()
                # leaves the image unusable, so decode from a fresh open below
                image.verify()
                stage = "decode"
            else:
                stage = "loaded"
                _decode(image)
                phash, dhash = image_hashes(image)
    except Image.DecompressionBombError as error:
        return TOO_LARGE, f"decompression bomb refused: {error}", {}
    except UnidentifiedImageError:
        return NOT_IMAGE, f"not an image Pillow can decode (starts with {_preview(data)!r})", {}
    except Exception as error:  # noqa: BLE001 - any decoder failure is data
        return CORRUPT, f"cannot decode the {fmt or 'image'} data: {error}", {}
    if stage == "decode":
        try:
            with Image.open(io.BytesIO(data)) as image:
                _decode(image)
                phash, dhash = image_hashes(image)
        except Image.DecompressionBombError as error:
            return TOO_LARGE, f"decompression bomb refused: {error}", {}
        except Exception as error:  # noqa: BLE001 - truncated / broken data
            return CORRUPT, f"cannot decode the {fmt} data: {error}", {}
    return OK, "", {"format": fmt, "ext": FORMAT_EXTENSIONS[fmt], "width": width,
                    "height": height, "phash": phash, "dhash": dhash}


def store(data: bytes, images_dir: Path, key: str, max_pixels: int,
          started: float) -> Outcome:
    """Decode ``data`` and store it content-addressed in ``images_dir`` (which must exist).

    Returns:
        The outcome (one journal line).
    """
    status, reason, info = inspect_image(data, max_pixels)
    outcome = Outcome(key, status, reason, bytes=len(data),
                      md5=hashlib.md5(data, usedforsecurity=False).hexdigest())
    if status == OK:
        sha = hashlib.sha256(data).hexdigest()
        target = os.path.join(images_dir, f"{sha}{info['ext']}")   # not pathlib: per photo
        if not os.path.exists(target):
            atomic_write_bytes(target, data, make_parents=False)
        outcome.sha256, outcome.ext = sha, info["ext"]
        outcome.phash, outcome.dhash = info["phash"], info["dhash"]
        outcome.width, outcome.height = info["width"], info["height"]
    outcome.seconds = round(time.monotonic() - started, 4)
    return outcome


# --------------------------------------------------------------------------- downloading

_local = threading.local()


def _deadline_retry_class():
    from urllib3.util.retry import Retry

    class DeadlineRetry(Retry):
        """urllib3 Retry that also stops at the calling thread's per-URL deadline."""

        def _remaining(self) -> float:
            deadline = getattr(_local, "deadline", None)
            return float("inf") if deadline is None else deadline - time.monotonic()

        def is_exhausted(self) -> bool:
            return self._remaining() <= 0 or super().is_exhausted()

        def get_backoff_time(self) -> float:
            return max(0.0, min(super().get_backoff_time(), self._remaining()))

        def get_retry_after(self, response) -> float | None:
            after = super().get_retry_after(response)
            if after is None:
                return None
            return max(0.0, min(after, self.backoff_max, self._remaining()))

    return DeadlineRetry


def _make_adapter(settings: CollectSettings, connections: int | None = None):
    """The HTTP adapter (connection pools, urllib3 ``Retry``) of a process's sessions.

    One adapter is shared by every thread of a run in a process (urllib3's pools are
    thread-safe), so a host's kept-alive connection serves whichever thread gets its next
    URL: on a web of slow hosts that saves a connection's round trip on most URLs.  It keeps
    pools for ``2 x workers`` hosts, each up to the per-host cap of connections, and holds
    at most ``connections`` (default ``workers``) open at once, idle ones included
    (:mod:`facelab.collect.connections`).
    """
    from facelab.collect.connections import ConnectionBudget, budget_adapter

    retry = _deadline_retry_class()(
        total=settings.retries, connect=settings.retries, read=settings.retries,
        status=settings.retries, other=0, redirect=None,
        backoff_factor=settings.backoff, backoff_max=max(settings.backoff * 8, 1.0),
        status_forcelist=_IN_THREAD_RETRY, allowed_methods=frozenset({"GET", "HEAD"}),
        raise_on_status=False, respect_retry_after_header=False)
    per_host = min(settings.per_host or settings.workers, settings.workers)
    budget = ConnectionBudget(connections or settings.workers)
    return budget_adapter(budget, max_retries=retry,
                          pool_connections=max(8, 2 * settings.workers), pool_maxsize=per_host)


def make_session(settings: CollectSettings, adapter: Any = None,
                 connections: int | None = None):
    """Make a ``requests.Session`` with urllib3 ``Retry`` (backoff on 5xx, connection errors).

    429 and 503 are not retried here: they come back to the host scheduler, which honours
    their ``Retry-After`` without holding a thread (:mod:`facelab.collect.hosts`).

    Args:
        settings: Retries, backoff, redirect limit and user agent.
        adapter: The ``HTTPAdapter`` to mount (shared by the threads of a run; default: a
            new one).
        connections: A new adapter's connection budget (default ``settings.workers``).

    Returns:
        The session (one per worker thread; its adapter may be shared).
    """
    import requests

    adapter = adapter if adapter is not None else _make_adapter(settings, connections)
    session = requests.Session()
    # proxies from the environment are read once here, not per request (trust_env costs
    # a netrc lookup and proxy-bypass checks on every call)
    session.proxies.update(urllib.request.getproxies())
    session.trust_env = False
    session.max_redirects = settings.max_redirects
    session.headers["User-Agent"] = settings.user_agent
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


_registry_lock = threading.Lock()


def _thread_session(settings: CollectSettings, registry: list):
    """The calling thread's session of the run whose sessions are ``registry`` (made once).

    Every session of one registry mounts the first one's adapter: one set of connection
    pools per run and process.
    """
    session = getattr(_local, "session", None)
    if session is None or getattr(_local, "settings", None) is not settings:
        with _registry_lock:
            shared = registry[0].get_adapter("http://") if registry else None
            session = make_session(settings, shared)
            registry.append(session)
        _local.session, _local.settings = session, settings
    return session


def _wraps(error: BaseException, types: tuple[type, ...],
           prune: tuple[type, ...] = ()) -> bool:
    """Whether an exception, or anything it wraps, is one of ``types``.

    Walks ``args``, ``reason``, ``__cause__`` and ``__context__``; an exception of a
    ``prune`` type is not matched and not looked into.
    """
    seen: set[int] = set()
    stack: list[Any] = [error]
    while stack:
        item = stack.pop()
        if not isinstance(item, BaseException) or id(item) in seen or isinstance(item, prune):
            continue
        seen.add(id(item))
        if isinstance(item, types):
            return True
        stack.extend(item.args)
        stack.extend([getattr(item, "reason", None), item.__cause__, item.__context__])
    return False


def _incomplete_read_types() -> tuple[type, ...]:
    import http.client

    from urllib3.exceptions import IncompleteRead

    return (http.client.IncompleteRead, IncompleteRead)


def _is_timeout(error: BaseException) -> bool:
    """Whether an exception (or anything it wraps) is a timeout."""
    import socket

    from urllib3.exceptions import (
        ConnectTimeoutError,
        NewConnectionError,
        ReadTimeoutError,
        TimeoutError,
    )

    # NewConnectionError subclasses ConnectTimeoutError but is a refused connection
    return _wraps(error, (ConnectTimeoutError, ReadTimeoutError, TimeoutError, socket.timeout),
                  prune=(NewConnectionError,))


_FAILURE_TEXT = {"dns": "host name not resolved", "refused": "connection refused",
                 "connect_timeout": "connect timed out", "read_timeout": "no answer",
                 "connection": "connection failed"}


def _failure_reason(kind: str, error: BaseException) -> str:
    """A short reason for a failure before any answer: what happened, then the error's end."""
    text = str(error)
    tail = text if len(text) <= 160 else "..." + text[-157:]
    return f"{_FAILURE_TEXT[kind]} ({type(error).__name__}: {tail})"


def _host_failure(error: BaseException) -> str:
    """What kind of host-level failure an error before any answer is (see ``hosts``).

    Returns ``dns``, ``refused``, ``connect_timeout``, ``read_timeout`` (connected, no
    answer) or ``connection`` (reset, closed, malformed answer).
    """
    from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError

    if _wraps(error, (NameResolutionError, socket.gaierror)):
        return "dns"
    if _wraps(error, (ConnectionRefusedError,)):
        return "refused"
    if _wraps(error, (ConnectTimeoutError,), prune=(NewConnectionError,)):
        return "connect_timeout"
    if _is_timeout(error):
        return "read_timeout"
    return "connection"


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (``None``: absent or unreadable).

    Args:
        value: The header: delay-seconds or an HTTP date.
        now: The current Unix time (default: ``time.time()``).
    """
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    import email.utils

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class _Done(Exception):
    """Carries a finished :class:`Outcome` out of a step of :func:`fetch_url`."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.status)
        self.outcome = outcome


def _ender(key: str, started: float):
    def done(status: str, reason: str, **extra: Any) -> _Done:
        return _Done(Outcome(key, status, reason, seconds=round(time.monotonic() - started, 4),
                             extra=extra))
    return done


def _send(url: str, settings: CollectSettings, session, read_timeout: float, done):
    """Send the GET (retries, redirects); return the streaming response or raise ``_Done``."""
    import requests

    try:
        # prepared directly and sent: Session.request's per-call merging of settings costs
        # more CPU than decoding a photo (the session's headers, cookies and redirect
        # handling still apply)
        prepared = requests.PreparedRequest()
        prepared.prepare(method="GET", url=url, headers=session.headers,
                         cookies=session.cookies, hooks=session.hooks)
        return session.send(prepared, stream=True, allow_redirects=True,
                            timeout=(settings.connect_timeout, read_timeout))
    except requests.exceptions.TooManyRedirects as error:
        raise done(TOO_MANY_REDIRECTS, f"more than {settings.max_redirects} redirects "
                   f"({error})") from None
    except (requests.exceptions.InvalidSchema, requests.exceptions.MissingSchema,
            requests.exceptions.InvalidURL) as error:
        raise done(UNSUPPORTED_URL, f"cannot fetch this URL: {error}") from None
    except requests.exceptions.RequestException as error:
        kind = _host_failure(error)
        if _is_timeout(error):
            raise done(TIMEOUT, f"no answer within the timeouts (connect "
                       f"{settings.connect_timeout:g} s, read {read_timeout:g} s, "
                       f"{settings.retries} retries): {type(error).__name__}",
                       host_failure=kind) from None
        raise done(CONNECTION_ERROR, _failure_reason(kind, error), host_failure=kind) from None
    except Exception as error:  # noqa: BLE001 - never kill a long run
        raise done(CONNECTION_ERROR, f"unexpected {type(error).__name__}: {error}"[:300],
                   host_failure="connection") from None


def _keep_alive(response, announced: str) -> None:
    """Read a short error answer's body (announced, up to 64 KB), so its connection stays open.

    A response closed unread closes its connection: the host's next URL would pay a new
    connection's round trip, and under the connection budget another slot.
    """
    if not announced.isdigit() or int(announced) > ERROR_BODY_KEPT:
        return
    with contextlib.suppress(Exception):
        while (response.raw.read1(CHUNK, decode_content=False)
               and time.monotonic() < _local.deadline):
            pass


def _check_answer(response, settings: CollectSettings, done) -> str:
    """Raise ``_Done`` for an HTTP error or an announced oversize; return the announced length."""
    code = response.status_code
    announced = response.headers.get("Content-Length", "")
    if code >= 300:
        extra: dict[str, Any] = {"http_status": code}
        if code in RETRY_LATER_STATUSES:
            extra["retry_after"] = retry_after_seconds(response.headers.get("Retry-After"))
        _keep_alive(response, announced)
        raise done(HTTP_ERROR, f"HTTP {code} {response.reason or ''}".strip(), **extra)
    if announced.isdigit() and int(announced) > settings.max_bytes:
        raise done(TOO_LARGE, f"server announced {int(announced):,} bytes > "
                   f"--max-bytes {settings.max_bytes:,} (not downloaded)")
    return announced


def _read_body(response, settings: CollectSettings, announced: str, read_timeout: float,
               done) -> bytes:
    """Stream the body under the byte cap and the deadline; raise ``_Done`` on failure."""
    body = bytearray()
    try:
        # read1: whatever has arrived (never blocks for a full chunk), so a trickling
        # server cannot outlive the deadline
        while chunk := response.raw.read1(CHUNK, decode_content=True):
            body += chunk
            if len(body) > settings.max_bytes:
                raise done(TOO_LARGE, f"more than --max-bytes {settings.max_bytes:,} "
                           "bytes (download stopped)")
            if time.monotonic() > _local.deadline:
                raise done(TIMEOUT, f"not complete within the "
                           f"{settings.total_deadline:g} s deadline ({len(body):,} "
                           "bytes so far)")
    except _Done:
        raise
    except Exception as error:  # noqa: BLE001 - urllib3/socket errors mid-body are data
        if _is_timeout(error):
            raise done(TIMEOUT, f"read timeout ({read_timeout:g} s) after "
                       f"{len(body):,} bytes") from None
        if _wraps(error, _incomplete_read_types()):
            raise done(CORRUPT, f"truncated: the server closed the connection after "
                       f"{len(body):,} of the {announced or '?'} bytes it announced") from None
        raise done(CONNECTION_ERROR, f"connection broken after {len(body):,} bytes: "
                   f"{type(error).__name__}: {error}"[:300]) from None
    return bytes(body)


def fetch_url(url: str, settings: CollectSettings, images_dir: Path,
              session=None, key: str | None = None,
              on_body: Callable[[str], None] | None = None) -> Outcome:
    """Download one URL, decode it and store it content-addressed.

    Never raises for anything the web does: every failure is an :class:`Outcome` with a
    status of :data:`PHOTO_STATUSES`.  Failures before any answer carry
    ``extra["host_failure"]`` (what the host circuit breaker counts); 429 and 503 answers
    carry ``extra["retry_after"]`` (seconds, or ``None``) for the host scheduler.

    Args:
        url: An http(s) URL.
        settings: Timeouts, retries, byte cap and so on.
        images_dir: Where decoded photos are stored as ``<sha256>.<ext>``.
        session: A session from :func:`make_session` (default: this thread's own).
        key: The journal key (default: the URL).
        on_body: Called with ``key`` once the whole body is in (the connection is back
            in its pool), before the decode: the host is free for its next URL.

    Returns:
        The outcome (one journal line).
    """
    key = key or url
    started = time.monotonic()
    _local.deadline = started + settings.total_deadline
    session = session or _thread_session(settings, [])
    read_timeout = min(settings.timeout, settings.total_deadline)
    done = _ender(key, started)
    try:
        response = _send(url, settings, session, read_timeout, done)
        with response:
            announced = _check_answer(response, settings, done)
            body = _read_body(response, settings, announced, read_timeout, done)
    except _Done as finished:
        return finished.outcome
    if on_body is not None:
        on_body(key)
    return store(body, images_dir, key, settings.max_pixels, started)


def import_file(path: Path, settings: CollectSettings, images_dir: Path, key: str) -> Outcome:
    """Import one local photo (the folder source): decode it and store it content-addressed.

    Args:
        path: The photo.
        settings: Byte and pixel caps.
        images_dir: Where decoded photos are stored.
        key: The journal key.

    Returns:
        The outcome (one journal line).
    """
    started = time.monotonic()
    try:
        size = path.stat().st_size
        if size > settings.max_bytes:
            return Outcome(key, TOO_LARGE, f"{size:,} bytes > --max-bytes "
                           f"{settings.max_bytes:,}", bytes=size)
        data = path.read_bytes()
    except OSError as error:
        return Outcome(key, CORRUPT, f"cannot read the file: {error}")
    return store(data, images_dir, key, settings.max_pixels, started)


def run_job(job: tuple[str, Any], settings: CollectSettings, images_dir: Path,
            sessions: list, on_body: Callable[[str], None] | None = None) -> Outcome:
    """Run one collection job: ``(key, url)`` downloads, ``(key, Path)`` imports a file.

    Args:
        job: The journal key and the URL (``str``) or file (``Path``).
        settings: The run's settings.
        images_dir: Where photos are stored (must exist).
        sessions: This thread's session is added here on first use (to close them later).
        on_body: See :func:`fetch_url` (downloads only).

    Returns:
        The outcome; even a bug becomes one (``connection_error``), never an exception.
    """
    key, target = job
    try:
        if isinstance(target, Path):
            return import_file(target, settings, images_dir, key)
        return fetch_url(target, settings, images_dir, _thread_session(settings, sessions), key,
                         on_body)
    except Exception as error:  # noqa: BLE001 - a bug must not lose the run
        return Outcome(key, CONNECTION_ERROR, f"unexpected {type(error).__name__}: "
                       f"{error}"[:300])


# --------------------------------------------------------------------------- worker processes

def _exit_with_parent(parent_pid: int) -> None:
    """End this process as soon as the collecting process is gone (even SIGKILLed).

    A worker must never outlive its parent: a killed run is resumed by starting it again,
    and an orphan still downloading would fetch URLs twice.
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:      # the parent died before prctl took effect
        os._exit(1)

    def watch() -> None:                # every platform: poll, in case prctl is missing
        while os.getppid() == parent_pid:
            time.sleep(0.2)
        os._exit(1)

    threading.Thread(target=watch, name="facelab-parent-watch", daemon=True).start()


def _warm_up(settings: CollectSettings, threads: int):
    """Import the HTTP stack, Pillow's decoders and NumPy now, while the parent starts.

    Returns:
        The run's first session (its adapter, with a budget of ``threads`` connections, is
        the one every thread shares).
    """
    from PIL import Image

    Image.preinit()          # the common decoders (JPEG, PNG, GIF, BMP)
    _dct_matrix()            # NumPy
    return make_session(settings, connections=threads)


def worker_process(conn, settings: CollectSettings, images_dir: Path, threads: int,
                   parent_pid: int) -> None:
    """Serve jobs in this worker process until told to stop (see :func:`start_worker`).

    ``threads`` threads take jobs from ``conn`` one at a time (``None`` stops a thread) and
    send back one :class:`Outcome` per job; the parent journals them.  Where the per-host
    cap can bind, a download also sends its key alone as soon as its body is in, before
    the decode, so its host's next URL can go out meanwhile.  Several processes
    let a large collection use every core (decoding, hashing and the HTTP stack's Python
    code share one interpreter lock per process).  Ctrl-C is the parent's to handle.

    Args:
        conn: This worker's end of a duplex ``multiprocessing.connection.Connection``.
        settings: The run's settings.
        images_dir: Where photos are stored (exists).
        threads: Concurrent jobs in this process.
        parent_pid: The collecting process; this one exits as soon as it is gone.
    """
    _exit_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sessions: list = [_warm_up(settings, threads)]
    receiving, sending = threading.Lock(), threading.Lock()

    def send(message: Outcome | str) -> bool:
        with sending:
            try:
                conn.send(message)
            except OSError:
                return False
        return True

    # a key alone tells the parent the body is in: its host may take its next URL
    on_body = send if settings.cap_can_bind else None

    def loop() -> None:
        while True:
            with receiving:
                try:
                    job = conn.recv()
                except (EOFError, OSError):
                    return
            if job is None or not send(run_job(job, settings, images_dir, sessions, on_body)):
                return

    pool = [threading.Thread(target=loop, name=f"facelab-fetch-{i}", daemon=True)
            for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    for session in sessions:
        session.close()


def workers_supported() -> bool:
    """Whether :func:`start_worker` works here (POSIX: it hands the child a socket)."""
    return os.name == "posix"


def start_worker(settings: CollectSettings, images_dir: Path, threads: int):
    """Start one worker process with ``threads`` threads; return it and its pipe.

    The worker is a fresh interpreter running ``facelab.collect.fetch.worker_main`` (not a
    ``multiprocessing`` child: those re-run the caller's main script, which breaks scripts
    without an ``if __name__ == "__main__"`` guard).  Its pipe is a socket pair wrapped in a
    ``multiprocessing.connection.Connection``: send it jobs ``(key, url or Path)`` and
    ``None`` per thread to stop; it answers one :class:`Outcome` per job.

    Args:
        settings: The run's settings.
        images_dir: Where photos are stored (exists).
        threads: Concurrent jobs in the worker.

    Returns:
        ``(process, connection)``: the ``subprocess.Popen`` and the parent's end.
    """
    from multiprocessing.connection import Connection

    root = str(Path(__file__).resolve().parent.parent)   # this facelab, whatever sys.path has
    command = (f"import sys; root = {root!r}; root in sys.path or sys.path.insert(0, root); "
               "from facelab.collect.fetch import worker_main; worker_main()")
    ours, theirs = socket.socketpair()
    try:
        # the hashes' 8x32 matrix products gain nothing from BLAS threads, whose idle
        # spinning costs CPU that the other workers need
        env = {"OPENBLAS_NUM_THREADS": "1", **os.environ}
        process = subprocess.Popen([sys.executable, "-c", command, str(theirs.fileno())],
                                   pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
                                   env=env)
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    conn = Connection(ours.detach())
    with contextlib.suppress(OSError):   # it died at once: its end of file tells the caller
        conn.send((settings, images_dir, threads, os.getpid()))
    return process, conn


def worker_main() -> None:
    """Entry point of a worker process started by :func:`start_worker` (``argv[1]``: its pipe)."""
    from multiprocessing.connection import Connection

    conn = Connection(int(sys.argv[1]))
    try:
        settings, images_dir, threads, parent_pid = conn.recv()
    except (EOFError, OSError):     # the parent is gone already
        return
    worker_process(conn, settings, images_dir, threads, parent_pid)
