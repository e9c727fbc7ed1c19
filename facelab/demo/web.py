"""The local demo web: a demo collection served as a misbehaving, 2017-style web on 127.0.0.1.

:func:`serve` (a context manager) or :class:`DemoWeb` starts a standard-library
``ThreadingHTTPServer`` that serves a collection made by :func:`facelab.demo.photos.generate`
(generating it first when the folder is empty) and writes, next to it:

* ``urls.txt``: the collection as a URL list in PubFig's exact format
  (``person imagenum url rect md5sum``, tab-separated, ``#`` header lines; ``rect`` is the
  labelled face and ``md5sum`` the md5 of the bytes when the list was made);
* ``url_truth.csv``: for every URL, the misbehaviour behind it (:data:`KINDS`), the photo it
  stands for and what the server will really send, so the collection stage can be tested;
* ``web_cache/``: the re-encoded photos, so that a restart is quick.

Like the real web of 2017, a share of the URLs misbehave (the shares are a :class:`Shares`):
``http_404``; ``placeholder`` (one "photo unavailable" picture served with 200 behind many
URLs of different people, some behind a redirect); ``html`` (a web page served with 200, some
labelled ``image/jpeg``); ``truncated`` JPEGs (some with an honest ``Content-Length``, some
promising the full length and dropping the connection); ``changed`` photos (re-encoded or
resized since the list was made: the md5 no longer matches but the photo is fine);
``duplicate_exact`` / ``duplicate_reencoded`` (extra rows whose URL serves a copy of another
photo of the same person); ``slow`` (answers slower than any sane timeout: stalls before the
headers, or trickles the body); ``redirect_chain`` (2-4 hops, then the photo: fine);
``redirect_loop``; and ``huge`` (one response far larger than any photo, streamed).
Everything is deterministic from the seed; only the port in the URLs changes between runs,
so ``urls.txt`` is valid while the server that wrote it runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import io
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd

from facelab.collect.sources import write_pubfig_list
from facelab.demo import photos as demo_photos
from facelab.demo.photos import PHOTOS_CSV
from facelab.demo.urls import (
    PLACEHOLDER_PATH,
    Shares,
    UrlMaker,
    html_page,
    placeholder_jpeg,
    plan_urls,
    reencode,
)
from facelab.io import atomic_write_bytes

KINDS = ("ok", "http_404", "placeholder", "html", "truncated", "changed", "duplicate_exact",
         "duplicate_reencoded", "slow", "redirect_chain", "redirect_loop", "huge")


# kinds whose URL does not give the listed photo intact (redirect chains end in the photo)
MISBEHAVING = tuple(k for k in KINDS if k not in ("ok", "redirect_chain"))


# kinds that take the place of a photo of photos.csv (duplicates are extra rows)


URLS_NAME = "urls.txt"


TRUTH_NAME = "url_truth.csv"


CACHE_NAME = "web_cache"


_CHUNK = 1 << 20


@dataclass
class _Route:
    """What the server answers at one path."""

    kind: str
    action: str          # file, bytes, truncated, status, redirect, html, slow, huge
    status: int = 200
    file: Path | None = None
    data: bytes | None = None
    ctype: str = "image/jpeg"
    location: str = ""
    absolute: bool = False
    cut: float = 0.0
    mode: str = ""


# ----------------------------------------------------------------------------- demo data
def ensure_demo(demo_dir: str | Path, scale: str = "full", seed: int = 0,
                progress: bool = True) -> pd.DataFrame:
    """Return the demo's photos table, generating the collection first when it is absent.

    A folder whose ``photos.csv`` exists and whose photos are all present is reused as it
    is (whatever scale and seed made it); otherwise :func:`facelab.demo.photos.generate` runs.

    Args:
        demo_dir: The demo folder.
        scale: ``small`` or ``full`` (used only when generating).
        seed: Generator seed (used only when generating).
        progress: Show the generator's progress bar.
    """
    demo_dir = Path(demo_dir)
    photos_csv = demo_dir / PHOTOS_CSV
    if photos_csv.is_file():
        photos = pd.read_csv(photos_csv, dtype={"person": str, "rect": str, "md5": str})
        root = str(demo_dir)
        if len(photos) and all(os.path.isfile(os.path.join(root, p))
                               for p in photos["path"].tolist()):
            return photos
    if demo_dir.exists() and not demo_dir.is_dir():
        raise ValueError(f"{demo_dir} is a file: pass a folder for the demo collection")
    demo_photos.generate(demo_dir, scale=scale, seed=seed, progress=progress)
    return pd.read_csv(photos_csv, dtype={"person": str, "rect": str, "md5": str})


# ----------------------------------------------------------------------------- server
class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    web: DemoWeb


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "Apache/2.2.14"
    sys_version = ""
    timeout = 15

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Silence the default stderr log; every hit goes to DemoWeb.hits()."""

    def do_GET(self) -> None:  # noqa: N802
        """Answer a GET."""
        self._answer(head=False)

    def do_HEAD(self) -> None:  # noqa: N802
        """Answer a HEAD (headers only)."""
        self._answer(head=True)

    def _answer(self, head: bool) -> None:
        web = self.server.web
        self._head, self._status = head, 0
        started, t0 = time.time(), time.perf_counter()
        route = web._route(self.path)
        # logged on arrival and kept up to date while answering, so a client that has read
        # the whole answer always finds its hit, status and bytes already counted
        self._hit = {"time": started, "method": self.command, "path": self.path, "status": 0,
                     "bytes": 0, "duration_s": 0.0, "kind": route.kind if route else ""}
        web._log(self._hit)
        try:
            self._serve(web, route)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError):
            self.close_connection = True
        except Exception as error:  # a bug or a deleted photo: answer 500, keep serving
            self.close_connection = True
            if self._status == 0:
                message = f"internal error: {type(error).__name__}: {error}"
                with contextlib.suppress(OSError):
                    self._whole(500, "text/plain; charset=utf-8", message.encode())
        finally:
            self._hit["duration_s"] = round(time.perf_counter() - t0, 4)

    def _start(self, status: int, ctype: str, length: int | None,
               headers: dict[str, str] | None = None) -> None:
        self._status = self._hit["status"] = status
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        if length is not None:
            self.send_header("Content-Length", str(length))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()

    def _write(self, data: bytes) -> None:
        if not self._head:
            self._hit["bytes"] += len(data)
            try:
                self.wfile.write(data)
            except BaseException:
                self._hit["bytes"] -= len(data)
                raise

    def _whole(self, status: int, ctype: str, data: bytes,
               headers: dict[str, str] | None = None) -> None:
        self._start(status, ctype, len(data), headers)
        self._write(data)

    def _serve(self, web: DemoWeb, route: _Route | None) -> None:
        if route is None:
            self._whole(404, "text/html; charset=utf-8", _not_found(self.path))
            return
        action = route.action
        if action == "file":
            self._whole(200, route.ctype, route.file.read_bytes())
        elif action == "bytes":
            self._whole(route.status, route.ctype, route.data)
        elif action == "status":
            self._whole(route.status, "text/html; charset=utf-8", _not_found(self.path))
        elif action == "html":
            self._whole(200, route.ctype, route.data)
        elif action == "redirect":
            location = web.base_url + route.location if route.absolute else route.location
            body = f'<a href="{html.escape(location)}">moved here</a>\n'.encode()
            self._whole(route.status, "text/html; charset=utf-8", body, {"Location": location})
        elif action == "truncated":
            data = route.file.read_bytes()
            part = data[:max(1, int(len(data) * route.cut))]
            self._start(200, route.ctype, len(data) if route.mode == "dropped" else len(part))
            self._write(part)
            self.close_connection = True
        elif action == "slow":
            self._slow(web, route)
        elif action == "huge":
            self._huge(web)

    def _slow(self, web: DemoWeb, route: _Route) -> None:
        data = route.data if route.data is not None else route.file.read_bytes()
        delay = web.shares.slow_s
        if route.mode == "stall":
            if web._stopping.wait(delay):
                self.close_connection = True
                return
            self._whole(200, route.ctype, data)
            return
        self._start(200, route.ctype, len(data))
        steps = max(1, int(delay / 0.25))
        size = -(-len(data) // steps)
        for k in range(steps):
            self._write(data[k * size:(k + 1) * size])
            self.wfile.flush()
            if web._stopping.wait(delay / steps):
                self.close_connection = True
                return

    def _huge(self, web: DemoWeb) -> None:
        self._start(200, "image/jpeg", None, {"Cache-Control": "no-store"})
        remaining = int(web.shares.huge_mb) * _CHUNK
        self._write(_HUGE_HEAD)
        remaining -= len(_HUGE_HEAD)
        while remaining > 0 and not self._head and not web._stopping.is_set():
            self._write(_ZEROS[:min(remaining, _CHUNK)])
            remaining -= min(remaining, _CHUNK)
        self.close_connection = True


_HUGE_HEAD = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"


_ZEROS = bytes(_CHUNK)


def _not_found(path: str) -> bytes:
    return (f"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head><body>"
            f"<h1>Not Found</h1><p>The requested URL {html.escape(path)} was not found on this "
            f"server.</p></body></html>\n").encode()


@dataclass
class _RouteBuilder:
    """Builds the routes of a URL plan, row by row (see :meth:`DemoWeb._build`).

    Attributes:
        demo_dir: The demo folder (plan ``photo`` paths are relative to it).
        derive: Makes (or reads from the cache) a photo's re-encoded bytes.
        rng: Draws redirect statuses and absolute/relative locations.
        maker: Makes the redirect hops' paths and the final paths of redirect chains.
        placeholder: The shared "photo unavailable" JPEG.
        bar: Progress bar of the re-encoded photos.
        routes: path -> route, so far.
    """

    demo_dir: Path
    derive: Callable[[Path, str, int, float], bytes]
    rng: random.Random
    maker: UrlMaker
    placeholder: bytes
    bar: Any
    routes: dict[str, _Route] = field(default_factory=dict)

    def add(self, row: SimpleNamespace) -> str:
        """Add the route(s) of one plan row; return the md5 of what its URL serves.

        The md5 is '' where the URL serves no body (404, redirect loop, huge, unknown kind).
        """
        steps = {"ok": self._file, "duplicate_exact": self._file,
                 "changed": self._derived, "duplicate_reencoded": self._derived,
                 "http_404": self._http_404, "placeholder": self._placeholder,
                 "html": self._html, "truncated": self._truncated, "slow": self._slow,
                 "redirect_chain": self._redirect_chain,
                 "redirect_loop": self._redirect_loop, "huge": self._huge}
        step = steps.get(row.kind)
        return step(row, self.demo_dir / row.photo) if step else ""

    def _file(self, row: SimpleNamespace, file: Path) -> str:
        """The photo file as it is."""
        self.routes[row.url_path] = _Route(row.kind, "file", file=file)
        return row.md5_listed

    def _derived(self, row: SimpleNamespace, file: Path) -> str:
        """The photo re-encoded (and resized) since the list was made."""
        data = self.derive(file, row.md5_photo, int(row.quality), float(row.scale))
        self.bar.update()
        self.routes[row.url_path] = _Route(row.kind, "bytes", data=data)
        return hashlib.md5(data).hexdigest()

    def _http_404(self, row: SimpleNamespace, file: Path) -> str:
        """404 Not Found."""
        self.routes[row.url_path] = _Route(row.kind, "status", status=404)
        return ""

    def _placeholder(self, row: SimpleNamespace, file: Path) -> str:
        """The shared placeholder picture, directly or behind a redirect to its address."""
        if row.mode == "redirect":
            self.routes[row.url_path] = _Route(
                row.kind, "redirect", status=self.rng.choice([301, 302]),
                location=PLACEHOLDER_PATH, absolute=self.rng.random() < .5)
        else:
            self.routes[row.url_path] = _Route(row.kind, "bytes", data=self.placeholder)
        return hashlib.md5(self.placeholder).hexdigest()

    def _html(self, row: SimpleNamespace, file: Path) -> str:
        """A web page, labelled as a page or as a JPEG."""
        data = html_page(row.url_path)
        ctype = "image/jpeg" if row.mode == "image/jpeg" else "text/html; charset=utf-8"
        self.routes[row.url_path] = _Route(row.kind, "html", data=data, ctype=ctype)
        return hashlib.md5(data).hexdigest()

    def _truncated(self, row: SimpleNamespace, file: Path) -> str:
        """The first ``cut`` of the photo's bytes."""
        self.routes[row.url_path] = _Route(row.kind, "truncated", file=file, cut=float(row.cut),
                                           mode=row.mode)
        data = file.read_bytes()
        return hashlib.md5(data[:max(1, int(len(data) * row.cut))]).hexdigest()

    def _slow(self, row: SimpleNamespace, file: Path) -> str:
        """The photo, after a stall or trickled."""
        self.routes[row.url_path] = _Route(row.kind, "slow", file=file, mode=row.mode)
        return row.md5_listed

    def _redirect_chain(self, row: SimpleNamespace, file: Path) -> str:
        """``hops`` redirects, then the photo at a new path."""
        hops = [row.url_path] + [self.maker.hop() for _ in range(int(row.hops) - 1)]
        final = self.maker.photo(row.person)
        self._redirects(row.kind, hops, hops[1:] + [final], [301, 302, 303, 307])
        self.routes[final] = _Route(row.kind, "file", file=file)
        return row.md5_listed

    def _redirect_loop(self, row: SimpleNamespace, file: Path) -> str:
        """``hops`` redirects back to the listed path."""
        loop = [row.url_path] + [self.maker.hop() for _ in range(int(row.hops) - 1)]
        self._redirects(row.kind, loop, loop[1:] + [row.url_path], [301, 302])
        return ""

    def _redirects(self, kind: str, paths: list[str], targets: list[str],
                   statuses: list[int]) -> None:
        """Redirect each of ``paths`` to the matching target (random status, absolute or not)."""
        for here, there in zip(paths, targets, strict=True):
            self.routes[here] = _Route(kind, "redirect", status=self.rng.choice(statuses),
                                       location=there, absolute=self.rng.random() < 0.5)

    def _huge(self, row: SimpleNamespace, file: Path) -> str:
        """A streamed body far larger than any photo."""
        self.routes[row.url_path] = _Route(row.kind, "huge")
        return ""


class DemoWeb:
    """A demo collection served as a misbehaving web on 127.0.0.1 (see the module doc).

    Use it as a context manager (``with DemoWeb(d) as web:``) or call :meth:`start` and
    :meth:`stop`.  After :meth:`start`: :attr:`base_url`, :attr:`urls_path` (``urls.txt``),
    :attr:`truth_path` and :attr:`truth` (``url_truth.csv``), :meth:`hits` and
    :meth:`hit_count`.

    Args:
        demo_dir: Folder of a demo collection (generated there first when absent).
        port: TCP port on 127.0.0.1; 0 picks a free one.
        seed: Seed of the URL plan (and of the collection when it is generated).
        shares: The misbehaviours (default :class:`Shares`).
        scale: ``small`` or ``full``, used only when the collection is generated.
        progress: Show progress bars.
    """

    def __init__(self, demo_dir: str | Path, port: int = 0, seed: int = 0,
                 shares: Shares | None = None, scale: str = "full",
                 progress: bool = True) -> None:
        self.demo_dir = Path(demo_dir)
        self.port, self.seed, self.scale, self.progress = port, seed, scale, progress
        self.shares = shares or Shares()
        self.shares.validate()
        self.urls_path = self.demo_dir / URLS_NAME
        self.truth_path = self.demo_dir / TRUTH_NAME
        self.base_url = ""
        self.truth = pd.DataFrame()
        self._routes: dict[str, _Route] = {}
        self._hits: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle
    def start(self) -> DemoWeb:
        """Generate the collection if needed, build the routes, start serving, write the lists."""
        if self._server is not None:
            return self
        photos = ensure_demo(self.demo_dir, scale=self.scale, seed=self.seed,
                             progress=self.progress)
        plan = plan_urls(photos, seed=self.seed, shares=self.shares)
        server = _Server(("127.0.0.1", self.port), _Handler)
        server.web = self
        self.base_url = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            self._build(plan)
            self._write_lists()
        except BaseException:
            server.server_close()
            raise
        self._stopping.clear()
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="facelab-demo-web", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving (slow and huge answers in flight end within a moment)."""
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    @property
    def running(self) -> bool:
        """True while the server is serving."""
        return self._server is not None

    def __enter__(self) -> DemoWeb:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- hits
    def _log(self, hit: dict[str, Any]) -> None:
        with self._lock:
            self._hits.append(hit)

    def hits(self) -> pd.DataFrame:
        """Return every request so far, one row each.

        Columns: ``time``, ``method``, ``path``, ``status`` (0 when no answer was sent),
        ``bytes`` (body bytes sent), ``duration_s``, ``kind``.
        """
        with self._lock:
            rows = list(self._hits)
        columns = ["time", "method", "path", "status", "bytes", "duration_s", "kind"]
        return pd.DataFrame(rows, columns=columns)

    def hit_count(self, path: str | None = None) -> int:
        """Count requests so far, all of them or those for one path (or full URL)."""
        with self._lock:
            if path is None:
                return len(self._hits)
            path = self._path_of(path)
            return sum(1 for h in self._hits if h["path"] == path)

    def reset_hits(self) -> None:
        """Forget the requests logged so far."""
        with self._lock:
            self._hits.clear()

    def _path_of(self, url: str) -> str:
        if url.startswith(self.base_url) and self.base_url:
            url = url[len(self.base_url):]
        elif "://" in url:
            url = "/" + url.split("://", 1)[1].split("/", 1)[-1]
        return url

    def url(self, path: str) -> str:
        """Return the full URL of a path on this server."""
        return self.base_url + path

    def urls_of(self, kind: str) -> list[str]:
        """Return the listed URLs of one kind (see :data:`KINDS`)."""
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}: use one of {KINDS}")
        return self.truth.loc[self.truth["kind"] == kind, "url"].tolist()

    # -- routes
    def _route(self, path: str) -> _Route | None:
        return self._routes.get(path)

    def _build(self, plan: pd.DataFrame) -> None:
        from tqdm.auto import tqdm

        rng = random.Random(self.seed + 104729)
        maker = UrlMaker(random.Random(self.seed + 1299709))
        maker.used |= set(plan["url_path"])
        derived = plan["kind"].isin(["changed", "duplicate_reencoded"])
        bar = tqdm(total=int(derived.sum()), desc="demo web: re-encoding photos",
                   disable=not self.progress or not derived.any(), leave=False)
        builder = _RouteBuilder(self.demo_dir, self._derived, rng, maker, placeholder_jpeg(),
                                bar)
        builder.routes[PLACEHOLDER_PATH] = _Route("placeholder", "bytes",
                                                  data=builder.placeholder)
        served = [builder.add(SimpleNamespace(**r)) for r in plan.to_dict("records")]
        bar.close()
        self._routes = builder.routes
        self.truth = self._truth(plan, served)

    def _truth(self, plan: pd.DataFrame, served: list[str]) -> pd.DataFrame:
        """The plan with full URLs, the served md5s and the final status of each URL."""
        truth = plan.copy()
        for index in truth.index[truth["md5_listed"] == ""]:   # re-encoded duplicates
            truth.loc[index, "md5_listed"] = served[index]
        truth["md5_served"] = served
        truth["final_status"] = truth["kind"].map(
            lambda k: 404 if k == "http_404" else (pd.NA if k == "redirect_loop" else 200)
        ).astype("Int64")
        truth.insert(0, "url", self.base_url + truth["url_path"])
        dup = truth["duplicate_of"] != ""
        truth.loc[dup, "duplicate_of"] = self.base_url + truth.loc[dup, "duplicate_of"]
        return truth

    def _derived(self, file: Path, md5_photo: str, quality: int, scale: float) -> bytes:
        """Re-encode (and resize) a photo, cached in ``demo_dir/web_cache`` across restarts."""
        cached = self.demo_dir / CACHE_NAME / f"{md5_photo}-q{quality}-x{scale:g}.jpg"
        if cached.is_file():
            return cached.read_bytes()
        data = reencode(file.read_bytes(), quality, scale)
        atomic_write_bytes(cached, data)
        return data

    def _write_lists(self) -> None:
        truth = self.truth
        write_pubfig_list(
            ({"person": r["person"], "imagenum": r["imagenum"], "url": r["url"], "rect": r["rect"],
              "md5sum": r["md5_listed"]} for r in truth.to_dict("records")),
            self.urls_path, title="PubFig Dataset v1.2 - urls.txt")
        columns = ["url", "person", "imagenum", "kind", "detail", "photo", "duplicate_of",
                   "rect", "md5_listed", "md5_served", "final_status", "mode", "hops",
                   "url_path"]
        atomic_write_bytes(self.truth_path, truth[columns].to_csv(index=False).encode("utf-8"))


@contextmanager
def serve(demo_dir: str | Path, port: int = 0, seed: int = 0, shares: Shares | None = None,
          scale: str = "full", progress: bool = True) -> Iterator[DemoWeb]:
    """Serve a demo collection as a misbehaving web for the duration of a ``with`` block.

    Args:
        demo_dir: Folder of a demo collection (generated there first when absent).
        port: TCP port on 127.0.0.1; 0 picks a free one.
        seed: Seed of the URL plan (and of the collection when it is generated).
        shares: The misbehaviours (default :class:`Shares`).
        scale: ``small`` or ``full``, used only when the collection is generated.
        progress: Show progress bars.

    Yields:
        The running :class:`DemoWeb`; ``urls.txt`` and ``url_truth.csv`` are written.
    """
    web = DemoWeb(demo_dir, port=port, seed=seed, shares=shares, scale=scale,
                  progress=progress)
    web.start()
    try:
        yield web
    finally:
        web.stop()


def read_truth(demo_dir: str | Path) -> pd.DataFrame:
    """Read ``url_truth.csv`` written by the demo web (url -> kind, photo, md5s...)."""
    path = Path(demo_dir)
    if path.is_dir():
        path = path / TRUTH_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no {TRUTH_NAME} at {path}: start the demo web on that "
                                "folder first (facelab demo-web DIR)")
    truth = pd.read_csv(path, keep_default_na=False, dtype={
        "person": str, "rect": str, "md5_listed": str, "md5_served": str, "final_status": str})
    truth["final_status"] = pd.to_numeric(truth["final_status"].replace("", None)).astype("Int64")
    return truth


# ----------------------------------------------------------------------------- notebook helpers
def kind_table(truth: pd.DataFrame) -> pd.DataFrame:
    """URLs per kind with their share of the list, most frequent first."""
    counts = truth["kind"].value_counts()
    table = pd.DataFrame({"urls": counts, "share": (counts / counts.sum()).round(3)})
    table["misbehaves"] = [k in MISBEHAVING for k in table.index]
    return table


def misbehaving_sample(truth: pd.DataFrame, per_kind: int = 2, seed: int = 0) -> pd.DataFrame:
    """Pick a few URLs of every misbehaving kind (and redirect chains), for display."""
    shown = truth[truth["kind"] != "ok"]
    sample = shown.sample(frac=1.0, random_state=seed).groupby("kind").head(per_kind)
    order = {k: i for i, k in enumerate(KINDS)}
    sample = sample.assign(_o=sample["kind"].map(order)).sort_values(["_o", "url"])
    return sample[["kind", "person", "url", "detail"]].reset_index(drop=True)


def _fetch(session: Any, url: str, timeout_s: float, max_bytes: int
           ) -> tuple[int, str, int, str, bytes]:
    """GET a URL carefully: ``(status, content type, redirects, error, body)``.

    Stops reading past ``max_bytes`` or three times ``timeout_s``; ``error`` is '' when
    the whole body came, else why not (status 0 when no answer came at all).
    """
    import requests

    start = time.perf_counter()
    status, ctype, redirects, error, data = 0, "", 0, "", bytearray()
    try:
        with session.get(url, timeout=(timeout_s, timeout_s), stream=True) as resp:
            status, redirects = resp.status_code, len(resp.history)
            ctype = resp.headers.get("Content-Type", "")
            for chunk in resp.iter_content(1024):   # small reads: a trickle meets the deadline
                data += chunk
                if len(data) > max_bytes:
                    error = f"more than {max_bytes} bytes"
                    break
                if time.perf_counter() - start > 3 * timeout_s:
                    error = f"no complete answer within {3 * timeout_s:g} s"
                    break
    except requests.RequestException as exc:
        error = type(exc).__name__
    return status, ctype, redirects, error, bytes(data)


def _decodes(data: bytes) -> bool:
    """True when Pillow can load ``data`` as an image."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
        return True
    except Exception:  # any undecodable body: that is the finding
        return False


def probe(web: DemoWeb, per_kind: int = 1, timeout_s: float = 2.0,
          max_bytes: int = 10 * _CHUNK, seed: int = 0) -> pd.DataFrame:
    """Fetch a few URLs of every kind the way a careful downloader would, and report.

    Each URL is fetched with ``requests`` (connect/read timeout ``timeout_s``, a total
    deadline of three times that, at most ``max_bytes`` bytes, at most 10 redirects), all
    at once in threads, so the hanging ones cost one deadline, not one each.

    Args:
        web: A running :class:`DemoWeb`.
        per_kind: URLs fetched per kind.
        timeout_s: Connect and read timeout in seconds.
        max_bytes: Stop reading a body beyond this many bytes.
        seed: Which URLs are picked.

    Returns:
        One row per URL: ``kind``, ``status`` (0 when no answer), ``content_type``,
        ``bytes``, ``redirects``, ``md5_matches`` (the list's md5), ``decodes`` (Pillow
        can load it), ``error`` and ``seconds``.
    """
    from concurrent.futures import ThreadPoolExecutor

    import requests

    order = {k: i for i, k in enumerate(KINDS)}
    picked = web.truth.sample(frac=1.0, random_state=seed).groupby("kind").head(per_kind)
    picked = picked.assign(_o=picked["kind"].map(order)).sort_values(["_o", "url"])

    def one(row: Any) -> dict[str, Any]:
        start = time.perf_counter()
        with requests.Session() as session:       # one per URL: sessions are not shared
            session.max_redirects = 10
            status, ctype, redirects, error, data = _fetch(session, row.url, timeout_s,
                                                           max_bytes)
        whole = bool(data) and not error
        return {"kind": row.kind, "status": status, "content_type": ctype,
                "bytes": len(data), "redirects": redirects,
                "md5_matches": whole and hashlib.md5(data).hexdigest() == row.md5_listed,
                "decodes": whole and _decodes(data), "error": error,
                "seconds": round(time.perf_counter() - start, 2)}

    rows = list(picked.itertuples(index=False))
    with ThreadPoolExecutor(max_workers=max(1, min(16, len(rows)))) as pool:
        return pd.DataFrame(list(pool.map(one, rows)))   # the hanging ones wait together
