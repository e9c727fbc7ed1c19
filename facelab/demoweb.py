"""The local demo web: a demo collection served as a misbehaving, 2017-style web on 127.0.0.1.

:func:`serve` (a context manager) or :class:`DemoWeb` starts a standard-library
``ThreadingHTTPServer`` that serves a collection made by :func:`facelab.demo.generate`
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

import argparse
import contextlib
import hashlib
import html
import io
import os
import random
import string
import sys
import threading
import time
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd

from facelab.manifest import atomic_write_bytes
from facelab.sources import format_rect, parse_rect, write_pubfig_list

KINDS = ("ok", "http_404", "placeholder", "html", "truncated", "changed", "duplicate_exact",
         "duplicate_reencoded", "slow", "redirect_chain", "redirect_loop", "huge")
# kinds whose URL does not give the listed photo intact (redirect chains end in the photo)
MISBEHAVING = tuple(k for k in KINDS if k not in ("ok", "redirect_chain"))
# kinds that take the place of a photo of photos.csv (duplicates are extra rows)
_REPLACING = ("http_404", "placeholder", "html", "truncated", "changed", "slow",
              "redirect_chain", "redirect_loop")
URLS_NAME = "urls.txt"
TRUTH_NAME = "url_truth.csv"
PHOTOS_NAME = "photos.csv"
CACHE_NAME = "web_cache"
PLACEHOLDER_PATH = "/images/photo_unavailable.jpg"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Shares:
    """How much of the demo web misbehaves, and how.

    The kind shares are fractions of the photos in ``photos.csv``; each kind with a share
    above 0 gets at least one URL.  ``duplicate_*`` URLs are extra rows (copies of another
    photo of the same person); the other kinds take the place of a photo.  The defaults
    make about 28% of the URLs misbehave (31% counting the harmless redirect chains).

    Attributes:
        http_404: URLs answered ``404 Not Found``.
        placeholder: URLs answered with the shared "photo unavailable" picture (200).
        html: URLs answered with a web page (200).
        truncated: URLs answered with the first 20-80% of the JPEG.
        changed: URLs whose photo was re-encoded or resized after the list was made.
        duplicate_exact: Extra rows serving a byte-identical copy of another photo.
        duplicate_reencoded: Extra rows serving a re-encoded (some resized) copy.
        slow: URLs answering after ``slow_s`` seconds (or trickling over that long).
        redirect_chain: URLs redirecting 2-4 times, then serving the photo (fine).
        redirect_loop: URLs redirecting in a loop.
        huge: How many URLs stream ``huge_mb`` MB (a count, not a share).
        placeholder_redirected: Share of placeholder URLs that redirect to the shared
            placeholder address instead of answering it directly.
        html_as_jpeg: Share of html URLs labelled ``Content-Type: image/jpeg``.
        truncated_dropped: Share of truncated URLs that promise the full
            ``Content-Length`` and close the connection early.
        changed_resized: Share of changed single-face photos that are resized (the others
            and group photos are re-encoded at another quality).
        slow_trickle: Share of slow URLs that send headers at once and then trickle the
            body (only a total deadline catches those; the rest stall before the headers).
        slow_s: How long a slow URL takes (seconds).
        huge_mb: Size of the huge response in MiB.
    """

    http_404: float = 0.07
    placeholder: float = 0.06
    html: float = 0.03
    truncated: float = 0.03
    changed: float = 0.04
    duplicate_exact: float = 0.02
    duplicate_reencoded: float = 0.02
    slow: float = 0.002
    redirect_chain: float = 0.03
    redirect_loop: float = 0.01
    huge: int = 1
    placeholder_redirected: float = 0.3
    html_as_jpeg: float = 0.5
    truncated_dropped: float = 0.5
    changed_resized: float = 0.5
    slow_trickle: float = 0.5
    slow_s: float = 60.0
    huge_mb: int = 64

    def validate(self) -> None:
        """Raise ValueError for a share outside [0, 1] or shares that leave no photo ok."""
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("huge", "huge_mb", "slow_s"):
                if value < 0:
                    raise ValueError(f"Shares.{f.name} must be >= 0, got {value}")
            elif not 0.0 <= value <= 1.0:
                raise ValueError(f"Shares.{f.name} must be a fraction in [0, 1], got {value}")
        if sum(getattr(self, k) for k in _REPLACING) > 0.8:
            raise ValueError("the shares of the kinds that replace a photo add up to more than "
                             "0.8: lower some so that most photos stay downloadable")

    def counts(self, n_photos: int) -> dict[str, int]:
        """How many URLs of each kind a collection of ``n_photos`` photos gets."""
        counts = {}
        for kind in (*_REPLACING, "duplicate_exact", "duplicate_reencoded"):
            share = getattr(self, kind)
            counts[kind] = max(1, round(share * n_photos)) if share > 0 else 0
        counts["huge"] = int(self.huge)
        return counts


# ----------------------------------------------------------------------------- URL plan

_WORDS = ("photo", "pic", "img", "image", "red-carpet", "premiere", "awards", "interview",
          "party", "shoot", "event", "gala", "candid", "hq", "wallpaper", "portrait", "still",
          "live", "concert", "festival", "show", "magazine", "cover", "style", "news", "set")
_USERS = ("jenny", "mike77", "photofan", "kstar", "celebwatch", "anna_b", "dj", "tom")
_ALNUM = string.ascii_letters + string.digits


def _slug(name: str, sep: str = "-") -> str:
    """Make an ASCII, URL-safe slug of a name ('' when nothing is left)."""
    ascii_name = unicodedata.normalize("NFKD", str(name)).encode("ascii", "ignore").decode()
    parts = ["".join(ch for ch in word if ch.isalnum()) for word in ascii_name.lower().split()]
    return sep.join(p for p in parts if p)


class _UrlMaker:
    """Makes unique, varied, real-looking URL paths (with query strings) from a seeded rng."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = {PLACEHOLDER_PATH}

    def _tok(self, n: int, alphabet: str = _ALNUM) -> str:
        return "".join(self.rng.choices(alphabet, k=n))

    def _hex(self, n: int) -> str:
        return self._tok(n, "0123456789abcdef")

    def _name(self, person: str) -> str:
        r = self.rng
        slug = _slug(person, r.choice("-_")) or r.choice(_WORDS)
        last = slug.replace("_", "-").split("-")[-1]
        return r.choice([
            f"{slug}_{r.randint(1, 99)}", f"{r.choice(_WORDS)}{r.randint(1, 999)}",
            f"IMG_{r.randint(1000, 9999)}", f"{last}{r.randint(1, 40)}",
            f"{r.choice(_WORDS)}-{last}", f"DSC{r.randint(10000, 99999)}",
            f"{slug}-{r.choice(_WORDS)}-{r.randint(300, 800)}x{r.randint(300, 800)}"])

    def photo(self, person: str) -> str:
        """Make a new photo URL path for one of ``person``'s photos."""
        while True:
            path = self._photo(person)
            if path not in self.used:
                self.used.add(path)
                return path

    def _photo(self, person: str) -> str:
        r = self.rng
        slug = _slug(person) or "star"
        style = r.randrange(10)
        year, month, day = r.randint(2004, 2010), r.randint(1, 12), r.randint(1, 28)
        name = self._name(person) if style in (0, 1, 5, 8) else ""
        if style == 0:   # blogspot-like
            return (f"/_{self._tok(11)}/{self._tok(11)}/AAAAAAAA{self._tok(3)}/{self._tok(11)}/"
                    f"s{r.choice([320, 400, 800, 1600])}/{name}.jpg")
        if style == 1:   # wordpress
            return f"/wp-content/uploads/{year}/{month:02d}/{name}.jpg"
        if style == 2:   # flickr-like
            return (f"/{r.randint(1, 9)}{r.randint(100, 999)}/{r.randint(10**9, 4 * 10**9)}_"
                    f"{self._hex(10)}{r.choice(['', '_o', '_m', '_b'])}.jpg")
        if style == 3:   # news site
            return f"/news/{year}/{month:02d}/{day:02d}/{slug}-{r.choice(_WORDS)}.jpg"
        if style == 4:   # php gallery, no file name at all
            return f"/gallery/displayimage.php?album={r.randint(1, 400)}&pid={r.randint(1, 99999)}"
        if style == 5:
            return f"/images/stories/{r.choice(_WORDS).title()}/{name}.JPG"
        if style == 6:   # personal page
            return f"/~{r.choice(_USERS)}/pics/{r.choice(_WORDS)}_{r.randint(1, 999):03d}.jpeg"
        if style == 7:   # resizing cache
            return (f"/cache/{self._hex(2)}/{self._hex(2)}/{self._hex(32)}.jpg"
                    f"?w={r.choice([300, 400, 500])}&h={r.choice([300, 400, 600])}")
        if style == 8:   # fan site
            return f"/{slug}-fan/pictures/albums/{r.choice(_WORDS)}/{name}.jpg"
        return f"/thumbs/{r.randint(1, 999)}/{self._hex(8)}.jpg"

    def hop(self) -> str:
        """Make a new redirect-hop path (link shorteners, click counters, moved pages)."""
        r = self.rng
        while True:
            path = r.choice([f"/redirect.php?to={self._hex(12)}", f"/out/{self._hex(10)}",
                             f"/r/{self._tok(8)}", f"/go?u={self._tok(10)}&src=img",
                             f"/moved/{self._hex(6)}/index.jpg",
                             f"/login.php?return=%2Fimg%2F{self._tok(8)}"])
            if path not in self.used:
                self.used.add(path)
                return path


def _scaled_rect(rect: str, scale: float) -> str:
    box = parse_rect(rect)
    if box is None or scale == 1.0:
        return rect
    return format_rect(v * scale for v in box)


def plan_urls(photos: pd.DataFrame, seed: int = 0, shares: Shares | None = None) -> pd.DataFrame:
    """Decide, deterministically, the URL and the misbehaviour behind each photo.

    Args:
        photos: The demo's ``photos.csv`` (``person``, ``imagenum``, ``path``, ``rect``,
            ``md5``; ``n_faces``, ``width``, ``height`` used when present).
        seed: Seed of every random choice.
        shares: The misbehaviours' shares (default :class:`Shares`).

    Returns:
        One row per URL, ordered by person (as in ``photos``) then ``imagenum`` (1..n per
        person, duplicates mixed in), with ``person``, ``imagenum``, ``url_path``, ``kind``,
        ``detail``, ``photo`` (the photo the URL stands for or copies), ``duplicate_of``
        (the url_path a duplicate copies), ``rect`` and ``md5_listed`` (as in the list;
        '' for re-encoded duplicates until their bytes are made), ``md5_photo`` (of the
        photo file), and the parameters ``quality``, ``scale``, ``cut``, ``hops``, ``mode``.

    Raises:
        ValueError: For bad shares or a table lacking the needed columns.
    """
    shares = shares or Shares()
    shares.validate()
    needed = {"person", "imagenum", "path", "rect", "md5"}
    if not needed <= set(photos.columns):
        raise ValueError(f"photos table lacks {sorted(needed - set(photos.columns))}: pass "
                         "the photos.csv written by facelab.demo.generate")
    rng = random.Random(seed)
    maker = _UrlMaker(random.Random(seed + 7919))
    photos = photos.reset_index(drop=True)
    n = len(photos)
    counts = shares.counts(n)
    replacing = sum(counts[k] for k in (*_REPLACING, "huge"))
    if replacing > n:
        raise ValueError(f"{n} photos are too few for the misbehaviours asked for ({replacing})")
    order = list(range(n))
    rng.shuffle(order)
    kind_of = ["ok"] * n
    cursor = 0
    for kind in ("huge", *_REPLACING):
        for index in order[cursor:cursor + counts[kind]]:
            kind_of[index] = kind
        cursor += counts[kind]
    n_faces = photos["n_faces"].tolist() if "n_faces" in photos.columns else [1] * n

    rows: list[dict[str, Any]] = []
    for i, photo in enumerate(photos.to_dict("records")):
        kind = kind_of[i]
        row = {"person": str(photo["person"]), "order": float(photo["imagenum"]),
               "url_path": maker.photo(str(photo["person"])), "kind": kind, "detail": "",
               "photo": str(photo["path"]), "duplicate_of": "", "rect": str(photo["rect"]),
               "md5_listed": str(photo["md5"]).lower(), "md5_photo": str(photo["md5"]).lower(),
               "quality": 0, "scale": 1.0, "cut": 0.0, "hops": 0, "mode": ""}
        if kind == "placeholder":
            row["mode"] = "redirect" if rng.random() < shares.placeholder_redirected else "direct"
            row["detail"] = ("redirects to the shared placeholder" if row["mode"] == "redirect"
                             else "placeholder picture, 200")
        elif kind == "html":
            row["mode"] = "image/jpeg" if rng.random() < shares.html_as_jpeg else "text/html"
            row["detail"] = f"web page labelled {row['mode']}"
        elif kind == "truncated":
            row["cut"] = round(rng.uniform(0.2, 0.8), 3)
            row["mode"] = "dropped" if rng.random() < shares.truncated_dropped else "short"
            row["detail"] = (f"first {row['cut']:.0%} of the bytes, " +
                             ("promises full length, drops the connection"
                              if row["mode"] == "dropped" else "honest Content-Length"))
        elif kind == "changed":
            row["quality"] = rng.choice([55, 60, 65, 70, 75, 80])
            if int(n_faces[i]) == 1 and rng.random() < shares.changed_resized:
                row["scale"] = round(rng.uniform(0.6, 0.85), 3)
                row["mode"] = "resized"
                row["detail"] = f"resized x{row['scale']}, quality {row['quality']}"
            else:
                row["mode"] = "reencoded"
                row["detail"] = f"re-encoded, quality {row['quality']}"
        elif kind == "slow":
            row["mode"] = "trickle" if rng.random() < shares.slow_trickle else "stall"
            row["detail"] = (f"{row['mode']}s for {shares.slow_s:g} s" if row["mode"] == "stall"
                             else f"trickles the body over {shares.slow_s:g} s")
        elif kind == "redirect_chain":
            row["hops"] = rng.randint(2, 4)
            row["detail"] = f"{row['hops']} redirects, then the photo"
        elif kind == "redirect_loop":
            row["hops"] = rng.randint(1, 3)
            row["detail"] = f"loop of {row['hops']} redirect(s)"
        elif kind == "huge":
            row["detail"] = f"streams {shares.huge_mb} MiB, no Content-Length"
        rows.append(row)

    ok_rows = [r for r in rows if r["kind"] == "ok"]
    last = photos.groupby(photos["person"].astype(str))["imagenum"].max().to_dict()
    for kind in ("duplicate_exact", "duplicate_reencoded"):
        for _ in range(counts[kind] if ok_rows else 0):
            source = rng.choice(ok_rows)
            row = dict(source, url_path=maker.photo(source["person"]), kind=kind,
                       duplicate_of=source["url_path"],
                       order=rng.uniform(0.5, float(last[source["person"]]) + 0.5))
            if kind == "duplicate_exact":
                row["detail"] = "byte-identical copy"
            else:
                row["quality"] = rng.choice([60, 70, 80, 90])
                row["scale"] = round(rng.uniform(0.7, 0.9), 3) if rng.random() < 0.5 else 1.0
                row["rect"] = _scaled_rect(source["rect"], row["scale"])
                row["md5_listed"] = ""
                row["mode"] = "resized" if row["scale"] != 1.0 else "reencoded"
                row["detail"] = (f"re-encoded copy, quality {row['quality']}" +
                                 (f", resized x{row['scale']}" if row["scale"] != 1.0 else ""))
            rows.append(row)

    plan = pd.DataFrame(rows)
    person_order = {p: k for k, p in enumerate(dict.fromkeys(photos["person"].astype(str)))}
    plan["_p"] = plan["person"].map(person_order)
    plan = plan.sort_values(["_p", "order"], kind="stable").drop(columns=["_p", "order"])
    plan.insert(1, "imagenum", plan.groupby("person", sort=False).cumcount() + 1)
    return plan.reset_index(drop=True)


# ----------------------------------------------------------------------------- bodies


def placeholder_jpeg(width: int = 400, height: int = 300) -> bytes:
    """Draw the "photo unavailable" picture: a grey box, a crossed-out camera, text."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (width, height), (222, 222, 222))
    draw = ImageDraw.Draw(image)
    draw.rectangle([4, 4, width - 5, height - 5], outline=(170, 170, 170), width=3)
    cx, cy = width // 2, int(height * 0.38)
    draw.rounded_rectangle([cx - 50, cy - 32, cx + 50, cy + 36], radius=8,
                           outline=(150, 150, 150), width=5)
    draw.rectangle([cx - 18, cy - 44, cx + 18, cy - 32], fill=(150, 150, 150))
    draw.ellipse([cx - 20, cy - 18, cx + 20, cy + 22], outline=(150, 150, 150), width=5)
    draw.line([cx - 60, cy + 46, cx + 60, cy - 46], fill=(190, 60, 60), width=6)
    big = ImageFont.load_default(size=max(12, width // 14))
    small = ImageFont.load_default(size=max(9, width // 28))
    draw.text((cx, int(height * 0.70)), "photo unavailable", fill=(110, 110, 110),
              font=big, anchor="mm")
    draw.text((cx, int(height * 0.83)), "This photo has been removed or is no longer available",
              fill=(130, 130, 130), font=small, anchor="mm")
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


_HTML_PAGES = (
    ("Page not found", "<h1>Oops! That page can&rsquo;t be found.</h1><p>It looks like nothing "
     "was found at this location. Maybe try a search?</p><form><input name=s></form>"),
    ("Hotlinking not allowed", "<h1>Hotlinking is not allowed</h1><p>Please visit our gallery "
     "to see this picture.</p><a href=/>Home</a>"),
    ("Image moved", "<h1>This image has moved</h1><p>Our gallery has a new address. Click "
     "<a href=/gallery/>here</a> to continue.</p>"),
    ("Account suspended", "<h1>This account has been suspended.</h1><p>Contact your hosting "
     "provider for more information.</p>"),
)


def _html_page(key: str) -> bytes:
    index = int(hashlib.md5(key.encode()).hexdigest(), 16) % len(_HTML_PAGES)
    title, body = _HTML_PAGES[index]
    page = (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
            f"</title></head>\n<body>{body}<!-- {html.escape(key)} --></body></html>\n")
    return page.encode("utf-8")


def _reencode(data: bytes, quality: int, scale: float) -> bytes:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        image = image.convert("RGB")
        if scale != 1.0:
            size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            image = image.resize(size, Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=quality)
    out = buffer.getvalue()
    if out == data:   # vanishingly rare; keep "bytes changed" true
        out = _reencode(data, quality - 3, scale)
    return out


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
    is (whatever scale and seed made it); otherwise :func:`facelab.demo.generate` runs.

    Args:
        demo_dir: The demo folder.
        scale: ``small`` or ``full`` (used only when generating).
        seed: Generator seed (used only when generating).
        progress: Show the generator's progress bar.
    """
    demo_dir = Path(demo_dir)
    photos_csv = demo_dir / PHOTOS_NAME
    if photos_csv.is_file():
        photos = pd.read_csv(photos_csv, dtype={"person": str, "rect": str, "md5": str})
        root = str(demo_dir)
        if len(photos) and all(os.path.isfile(os.path.join(root, p))
                               for p in photos["path"].tolist()):
            return photos
    if demo_dir.exists() and not demo_dir.is_dir():
        raise ValueError(f"{demo_dir} is a file: pass a folder for the demo collection")
    from facelab import demo

    demo.generate(demo_dir, scale=scale, seed=seed, progress=progress)
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
        maker = _UrlMaker(random.Random(self.seed + 1299709))
        maker.used |= set(plan["url_path"])
        routes: dict[str, _Route] = {}
        placeholder = placeholder_jpeg()
        routes[PLACEHOLDER_PATH] = _Route("placeholder", "bytes", data=placeholder)
        served: list[str] = []
        derived = plan["kind"].isin(["changed", "duplicate_reencoded"])
        bar = tqdm(total=int(derived.sum()), desc="demo web: re-encoding photos",
                   disable=not self.progress or not derived.any(), leave=False)
        for row in (SimpleNamespace(**r) for r in plan.to_dict("records")):
            path, kind, file = row.url_path, row.kind, self.demo_dir / row.photo
            md5_served = ""
            if kind in ("ok", "duplicate_exact"):
                routes[path] = _Route(kind, "file", file=file)
                md5_served = row.md5_listed
            elif kind in ("changed", "duplicate_reencoded"):
                data = self._derived(file, row.md5_photo, int(row.quality), float(row.scale))
                bar.update()
                routes[path] = _Route(kind, "bytes", data=data)
                md5_served = hashlib.md5(data).hexdigest()
            elif kind == "http_404":
                routes[path] = _Route(kind, "status", status=404)
            elif kind == "placeholder":
                if row.mode == "redirect":
                    routes[path] = _Route(kind, "redirect", status=rng.choice([301, 302]),
                                          location=PLACEHOLDER_PATH, absolute=rng.random() < .5)
                else:
                    routes[path] = _Route(kind, "bytes", data=placeholder)
                md5_served = hashlib.md5(placeholder).hexdigest()
            elif kind == "html":
                data = _html_page(path)
                ctype = "image/jpeg" if row.mode == "image/jpeg" else "text/html; charset=utf-8"
                routes[path] = _Route(kind, "html", data=data, ctype=ctype)
                md5_served = hashlib.md5(data).hexdigest()
            elif kind == "truncated":
                routes[path] = _Route(kind, "truncated", file=file, cut=float(row.cut),
                                      mode=row.mode)
                data = file.read_bytes()
                md5_served = hashlib.md5(data[:max(1, int(len(data) * row.cut))]).hexdigest()
            elif kind == "slow":
                routes[path] = _Route(kind, "slow", file=file, mode=row.mode)
                md5_served = row.md5_listed
            elif kind == "redirect_chain":
                hops = [path] + [maker.hop() for _ in range(int(row.hops) - 1)]
                final = maker.photo(row.person)
                for here, there in zip(hops, hops[1:] + [final], strict=True):
                    routes[here] = _Route(kind, "redirect", status=rng.choice([301, 302, 303, 307]),
                                          location=there, absolute=rng.random() < 0.5)
                routes[final] = _Route(kind, "file", file=file)
                md5_served = row.md5_listed
            elif kind == "redirect_loop":
                loop = [path] + [maker.hop() for _ in range(int(row.hops) - 1)]
                for here, there in zip(loop, loop[1:] + [path], strict=True):
                    routes[here] = _Route(kind, "redirect", status=rng.choice([301, 302]),
                                          location=there, absolute=rng.random() < 0.5)
            elif kind == "huge":
                routes[path] = _Route(kind, "huge")
            served.append(md5_served)
        bar.close()
        self._routes = routes
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
        self.truth = truth

    def _derived(self, file: Path, md5_photo: str, quality: int, scale: float) -> bytes:
        """Re-encode (and resize) a photo, cached in ``demo_dir/web_cache`` across restarts."""
        cached = self.demo_dir / CACHE_NAME / f"{md5_photo}-q{quality}-x{scale:g}.jpg"
        if cached.is_file():
            return cached.read_bytes()
        data = _reencode(file.read_bytes(), quality, scale)
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


def probe(web: DemoWeb, per_kind: int = 1, timeout_s: float = 2.0,
          max_bytes: int = 10 * _CHUNK, seed: int = 0) -> pd.DataFrame:
    """Fetch a few URLs of every kind the way a careful downloader would, and report.

    Each URL is fetched with ``requests`` (connect/read timeout ``timeout_s``, a total
    deadline of three times that, at most ``max_bytes`` bytes, at most 10 redirects).

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
    import requests
    from PIL import Image

    order = {k: i for i, k in enumerate(KINDS)}
    picked = web.truth.sample(frac=1.0, random_state=seed).groupby("kind").head(per_kind)
    picked = picked.assign(_o=picked["kind"].map(order)).sort_values(["_o", "url"])
    rows = []
    with requests.Session() as session:
        session.max_redirects = 10
        for row in picked.itertuples(index=False):
            start = time.perf_counter()
            status, ctype, redirects, error, data = 0, "", 0, "", bytearray()
            try:
                with session.get(row.url, timeout=(timeout_s, timeout_s), stream=True) as resp:
                    status, redirects = resp.status_code, len(resp.history)
                    ctype = resp.headers.get("Content-Type", "")
                    for chunk in resp.iter_content(64 * 1024):
                        data += chunk
                        if len(data) > max_bytes:
                            error = f"more than {max_bytes} bytes"
                            break
                        if time.perf_counter() - start > 3 * timeout_s:
                            error = f"no complete answer within {3 * timeout_s:g} s"
                            break
            except requests.RequestException as exc:
                error = type(exc).__name__
            decodes = False
            if data and not error:
                try:
                    with Image.open(io.BytesIO(bytes(data))) as image:
                        image.load()
                    decodes = True
                except Exception:  # any undecodable body: that is the finding
                    decodes = False
            rows.append({"kind": row.kind, "status": status, "content_type": ctype,
                         "bytes": len(data), "redirects": redirects,
                         "md5_matches": bool(data) and not error
                         and hashlib.md5(bytes(data)).hexdigest() == row.md5_listed,
                         "decodes": decodes, "error": error,
                         "seconds": round(time.perf_counter() - start, 2)})
    return pd.DataFrame(rows)


def face_crop(image_path: str | Path, rect: str, size: int = 96, margin: float = 0.25) -> Any:
    """Crop the labelled face of a photo (rect widened by ``margin``) to a square image."""
    from PIL import Image

    with Image.open(image_path) as image:
        image = image.convert("RGB")
        box = parse_rect(rect) or (0, 0, image.width, image.height)
        x0, y0, x1, y1 = box
        side = max(x1 - x0, y1 - y0) * (1 + 2 * margin)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        crop = image.crop((round(cx - side / 2), round(cy - side / 2),
                           round(cx + side / 2), round(cy + side / 2)))
        return crop.resize((size, size), Image.Resampling.LANCZOS)


def identity_grid(demo_dir: str | Path, photos: pd.DataFrame | None = None,
                  columns: int = 8, size: int = 96) -> Any:
    """Plot one face per identity (its first single-face photo), titled by name."""
    import matplotlib.pyplot as plt

    demo_dir = Path(demo_dir)
    photos = photos if photos is not None else pd.read_csv(demo_dir / PHOTOS_NAME)
    single = photos[photos["n_faces"] == 1] if "n_faces" in photos.columns else photos
    first = single.groupby("person", sort=False).head(1)
    rows = max(1, -(-len(first) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.4, rows * 1.6), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, photo in zip(axes.flat, first.itertuples(index=False), strict=False):
        ax.imshow(face_crop(demo_dir / photo.path, photo.rect, size=size))
        ax.set_title(str(photo.person), fontsize=7)
    fig.suptitle(f"{len(first)} demo identities (one face each)")
    fig.tight_layout()
    return fig


def photos_per_identity_plot(photos: pd.DataFrame) -> Any:
    """Plot photos per identity, sorted: the imbalance the blog post suffered."""
    import matplotlib.pyplot as plt

    counts = photos["person"].value_counts().sort_values(ascending=False)
    fig, ax = plt.subplots(figsize=(max(6.0, len(counts) * 0.22), 3.8))
    ax.bar(range(len(counts)), counts.to_numpy(), color="tab:blue")
    ax.axhline(counts.median(), color="tab:red", linestyle="--",
               label=f"median {counts.median():.0f}")
    ax.set_xticks(range(len(counts)))
    ax.set_xticklabels(counts.index, rotation=90, fontsize=6 if len(counts) > 20 else 8)
    ax.set_ylabel("photos")
    ax.set_title(f"photos per identity: {counts.max()} vs {counts.min()} "
                 f"({counts.max() / max(1, counts.min()):.1f}x); {len(photos)} photos")
    ax.legend()
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``facelab demo-web``."""
    parser.add_argument("dir", help="demo collection folder (generated there first if empty)")
    parser.add_argument("--port", type=int, default=0, help="TCP port (default 0: a free one)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the URL plan (default 0)")
    parser.add_argument("--scale", choices=["small", "full"], default="full",
                        help="collection size when it has to be generated (default full)")
    parser.add_argument("--slow-s", type=float, default=Shares.slow_s,
                        help="seconds a slow URL takes (default %(default)s)")


def run_cli(args: argparse.Namespace) -> int:
    """Entry point of ``facelab demo-web``: serve until Ctrl-C."""
    shares = Shares(slow_s=args.slow_s)
    with serve(args.dir, port=args.port, seed=args.seed, shares=shares,
               scale=args.scale) as web:
        table = kind_table(web.truth)
        print(table.to_string())
        print(f"demo web serving {len(web.truth)} URLs at {web.base_url}/")
        print(f"URL list (PubFig format): {web.urls_path}")
        print(f"what is behind each URL:  {web.truth_path}")
        print("press Ctrl-C to stop", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print(f"\nstopped after {web.hit_count()} requests", file=sys.stderr)
    return 0
