"""``facelab merge``: join the shard folders of one list into one collection folder."""

from __future__ import annotations

import argparse

from facelab.collect.shards import merge


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``facelab merge``."""
    parser.add_argument("shards", nargs="+", help="the folders of `facelab collect ... "
                        "--shard I/N`, each shard once")
    parser.add_argument("--out", required=True, help="the merged stage folder")
    parser.add_argument("--source", default=None,
                        help="the list the shards came from, if it moved since")
    parser.add_argument("--placeholders", default=None,
                        help="folder of known placeholder pictures")


def run_cli(args: argparse.Namespace) -> int:
    """Entry point of ``facelab merge``."""
    merge(args.shards, args.out, source=args.source, placeholders=args.placeholders)
    return 0
