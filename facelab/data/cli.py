"""``facelab split``: make the train/val(/test) split of a face stage once."""

from __future__ import annotations

import argparse

from facelab.data.split import split_stage


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``facelab split`` (``facelab fit`` makes its split itself)."""
    parser.add_argument("source", help="face stage folder or folder of crops per person")
    parser.add_argument("--out", required=True, help="split stage folder to write")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.7, 0.15, 0.15],
                        help="train val [test] fractions (default 0.7 0.15 0.15: val "
                        "chooses, test is scored once)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="remake an existing split")


def run_cli(args: argparse.Namespace) -> int:
    """Make the split and print photos per split."""
    df, label_map = split_stage(args.source, args.out, args.fractions, args.seed,
                                force=args.force)
    print(f"{len(df)} faces, {len(label_map)} classes -> {args.out}")
    print(df["split"].value_counts().to_string())
    return 0
