"""Collection on a realistic web: facelab vs img2dataset over PubFig's real hosts, one budget.

Usage::

    python3 -m venv /tmp/i2d && /tmp/i2d/bin/pip install img2dataset==1.47.0   # not facelab's
    .venv/bin/python benchmarks/collect_realistic.py --img2dataset /tmp/i2d/bin/img2dataset

The web.  :mod:`facelab.demo.hostweb` serves the demo photos with the host distribution of
the real ``../shared/data/pubfig-lists/dev_urls.txt``: ``--urls`` rows (default 2,400)
sampled from it (seeded, in list order, so every host keeps its share), every host on its
own 127.a.b.c, a log-normal round trip per host (median 80 ms, 20-400 ms), one more round
trip per new connection.  What the real list cannot tell, the share of dead hosts, is an
**assumption**: today's mix (:data:`facelab.demo.hostweb.DEFAULT_DEAD`: refused 15 %, black
hole 6 %, silent 4 %, plus 5xx 5 % and 429 + ``Retry-After`` 5 % of hosts) is scaled by each
of ``--dead-scales`` (default 0, 1, 2: no dead hosts, today's mix, twice the dead hosts;
:func:`facelab.demo.hostweb.scale_dead`: only dead and answering hosts change kind, and a
host dead in one mix is dead in the larger ones).

The same conditions for both tools:

* **one connection budget**: the web counts every connection open at once, per host and in
  total (kept-alive idle ones too; a client's connects to a black hole, which no server
  sees, are read from ``/proc/net/tcp`` every 0.1 s); printed beside each run.  facelab's
  ``--workers N`` caps everything it opens, its host checks included, at N; img2dataset's
  ``--thread_count N`` opens one connection per thread.  They are compared at the same N:
  16, 64 and img2dataset's default, 256;
* **no Retry-After waiting** for either: img2dataset cannot wait (its ``--retries``
  re-sends at once, whatever the failure, and would also wait out every dead host's timeout
  again), so facelab runs with ``--max-retry-after 0`` and both lose the rate-limited
  hosts' photos; one more facelab run with its default (waits honoured) shows what that
  policy keeps, and one with ``--per-host 4`` (``--extra-cap``) what the polite cap of 2
  costs;
* timeout ``--timeout`` (5 s) for connect and read, no retries; facelab with its other
  defaults (per-host cap 2, connect check, breaker 3, worker processes), img2dataset 1.47.0
  with ``--resize_mode no --skip_reencode True`` (OpenCV decodes every image; its default
  process count, 1).

Each run is a fresh process into a fresh folder on a RAM disk, timed from start to exit;
"ok" = photos decoded and kept.  Within each of ``--runs`` rounds the configurations
alternate between the tools.  Printed per run: ok photos, seconds, ok/s, the peak
connections in total and to the busiest host; then per dead-host mix the medians and the
ratios (facelab / img2dataset ok/s at equal connections; img2dataset 256's wall time over
facelab's), and facelab's wall time against the floor (:meth:`HostWeb.floor`), with the
machine's load average.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import collect_throughput as throughput  # noqa: E402
from collect_throughput import demo_photos, out_base, run_img2dataset  # noqa: E402

DEV_URLS = ROOT.parent / "shared" / "data" / "pubfig-lists" / "dev_urls.txt"

# (tool, connections, variant): facelab "no-wait" (--max-retry-after 0), "wait" (its
# default: Retry-After honoured) or "capN" (no-wait, --per-host N)
Config = tuple[str, int, str]


def configs(scale: float, args: argparse.Namespace) -> list[Config]:
    """The runs of one dead-host mix, alternating tools (img2dataset's 256: today's mix)."""
    runs: list[Config] = []
    for n in sorted(set(args.facelab_workers) | set(args.i2d_threads)):
        if n in args.facelab_workers and args.only != "img2dataset":
            runs.append(("facelab", n, "no-wait"))
        if n in args.i2d_threads and args.only != "facelab" and (
                n in args.facelab_workers or scale == 1):
            runs.append(("img2dataset", n, ""))
    if scale == 1 and args.only != "img2dataset" and args.facelab_workers:
        runs.append(("facelab", min(args.facelab_workers), "wait"))
        if args.extra_cap:
            runs.append(("facelab", max(args.facelab_workers), f"cap{args.extra_cap}"))
    return runs


def label(config: Config) -> str:
    tool, n, policy = config
    if tool == "img2dataset":
        return f"img2dataset {n} threads"
    if policy.startswith("cap"):
        return f"facelab {n} workers, --per-host {policy[3:]}"
    return f"facelab {n} workers" + (", Retry-After waited" if policy == "wait" else "")


def run_one(config: Config, lists: dict[str, Path], out: Path,
            args: argparse.Namespace) -> tuple[float, int]:
    """One run of one configuration; returns seconds and ok photos."""
    tool, n, policy = config
    if tool == "img2dataset":
        return run_img2dataset(args.img2dataset, lists["plain"], out, n, args.timeout, 1,
                               args.urls)
    extra = ["--connect-timeout", str(args.timeout), *args.facelab_args.split()]
    if policy != "wait":
        extra += ["--max-retry-after", "0"]
    if policy.startswith("cap"):
        extra += ["--per-host", policy[3:]]
    return throughput.run_facelab(lists["pubfig"], out, n, args.timeout, tuple(extra))


def measure(web, config: Config, lists: dict[str, Path], work: Path,
            args: argparse.Namespace) -> dict:
    """Run one configuration against a running web; its figures and connection peaks."""
    out = work / "out"
    web.reset_counts()             # the 429s come again; connection peaks from zero
    try:
        seconds, ok = run_one(config, lists, out, args)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {"seconds": seconds, "ok": ok, "rate": ok / seconds, **web.connection_peaks()}


def median_of(results: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in results)


def print_mix(scale: float, results: dict[Config, list[dict]], floors: dict[int, dict]) -> None:
    """One dead-host mix: a table of medians, the ratios at equal connections, the floors."""
    print(f"\ndead hosts x{scale:g} (medians of {len(next(iter(results.values())))} run(s)):")
    print("| tool | ok photos | wall s | ok/s | peak connections | to the busiest host |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for config, runs in results.items():
        print(f"| {label(config)} | {median_of(runs, 'ok'):,.0f} | "
              f"{median_of(runs, 'seconds'):.1f} | {median_of(runs, 'rate'):.1f} | "
              f"{max(r['total'] for r in runs)} | {max(r['host'] for r in runs)} |")
    rate = {c: median_of(r, "rate") for c, r in results.items()}
    wall = {c: median_of(r, "seconds") for c, r in results.items()}
    for (tool, n, policy), ours in rate.items():
        theirs = rate.get(("img2dataset", n, ""))
        if tool == "facelab" and policy == "no-wait" and theirs:
            target = " (target >= 1.5x on today's mix)" if n in (16, 64) else ""
            print(f"  at {n} connections: facelab / img2dataset ok/s = {ours / theirs:.2f}x"
                  + target)
    default = wall.get(("img2dataset", 256, ""))
    for (tool, n, policy), seconds in wall.items():
        if tool == "facelab" and policy == "no-wait" and default:
            print(f"  facelab {n} workers vs img2dataset 256 threads, wall time: {seconds:.1f} s "
                  f"vs {default:.1f} s ({default / seconds:.2f}x; target >= 1.0x)")
    for n, floor in floors.items():
        key = ("facelab", n, "no-wait")
        if key in wall:
            print(f"  facelab {n} workers: {wall[key] / floor['floor']:.2f}x its floor of "
                  f"{floor['floor']:.1f} s (busiest host / cap 2 {floor['live']:.1f} s; all "
                  f"round trips and dead-host waits / {n} connections {floor['budget']:.1f} s)")


def run_mix(scale: float, args: argparse.Namespace, demo: Path, row_hosts: list[str],
            work: Path, log: Callable[[str], None]) -> None:
    """Serve one dead-host mix, run every configuration ``--runs`` times, print the table."""
    from facelab.demo.hostweb import HostWeb, plan_hosts, scale_dead

    hosts, row_host = plan_hosts(row_hosts, args.urls, seed=args.seed)
    hosts = scale_dead(hosts, scale, seed=args.seed)
    with HostWeb(demo, hosts, row_host) as web:
        lists = {"pubfig": web.write_list(work / f"list-{scale:g}.txt"),
                 "plain": web.write_plain_list(work / f"plain-{scale:g}.txt")}
        kinds: dict[str, int] = {}
        for host in web.hosts:
            kinds[host.kind] = kinds.get(host.kind, 0) + len(host.paths)
        busiest = max(web.hosts, key=lambda h: len(h.paths))
        log(f"\ndead hosts x{scale:g}: {args.urls:,} URLs on {len(web.hosts):,} hosts; URLs by "
            f"host kind {kinds}; busiest host {busiest.name} ({len(busiest.paths)} URLs, "
            f"{busiest.kind}, rtt {1000 * busiest.rtt:.0f} ms)")
        results: dict[Config, list[dict]] = {}
        plan = configs(scale, args)
        for round_ in range(args.runs):
            for config in (plan if round_ % 2 == 0 else plan[::-1]):
                got = measure(web, config, lists, work, args)
                results.setdefault(config, []).append(got)
                log(f"round {round_ + 1} {label(config):<38} {got['ok']:>6,} ok in "
                    f"{got['seconds']:7.2f} s: {got['rate']:6.1f} ok/s; peak connections "
                    f"{got['total']} in total ({got['connecting']} connecting to black holes), "
                    f"{got['host']} to {got['host_name']}; load {os.getloadavg()[0]:.1f}")
        floors = {n: web.floor(2, connect_timeout=args.timeout, timeout=args.timeout,
                               workers=n, retry_after=False)
                  for n in args.facelab_workers}
        print_mix(scale, {c: results[c] for c in plan}, floors)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--urls", type=int, default=2400, help="URLs sampled (default 2,400)")
    parser.add_argument("--dead-scales", type=float, nargs="+", default=[0, 1, 2],
                        help="dead-host mixes: multiples of today's shares (default 0 1 2)")
    parser.add_argument("--facelab-workers", type=int, nargs="*", default=[16, 64, 256])
    parser.add_argument("--i2d-threads", type=int, nargs="*", default=[16, 64, 256])
    parser.add_argument("--runs", type=int, default=1, help="rounds (default 1)")
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
    parser.add_argument("--extra-cap", type=int, default=4,
                        help="one more facelab run on today's mix at the most workers with "
                        "this per-host cap (what the cap of 2 costs; 0: none)")
    args = parser.parse_args()
    if not DEV_URLS.is_file():
        parser.error(f"needs the real list at {DEV_URLS} (../shared/data)")
    if args.only != "facelab" and not args.img2dataset:
        parser.error("img2dataset not found: pip install img2dataset==1.47.0 (see the module "
                     "doc), or --only facelab")
    from facelab.demo.hostweb import real_hosts

    demo, _ = demo_photos(args.demo)
    row_hosts = real_hosts(DEV_URLS)
    work = Path(tempfile.mkdtemp(prefix="facelab-realistic-", dir=out_base(args.out_base)))
    print(f"{os.cpu_count()} CPUs, load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}"
          f"; timeout {args.timeout} s, no retries, no Retry-After waiting unless said; "
          f"outputs in {work}", flush=True)
    try:
        for scale in args.dead_scales:
            run_mix(scale, args, demo, row_hosts, work, lambda line: print(line, flush=True))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nload average at the end: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
