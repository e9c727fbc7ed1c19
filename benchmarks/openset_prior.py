"""The face network's stranger scores on real faces: the floor of its 'unknown' threshold.

``python benchmarks/openset_prior.py [--faces runs/p83/faces]``

A folder of five people gives five strangers to calibrate on, and the 99th percentile of
five people's scores is not the universe's: on the five-celebrity folder the threshold from
the folds alone let 17% of PubFig83 strangers through.  dlib's network maps every face
into one space, so how high a stranger scores hardly depends on the user's people: this
script measures it.  On the face stage's chips of ``../shared/data/pubfig83-dev`` (run
``facelab faces ../shared/data/pubfig83-dev --out DIR`` first), **people of alternate names
only** (the other half stays for evaluation: ``recognition_quality.py``), for models of
K = 3, 5, 10, 15 people with 10, 20, 40 or 80 training faces each (20 random draws each),
every other person of that half is a stranger; the open-set score
(:func:`facelab.learn.openset.open_scores`, the nearest class mean naming the person) of
every stranger face is pooled.  Printed: the score at each false-accept rate, in the form of
:data:`facelab.learn.face_resnet.STRANGER_SCORES`, and its spread over the (K, faces) cells.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
FARS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2)


def main() -> int:
    """Derive and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--faces", default=str(ROOT / "runs" / "p83" / "faces"),
                        help="face-stage folder of pubfig83-dev (chips)")
    parser.add_argument("--draws", type=int, default=20)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from facelab.learn.embeddings import chip_embeddings
    from facelab.learn.openset import ScoreModel, unit

    faces = Path(args.faces)
    if not (faces / "manifest.csv").is_file():
        sys.exit(f"{faces} has no manifest.csv: run  facelab faces ../shared/data/pubfig83-dev "
                 f"--out {faces}  first")
    rows = pd.read_csv(faces / "manifest.csv", keep_default_na=False)
    rows = rows[rows["status"] == "ok"].reset_index(drop=True)
    emb = chip_embeddings([str(faces / p) for p in rows["path"]], progress=True)
    feats = (unit(emb[:, 0]) + unit(emb[:, 1])) / 2
    person = rows["person"].to_numpy()
    half = sorted(set(person))[::2]
    rng = np.random.default_rng(0)
    pooled, cells = [], []
    for k in (3, 5, 10, 15):
        for n in (10, 20, 40, 80):
            cell = []
            for _ in range(args.draws):
                known = list(rng.choice(half, k, replace=False))
                train = np.concatenate([rng.permutation(np.flatnonzero(person == p))[:n]
                                        for p in known])
                labels = np.array([known.index(p) for p in person[train]])
                scorer = ScoreModel.from_training(feats[train], labels, k)
                strangers = np.flatnonzero(np.isin(person, half) & ~np.isin(person, known))
                cos = unit(feats[strangers]) @ scorer.centroids.T
                cell.append(scorer.scores(np.eye(k)[cos.argmax(1)], feats[strangers]))
            cell = np.concatenate(cell)
            pooled.append(cell)
            cells.append((k, n, float(np.quantile(cell, 0.99))))
    scores = np.concatenate(pooled)
    print(f"{len(scores)} stranger scores from {len(half)} people ({len(cells)} cells x "
          f"{args.draws} draws)")
    print("STRANGER_SCORES = {" + ", ".join(
        f"{far:g}: {np.quantile(scores, 1 - far):.4f}" for far in FARS) + "}")
    table = pd.DataFrame(cells, columns=["people", "faces each", "score at 1%"])
    print(table.pivot(index="people", columns="faces each", values="score at 1%").round(4))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
