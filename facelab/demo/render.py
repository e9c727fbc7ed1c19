"""Drawing the demo's synthetic photos: heads, backgrounds, torsos, group shots.

Everything is drawn with Pillow from an identity's traits and a seeded random generator, so
the same seed gives the same pixels.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from facelab.demo.identities import Identity, PhotoPlan, seeded_rng

# --------------------------------------------------------------------------------------
# Rendering

def _soft(d: np.ndarray, width: float) -> np.ndarray:
    """Coverage of a shape from a signed distance (negative inside), anti-aliased."""
    return np.clip(0.5 - d / width, 0.0, 1.0)


def _ellipse(u: np.ndarray, v: np.ndarray, cu: float, cv: float, a: float, b: float,
             width: float) -> np.ndarray:
    r = np.sqrt(((u - cu) / a) ** 2 + ((v - cv) / b) ** 2)
    return _soft((r - 1.0) * np.minimum(a, b), width)


def _blend(img: np.ndarray, colour: np.ndarray | Iterable[float], alpha: np.ndarray) -> None:
    a = alpha[..., None]
    img *= 1.0 - a
    img += a * np.asarray(colour, dtype=np.float32)


Box = tuple[slice, slice]


class _Canvas:
    """An upright head canvas in face units (face half-width ~1), premultiplied RGBA.

    ``u`` (a row) and ``v`` (a column) are the unit coordinates of the pixel centres, so
    every shape is an expression in (u, v) evaluated only inside its own box.
    """

    def __init__(self, px: float, u_min: float, u_max: float, v_min: float, v_max: float):
        self.px = px
        self.u_min, self.v_min = u_min, v_min
        w = int(np.ceil((u_max - u_min) * px))
        h = int(np.ceil((v_max - v_min) * px))
        self.u = ((np.arange(w, dtype=np.float32) + 0.5) / px + u_min)[None, :]
        self.v = ((np.arange(h, dtype=np.float32) + 0.5) / px + v_min)[:, None]
        self.rgb = np.zeros((h, w, 3), np.float32)
        self.alpha = np.zeros((h, w), np.float32)

    def box(self, u0: float, u1: float, v0: float, v1: float) -> Box | None:
        """Pixel slices covering the unit box, or None when it is outside the canvas."""
        h, w = self.alpha.shape
        x0 = max(0, int(np.floor((u0 - self.u_min) * self.px)))
        x1 = min(w, int(np.ceil((u1 - self.u_min) * self.px)) + 1)
        y0 = max(0, int(np.floor((v0 - self.v_min) * self.px)))
        y1 = min(h, int(np.ceil((v1 - self.v_min) * self.px)) + 1)
        if x1 <= x0 or y1 <= y0:
            return None
        return slice(y0, y1), slice(x0, x1)

    def uv(self, sl: Box) -> tuple[np.ndarray, np.ndarray]:
        return self.u[:, sl[1]], self.v[sl[0], :]

    def layer(self, sl: Box | None, colour: Any, cover: np.ndarray) -> None:
        """Composite ``colour`` (RGB or an array over the box) with ``cover`` "over"."""
        if sl is None:
            return
        _blend(self.rgb[sl], colour, cover)
        a = self.alpha[sl]
        a += cover * (1.0 - a)


@dataclass
class _Head:
    """What the steps drawing one head share: traits, pose, canvas, colours, feature layout.

    The layout (eye line ``ey``, eye spacing ``ex``, the centre line ``cu`` of the front
    features, the nose tip ``tip_v``, the mouth centre ``mu``/``mv``...) is in face units.
    """

    t: dict[str, Any]
    pose: dict[str, float]
    fw: float           # face half-width
    fl: float           # chin distance from the eye line
    vol: float          # hair volume
    style: str          # hair style
    px: float
    rng: np.random.Generator
    cv: _Canvas
    aa: float
    skin: np.ndarray
    hair_col: np.ndarray
    light: np.ndarray
    shift: float
    ex: float
    ey: float
    cu: float
    es: float
    tip_v: float
    ncu: float
    mv: float
    mw: float
    lt: float
    mu: float


def _head(traits: dict[str, Any], pose: dict[str, float], px: float,
          rng: np.random.Generator) -> _Head:
    """Set up one head: its canvas, colours, light and where the features go."""
    t = traits
    vol = t["hair_volume"]
    light = np.array([pose["light_x"], pose["light_y"], 1.0], np.float32)
    light /= np.linalg.norm(light)
    shift = float(np.sin(pose["yaw"]))  # horizontal shift of the face's front features
    ey = t["eye_height"] + 0.12 * pose["pitch"]
    cu = 0.3 * shift  # centre line of the front features
    return _Head(
        t=t, pose=pose, fw=t["face_width"], fl=t["face_length"], vol=vol,
        style=t["hair_style"], px=px, rng=rng,
        cv=_Canvas(px, -1.75 * vol, 1.75 * vol, -1.95 * vol, 2.1), aa=1.2 / px,
        skin=np.asarray(t["skin"], np.float32),
        hair_col=np.asarray(t["hair_colour"], np.float32), light=light, shift=shift,
        ex=t["eye_spacing"], ey=ey, cu=cu, es=t["eye_size"],
        tip_v=ey + t["nose_length"], ncu=cu + 0.35 * shift,
        mv=t["mouth_height"] * t["face_length"] / 1.35 + 0.1 * pose["pitch"],
        mw=t["mouth_width"] * (1.0 + 0.15 * pose["smile"]), lt=t["lip_thickness"],
        mu=cu + 0.3 * shift)


def _draw_back_hair(h: _Head) -> None:
    """Hair behind the head (long and curly styles)."""
    cv, vol, fw, aa = h.cv, h.vol, h.fw, h.aa
    if h.style == "long":
        sl = cv.box(-1.4 * vol * fw, 1.4 * vol * fw, -1.5, 2.1)
        if sl is not None:
            u, v = cv.uv(sl)
            back = _ellipse(u, v, 0.0, 0.45, 1.3 * vol * fw, 1.9, aa) * (v < 1.9)
            cv.layer(sl, h.hair_col * 0.7, back)
    if h.style == "curly":
        sl = cv.box(-1.5 * vol, 1.5 * vol, -1.9 * vol, 1.3)
        if sl is not None:
            u, v = cv.uv(sl)
            cv.layer(sl, h.hair_col * 0.75, _ellipse(u, v, 0.0, -0.2, 1.35 * vol * fw,
                                                     1.45 * vol, aa))


def _draw_neck_and_ears(h: _Head) -> None:
    """The neck (shaded under the chin), then the ears (hidden as the head turns)."""
    cv, aa = h.cv, h.aa
    sl = cv.box(-0.7, 0.7, 0.4, 2.1)
    if sl is not None:
        u, v = cv.uv(sl)
        neck = _soft(np.abs(u - 0.2 * h.shift) - 0.5 * h.fw, aa) * _soft(0.6 - v, aa)
        neck_shade = (0.55 + 0.25 * np.clip((v - h.fl) * 2.0, 0, 1))[..., None]
        cv.layer(sl, h.skin * neck_shade
                 * (0.9 + 0.1 * np.clip(u * h.light[0], -1, 1))[..., None], neck)
    for side in (-1, 1):
        ear_u = side * (1.0 * h.fw - 0.08 * side * h.shift)
        visible = 1.0 - max(0.0, side * h.shift) * 1.2
        if visible > 0.15:
            sl = cv.box(ear_u - 0.25, ear_u + 0.25, -0.3, 0.4)
            if sl is not None:
                u, v = cv.uv(sl)
                ear = _ellipse(u, v, ear_u, 0.05, 0.16 * h.t["ear_size"] * visible,
                               0.3 * h.t["ear_size"], aa)
                cv.layer(sl, h.skin * 0.8, ear)


class _FaceLayer:
    """The face's own colour array: features are painted into it, then it is composited.

    ``rgb`` is the shaded skin over the face box ``sl``, ``cover`` the face's coverage and
    ``shade`` its diffuse shading; :meth:`box` gives small boxes relative to that array.
    """

    def __init__(self, h: _Head) -> None:
        t, fw, light = h.t, h.fw, h.light
        self.cv = h.cv
        self.sl = h.cv.box(-fw - 0.2, fw + 0.2, -1.3, h.fl + 0.05)
        assert self.sl is not None
        self.u, self.v = h.cv.uv(self.sl)
        fu = self.u - 0.12 * h.shift
        top, bottom = 1.25, h.fl
        vb = np.where(self.v < 0, self.v / top, self.v / bottom)
        half = fw * (1.0 - t["jaw"] * np.clip(vb, 0, 1) ** 2)
        p = t["squareness"]
        r = (np.abs(fu) / half) ** p + np.abs(vb) ** p
        self.cover = _soft((r ** (1.0 / p) - 1.0) * fw, h.aa)
        nx = np.clip(fu / (fw * 1.05), -1, 1)
        ny = np.clip(vb * 0.8, -1, 1)
        nz = np.sqrt(np.clip(1.0 - nx ** 2 - ny ** 2, 0.0, 1.0))
        diffuse = np.clip(nx * light[0] + ny * light[1] + nz * light[2], 0.0, 1.0)
        self.shade = 0.45 + 0.6 * diffuse
        self.rgb = h.skin[None, None, :] * self.shade[..., None]
        # Specular sheen (forehead, nose, cheekbones): structure that dark skin shows too.
        half_vec = light + np.array([0.0, 0.0, 1.0], np.float32)
        half_vec /= np.linalg.norm(half_vec)
        spec = np.clip(nx * half_vec[0] + ny * half_vec[1] + nz * half_vec[2], 0.0, 1.0) ** 10
        self.rgb += (0.22 * spec)[..., None] * np.array([1.0, 0.96, 0.9], np.float32)

    def box(self, u0: float, u1: float, v0: float, v1: float
            ) -> tuple[Box, np.ndarray, np.ndarray]:
        """Return a box relative to the face array, and its (u, v)."""
        sl = self.cv.box(u0, u1, v0, v1)
        if sl is None:
            sl = (slice(0, 0), slice(0, 0))
        oy, ox = self.sl[0].start, self.sl[1].start
        rel = (slice(max(sl[0].start - oy, 0), max(sl[0].stop - oy, 0)),
               slice(max(sl[1].start - ox, 0), max(sl[1].stop - ox, 0)))
        return rel, self.u[:, rel[1]], self.v[rel[0], :]

    def paint(self, rel: Box, colour: Any, cover: np.ndarray) -> None:
        """Blend ``colour`` into the face over ``rel`` with ``cover``."""
        _blend(self.rgb[rel], colour, cover)

    def darken(self, rel: Box, cover: np.ndarray, amount: float) -> None:
        """Darken the face over ``rel`` by ``amount`` where ``cover`` is 1."""
        self.rgb[rel] *= 1.0 - amount * cover[..., None]


def _paint_sockets_and_nose(h: _Head, f: _FaceLayer) -> None:
    """Eye sockets; the nose: a shadow away from the light, nostrils, shadow under the tip."""
    ex, ey, cu = h.ex, h.ey, h.cu
    for side in (-1, 1):
        rel, u, v = f.box(cu + side * ex - 0.45, cu + side * ex + 0.45, ey - 0.4, ey + 0.35)
        f.darken(rel, _ellipse(u, v, cu + side * ex, ey - 0.03, 0.28, 0.18, 0.15), 0.33)
    nose_w, tip_v, ncu, shift = h.t["nose_width"], h.tip_v, h.ncu, h.shift
    shadow_side = -1.0 if h.light[0] > 0 else 1.0
    for side, amount in ((shadow_side, 0.3), (-shadow_side, 0.12)):
        bu = ncu + side * nose_w * 0.8
        rel, u, v = f.box(bu - 0.2, bu + 0.2, ey, tip_v + 0.1)
        band = _soft(np.abs(u - bu) - 0.045, 0.06) * _soft(ey + 0.08 - v, 0.05)
        band = band * _soft(v - tip_v, 0.05)
        f.darken(rel, band, amount)
    rel, u, v = f.box(ncu - 0.4, ncu + 0.4, tip_v - 0.15, tip_v + 0.25)
    f.darken(rel, _ellipse(u, v, ncu + 0.05 * shift, tip_v + 0.1, nose_w * 1.4, 0.07, 0.05),
             0.3)
    for side in (-1, 1):
        f.darken(rel, _ellipse(u, v, ncu + 0.05 * shift + side * nose_w * 0.55, tip_v + 0.03,
                               nose_w * 0.32, 0.035, h.aa), 0.65)
    tip = _ellipse(u, v, ncu + 0.1 * shift, tip_v - 0.04, nose_w * 0.7, 0.08, 0.06)
    f.paint(rel, np.minimum(h.skin * 1.12, 1.0), tip * 0.35)


def _paint_mouth(h: _Head, f: _FaceLayer) -> None:
    """Lips shaped by the smile, the mouth line, teeth when open, a shadow below."""
    mu, mv, mw, lt, aa, pose = h.mu, h.mv, h.mw, h.lt, h.aa, h.pose
    rel, u, v = f.box(mu - mw - 0.1, mu + mw + 0.1, mv - 0.25, mv + 0.3)
    du = (u - mu) / mw
    inside = np.clip(1.0 - du ** 2, 0.0, 1.0)
    line = mv - pose["smile"] * 0.06 * (1.0 - inside) + 0.01
    opening = pose["mouth_open"] * 0.07
    lips = _soft(np.abs(du) - 1.0, 1.0 / (h.px * mw) * 1.5)
    upper = lips * _soft((line - opening / 2 - lt * inside ** 0.5) - v, aa) * _soft(v - line, aa)
    lower = lips * _soft(v - (line + opening / 2 + lt * 1.3 * inside ** 0.5), aa)
    lower = lower * _soft(line - v, aa)
    lip_col = np.asarray(h.t["lip_colour"], np.float32) * f.shade[rel][..., None]
    f.paint(rel, lip_col, upper)
    f.paint(rel, lip_col * 1.08, lower)
    mouth_line = lips * _soft(np.abs(v - line) - max(opening / 2, 0.008), aa)
    f.paint(rel, np.array([0.25, 0.08, 0.08], np.float32), mouth_line * 0.9)
    if opening > 0.01:
        teeth = lips * _soft(np.abs(v - (line - opening / 4)) - opening / 5, aa) * (
            _soft(np.abs(du) - 0.7, 0.1))
        f.paint(rel, np.array([0.92, 0.9, 0.85], np.float32), teeth * 0.9)
    f.darken(rel, _ellipse(u, v, mu, mv + lt * 1.6 + 0.07, mw * 0.6, 0.05, 0.06), 0.15)


def _paint_facial_hair(h: _Head, f: _FaceLayer) -> None:
    """Beard, moustache, stubble or goatee (noisy, from the head's rng)."""
    fh = h.t["facial_hair"]
    if fh == "none":
        return
    mu, mv, mw, lt = h.mu, h.mv, h.mw, h.lt
    strength = {"beard": 0.85, "moustache": 0.85, "stubble": 0.35, "goatee": 0.85}[fh]
    rel, u, v = f.box(-h.fw - 0.2, h.fw + 0.2, h.tip_v - 0.05, h.fl + 0.05)
    region = np.zeros((v.shape[0], u.shape[1]), np.float32)
    lip_zone = _ellipse(u, v, mu, mv, mw * 1.05, lt * 1.8, 0.04)
    if fh in ("beard", "stubble"):
        region = _soft(h.tip_v + 0.12 - v, 0.08) * f.cover[rel] * (1.0 - 0.9 * lip_zone)
    if fh in ("beard", "moustache", "goatee"):
        region = np.maximum(region, _ellipse(u, v, mu, mv - lt - 0.04, mw * 0.95, 0.05, 0.03))
    if fh == "goatee":
        region = np.maximum(region, _ellipse(u, v, mu, mv + lt + 0.18, mw * 0.55, 0.16, 0.03))
    noise = h.rng.uniform(0.75, 1.0, region.shape).astype(np.float32)
    f.paint(rel, h.hair_col * 0.9, region * strength * noise)


def _paint_brows(h: _Head, f: _FaceLayer) -> None:
    """Eyebrows: arched, raised by the pose, thinner towards the temples."""
    t, ey = h.t, h.ey
    lift = h.pose["brow_raise"] * 0.05
    brow_col = np.minimum(h.hair_col * 0.65 + 0.02, h.skin * 0.55)
    for side in (-1, 1):
        bc = h.cu + side * (h.ex + 0.02)
        bw = 0.22
        rel, u, v = f.box(bc - bw - 0.05, bc + bw + 0.05, ey - 0.5, ey - 0.1)
        dbu = (u - bc) / bw
        arch = t["brow_arch"] * (1.0 - dbu ** 2)
        centre = ey - t["brow_height"] - lift - arch + 0.03 * side * dbu
        thick = t["brow_thickness"] * (1.0 - 0.4 * np.clip(side * dbu, 0, 1))
        brow = _soft(np.abs(v - centre) - thick / 2, h.aa) * _soft(np.abs(dbu) - 1.0, 0.4)
        f.paint(rel, brow_col, brow * 0.92)


_DARK = np.array([0.08, 0.05, 0.05], np.float32)


def _paint_eye(h: _Head, f: _FaceLayer, side: int) -> None:
    """One eye: almond-shaped sclera, iris, pupil, upper lid and a catch-light."""
    ey, es, aa = h.ey, h.es, h.aa
    ecu = h.cu + side * h.ex
    ea, eb = 0.16 * es, 0.08 * es * h.pose["eye_open"]
    rel, u, v = f.box(ecu - ea - 0.05, ecu + ea + 0.05, ey - 0.15, ey + 0.15)
    if eb < 0.02:   # closed: a lid line only
        lid = _soft(np.abs(v - ey) - 0.012, aa) * _soft(np.abs(u - ecu) - ea, aa)
        f.paint(rel, _DARK, lid)
        return
    rad = (ea ** 2 + eb ** 2) / (2 * eb)
    d1 = np.sqrt((u - ecu) ** 2 + (v - (ey + eb - rad)) ** 2) - rad
    d2 = np.sqrt((u - ecu) ** 2 + (v - (ey - eb + rad * 0.9)) ** 2) - rad * 0.9
    sclera = _soft(np.maximum(d1, d2), aa)
    white = np.array([0.93, 0.91, 0.88], np.float32) * (0.7 + 0.3 * f.shade[rel][..., None])
    f.paint(rel, white, sclera)
    icu, icv = ecu + h.pose["gaze_u"] * 0.05, ey + h.pose["gaze_v"] * 0.02
    iris = _ellipse(u, v, icu, icv, 0.075 * es, 0.075 * es, aa) * sclera
    f.paint(rel, np.asarray(h.t["eye_colour"], np.float32) * 0.75, iris)
    pupil = _ellipse(u, v, icu, icv, 0.034 * es, 0.034 * es, aa) * sclera
    f.paint(rel, np.array([0.02, 0.02, 0.02], np.float32), pupil)
    lidline = _soft(np.abs(d1) - 0.014, aa) * _soft(v - ey, 0.02)
    lidline = lidline * _soft(np.abs(u - ecu) - ea * 1.05, aa)
    f.paint(rel, _DARK, lidline)
    glint = _ellipse(u, v, icu + 0.02, icv - 0.02, 0.012, 0.012, aa) * sclera
    f.paint(rel, np.array([1.0, 1.0, 1.0], np.float32), glint * 0.8)


def _draw_face(h: _Head) -> None:
    """The face: a shaded superellipse narrowing to the chin, features painted in."""
    f = _FaceLayer(h)
    _paint_sockets_and_nose(h, f)
    _paint_mouth(h, f)
    _paint_facial_hair(h, f)
    _paint_brows(h, f)
    for side in (-1, 1):
        _paint_eye(h, f, side)
    h.cv.layer(f.sl, f.rgb, f.cover)


def _hair_cover(h: _Head, hu: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Coverage of the hair on top of the head, by style (``hu``: u relative to the turn)."""
    style, fw, vol, aa = h.style, h.fw, h.vol, h.aa
    if style == "bangs":
        hairline = h.ey - 0.38 + 0.05 * hu ** 2
    elif style == "crew":
        hairline = -0.78 + 0.25 * hu ** 2
    else:
        hairline = -0.62 + 0.35 * hu ** 2 - (0.08 * np.sign(hu) if style == "short" else 0.0)
    hv = 1.02 if style == "crew" else vol
    if style == "curly":
        angle = np.arctan2(v + 0.2, hu)
        bump = 0.05 * np.sin(angle * 14.0)
        cap = _ellipse(hu, v, 0.0, -0.25, 1.2 * fw * vol + bump, 1.35 * vol + bump, aa)
    else:
        cap = _ellipse(hu, v, 0.0, -0.2, 1.08 * fw * hv, 1.3 * hv, aa)
    cover = cap * _soft(v - hairline, 0.03)
    if style in ("long", "curly"):
        low = 1.6 if style == "long" else 0.6
        sides = _ellipse(hu, v, 0.0, (low - 0.6) / 2, 1.2 * fw * vol, (low + 0.6) / 2 + 0.1,
                         aa) * _soft(0.86 * fw - np.abs(hu), aa)
        cover = np.maximum(cover, sides)
    if style == "bun":
        cover = np.maximum(cover, _ellipse(hu, v, 0.0, -1.5, 0.42, 0.32, aa))
    if style == "crew":
        cover = cover * 0.9
    return cover


def _draw_top_hair(h: _Head) -> None:
    """Hair on top of the head (none when bald), streaked and shaded."""
    if h.style == "bald":
        return
    vol = h.vol
    sl = h.cv.box(-1.75 * vol, 1.75 * vol, -1.95 * vol, 2.1 if h.style == "long" else 0.8)
    assert sl is not None
    u, v = h.cv.uv(sl)
    hu = u - 0.1 * h.shift
    cover = _hair_cover(h, hu, v)
    streak = 0.92 + 0.08 * np.sin(hu * 55.0 + 3.0 * np.sin(v * 3.0))
    rr = np.sqrt((hu / (1.2 * vol)) ** 2 + ((v + 0.3) / (1.4 * vol)) ** 2)
    hshade = 0.5 + 0.6 * np.clip(1.0 - rr ** 2, 0, 1) + 0.1 * np.clip(hu * h.light[0], -1, 1)
    h.cv.layer(sl, h.hair_col * (streak * hshade)[..., None], cover)


def _draw_glasses(h: _Head) -> None:
    """Glasses (when the identity wears them): two rims and a bridge."""
    if not h.t["glasses"]:
        return
    cv, cu, ex, ey, aa = h.cv, h.cu, h.ex, h.ey, h.aa
    frame = np.asarray(h.t["glasses_colour"], np.float32)
    for side in (-1, 1):
        sl = cv.box(cu + side * ex - 0.25, cu + side * ex + 0.25, ey - 0.2, ey + 0.2)
        if sl is not None:
            u, v = cv.uv(sl)
            ring = _ellipse(u, v, cu + side * ex, ey + 0.01, 0.2, 0.14, aa) - _ellipse(
                u, v, cu + side * ex, ey + 0.01, 0.18, 0.125, aa)
            cv.layer(sl, frame, np.clip(ring, 0, 1))
    sl = cv.box(cu - ex + 0.15, cu + ex - 0.15, ey - 0.1, ey)
    if sl is not None:
        u, v = cv.uv(sl)
        bridge = _soft(np.abs(v - (ey - 0.04)) - 0.015, aa) + 0 * u
        cv.layer(sl, frame, bridge)


def _render_head(traits: dict[str, Any], pose: dict[str, float], px: float,
                 rng: np.random.Generator) -> tuple[np.ndarray, tuple[float, float]]:
    """Render one head as premultiplied RGBA float32 on an upright canvas.

    ``px`` is the canvas resolution in pixels per face unit (the face half-width is about
    one unit).  Returns the RGBA array and the canvas position of the face centre.
    """
    h = _head(traits, pose, px, rng)
    _draw_back_hair(h)
    _draw_neck_and_ears(h)
    _draw_face(h)
    _draw_top_hair(h)
    _draw_glasses(h)
    # rgb is already premultiplied by alpha (the layers composite "over").
    cv = h.cv
    out = np.concatenate([cv.rgb, cv.alpha[..., None]], axis=2)
    return out, (-cv.u_min * px, -cv.v_min * px)


def _background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """Draw a random background: a gradient with blurred shapes (drawn small, scaled up)."""
    f = 8
    sw, sh = max(2, width // f), max(2, height // f)
    c1 = rng.uniform(0.1, 0.95, 3)
    c2 = np.clip(c1 * rng.uniform(0.5, 1.2, 3) + rng.uniform(-0.2, 0.2, 3), 0, 1)
    gy = np.linspace(0, 1, sh, dtype=np.float32)[:, None, None]
    gx = np.linspace(0, 1, sw, dtype=np.float32)[None, :, None]
    mix = np.clip(gy * rng.uniform(0.2, 1.0) + gx * rng.uniform(-0.5, 0.5), 0, 1)
    arr = (c1 * (1 - mix) + c2 * mix).astype(np.float32)
    small = Image.fromarray((arr * 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(small)
    for _ in range(int(rng.integers(2, 9))):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        x0, y0 = rng.uniform(-0.2, 1.0) * sw, rng.uniform(-0.2, 1.0) * sh
        x1, y1 = x0 + rng.uniform(0.05, 0.6) * sw, y0 + rng.uniform(0.05, 0.6) * sh
        if rng.random() < 0.5:
            draw.rectangle([x0, y0, x1, y1], fill=colour)
        else:
            draw.ellipse([x0, y0, x1, y1], fill=colour)
    small = small.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.8, 2.5))))
    return small.resize((width, height), Image.Resampling.BILINEAR)


def _draw_torso(img: Image.Image, cx: float, cy: float, s: float, roll: float,
                colour: tuple[int, int, int], width_scale: float) -> None:
    """Shoulders and chest below a head centred at (cx, cy) with face half-width s."""
    c, sn = np.cos(roll), np.sin(roll)
    far = (img.height * 2 + img.width) / s
    shoulders = [(np.cos(a) * 2.4 * width_scale, 2.05 - np.sin(a) * 0.65)
                 for a in np.linspace(np.pi, 0, 13)]
    pts_uv = [(-2.6 * width_scale, far), *shoulders, (2.6 * width_scale, far)]
    pts = [(cx + s * (pu * c - pv * sn), cy + s * (pu * sn + pv * c)) for pu, pv in pts_uv]
    ImageDraw.Draw(img).polygon(pts, fill=colour)


def _paste_head(img: Image.Image, head: np.ndarray, centre: tuple[float, float],
                px: float, cx: float, cy: float, s: float, roll: float,
                blur: float = 0.0) -> None:
    """Composite a rendered head onto ``img`` scaled to ``s`` px/unit, rotated, blurred."""
    # Crop the canvas to what was drawn (less to resample).
    rows = np.flatnonzero(head[:, :, 3].max(axis=1) > 0)
    cols = np.flatnonzero(head[:, :, 3].max(axis=0) > 0)
    if rows.size == 0:
        return
    head = head[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    centre = (centre[0] - cols[0], centre[1] - rows[0])
    hh, hw = head.shape[:2]
    k = px / s  # canvas pixels per image pixel
    c, sn = np.cos(roll), np.sin(roll)
    # Image pixel (x, y) -> canvas (X, Y): rotate by -roll around the face centre, scale.
    corners = [(-centre[0], -centre[1]), (hw - centre[0], -centre[1]),
               (-centre[0], hh - centre[1]), (hw - centre[0], hh - centre[1])]
    xs = [cx + (a * c - b * sn) / k for a, b in corners]
    ys = [cy + (a * sn + b * c) / k for a, b in corners]
    x0, y0 = max(0, int(np.floor(min(xs)))), max(0, int(np.floor(min(ys))))
    x1, y1 = min(img.width, int(np.ceil(max(xs)))), min(img.height, int(np.ceil(max(ys))))
    if x1 <= x0 or y1 <= y0:
        return
    # Inverse affine: canvas = A @ (x - cx, y - cy) * k + centre
    a_ = c * k
    b_ = sn * k
    d_ = -sn * k
    e_ = c * k
    ox = x0 - cx
    oy = y0 - cy
    coeffs = (a_, b_, a_ * ox + b_ * oy + centre[0], d_, e_, d_ * ox + e_ * oy + centre[1])
    rgba8 = (np.clip(head, 0, 1) * 255 + 0.5).astype(np.uint8)
    patch = Image.fromarray(rgba8, "RGBa").transform(
        (x1 - x0, y1 - y0), Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR)
    if blur > 0:
        patch = patch.filter(ImageFilter.BoxBlur(blur))
    patch = patch.convert("RGBA")
    img.paste(patch, (x0, y0), patch)


def _photo_pose(rng: np.random.Generator) -> dict[str, float]:
    return {
        "yaw": float(np.clip(rng.normal(0, 0.2), -0.45, 0.45)),
        "pitch": float(np.clip(rng.normal(0, 0.25), -0.5, 0.5)),
        "roll": float(np.clip(rng.normal(0, 0.12), -0.35, 0.35)),
        "light_x": float(rng.uniform(-0.8, 0.8)),
        "light_y": float(rng.uniform(-0.7, 0.3)),
        "smile": float(rng.uniform(-0.3, 1.0)),
        "mouth_open": float(rng.choice([0.0, rng.uniform(0.2, 1.0)], p=[0.75, 0.25])),
        "eye_open": float(1.0 if rng.random() > 0.03 else 0.1) * float(rng.uniform(0.8, 1.1)),
        "gaze_u": float(rng.uniform(-1, 1)),
        "gaze_v": float(rng.uniform(-1, 1)),
        "brow_raise": float(rng.uniform(-0.5, 1.0)),
    }


def _face_rect(cx: float, cy: float, s: float, roll: float,
               traits: dict[str, Any]) -> tuple[float, float, float, float]:
    """Bounding box of the face (brows to chin, cheek to cheek) in image pixels."""
    c, sn = np.cos(roll), np.sin(roll)
    fw = traits["face_width"]
    pts = [(-fw, -0.75), (fw, -0.75), (-fw, traits["face_length"]), (fw, traits["face_length"])]
    xs = [cx + s * (pu * c - pv * sn) for pu, pv in pts]
    ys = [cy + s * (pu * sn + pv * c) for pu, pv in pts]
    return min(xs), min(ys), max(xs), max(ys)


_Slot = tuple[float, float, float]   # face centre x, y and face half-width s, image pixels


def _people(photo: PhotoPlan) -> list[int]:
    """Identity indices of the faces of a photo, left to right."""
    if photo.n_faces > 1:
        people = list(photo.others)
        people.insert(photo.slot, photo.identity_index)
        return people
    return [photo.identity_index]


def _slots(rng: np.random.Generator, n: int, width: int, height: int) -> list[_Slot]:
    """Place ``n`` faces: one anywhere near the centre, or a row of faces in a group photo."""
    if n == 1:
        side = min(width, height)
        face_w = side * rng.uniform(0.2, 0.42)  # full face width in px
        s = face_w / 2
        cx = rng.uniform(0.5 - 0.18, 0.5 + 0.18) * width
        cy = rng.uniform(0.36, 0.55) * height
        cy = float(np.clip(cy, 1.6 * s, height - 1.6 * s)) if height > 3.2 * s else height / 2
        cx = float(np.clip(cx, 1.4 * s, width - 1.4 * s)) if width > 2.8 * s else width / 2
        return [(cx, cy, s)]
    cell = width / n
    base = min(cell * rng.uniform(0.4, 0.55), height * 0.32)
    slots = []
    for k in range(n):
        s = base / 2 * rng.uniform(0.9, 1.1)
        cx = (k + 0.5) * cell + rng.uniform(-0.08, 0.08) * cell
        cy = height * rng.uniform(0.35, 0.5)
        slots.append((cx, cy, s))
    return slots


def _draw_people(img: Image.Image, identities: list[Identity], people: list[int],
                 slots: list[_Slot], labelled: int,
                 rng: np.random.Generator) -> tuple[float, float, float, float]:
    """Draw torsos (behind every head), then heads; return the labelled face's box."""
    rect = (0.0, 0.0, 0.0, 0.0)
    poses = [_photo_pose(rng) for _ in people]
    for (cx, cy, s), pose in zip(slots, poses, strict=True):
        colour = tuple(int(c) for c in rng.integers(10, 240, 3))
        _draw_torso(img, cx, cy, s, pose["roll"], colour, float(rng.uniform(0.9, 1.15)))
    # Focus / motion blur (the same for every face of a photo).
    blur = float(rng.choice([0.0, rng.uniform(0.3, 1.0)], p=[0.4, 0.6])) * min(
        img.width, img.height) / 400
    for person, (cx, cy, s), pose in zip(people, slots, poses, strict=True):
        traits = identities[person].traits
        px = float(min(s, 34.0))
        head, centre = _render_head(traits, pose, px, rng)
        _paste_head(img, head, centre, px, cx, cy, s, pose["roll"], blur)
        if person == labelled:
            rect = _face_rect(cx, cy, s, pose["roll"], traits)
    return rect


def _camera(img: Image.Image, skins: list[Any], rng: np.random.Generator) -> Image.Image:
    """Global photographic variation: auto exposure, colour cast, sensor noise.

    Like a camera metering on the faces (``skins``), dark skin gets more exposure.
    """
    lum = np.mean([np.dot(skin, [0.3, 0.59, 0.11]) for skin in skins])
    exposure = float(np.clip((0.55 / lum) ** 0.75, 1.0, 1.8))
    cast = rng.uniform(0.88, 1.12, 3) * rng.uniform(0.8, 1.15) * exposure
    ramp = np.arange(256, dtype=np.float32)
    lut = np.concatenate([np.clip(ramp * c, 0, 255) for c in cast]).astype(np.uint8)
    img = img.point(lut.tolist())
    if rng.random() < 0.5:  # sensor noise
        arr = np.asarray(img, dtype=np.int16) + rng.integers(-6, 7, (img.height, img.width, 1),
                                                             dtype=np.int16)
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    return img


def _rect_text(rect: tuple[float, float, float, float], width: int, height: int) -> str:
    """Format a face box as ``"x0,y0,x1,y1"``, rounded and clipped to the image."""
    x0, y0, x1, y1 = rect
    return ",".join(str(int(round(val))) for val in (
        max(0.0, x0), max(0.0, y0), min(float(width - 1), x1), min(float(height - 1), y1)))


def render_photo(identities: list[Identity], photo: PhotoPlan, seed: int) -> tuple[bytes, str]:
    """Render one planned photo.

    Args:
        identities: All identities of the collection (group photos draw others).
        photo: The plan of the photo (see :func:`plan`).
        seed: The collection's seed.

    Returns:
        The JPEG bytes and the labelled face's rect ``"x0,y0,x1,y1"``.
    """
    rng = seeded_rng(seed, 5, photo.identity_index, photo.imagenum)
    width, height = photo.width, photo.height
    img = _background(rng, width, height)
    people = _people(photo)
    slots = _slots(rng, len(people), width, height)
    rect = _draw_people(img, identities, people, slots, photo.identity_index, rng)
    img = _camera(img, [identities[i].traits["skin"] for i in people], rng)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=int(rng.integers(55, 96)))
    return buf.getvalue(), _rect_text(rect, width, height)
