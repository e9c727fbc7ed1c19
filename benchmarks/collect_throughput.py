"""Collection throughput: facelab collect vs img2dataset on the same local URL list.

Both tools download the same list of demo-photo URLs (>= 2,000) from the same static HTTP
server on 127.0.0.1 (a separate process; HTTP/1.1 with keep-alive like real web servers,
or ``--http10`` to close every connection), with matching settings: the same number of
threads in one process, the same timeout, no retries, no resizing (img2dataset
``--resize_mode no --skip_reencode True``: it still decodes every image with OpenCV,
as facelab decodes every image with Pillow and hashes it), sha256 computed by both,
EXIF extraction off.  Each run is a fresh command-line process into a fresh output
folder, timed wall-clock from start to exit; the tools alternate (facelab, img2dataset,
facelab, ...).  Printed: images/s per run, the medians and their ratio.

img2dataset is NOT a facelab requirement.  Install it into a throwaway venv::

    python3 -m venv /tmp/i2d && /tmp/i2d/bin/pip install img2dataset
    .venv/bin/python benchmarks/collect_throughput.py --img2dataset /tmp/i2d/bin/img2dataset

Without img2dataset (or with ``--baseline requests``) the baseline is a plain loop of
``requests.get`` + Pillow decode in a thread pool of the same size.

Options: ``--urls N`` (default 2400), ``--threads T`` (16), ``--runs R`` (3 per tool),
``--demo DIR`` (a demo collection; default: generated once, small scale, into
``.benchmarks/collect-demo``).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
SERVER = """
import sys
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
class Quiet(SimpleHTTPRequestHandler):
    protocol_version = sys.argv[3]
    disable_nagle_algorithm = True   # TCP_NODELAY, as real web servers do
    def log_message(self, *a):
        pass
Server(("127.0.0.1", int(sys.argv[2])), partial(Quiet, directory=sys.argv[1])).serve_forever()
"""


def children_cpu() -> float:
    """User + system CPU seconds of finished child processes (the tools' runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def demo_photos(demo: Path | None) -> tuple[Path, pd.DataFrame]:
    if demo is None:
        for candidate in (ROOT / "runs" / "demo" / "work" / "demo",
                          ROOT / ".benchmarks" / "collect-demo"):
            if (candidate / "photos.csv").is_file():
                demo = candidate
                break
        else:
            from facelab import demo as demo_mod

            demo = ROOT / ".benchmarks" / "collect-demo"
            print(f"generating a small demo collection into {demo} (once)")
            demo_mod.generate(demo, scale="small", seed=0)
    photos = pd.read_csv(demo / "photos.csv", dtype={"person": str, "rect": str, "md5": str})
    return demo, photos


def write_lists(photos: pd.DataFrame, base: str, n: int, folder: Path) -> tuple[Path, Path]:
    """A PubFig list for facelab and a plain URL list for img2dataset (the same URLs)."""
    from facelab.sources import write_pubfig_list

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


def run_facelab(pubfig: Path, out: Path, threads: int, timeout: float) -> tuple[float, int]:
    cmd = [sys.executable, "-m", "facelab", "collect", str(pubfig), "--out", str(out),
           "--workers", str(threads), "--timeout", str(timeout), "--retries", "0",
           "--no-progress"]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL,
                   env={**os.environ, "PYTHONPATH": str(ROOT)})
    seconds = time.perf_counter() - start
    manifest = pd.read_csv(out / "manifest.csv", keep_default_na=False)
    decoded = int(manifest["status"].isin(["ok", "duplicate", "placeholder"]).sum())
    return seconds, decoded


def run_img2dataset(exe: str, plain: Path, out: Path, threads: int,
                    timeout: float) -> tuple[float, int]:
    cmd = [exe, "--url_list", str(plain), "--input_format", "txt", "--output_folder", str(out),
           "--output_format", "files", "--processes_count", "1", "--thread_count",
           str(threads), "--resize_mode", "no", "--skip_reencode", "True", "--timeout",
           str(int(timeout)), "--retries", "0", "--extract_exif", "False",
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
    import hashlib

    import requests
    from PIL import Image

    urls = plain.read_text(encoding="utf-8").split()
    out.mkdir(parents=True)
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_maxsize=threads)
    session.mount("http://", adapter)

    def one(url: str) -> bool:
        try:
            data = session.get(url, timeout=timeout).content
            with Image.open(io.BytesIO(data)) as image:
                image.load()
            (out / hashlib.sha256(data).hexdigest()).write_bytes(data)
            return True
        except Exception:  # noqa: BLE001
            return False

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        ok = sum(pool.map(one, urls))
    return time.perf_counter() - start, ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--urls", type=int, default=2400)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--demo", type=Path, default=None)
    parser.add_argument("--img2dataset", default=shutil.which("img2dataset"),
                        help="the img2dataset executable (default: on PATH)")
    parser.add_argument("--baseline", choices=("img2dataset", "requests"), default=None)
    parser.add_argument("--http10", action="store_true",
                        help="server closes every connection (HTTP/1.0) instead of keep-alive")
    args = parser.parse_args()
    baseline = args.baseline or ("img2dataset" if args.img2dataset else "requests")
    if baseline == "img2dataset" and not args.img2dataset:
        parser.error("img2dataset not found: install it (see the module doc) or pass "
                     "--baseline requests")

    demo, photos = demo_photos(args.demo)
    port = free_port()
    protocol = "HTTP/1.0" if args.http10 else "HTTP/1.1"
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(demo), str(port), protocol])
    work = Path(tempfile.mkdtemp(prefix="facelab-bench-"))
    try:
        time.sleep(1.0)
        pubfig, plain = write_lists(photos, f"http://127.0.0.1:{port}", args.urls, work)
        print(f"{args.urls} URLs of {len(photos)} demo photos from {demo}, served by a static "
              f"{protocol} server process; {args.threads} threads, timeout {args.timeout:g} s, "
              f"no retries; baseline: {baseline}; {os.cpu_count()} CPUs")
        results: dict[str, list[float]] = {"facelab": [], baseline: []}
        cpu_ms: dict[str, list[float]] = {"facelab": [], baseline: []}
        for run in range(args.runs):
            for tool in ("facelab", baseline):
                out = work / f"{tool}-{run}"
                cpu_before = children_cpu()
                if tool == "facelab":
                    seconds, ok = run_facelab(pubfig, out, args.threads, args.timeout)
                elif tool == "img2dataset":
                    seconds, ok = run_img2dataset(args.img2dataset, plain, out, args.threads,
                                                  args.timeout)
                else:
                    seconds, ok = run_requests_loop(plain, out, args.threads, args.timeout)
                cpu = children_cpu() - cpu_before
                rate = ok / seconds
                results[tool].append(rate)
                cpu_ms[tool].append(1000 * cpu / max(ok, 1))
                print(f"run {run + 1} {tool:<12} {ok:>5} images decoded in {seconds:6.1f} s: "
                      f"{rate:7.1f} images/s, {cpu_ms[tool][-1]:5.2f} CPU ms/image "
                      "(client process)", flush=True)
                shutil.rmtree(out, ignore_errors=True)
        ours = statistics.median(results["facelab"])
        theirs = statistics.median(results[baseline])
        print(f"median facelab {ours:.1f} images/s, {baseline} {theirs:.1f} images/s: "
              f"ratio {ours / theirs:.2f}x (target >= 1.5x); CPU ms/image: facelab "
              f"{statistics.median(cpu_ms['facelab']):.2f}, {baseline} "
              f"{statistics.median(cpu_ms[baseline]):.2f}")
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
