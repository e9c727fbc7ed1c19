"""Collection throughput: facelab collect vs img2dataset on the same local URL lists.

Usage::

    python3 -m venv /tmp/i2d && /tmp/i2d/bin/pip install img2dataset   # NOT a facelab requirement
    .venv/bin/python benchmarks/collect_throughput.py --img2dataset /tmp/i2d/bin/img2dataset

What is measured.  Every tool downloads the same lists of demo-photo URLs from the same
static HTTP/1.1 server (a separate process on 127.0.0.1, keep-alive like real web servers;
``--http10`` closes every connection; ``--rtt-ms`` makes it answer like a distant host: one
round trip per request and one more per new connection, what TCP's handshake costs) with
matching settings: 16 concurrent downloads in all, timeout 10 s, no retries, no resizing,
sha256 computed, EXIF off.  img2dataset
(``--resize_mode no --skip_reencode True``) still decodes every image with OpenCV; facelab
decodes every image with Pillow (RGB JPEGs to their luma plane, see
``facelab.collect.fetch._decode``) and computes sha256, md5, phash and dhash for its dedup.

* ``facelab``: ``facelab collect --workers 16`` with its default process count (one per
  CPU for lists of 500 or more);
* ``img2dataset 1x16``: ``--processes_count 1 --thread_count 16``;
* ``img2dataset Px(16/P)``: the same number of processes as facelab, the threads split
  among them, one shard per process (img2dataset parallelises by shard).

Two list sizes: ``--urls`` (default 2,400) and every distinct photo of the demo
(``--large``, default all of the full demo's 5,611).  Each run is a fresh command-line
process into a fresh output folder, timed wall-clock from start to exit; the tools
alternate within each of ``--runs`` rounds.  Printed: images/s and client CPU ms/image
per run; per size, the median images/s per tool and facelab's ratio to each
img2dataset configuration and to the faster one; and the **marginal rate**
``(large - small) / (time large - time small)`` and the marginal client CPU per image,
each taken within a round and the median of the rounds printed, which leaves out each
tool's start-up and wrap-up (imports, process pools, manifest) and is what a long list
runs at.  facelab runs with ``--per-host 16`` (``--facelab-args``): every URL is on one
host here.

The outputs go to a RAM disk (``/dev/shm``) where there is one (``--out-base`` to
choose): on a virtual machine's disk, the kernel's writeback of one run's ~100 MB of
files lands in the next run's system time and made identical runs differ by 2x.  The
demo photos are generated once (``--demo`` to use another collection; with fewer distinct
photos than URLs, URLs repeat with a ``?copy=`` suffix, which favours facelab's
content-addressed store).  Without img2dataset (or with ``--baseline requests``) the
baseline is a plain thread-pool loop of ``requests.get`` + Pillow decode + write.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
SERVER = """
import sys, time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
class Quiet(SimpleHTTPRequestHandler):
    protocol_version = sys.argv[3]
    disable_nagle_algorithm = True   # TCP_NODELAY, as real web servers do
    rtt = float(sys.argv[4])
    def setup(self):
        super().setup()
        time.sleep(self.rtt)         # a new connection: TCP's handshake costs one round trip
    def send_head(self):
        time.sleep(self.rtt)         # each request: one round trip before the answer arrives
        return super().send_head()
    def log_message(self, *a):
        pass
Server(("127.0.0.1", int(sys.argv[2])), partial(Quiet, directory=sys.argv[1])).serve_forever()
"""


def children_cpu() -> float:
    """User + system CPU seconds of finished child processes (the tools' runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def process_cpu(pid: int) -> float:
    """CPU seconds a running process has used so far (0 where /proc is missing)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def demo_photos(demo: Path | None) -> tuple[Path, pd.DataFrame]:
    """A demo collection (the full one, generated once, unless one is given)."""
    if demo is None:
        for candidate in (ROOT / "runs" / "demo" / "work" / "demo",
                          ROOT / ".benchmarks" / "collect-demo-full"):
            if (candidate / "photos.csv").is_file():
                demo = candidate
                break
        else:
            from facelab import demo as demo_mod

            demo = ROOT / ".benchmarks" / "collect-demo-full"
            print(f"generating the full demo collection into {demo} (once, 1-3 minutes)")
            demo_mod.generate(demo, scale="full", seed=0)
    photos = pd.read_csv(demo / "photos.csv", dtype={"person": str, "rect": str, "md5": str})
    return demo, photos


def write_lists(photos: pd.DataFrame, base: str, n: int, folder: Path) -> tuple[Path, Path]:
    """A PubFig list for facelab and a plain URL list for img2dataset (the same URLs)."""
    from facelab.collect.sources import write_pubfig_list

    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        photo = photos.iloc[i % len(photos)]
        copy = i // len(photos)
        url = f"{base}/{photo['path']}" + (f"?copy={copy}" if copy else "")
        rows.append({"person": photo["person"], "imagenum": i + 1, "url": url,
                     "rect": photo["rect"], "md5sum": photo["md5"]})
    pubfig = write_pubfig_list(rows, folder / "urls_pubfig.txt")
    plain = folder / "urls.txt"
    plain.write_text("\n".join(r["url"] for r in rows) + "\n", encoding="utf-8")
    return pubfig, plain


def run_facelab(pubfig: Path, out: Path, threads: int, timeout: float,
                extra: tuple[str, ...] = ()) -> tuple[float, int]:
    cmd = [sys.executable, "-m", "facelab", "collect", str(pubfig), "--out", str(out),
           "--workers", str(threads), "--timeout", str(timeout), "--retries", "0",
           "--no-progress", *extra]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL,
                   env={**os.environ, "PYTHONPATH": str(ROOT)})
    seconds = time.perf_counter() - start
    manifest = pd.read_csv(out / "manifest.csv", keep_default_na=False)
    decoded = int(manifest["status"].isin(["ok", "duplicate", "placeholder"]).sum())
    return seconds, decoded


def run_img2dataset(exe: str, plain: Path, out: Path, threads: int, timeout: float,
                    processes: int, urls: int) -> tuple[float, int]:
    cmd = [exe, "--url_list", str(plain), "--input_format", "txt", "--output_folder", str(out),
           "--output_format", "files", "--processes_count", str(processes), "--thread_count",
           str(threads // processes), "--number_sample_per_shard",
           str(math.ceil(urls / processes)), "--resize_mode", "no", "--skip_reencode", "True",
           "--timeout", str(int(timeout)), "--retries", "0", "--extract_exif", "False",
           "--compute_hash", "sha256", "--enable_wandb", "False"]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    ok = 0
    for stats in out.glob("*_stats.json"):
        ok += json.loads(stats.read_text())["successes"]
    return seconds, ok


def run_requests_loop(plain: Path, out: Path, threads: int,
                      timeout: float) -> tuple[float, int]:
    """The plain baseline: requests.get + Pillow decode + write, in a thread pool."""
    code = f"""
import hashlib, io, sys, pathlib, requests
from concurrent.futures import ThreadPoolExecutor
from PIL import Image
out = pathlib.Path({str(out)!r}); out.mkdir(parents=True)
urls = pathlib.Path({str(plain)!r}).read_text().split()
session = requests.Session()
session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize={threads}))
def one(url):
    try:
        data = session.get(url, timeout={timeout}).content
        with Image.open(io.BytesIO(data)) as image:
            image.load()
        (out / hashlib.sha256(data).hexdigest()).write_bytes(data)
        return True
    except Exception:
        return False
with ThreadPoolExecutor({threads}) as pool:
    print(sum(pool.map(one, urls)))
"""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                          text=True)
    return time.perf_counter() - start, int(done.stdout.strip())


def print_marginal(tools: list[str], small: int, large: int,
                   seconds: dict[tuple[str, int], list[float]],
                   cpu_ms: dict[tuple[str, int], list[float]]) -> None:
    """The marginal rate and CPU: per round, the large list less the small one; medians.

    The rate is the extra URLs over the median of the rounds' extra seconds.  Taken per
    round (both sizes of a round ran within a minute or two, under much the same load)
    rather than from each size's median, which on a shared machine mixes loads.
    """
    extra = large - small
    rate, cpu = {}, {}
    for tool in tools:
        more = statistics.median(big - little for little, big in zip(
            seconds[(tool, small)], seconds[(tool, large)], strict=True))
        rate[tool] = extra / more if more > 0 else float("nan")
        cpus = zip(cpu_ms[(tool, small)], cpu_ms[(tool, large)], strict=True)
        cpu[tool] = statistics.median((big * large - little * small) / extra
                                      for little, big in cpus)
    others = [rate[t] for t in tools[1:]]
    print(f"marginal rate (the {extra:,} extra URLs of the large list, start-up and wrap-up "
          "left out; median of the rounds): " + "; ".join(
              f"{t} {rate[t]:.0f}/s ({cpu[t]:.2f} client CPU ms/image)" for t in tools)
          + f"; facelab vs the faster baseline: {rate['facelab'] / max(others):.2f}x")


def out_base(choice: Path | None) -> Path:
    if choice is not None:
        return choice
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 2 * 10**9:
        return shm
    return Path(tempfile.gettempdir())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--urls", type=int, default=2400, help="the small list (>= 2,000)")
    parser.add_argument("--large", type=int, default=None,
                        help="the large list (default: every distinct demo photo)")
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--demo", type=Path, default=None)
    parser.add_argument("--out-base", type=Path, default=None,
                        help="where the runs write (default: /dev/shm, a RAM disk)")
    parser.add_argument("--img2dataset", default=shutil.which("img2dataset"),
                        help="the img2dataset executable (default: on PATH)")
    parser.add_argument("--baseline", choices=("img2dataset", "requests"), default=None)
    parser.add_argument("--http10", action="store_true",
                        help="server closes every connection (HTTP/1.0) instead of keep-alive")
    parser.add_argument("--facelab-args", default="--per-host 16",
                        help="more facelab collect options (default '--per-host 16': every URL "
                        "is on one host here, and facelab's polite default cap of 2 per host "
                        "would leave it 2 downloads at once against the others' 16)")
    parser.add_argument("--rtt-ms", type=float, default=0.0,
                        help="emulate a distant server: each answer waits one round trip, and "
                        "a new connection one more (the TCP handshake); default 0")
    args = parser.parse_args()
    baseline = args.baseline or ("img2dataset" if args.img2dataset else "requests")
    if baseline == "img2dataset" and not args.img2dataset:
        parser.error("img2dataset not found: install it (see the module doc) or pass "
                     "--baseline requests")

    from facelab.collect.workers import choose_processes

    demo, photos = demo_photos(args.demo)
    sizes = [args.urls, args.large or len(photos)]
    processes = choose_processes(None, min(sizes), args.threads)
    tools = ["facelab"]
    if baseline == "requests":
        tools.append("requests loop")
    else:
        tools.append(f"img2dataset 1x{args.threads}")
        if processes > 1:
            tools.append(f"img2dataset {processes}x{args.threads // processes}")
    port = free_port()
    protocol = "HTTP/1.0" if args.http10 else "HTTP/1.1"
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(demo), str(port), protocol,
                               str(args.rtt_ms / 1000)])
    work = Path(tempfile.mkdtemp(prefix="facelab-bench-", dir=out_base(args.out_base)))
    try:
        time.sleep(1.0)
        lists = {n: write_lists(photos, f"http://127.0.0.1:{port}", n, work / f"list-{n}")
                 for n in sizes}
        print(f"lists of {' and '.join(f'{n:,}' for n in sizes)} URLs of {len(photos):,} "
              f"distinct demo photos from {demo}, served by a static {protocol} server "
              f"process (emulated round trip {args.rtt_ms:g} ms); {args.threads} downloads at "
              f"once, timeout {args.timeout:g} s, no retries; facelab in {processes} "
              f"process(es) {args.facelab_args}; {os.cpu_count()} CPUs (load average "
              f"{os.getloadavg()[0]:.1f}); outputs in {work}")
        seconds: dict[tuple[str, int], list[float]] = {}
        rates: dict[tuple[str, int], list[float]] = {}
        cpu_ms: dict[tuple[str, int], list[float]] = {}
        for run in range(args.runs):
            for n in sizes:
                pubfig, plain = lists[n]
                for tool in tools:
                    out = work / "out"
                    cpu_before, server_before = children_cpu(), process_cpu(server.pid)
                    if tool == "facelab":
                        took, ok = run_facelab(pubfig, out, args.threads, args.timeout,
                                               tuple(args.facelab_args.split()))
                    elif tool.startswith("img2dataset"):
                        procs = int(tool.split()[1].split("x")[0])
                        took, ok = run_img2dataset(args.img2dataset, plain, out, args.threads,
                                                   args.timeout, procs, n)
                    else:
                        took, ok = run_requests_loop(plain, out, args.threads, args.timeout)
                    cpu = children_cpu() - cpu_before
                    served = process_cpu(server.pid) - server_before
                    shutil.rmtree(out, ignore_errors=True)
                    key = (tool, n)
                    seconds.setdefault(key, []).append(took)
                    rates.setdefault(key, []).append(ok / took)
                    cpu_ms.setdefault(key, []).append(1000 * cpu / max(ok, 1))
                    print(f"round {run + 1} {n:>6,} URLs {tool:<18} {ok:>6,} decoded in "
                          f"{took:6.2f} s: {ok / took:7.1f} images/s, client "
                          f"{cpu_ms[key][-1]:5.2f} / server {1000 * served / max(ok, 1):4.2f} "
                          "CPU ms/image", flush=True)
        print()
        for n in sizes:
            ours = statistics.median(rates[("facelab", n)])
            line = [f"{n:>6,} URLs, median images/s: facelab {ours:.1f}"]
            theirs = {}
            for tool in tools[1:]:
                theirs[tool] = statistics.median(rates[(tool, n)])
                line.append(f"{tool} {theirs[tool]:.1f} ({ours / theirs[tool]:.2f}x)")
            print("; ".join(line) + f"; facelab vs the faster baseline: "
                  f"{ours / max(theirs.values()):.2f}x (target >= 1.0x, issue 11)")
        small, large = sizes
        if large > small:
            print_marginal(tools, small, large, seconds, cpu_ms)
        print(f"load average at the end: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
