"""``facelab demo-web``: serve a demo collection as a misbehaving local web."""

from __future__ import annotations

import argparse
import sys
import time

from facelab.demo.urls import Shares
from facelab.demo.web import kind_table, serve


# ----------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``facelab demo-web``."""
    parser.add_argument("dir", help="demo collection folder (generated there first if empty)")
    parser.add_argument("--port", type=int, default=0, help="TCP port (default 0: a free one)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the URL plan (default 0)")
    parser.add_argument("--scale", choices=["small", "full"], default="full",
                        help="collection size when it has to be generated (default full)")
    parser.add_argument("--slow-s", type=float, default=Shares.slow_s,
                        help="seconds a slow URL takes (default %(default)s)")


def run_cli(args: argparse.Namespace) -> int:
    """Entry point of ``facelab demo-web``: serve until Ctrl-C."""
    shares = Shares(slow_s=args.slow_s)
    with serve(args.dir, port=args.port, seed=args.seed, shares=shares,
               scale=args.scale) as web:
        table = kind_table(web.truth)
        print(table.to_string())
        print(f"demo web serving {len(web.truth)} URLs at {web.base_url}/")
        print(f"URL list (PubFig format): {web.urls_path}")
        print(f"what is behind each URL:  {web.truth_path}")
        print("press Ctrl-C to stop", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print(f"\nstopped after {web.hit_count()} requests", file=sys.stderr)
    return 0
