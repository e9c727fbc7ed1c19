"""``facelab collect``: the collection stage's command-line options."""

from __future__ import annotations

import argparse

from facelab.collect.run import collect


# --------------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``facelab collect``."""
    parser.add_argument("source", help="PubFig-format URL list, or a folder with one "
                        "sub-folder of photos per person")
    parser.add_argument("--out", required=True, help="stage folder to write (images/, "
                        "manifest.csv, journal.jsonl); rerun the same command to resume")
    parser.add_argument("--workers", type=int, default=16,
                        help="concurrent downloads, and the most connections open at once, "
                        "host checks and kept-alive idle ones included (default 16)")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="read timeout per attempt, seconds (default 10)")
    parser.add_argument("--connect-timeout", type=float, default=5.0,
                        help="connect timeout per attempt, seconds (default 5)")
    parser.add_argument("--deadline", type=float, default=None,
                        help="total seconds per URL, retries included (default 3x --timeout)")
    parser.add_argument("--retries", type=int, default=2,
                        help="retries on connection errors, 429 and 5xx (default 2)")
    parser.add_argument("--max-bytes", type=int, default=20_000_000,
                        help="larger responses are too_large (default 20 MB)")
    parser.add_argument("--md5", choices=("flag", "reject"), default="flag",
                        help="md5 differs from the list's: flag (keep, md5_ok false; "
                        "default) or reject (status md5_mismatch)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N rows")
    parser.add_argument("--placeholders", default=None,
                        help="folder of known placeholder pictures")
    parser.add_argument("--placeholder-people", type=int, default=3,
                        help="a picture behind URLs of this many different people is a "
                        "placeholder (default 3)")
    parser.add_argument("--near-threshold", type=int, default=8,
                        help="phash and dhash bits within which photos are near duplicates "
                        "(default 8)")
    parser.add_argument("--processes", type=int, default=None,
                        help="worker processes sharing the --workers threads (default: one "
                        "per CPU, up to 8, for 500 URLs or more; 1: all in this process)")
    parser.add_argument("--per-host", type=int, default=2,
                        help="URLs of one host in flight, and connections open to it, at once "
                        "(polite default 2; 0: no cap)")
    parser.add_argument("--breaker", type=int, default=3,
                        help="after this many consecutive connection failures or timeouts of "
                        "one host, its other URLs end as host_unreachable without being tried "
                        "(default 3; 0: never)")
    parser.add_argument("--max-retry-after", type=float, default=60.0,
                        help="longest Retry-After (429/503) wait honoured, seconds (default 60)")
    parser.add_argument("--no-probe", action="store_true",
                        help="do not check each host first (its name looked up ahead, its "
                        "first URL sent alone: a dead host ends at once); the breaker only")
    parser.add_argument("--shard", default=None, metavar="I/N",
                        help="collect only the I-th of N shards (split by host), e.g. 1/4; "
                        "join the shard folders with `facelab merge`")
    parser.add_argument("--ray", default=None, metavar="ADDRESS|local",
                        help="run --shards shards as Ray tasks on the cluster at ADDRESS (or a "
                        "local Ray instance) and merge them into --out (needs ray)")
    parser.add_argument("--shards", type=int, default=4,
                        help="number of shards with --ray (default 4)")
    parser.add_argument("--retry-failed", action="store_true",
                        help="try again URLs that ended in timeout / connection / HTTP errors "
                        "or host_unreachable")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_cli(args: argparse.Namespace) -> int:
    """Entry point of ``facelab collect``."""
    options = dict(workers=args.workers, timeout=args.timeout,
                   connect_timeout=args.connect_timeout, deadline=args.deadline,
                   retries=args.retries, max_bytes=args.max_bytes, md5=args.md5,
                   limit=args.limit, placeholder_people=args.placeholder_people,
                   near_threshold=args.near_threshold, retry_failed=args.retry_failed,
                   processes=args.processes, per_host=args.per_host, breaker=args.breaker,
                   max_retry_after=args.max_retry_after, placeholders=args.placeholders,
                   probe=not args.no_probe)
    if args.ray is not None:
        if args.shard is not None:
            raise ValueError("--ray runs every shard itself: leave out --shard")
        from facelab.collect.shards import run_on_ray

        run_on_ray(args.source, args.out, shards=args.shards, address=args.ray,
                   **options)
        return 0
    collect(args.source, args.out, shard=args.shard,
            progress=not args.no_progress, **options)
    return 0
