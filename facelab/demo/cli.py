"""``facelab demo-data``: generate the offline demo photo collection."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from facelab.demo.identities import SCALES
from facelab.demo.photos import IDENTITIES_CSV, PHOTOS_CSV, generate


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``facelab demo-data``."""
    parser.add_argument("dir", help="folder to write photos/, photos.csv and identities.csv to")
    parser.add_argument("--scale", choices=SCALES, default="full",
                        help="full: 52 identities, ~6,000 photos (default); small: 8 identities")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--workers", type=int, default=None,
                        help="processes to render with (default: number of CPUs)")


def run_cli(args: argparse.Namespace) -> int:
    """Run ``facelab demo-data``."""
    start = time.perf_counter()
    df = generate(args.dir, scale=args.scale, seed=args.seed, workers=args.workers)
    print(f"wrote {len(df)} photos of {df['person'].nunique()} identities to "
          f"{Path(args.dir) / 'photos'} in {time.perf_counter() - start:.1f} s "
          f"({Path(args.dir) / PHOTOS_CSV}, {Path(args.dir) / IDENTITIES_CSV})")
    return 0
