"""``facelab bias``: the bias verdict of any classifier's predictions, from a CSV."""

from __future__ import annotations

import argparse
import sys

from facelab.analysis.bias import DEFAULT_THRESHOLD
from facelab.analysis.reports import missing_images, read_predictions, report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``facelab bias``."""
    parser.add_argument("predictions", metavar="PREDICTIONS.csv",
                        help="CSV with one row per example (any classifier's predictions)")
    parser.add_argument("--true", required=True, metavar="COL",
                        help="column of the true labels (names or integer ids)")
    parser.add_argument("--pred", required=True, metavar="COL",
                        help="column of the predicted labels (the same kind)")
    parser.add_argument("--image", metavar="COL", help="column of image paths (relative ones "
                        "from the CSV's folder): adds worst_cell.png, the faces behind the "
                        "most frequent mistake")
    parser.add_argument("--score", metavar="COL", help="column of the prediction's score "
                        "(shown in the gallery, highest first)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder "
                        "(verdict.json, per_class.csv, confused_pairs.csv, PNG figures)")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                        help="dominant-class check: predicted / true share (default "
                        f"{DEFAULT_THRESHOLD}; the other checks use their documented defaults)")
    parser.epilog = ("Exit status 1 when the bias verdict fires (a dominant class, a "
                     "swallowed class or a pair confused one way), 0 when it is quiet, 2 for "
                     "bad input (no such file or column, no rows, labels that do not match).")


def run_cli(args: argparse.Namespace) -> int:
    """Entry point of ``facelab bias``: writes the report, prints the verdict line."""
    import matplotlib.pyplot as plt

    df = read_predictions(args.predictions, args.true, args.pred, args.image, args.score)
    result = report(df, args.true, args.pred, args.image, score=args.score,
                    threshold=args.threshold, figures=False)
    missing = missing_images(result.predictions)
    if args.image and len(missing) == len(df):
        raise ValueError(f"none of the {len(df)} images in column {args.image!r} is a file "
                         f"(first: {missing[0]!r}; relative paths are read from the CSV's "
                         "folder, then from the current one)")
    if missing:
        print(f"facelab bias: warning: {len(missing)} of {len(df)} images in column "
              f"{args.image!r} are missing (first: {missing[0]!r}); they show as blank panels",
              file=sys.stderr)
    result.figures = result.draw(args.threshold)
    try:
        written = result.save(args.out, meta={
            "source": str(args.predictions), "true_column": args.true,
            "pred_column": args.pred, "image_column": args.image, "score_column": args.score})
    finally:
        plt.close("all")
    print(result.verdict.message)
    print(f"{len(df)} predictions, {len(result.names)} classes, accuracy "
          f"{result.summary['accuracy']:.3f}, balanced accuracy "
          f"{result.summary['balanced_accuracy']:.3f}; wrote {args.out}: "
          f"{', '.join(written)}")
    return 1 if result.verdict.fired else 0
