"""Collection throughput on a realistic web: facelab vs img2dataset over PubFig's real hosts.

``python benchmarks/collect_realistic.py`` serves the demo photos from an emulated web with
the host distribution of the real ``../shared/data/pubfig-lists/dev_urls.txt``
(:mod:`facelab.demo.hostweb`: every host on its own 127.a.b.c address, a log-normal round
trip per host (median 80 ms, 20-400 ms), one more round trip per new connection, and dead
hosts of every kind: refused 15 %, black hole 6 %, silent 4 %, 5xx 5 %, 429 + Retry-After
5 % of hosts).  Two list sizes: ``--urls`` (default 2,400) rows sampled from the real list
(seeded, in list order, so every host keeps its share) and the whole demo (5,611 rows).

Tools, at matched concurrency (16 downloads in all), timeout ``--timeout`` for connect and
read, no retries (facelab still honours Retry-After: that is its scheduler, not a retry):

* ``facelab``: ``facelab collect --workers 16`` with its defaults (per-host cap 2, breaker
  3, its default process count); every photo decoded, sha256/md5/phash/dhash computed;
* ``img2dataset 1x16`` and ``img2dataset Px(16/P)`` (``--resize_mode no --skip_reencode
  True``, OpenCV decodes every image), as in ``collect_throughput.py``.

Each run is a fresh process into a fresh folder on a RAM disk, timed from start to exit;
the tools alternate within each of ``--runs`` rounds.  Printed per run: ok photos, seconds,
images/s; per size: the medians, facelab's ratio to each baseline, and facelab's wall time
against the floor (:meth:`facelab.demo.hostweb.HostWeb.floor`: the largest of the busiest
answering host's round trips divided by the cap, every answering host's round trips divided
by the 16 workers, and the dead-host probe's one timeout).  The rate-limited hosts' 429s are
reset before every run.  ``--img2dataset`` points at the executable (default: on PATH).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import collect_throughput as throughput  # noqa: E402
from collect_throughput import demo_photos, out_base, run_img2dataset  # noqa: E402

DEV_URLS = ROOT.parent / "shared" / "data" / "pubfig-lists" / "dev_urls.txt"


def run_facelab(pubfig: Path, out: Path, threads: int, timeout: float,
                extra: list[str]) -> tuple[float, int, dict]:
    """One facelab run; returns seconds, ok photos and the per-host totals."""
    seconds, decoded = throughput.run_facelab(
        pubfig, out, threads, timeout, ("--connect-timeout", str(timeout), *extra))
    manifest = pd.read_csv(out / "manifest.csv", keep_default_na=False)
    hosts = pd.read_csv(out / "hosts.csv")
    info = {"dead": int(hosts["dead"].sum()), "lost": float(hosts["timeout_seconds"].sum()),
            "unreachable": int((manifest["status"] == "host_unreachable").sum())}
    return seconds, decoded, info


def print_medians(sizes: list[int], tools: list[str], webs: dict, rates: dict, seconds: dict,
                  timeout: int, threads: int) -> None:
    """Per size: median images/s and seconds per tool, the ratios, and wall time vs floor."""
    for n in sizes:
        floor = webs[n].floor(2, connect_timeout=timeout, timeout=timeout, breaker=3,
                              attempts=1, workers=threads)
        parts = [f"{tool} {statistics.median(rates[(tool, n)]):.1f}/s "
                 f"({statistics.median(seconds[(tool, n)]):.1f} s)" for tool in tools]
        line = f"{n:>6,} URLs, medians: " + "; ".join(parts)
        if "facelab" in tools and len(tools) > 1:
            ours = statistics.median(rates[("facelab", n)])
            best = max(statistics.median(rates[(t, n)]) for t in tools[1:])
            line += f"; facelab / faster img2dataset: {ours / best:.2f}x (target >= 2x)"
        if "facelab" in tools:
            wall = statistics.median(seconds[("facelab", n)])
            line += (f"; facelab wall / floor: {wall / floor['floor']:.2f}x (floor "
                     f"{floor['floor']:.1f} s = max of busiest host / cap {floor['live']:.1f} s, "
                     f"all round trips / {threads} workers {floor['workers']:.1f} s, dead-host "
                     f"probe {floor['dead']:.1f} s; target <= 1.5x), wall / busiest-host floor "
                     f"{wall / floor['live']:.2f}x")
        print(line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--urls", type=int, default=2400)
    parser.add_argument("--large", type=int, default=None,
                        help="the large list (default: one URL per demo photo)")
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--timeout", type=int, default=5,
                        help="connect and read timeout, seconds (img2dataset takes whole "
                        "seconds; default 5)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--demo", type=Path, default=None)
    parser.add_argument("--out-base", type=Path, default=None)
    parser.add_argument("--img2dataset", default=shutil.which("img2dataset"))
    parser.add_argument("--facelab-args", default="",
                        help="more facelab collect options, e.g. '--per-host 4'")
    parser.add_argument("--only", choices=("facelab", "img2dataset"), default=None)
    args = parser.parse_args()
    if not DEV_URLS.is_file():
        parser.error(f"needs the real list at {DEV_URLS} (../shared/data)")
    if args.only != "facelab" and not args.img2dataset:
        parser.error("img2dataset not found: pip install img2dataset==1.47.0, or --only facelab")

    from facelab.collect.workers import choose_processes
    from facelab.demo.hostweb import HostWeb, plan_hosts, real_hosts

    demo, photos = demo_photos(args.demo)
    sizes = [args.urls, args.large or len(photos)]
    processes = choose_processes(None, min(sizes), args.threads)
    tools = [] if args.only == "img2dataset" else ["facelab"]
    if args.only != "facelab":
        tools.append(f"img2dataset 1x{args.threads}")
        if processes > 1:
            tools.append(f"img2dataset {processes}x{args.threads // processes}")
    row_hosts = real_hosts(DEV_URLS)
    work = Path(tempfile.mkdtemp(prefix="facelab-realistic-", dir=out_base(args.out_base)))
    webs = {}
    for n in sizes:
        hosts, row_host = plan_hosts(row_hosts, n, seed=args.seed)
        webs[n] = HostWeb(demo, hosts, row_host)
    try:
        for n, web in webs.items():
            web.start()
            kinds = pd.Series([h.kind for h in web.hosts for _ in h.paths]).value_counts()
            floor = web.floor(2, connect_timeout=args.timeout, timeout=args.timeout,
                              breaker=3, attempts=1)
            busiest = max(web.hosts, key=lambda h: len(h.paths))
            print(f"{n:,} URLs on {len(web.hosts):,} emulated hosts (busiest: {busiest.name} "
                  f"{len(busiest.paths)} URLs, rtt {1000 * busiest.rtt:.0f} ms); URLs by host "
                  f"kind: {kinds.to_dict()}; floor at cap 2: live {floor['live']:.1f} s, dead "
                  f"hosts (one probe, timeout {args.timeout} s) {floor['dead']:.1f} s")
            web.write_list(work / f"list-{n}.txt")
            web.write_plain_list(work / f"plain-{n}.txt")
        print(f"{args.threads} downloads at once, timeout {args.timeout} s, no retries; "
              f"facelab in {processes} process(es) {args.facelab_args}; outputs in {work}",
              flush=True)
        rates: dict[tuple[str, int], list[float]] = {}
        seconds: dict[tuple[str, int], list[float]] = {}
        for run in range(args.runs):
            for n in sizes:
                for tool in tools:
                    out = work / "out"
                    webs[n].hits.clear()     # rate-limited hosts: each run meets the 429s
                    if tool == "facelab":
                        took, ok, info = run_facelab(work / f"list-{n}.txt", out, args.threads,
                                                     args.timeout, args.facelab_args.split())
                        note = (f"; {info['dead']} hosts dead, {info['unreachable']} URLs not "
                                f"tried, {info['lost']:.0f} s lost to timeouts")
                    else:
                        procs = int(tool.split()[1].split("x")[0])
                        took, ok = run_img2dataset(args.img2dataset, work / f"plain-{n}.txt",
                                                   out, args.threads, args.timeout, procs, n)
                        note = ""
                    shutil.rmtree(out, ignore_errors=True)
                    rates.setdefault((tool, n), []).append(ok / took)
                    seconds.setdefault((tool, n), []).append(took)
                    print(f"round {run + 1} {n:>6,} URLs {tool:<18} {ok:>6,} ok in {took:7.2f} s:"
                          f" {ok / took:6.1f} images/s{note}", flush=True)
        print()
        print_medians(sizes, tools, webs, rates, seconds, args.timeout, args.threads)
    finally:
        for web in webs.values():
            web.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
