"""``facelab faces``: the face stage's command-line options."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from facelab.faces.filter import FACES_DIR, filter_faces
from facelab.manifest import (
    MANIFEST_NAME,
)


# --------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``facelab faces``."""
    parser.add_argument("src", help="the collection stage's folder (with manifest.csv), or a "
                        "folder with one sub-folder of photos per person")
    parser.add_argument("--out", default=None, help="output stage folder (default: 'faces' "
                        "beside SRC when SRC is a stage folder)")
    parser.add_argument("--backend", choices=("mtcnn", "vision"), default="mtcnn",
                        help="mtcnn (offline, default) or vision (Google Cloud Vision; "
                        "credentials from GOOGLE_APPLICATION_CREDENTIALS)")
    parser.add_argument("--crop-style", choices=("chip", "square"), default="chip",
                        help="chip (default): aligned from the five landmarks as dlib does, "
                        "what the pretrained face network needs; square: the face box with "
                        "--margin, eyes levelled")
    parser.add_argument("--crop-size", type=int, default=150, help="crop side in px (150)")
    parser.add_argument("--margin", type=float, default=0.25,
                        help="square crops: room around the face box on each side, "
                        "fraction (0.25)")
    parser.add_argument("--min-confidence", type=float, default=0.9,
                        help="minimum detection score (0.9)")
    parser.add_argument("--min-face-px", type=float, default=40,
                        help="minimum face box side in photo pixels (40)")
    parser.add_argument("--iou", type=float, default=0.3, dest="iou_threshold",
                        help="IoU with the labelled rect to pick a face in a group photo (0.3)")
    parser.add_argument("--detect-max-side", type=int, default=None,
                        help="detect on a copy at most this long (mtcnn 320, vision 640)")
    parser.add_argument("--batch-size", type=int, default=16, help="images per MTCNN call")
    parser.add_argument("--max-photos", type=int, default=None,
                        help="only a random sample of this many photos (smoke runs)")
    parser.add_argument("--seed", type=int, default=0, help="seed of that sample")
    parser.add_argument("--wait", action="store_true", help="when SRC is still being "
                        "written (a collection in progress), wait for it to finish instead "
                        "of stopping with an error")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_cli(args: argparse.Namespace) -> int:
    """Entry point of ``facelab faces``."""
    src = Path(args.src)
    out = args.out
    if out is None:
        if not (src / MANIFEST_NAME).is_file():
            raise ValueError(f"{src} has no {MANIFEST_NAME}: pass --out for the crops and "
                             "manifest")
        out = src.parent / FACES_DIR
    df = filter_faces(src, out, backend=args.backend, crop_size=args.crop_size,
                      crop_style=args.crop_style,
                      margin=args.margin, min_confidence=args.min_confidence,
                      min_face_px=args.min_face_px, iou_threshold=args.iou_threshold,
                      detect_max_side=args.detect_max_side, batch_size=args.batch_size,
                      max_photos=args.max_photos, seed=args.seed, wait=args.wait,
                      progress=not args.no_progress)
    print(f"wrote {Path(out) / MANIFEST_NAME}", file=sys.stderr)
    return 0 if len(df) else 1
