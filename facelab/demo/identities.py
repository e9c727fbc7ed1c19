"""Who the demo's synthetic celebrities are, and which photos of them the demo plans.

Everything is deterministic from the seed: the same seed gives the same identities (some of
them deliberate look-alikes), the same skewed photo counts and the same group photos.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

SCALES = ("small", "full")


# Made-up celebrity names (any resemblance is accidental).  At least one is non-ASCII on
# purpose: names travel through CSV files, URLs and label maps.
NAMES = (
    "Zoë Kästner", "Brad Pitman", "Angela Jolly", "Marco Ferrante", "Lena Okafor",
    "Hiro Tanabe", "Sofía Castañeda", "Jonas Björklund", "Priya Raman", "Dmitri Volkov",
    "Chloé Marchand", "Kwame Mensah", "Isabella Russo", "Tom Hanley", "Mei Lin Zhou",
    "Olusegun Adeyemi", "Greta Lindqvist", "Rafael Oliveira", "Aisha Karimi", "Sean O'Malley",
    "Noémie Dubois", "Kenji Watanabe", "Fatima Zahra Bennani", "Lars Eriksen",
    "Camila Reyes", "Andrzej Nowak", "Yuki Sato", "Amara Nwosu", "Pedro Almeida",
    "Hannah Schröder", "Emre Yıldız", "Nadia Haddad", "Oscar Lindgren", "Leila Farahani",
    "Mateo García", "Ingrid Solberg", "Jae-won Park", "Chiara Bianchi", "Tariq Rahman",
    "Elodie Laurent", "Björn Halvorsen", "Ana Lúcia Prado", "Viktor Horváth", "Sakura Mori",
    "Diego Fuentes", "Maëlle Girard", "Ravi Shankar Iyer", "Olga Petrenko",
    "Henrik Dahl", "Lucía Navarro", "Kofi Boateng", "Elena Popescu",
)


# Skin, hair, eye, lip and clothing palettes (RGB 0..1).
SKIN_TONES = np.array([
    [0.96, 0.80, 0.69], [0.92, 0.74, 0.60], [0.87, 0.67, 0.52], [0.80, 0.58, 0.43],
    [0.70, 0.49, 0.34], [0.58, 0.39, 0.26], [0.46, 0.30, 0.20], [0.36, 0.23, 0.15],
    [0.94, 0.78, 0.62], [0.85, 0.66, 0.50],
])


HAIR_COLOURS = np.array([
    [0.08, 0.06, 0.05], [0.18, 0.12, 0.08], [0.33, 0.22, 0.13], [0.50, 0.35, 0.20],
    [0.78, 0.62, 0.38], [0.90, 0.80, 0.55], [0.55, 0.22, 0.10], [0.62, 0.60, 0.58],
    [0.88, 0.87, 0.85], [0.25, 0.20, 0.18],
])


EYE_COLOURS = np.array([
    [0.25, 0.15, 0.08], [0.35, 0.22, 0.10], [0.20, 0.35, 0.55], [0.30, 0.45, 0.30],
    [0.40, 0.42, 0.45], [0.15, 0.10, 0.07],
])


HAIR_STYLES = ("short", "long", "bald", "bangs", "curly", "bun", "crew")


def seeded_rng(seed: int, *keys: int) -> np.random.Generator:
    """A generator seeded by ``seed`` and the keys (the same keys give the same numbers)."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, *[int(k) for k in keys]])


def photo_path(identity: Identity, imagenum: int) -> str:
    """Where a planned photo goes, relative to the demo folder."""
    return f"photos/{identity.identity}/{imagenum}.jpg"


@dataclass(frozen=True)
class Identity:
    """A made-up celebrity: a name and the facial traits shared by all their photos."""

    identity: str
    person: str
    index: int
    traits: dict[str, Any] = field(default_factory=dict)
    lookalike_of: str = ""


@dataclass(frozen=True)
class PhotoPlan:
    """What one photo will show (drawn cheaply, before any pixel is rendered)."""

    identity_index: int
    imagenum: int
    width: int
    height: int
    n_faces: int
    others: tuple[int, ...]  # identity indices of the other people in a group photo
    slot: int  # position of the labelled person among the faces, left to right


def _slug(name: str) -> str:
    name = name.translate(str.maketrans({"ı": "i", "ø": "o", "ß": "ss", "ł": "l", "æ": "ae"}))
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return "-".join("".join(c if c.isalnum() else " " for c in ascii_name.lower()).split())


def check_scale(scale: str) -> None:
    """Raise ``ValueError`` unless ``scale`` is one of :data:`SCALES`."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, not {scale!r}")


def _random_traits(rng: np.random.Generator) -> dict[str, Any]:
    skin = SKIN_TONES[rng.integers(len(SKIN_TONES))] * rng.uniform(0.95, 1.05, 3)
    hair = HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))] * rng.uniform(0.9, 1.1, 3)
    eye = EYE_COLOURS[rng.integers(len(EYE_COLOURS))] * rng.uniform(0.9, 1.1, 3)
    male = bool(rng.random() < 0.5)
    styles = ("short", "bald", "crew", "curly", "short") if male else (
        "long", "bangs", "bun", "curly", "long", "short")
    facial_hair = rng.choice(["none", "beard", "moustache", "stubble", "goatee"],
                             p=[0.4, 0.2, 0.15, 0.15, 0.1]) if male else "none"
    return {
        "face_width": float(rng.uniform(0.9, 1.06)),      # relative face half-width
        "face_length": float(rng.uniform(1.22, 1.45)),    # chin distance from eye line
        "jaw": float(rng.uniform(0.15, 0.45)),            # how much the jaw narrows
        "squareness": float(rng.uniform(2.0, 2.8)),       # superellipse exponent
        "skin": [float(c) for c in np.clip(skin, 0, 1)],
        "hair_colour": [float(c) for c in np.clip(hair, 0, 1)],
        "hair_style": str(rng.choice(styles)),
        "hair_volume": float(rng.uniform(0.95, 1.2)),
        "eye_colour": [float(c) for c in np.clip(eye, 0, 1)],
        "eye_spacing": float(rng.uniform(0.36, 0.46)),
        "eye_size": float(rng.uniform(0.9, 1.2)),
        "eye_height": float(rng.uniform(-0.08, 0.05)),
        "brow_thickness": float(rng.uniform(0.045, 0.09)),
        "brow_arch": float(rng.uniform(0.02, 0.09)),
        "brow_height": float(rng.uniform(0.2, 0.28)),
        "nose_length": float(rng.uniform(0.38, 0.52)),
        "nose_width": float(rng.uniform(0.11, 0.17)),
        "mouth_width": float(rng.uniform(0.28, 0.40)),
        "lip_thickness": float(rng.uniform(0.045, 0.08)),
        "mouth_height": float(rng.uniform(0.78, 0.88)),
        "lip_colour": [float(c) for c in np.clip(
            skin * np.array([0.85, 0.55, 0.55]) + rng.uniform(-0.04, 0.04, 3), 0, 1)],
        "facial_hair": str(facial_hair),
        "glasses": bool(rng.random() < 0.18),
        "glasses_colour": [float(c) for c in rng.choice(
            [[0.05, 0.05, 0.05], [0.35, 0.2, 0.1], [0.6, 0.6, 0.62]])],
        "ear_size": float(rng.uniform(0.85, 1.15)),
    }


def _lookalike(traits: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """Traits close to ``traits``: same colouring and style, slightly different geometry."""
    new = dict(traits)
    for key, spread in (("eye_spacing", 0.025), ("nose_length", 0.05), ("nose_width", 0.02),
                        ("mouth_width", 0.04), ("face_length", 0.07), ("jaw", 0.08),
                        ("brow_arch", 0.02), ("eye_size", 0.08), ("lip_thickness", 0.01)):
        new[key] = float(traits[key] + rng.choice([-1, 1]) * rng.uniform(0.5, 1.0) * spread)
    new["skin"] = [float(np.clip(c * rng.uniform(0.97, 1.03), 0, 1)) for c in traits["skin"]]
    new["glasses"] = bool(traits["glasses"] if rng.random() < 0.5 else not traits["glasses"])
    return new


def make_identities(scale: str = "full", seed: int = 0) -> list[Identity]:
    """Make the made-up celebrities of a demo collection (cheap; no rendering).

    Args:
        scale: ``"small"`` (8 identities) or ``"full"`` (52 identities).
        seed: Random seed; the same seed gives the same identities.

    Returns:
        One :class:`Identity` per person; about one in eight is a look-alike of another.
    """
    check_scale(scale)
    count = 8 if scale == "small" else 52
    rng = seeded_rng(seed, 1)
    names = list(NAMES)
    order = rng.permutation(len(names))
    # Keep the non-ASCII name in every collection.
    chosen = [names[0]] + [names[i] for i in order if i != 0][: count - 1]
    chosen = [chosen[i] for i in rng.permutation(count)]
    identities: list[Identity] = []
    for index, name in enumerate(chosen):
        trng = seeded_rng(seed, 2, index)
        lookalike = ""
        if (index % 8 == 3) if scale == "full" else index == 5:
            source = identities[int(trng.integers(index))]
            traits = _lookalike(source.traits, trng)
            lookalike = source.identity
        else:
            traits = _random_traits(trng)
        identities.append(Identity(f"{index:02d}-{_slug(name)}", name, index, traits,
                                   lookalike))
    return identities


def _photo_counts(scale: str, n: int, rng: np.random.Generator) -> np.ndarray:
    if scale == "small":
        counts = rng.integers(20, 41, n)
        counts[rng.permutation(n)[:2]] = rng.integers(52, 61, 2)
        return counts
    stars = 4
    counts = np.minimum(50 + np.round(rng.exponential(55.0, n)).astype(int), 190)
    counts[rng.permutation(n)[:stars]] = rng.integers(200, 251, stars)
    return counts


def _image_size(rng: np.random.Generator, n_faces: int) -> tuple[int, int]:
    side = float(np.exp(rng.uniform(np.log(250), np.log(800))))
    if n_faces > 1:  # room for every face to be at least ~70 px wide
        side = max(side, 480.0, 160.0 * n_faces + 80.0)
    aspect = float(rng.choice([1.0, 4 / 3, 3 / 2, 3 / 4, 2 / 3, 16 / 9, 5 / 4],
                              p=[0.2, 0.25, 0.15, 0.2, 0.1, 0.05, 0.05]))
    if n_faces > 1 and aspect < 1:
        aspect = 1 / aspect
    if aspect >= 1:
        width, height = side, side / aspect
    else:
        width, height = side * aspect, side
    width, height = max(250, int(round(width))), max(250, int(round(height)))
    return min(width, 800), min(height, 800)


def plan_photos(scale: str, seed: int) -> tuple[list[Identity], list[PhotoPlan]]:
    """The identities and every photo to draw of them (counts, sizes, group members)."""
    identities = make_identities(scale, seed)
    n = len(identities)
    counts = _photo_counts(scale, n, seeded_rng(seed, 3))
    photos: list[PhotoPlan] = []
    for ident, count in zip(identities, counts, strict=True):
        rng = seeded_rng(seed, 4, ident.index)
        pool = np.array([i for i in range(n) if i != ident.index])
        for num in range(1, int(count) + 1):
            n_faces = 1
            if rng.random() < 0.10:
                n_faces = int(rng.choice([2, 3, 4], p=[0.5, 0.3, 0.2]))
            width, height = _image_size(rng, n_faces)
            others: tuple[int, ...] = ()
            slot = 0
            if n_faces > 1:
                others = tuple(int(i) for i in rng.choice(pool, n_faces - 1, replace=False))
                slot = int(rng.integers(n_faces))
            photos.append(PhotoPlan(ident.index, num, width, height, n_faces, others, slot))
    return identities, photos


def plan(scale: str = "full", seed: int = 0) -> pd.DataFrame:
    """List the photos a collection will contain, without rendering any of them.

    Args:
        scale: ``"small"`` or ``"full"``.
        seed: Random seed.

    Returns:
        One row per photo, in the order of ``photos.csv``: ``identity``, ``person``,
        ``identity_index``, ``imagenum``, ``path``, ``width``, ``height``, ``n_faces``,
        ``others`` (identity indices of the other faces of a group photo, space-separated)
        and ``slot`` (the labelled face's place among them, left to right).
    """
    check_scale(scale)
    identities, photos = plan_photos(scale, seed)
    return pd.DataFrame([{
        "identity": identities[p.identity_index].identity,
        "person": identities[p.identity_index].person,
        "identity_index": p.identity_index, "imagenum": p.imagenum,
        "path": photo_path(identities[p.identity_index], p.imagenum),
        "width": p.width, "height": p.height, "n_faces": p.n_faces,
        "others": " ".join(str(o) for o in p.others), "slot": p.slot,
    } for p in photos])
