"""The demo web's URL plan: which URL misbehaves how, and the bytes each one serves."""

from __future__ import annotations

import hashlib
import html
import io
import random
import string
import unicodedata
from dataclasses import dataclass, fields
from typing import Any

import pandas as pd

from facelab.manifest import format_rect, parse_rect

PLACEHOLDER_PATH = "/images/photo_unavailable.jpg"
_REPLACING = ("http_404", "placeholder", "html", "truncated", "changed", "slow",
              "redirect_chain", "redirect_loop")


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


class UrlMaker:
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


_NEEDED = {"person", "imagenum", "path", "rect", "md5"}


def _assign_kinds(n: int, counts: dict[str, int], rng: random.Random) -> list[str]:
    """Give each of ``n`` photos its kind: ``counts`` of each misbehaviour, the rest ok."""
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
    return kind_of


def _url_row(photo: dict[str, Any], kind: str, url_path: str) -> dict[str, Any]:
    """A plan row for one photo of ``photos.csv``, before its misbehaviour's parameters."""
    return {"person": str(photo["person"]), "order": float(photo["imagenum"]),
            "url_path": url_path, "kind": kind, "detail": "",
            "photo": str(photo["path"]), "duplicate_of": "", "rect": str(photo["rect"]),
            "md5_listed": str(photo["md5"]).lower(), "md5_photo": str(photo["md5"]).lower(),
            "quality": 0, "scale": 1.0, "cut": 0.0, "hops": 0, "mode": ""}


def _placeholder(row: dict[str, Any], rng: random.Random, shares: Shares, n_faces: Any) -> None:
    """Shared placeholder picture: served directly or behind a redirect."""
    row["mode"] = "redirect" if rng.random() < shares.placeholder_redirected else "direct"
    row["detail"] = ("redirects to the shared placeholder" if row["mode"] == "redirect"
                     else "placeholder picture, 200")


def _html(row: dict[str, Any], rng: random.Random, shares: Shares, n_faces: Any) -> None:
    """A web page, labelled text/html or image/jpeg."""
    row["mode"] = "image/jpeg" if rng.random() < shares.html_as_jpeg else "text/html"
    row["detail"] = f"web page labelled {row['mode']}"


def _truncated(row: dict[str, Any], rng: random.Random, shares: Shares, n_faces: Any) -> None:
    """The first 20-80% of the bytes, with an honest or a full Content-Length."""
    row["cut"] = round(rng.uniform(0.2, 0.8), 3)
    row["mode"] = "dropped" if rng.random() < shares.truncated_dropped else "short"
    row["detail"] = (f"first {row['cut']:.0%} of the bytes, " +
                     ("promises full length, drops the connection"
                      if row["mode"] == "dropped" else "honest Content-Length"))


def _changed(row: dict[str, Any], rng: random.Random, shares: Shares, n_faces: Any) -> None:
    """Re-encoded at another quality, single-face photos sometimes resized."""
    row["quality"] = rng.choice([55, 60, 65, 70, 75, 80])
    if int(n_faces) == 1 and rng.random() < shares.changed_resized:
        row["scale"] = round(rng.uniform(0.6, 0.85), 3)
        row["mode"] = "resized"
        row["detail"] = f"resized x{row['scale']}, quality {row['quality']}"
    else:
        row["mode"] = "reencoded"
        row["detail"] = f"re-encoded, quality {row['quality']}"


def _slow(row: dict[str, Any], rng: random.Random, shares: Shares, n_faces: Any) -> None:
    """Stalls before the headers or trickles the body."""
    row["mode"] = "trickle" if rng.random() < shares.slow_trickle else "stall"
    row["detail"] = (f"{row['mode']}s for {shares.slow_s:g} s" if row["mode"] == "stall"
                     else f"trickles the body over {shares.slow_s:g} s")


def _redirect_chain(row: dict[str, Any], rng: random.Random, shares: Shares,
                    n_faces: Any) -> None:
    """2-4 redirects, then the photo."""
    row["hops"] = rng.randint(2, 4)
    row["detail"] = f"{row['hops']} redirects, then the photo"


def _redirect_loop(row: dict[str, Any], rng: random.Random, shares: Shares,
                   n_faces: Any) -> None:
    """A loop of 1-3 redirects."""
    row["hops"] = rng.randint(1, 3)
    row["detail"] = f"loop of {row['hops']} redirect(s)"


def _huge(row: dict[str, Any], rng: random.Random, shares: Shares, n_faces: Any) -> None:
    """A streamed response of ``huge_mb`` MiB."""
    row["detail"] = f"streams {shares.huge_mb} MiB, no Content-Length"


# kind -> step drawing that misbehaviour's parameters into a plan row (in place)
_MISBEHAVIOUR = {"placeholder": _placeholder, "html": _html, "truncated": _truncated,
                 "changed": _changed, "slow": _slow, "redirect_chain": _redirect_chain,
                 "redirect_loop": _redirect_loop, "huge": _huge}


def _duplicate_rows(rows: list[dict[str, Any]], photos: pd.DataFrame, counts: dict[str, int],
                    maker: UrlMaker, rng: random.Random) -> list[dict[str, Any]]:
    """The extra rows that copy an ok photo of the same person (exact or re-encoded)."""
    ok_rows = [r for r in rows if r["kind"] == "ok"]
    last = photos.groupby(photos["person"].astype(str))["imagenum"].max().to_dict()
    extra = []
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
            extra.append(row)
    return extra


def _ordered_plan(rows: list[dict[str, Any]], photos: pd.DataFrame) -> pd.DataFrame:
    """The plan table: ordered by person (as in ``photos``) then order, imagenum 1..n."""
    plan = pd.DataFrame(rows)
    person_order = {p: k for k, p in enumerate(dict.fromkeys(photos["person"].astype(str)))}
    plan["_p"] = plan["person"].map(person_order)
    plan = plan.sort_values(["_p", "order"], kind="stable").drop(columns=["_p", "order"])
    plan.insert(1, "imagenum", plan.groupby("person", sort=False).cumcount() + 1)
    return plan.reset_index(drop=True)


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
    if not _NEEDED <= set(photos.columns):
        raise ValueError(f"photos table lacks {sorted(_NEEDED - set(photos.columns))}: pass "
                         "the photos.csv written by facelab.demo.photos.generate")
    rng = random.Random(seed)
    maker = UrlMaker(random.Random(seed + 7919))
    photos = photos.reset_index(drop=True)
    n = len(photos)
    counts = shares.counts(n)
    kind_of = _assign_kinds(n, counts, rng)
    n_faces = photos["n_faces"].tolist() if "n_faces" in photos.columns else [1] * n
    rows: list[dict[str, Any]] = []
    for i, photo in enumerate(photos.to_dict("records")):
        row = _url_row(photo, kind_of[i], maker.photo(str(photo["person"])))
        if kind_of[i] in _MISBEHAVIOUR:
            _MISBEHAVIOUR[kind_of[i]](row, rng, shares, n_faces[i])
        rows.append(row)
    rows += _duplicate_rows(rows, photos, counts, maker, rng)
    return _ordered_plan(rows, photos)


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


def html_page(key: str) -> bytes:
    """A small web page (served with 200 where a photo was expected), varied by ``key``."""
    index = int(hashlib.md5(key.encode()).hexdigest(), 16) % len(_HTML_PAGES)
    title, body = _HTML_PAGES[index]
    page = (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
            f"</title></head>\n<body>{body}<!-- {html.escape(key)} --></body></html>\n")
    return page.encode("utf-8")


def reencode(data: bytes, quality: int, scale: float) -> bytes:
    """The same photo re-encoded at ``quality`` and resized by ``scale`` (a "changed" photo)."""
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
        out = reencode(data, quality - 3, scale)
    return out
