"""Throughput of facelab.data.pipeline.make_dataset vs a bare read+decode loop, in one run.

Usage::

    .venv/bin/python benchmarks/pipeline_throughput.py [--data ../shared/data/pubfig83-dev]
        [--image-size 100] [--batch-size 32] [--limit N] [--rounds 2]

On the 6,610 PubFig83 crops (100x100 JPEGs) it measures images per second of

* ``bare tf loop``: a Python loop of ``tf.io.read_file`` + ``tf.io.decode_jpeg`` per file
  (eager, one file at a time: the minimum work any TensorFlow input has to do);
* ``bare PIL loop``: ``PIL.Image.open(path).convert("RGB")`` + ``np.asarray`` per file;
* ``make_dataset`` without augmentation, default balanced sampling and with
  ``balance="none"`` (shuffle the file list, parallel read+decode+resize, one-hot, batch,
  prefetch), one full epoch from a fresh iterator; and with ``cache=True`` (file bytes
  read once into memory when the dataset is built);
* ``make_dataset`` with augmentation, over ``--aug-limit`` images: ``augment=True`` (the
  fused layer, ``facelab.data.augment.fused_augmentation``) and the eight stock Keras layers of
  ``facelab.data.augment.make_augmentation``.

The files are read once first so every variant reads from the page cache.  Each variant
runs ``--rounds`` times, interleaved; the ratios are taken within a round (the machine is
shared and its load drifts) and their median is reported, with the best rate of each variant.
The target is >= 0.8x the faster bare loop without augmentation.  Dataset construction
(including the up-front check of every file) is timed separately.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "pubfig83-dev"


def bare_tf(paths: list[str]) -> int:
    import tensorflow as tf

    n = 0
    for p in paths:
        image = tf.io.decode_jpeg(tf.io.read_file(p), channels=3)
        n += int(image.shape[0] > 0)
    return n


def bare_pil(paths: list[str]) -> int:
    from PIL import Image

    n = 0
    for p in paths:
        with Image.open(p) as img:
            n += int(np.asarray(img.convert("RGB")).shape[0] > 0)
    return n


def run_dataset(ds, limit: int | None = None) -> int:
    n = 0
    for x, _ in ds:
        n += int(x.shape[0])
        if limit is not None and n >= limit:
            break
    return n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--image-size", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--limit", type=int, default=None, help="use only N files")
    parser.add_argument("--aug-limit", type=int, default=1024,
                        help="images to push through the augmented pipeline")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if not Path(args.data).is_dir():
        print(f"no data at {args.data}: pass --data FOLDER (one sub-folder of crops per person)")
        return 2

    import tensorflow as tf

    from facelab.data import pipeline
    from facelab.data.labels import load_faces

    faces = load_faces(args.data)
    if args.limit:
        faces = faces.sample(n=min(args.limit, len(faces)), random_state=0)
    faces = faces.assign(split="train")
    paths = faces["path"].tolist()
    for p in paths:                                   # warm the page cache for everyone
        with open(p, "rb") as handle:
            handle.read()
    n = len(paths)
    cpu = os.cpu_count()
    print(f"{n} files from {args.data}; image_size {args.image_size}, batch {args.batch_size}; "
          f"TensorFlow {tf.__version__}; {cpu} CPUs; "
          f"GPU: {bool(tf.config.list_physical_devices('GPU'))}")

    t = time.perf_counter()
    kw = {"image_size": args.image_size, "batch_size": args.batch_size, "seed": 0}
    datasets = {
        "make_dataset (balance=sample, default)": pipeline.make_dataset(faces, **kw),
        "make_dataset (balance=none)": pipeline.make_dataset(faces, balance="none", **kw),
        "make_dataset (cache=True)": pipeline.make_dataset(faces, cache=True, **kw),
    }
    build_s = (time.perf_counter() - t) / len(datasets)
    from facelab.data.augment import make_augmentation

    aug = {"make_dataset (augment=True: fused layer)": pipeline.make_dataset(faces, augment=True,
                                                                              **kw),
           "make_dataset (augment=8 stock Keras layers)": pipeline.make_dataset(
               faces, augment=make_augmentation(seed=0), **kw)}
    bare_tf(paths[:50])                               # TF eager warm-up
    for ds in aug.values():
        run_dataset(ds, 2 * args.batch_size)          # trace the augmentation once

    best: dict[str, float] = {}
    rounds: list[dict[str, float]] = []

    def record(name: str, count: int, seconds: float) -> None:
        rate = count / seconds
        best[name] = max(best.get(name, 0.0), rate)
        rounds[-1][name] = rate
        print(f"  {name:<46} {count:>6} images {seconds:7.2f} s {rate:9.0f} images/s",
              flush=True)

    for r in range(args.rounds):
        print(f"round {r + 1}/{args.rounds}")
        rounds.append({})
        for name, fn in (("bare tf loop (read_file+decode_jpeg)", bare_tf),
                         ("bare PIL loop (open+convert+asarray)", bare_pil)):
            t = time.perf_counter()
            record(name, fn(paths), time.perf_counter() - t)
        for name, ds in datasets.items():
            t = time.perf_counter()
            record(name, run_dataset(ds), time.perf_counter() - t)
        for name, ds in aug.items():
            t = time.perf_counter()
            record(name, run_dataset(ds, args.aug_limit), time.perf_counter() - t)

    bare_names = ("bare tf loop (read_file+decode_jpeg)", "bare PIL loop (open+convert+asarray)")
    # ratios within a round (measured minutes apart, so under the same machine load)
    ratios = {name: float(np.median([rd[name] / max(rd[b] for b in bare_names)
                                     for rd in rounds])) for name in best}
    print(f"\nimages/s, best of {args.rounds} rounds; ratio = median over rounds of the rate "
          "divided by the faster bare loop of the same round:")
    for name, rate in best.items():
        print(f"  {name:<46} {rate:9.0f}   {ratios[name]:5.2f}x")
    ratio = ratios["make_dataset (balance=sample, default)"]
    print(f"dataset construction (incl. up-front file check): {build_s:.2f} s per dataset")
    print(f"target >= 0.8x without augmentation (default balance=sample): {ratio:.2f}x -> "
          f"{'met' if ratio >= 0.8 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
