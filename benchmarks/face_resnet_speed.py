"""The face network's speed: facelab's Keras port against dlib itself, and predict's cold start.

``python benchmarks/face_resnet_speed.py --model DIR [--chips 200] [--cold-runs 5]``

In one run, on the same 150 x 150 chips (the chips of the model folder's manifest):

* facelab: embeddings per second of :func:`facelab.learn.face_resnet.load_face_resnet`
  (batches of 64, no mirror image: one embedding per chip), after one warm-up batch;
* dlib: ``face_recognition_model_v1.compute_face_descriptor`` on each chip, and on the
  whole list (its batch form); the faster counts (needs the test-only ``dlib-bin``);
* the ratio (target >= 1.0x on 2 cores);
* ``facelab predict PHOTO --model DIR`` in a new process, ``--cold-runs`` times: one photo
  from a cold start, median seconds (target < 5 s).

``dlib-bin``'s wheel is built without BLAS; a dlib compiled with one is faster than this
baseline (``benchmarks/README.md`` says by how much where it was measured).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image  # noqa: E402


def chips_of(model: Path, n: int) -> np.ndarray:
    """``n`` chips of the model's manifest (every k-th), uint8 [n, 150, 150, 3]."""
    rows = pd.read_csv(model / "manifest.csv")
    paths = rows["path"].tolist()[:: max(1, len(rows) // n)][:n]
    return np.stack([np.asarray(Image.open(model / p).convert("RGB")) for p in paths])


def facelab_rate(chips: np.ndarray) -> float:
    """facelab's embeddings per second (after a warm-up batch)."""
    from facelab.learn.face_resnet import load_face_resnet

    net = load_face_resnet()
    x = chips.astype(np.float32)
    net(x[:64], training=False)
    start = time.perf_counter()
    for i in range(0, len(x), 64):
        np.asarray(net(x[i:i + 64], training=False))
    return len(x) / (time.perf_counter() - start)


def dlib_rate(chips: np.ndarray) -> tuple[float, float]:
    """dlib's descriptors per second, one chip per call and the whole list in one call."""
    import dlib

    from facelab.learn.face_resnet import weights_path

    model = dlib.face_recognition_model_v1(str(weights_path()))
    model.compute_face_descriptor(chips[0])
    start = time.perf_counter()
    for chip in chips:
        model.compute_face_descriptor(chip)
    single = len(chips) / (time.perf_counter() - start)
    start = time.perf_counter()
    model.compute_face_descriptor(list(chips))
    return single, len(chips) / (time.perf_counter() - start)


def cold_starts(model: Path, photo: Path, runs: int) -> list[float]:
    """Seconds of ``facelab predict PHOTO`` in a new process, ``runs`` times."""
    seconds = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "facelab", "predict", str(photo), "--model",
                            str(model), "--out", out, "--no-progress"], check=True,
                           capture_output=True)
            seconds.append(time.perf_counter() - start)
    return seconds


def main() -> int:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True,
                        help="a face-resnet model folder (facelab fit --out)")
    parser.add_argument("--photo", type=Path, default=None,
                        help="the photo for the cold start (default: the first chip's photo)")
    parser.add_argument("--chips", type=int, default=200)
    parser.add_argument("--cold-runs", type=int, default=5)
    args = parser.parse_args()
    chips = chips_of(args.model, args.chips)
    ours = facelab_rate(chips)
    print(f"facelab: {ours:.1f} embeddings/s on {len(chips)} chips")
    try:
        single, batch = dlib_rate(chips)
    except ImportError:
        print("dlib is not installed (pip install dlib-bin==20.0.1.post1): no baseline")
    else:
        best = max(single, batch)
        print(f"dlib compute_face_descriptor: {single:.1f}/s one by one, {batch:.1f}/s as a "
              f"list; facelab / dlib: {ours / best:.1f}x (target >= 1.0x)")
    photo = args.photo or next(iter(sorted((args.model / "chips").glob("faces/*/*.jpg"))), None)
    if photo is None:
        rows = pd.read_csv(args.model / "manifest.csv")
        photo = args.model / rows["path"].iloc[0]
    seconds = cold_starts(args.model, photo, args.cold_runs)
    print(f"predict, one photo from a cold start: median {statistics.median(seconds):.2f} s "
          f"(runs {', '.join(f'{s:.2f}' for s in seconds)}; target < 5 s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
