"""The pretrained face network on real faces: closed set, open set, against its floor.

``python benchmarks/face_network_quality.py [--out runs/p83] [--draws 3] [--fine-tune N]``

On ``../shared/data/pubfig83-dev`` (40 people), through the documented path: ``facelab
faces`` (chips, once, into ``OUT/faces``), then :func:`facelab.learn.fit` with its
defaults (``arch="face-resnet"``: a head on the network's cached embeddings, ``unknown``
calibrated on 5 folds of people and the network's stranger floor):

* **closed set**, every person known, the test split scored once: balanced accuracy and
  lowest recall of facelab's model, and of the floor on the same faces: the frozen
  embedding (each chip and its mirror image) with the nearest class mean (cosine);
* **open set**, ``--draws`` times: 10% of the people (4) drawn at random as strangers,
  never given to ``fit``; ``fit`` on the other 36; the known people's test faces named
  right at the calibrated threshold, and the strangers' faces accepted as somebody: all
  of them, per stranger (mean and worst), and for the strangers of the half of the people
  that ``openset_prior.py`` did not use; the floor's figures beside them (class means,
  the cosine to the named person's mean, its threshold calibrated on the same folds);
* ``--fine-tune N``: all of the above again with ``fit(..., fine_tune_epochs=N)`` (the
  last two stages of the network trained with the head; minutes a fit on a CPU), into
  ``OUT/fine-tune-N``, plus training faces per second.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "pubfig83-dev"


def chips(out: Path) -> Path:
    """The face stage's chips of pubfig83-dev (made once)."""
    from facelab.faces.filter import filter_faces

    faces = out / "faces"
    if not (faces / "manifest.csv").is_file():
        filter_faces(DATA, faces, progress=True, verbose=True)
    return faces


def unit_feats(emb: np.ndarray) -> np.ndarray:
    """Each chip's embedding averaged with its mirror image's, unit length."""
    from facelab.learn.openset import unit

    return unit(unit(emb[:, 0]) + unit(emb[:, 1]))


def floor_model(feats: np.ndarray, person: np.ndarray, train: np.ndarray,
                people: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Class means of ``people``'s training rows: nearest-mean names and cosines of all rows."""
    from facelab.learn.openset import unit

    means = unit(np.stack([feats[train & (person == p)].mean(0) for p in people]))
    cos = feats @ means.T
    return np.asarray(people)[cos.argmax(1)], cos.max(1)


def balanced(true: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """Balanced accuracy and lowest recall."""
    recalls = [float((pred[true == p] == p).mean()) for p in sorted(set(true))]
    return float(np.mean(recalls)), float(np.min(recalls))


def closed_set(faces: Path, out: Path, fine_tune: int = 0) -> dict:
    """fit on everyone (``fine_tune`` epochs of fine-tuning), and the floor on the same split."""
    from facelab.learn import fit
    from facelab.learn.embeddings import chip_embeddings

    start = time.perf_counter()
    result = fit(faces, out / "all", verbose=0, fine_tune_epochs=fine_tune)
    seconds = time.perf_counter() - start
    df = result.manifest.reset_index(drop=True)
    person = df["person"].to_numpy()
    names, _ = floor_model(unit_feats(chip_embeddings(df["path"].tolist())), person,
                           (df["split"] == "train").to_numpy(), list(result.label_map.names))
    test = (df["split"] == "test").to_numpy()
    floor = balanced(person[test], names[test])
    m = result.metrics
    return {"facelab": (m["balanced_accuracy"], m["min_recall"]), "floor": floor,
            "seconds": seconds, "test_faces": int(test.sum()),
            "rate": m["train_rows"] * fine_tune / max(result.train.seconds, 1e-9),
            "device": m["device"]}


def open_set_draw(faces: Path, out: Path, draw: int, odd: set[str], fine_tune: int = 0) -> dict:
    """One draw: 4 strangers out, fit on the rest, figures for facelab and the floor."""
    from facelab.data.labels import load_faces
    from facelab.learn import fit, openset
    from facelab.learn.embeddings import chip_embeddings
    from facelab.learn.folds import identity_folds
    from facelab.recognize import load

    everyone = load_faces(faces)
    people = sorted(everyone["person"].unique())
    rng = np.random.default_rng(1000 + draw)
    strangers = sorted(rng.choice(people, max(1, round(0.1 * len(people))), replace=False))
    known = everyone[~everyone["person"].isin(strangers)]
    result = fit(known, out / f"draw{draw}", verbose=0, fine_tune_epochs=fine_tune)
    info = json.loads((out / f"draw{draw}" / "openset.json").read_text())
    outside = everyone[everyone["person"].isin(strangers)].reset_index(drop=True)
    table = load(out / f"draw{draw}", crops=True).predict(outside["path"].tolist(),
                                                          crops=True)
    accepted = (table["decision"] != "unknown").to_numpy() & (table["status"] == "ok")
    per = pd.Series(accepted).groupby(outside["person"].to_numpy()).mean()
    row = {"strangers": strangers, "named": info["test"]["correct_named"],
           "accepted": float(accepted.mean()), "per_mean": float(per.mean()),
           "per_max": float(per.max()),
           "accepted_odd": float(per[per.index.isin(odd)].mean()) if per.index.isin(odd).any()
           else float("nan")}
    # the floor: class means, cosine score, threshold calibrated on the same folds
    df = result.manifest.reset_index(drop=True)
    both = pd.concat([df, outside.assign(split="outside")]).reset_index(drop=True)
    feats = unit_feats(chip_embeddings(both["path"].tolist()))
    person, split = both["person"].to_numpy(), both["split"].to_numpy()
    train, names = split == "train", list(result.label_map.names)
    impostors = []
    for group in identity_folds(names, 5, 0):
        _, cos = floor_model(feats, person, train, [p for p in names if p not in group])
        impostors.append(cos[np.isin(person, group) & (split != "test") & (split != "outside")])
    t = openset.threshold_for_far(np.concatenate(impostors), 0.01)
    pred, score = floor_model(feats, person, train, names)
    test, out_rows = split == "test", split == "outside"
    row["floor_named"] = float(((pred == person) & (score >= t))[test].mean())
    row["floor_accepted"] = float((score[out_rows] >= t).mean())
    row["floor_per_max"] = float(pd.Series(score[out_rows] >= t).groupby(
        person[out_rows]).mean().max())
    return row


def main() -> int:
    """Run and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "p83")
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--fine-tune", type=int, default=0, metavar="EPOCHS")
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"{DATA} is missing: this benchmark needs the shared real data")
    faces = chips(args.out)
    odd = set(sorted(p.name for p in DATA.iterdir() if p.is_dir())[1::2])
    pd.set_option("display.width", 200)
    for epochs in [0, args.fine_tune] if args.fine_tune else [0]:
        out = args.out / f"fine-tune-{epochs}" if epochs else args.out
        title = f"fine-tuned {epochs} epochs" if epochs else "head on the frozen network"
        c = closed_set(faces, out, epochs)
        print(f"{title}: closed set, test split ({c['test_faces']} faces, scored once; fit "
              f"{c['seconds']:.0f} s): facelab balanced accuracy {c['facelab'][0]:.4f} (lowest "
              f"recall {c['facelab'][1]:.3f}); frozen embedding + class means "
              f"{c['floor'][0]:.4f} ({c['floor'][1]:.3f})")
        if epochs:
            print(f"{title}: {c['rate']:.1f} training faces/s on {c['device']}")
        table = pd.DataFrame([open_set_draw(faces, out, d, odd, epochs)
                              for d in range(args.draws)])
        print(f"{title}: open set, 1% target (known: test faces named right; strangers: "
              "faces accepted):")
        print(table.drop(columns="strangers").round(4).to_string())
        print("strangers drawn:", [", ".join(r) for r in table["strangers"]])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
