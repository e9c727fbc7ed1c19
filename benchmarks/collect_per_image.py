"""Collection CPU per photo, piece by piece: facelab's per-photo path next to img2dataset's.

Usage::

    .venv/bin/python benchmarks/collect_per_image.py [--photos 1500] [--rounds 3] \\
        [--img2dataset-python /tmp/i2d/bin/python]

``collect_throughput.py`` measures whole runs; this script says where the CPU of one photo
goes, which is what its marginal rate (a long list on a zero-latency host) comes down to.
One thread fetches the same demo photos one at a time from the same static server (a
separate process, whose CPU is not counted).  Each variant is a fresh Python process that
warms up on 50 photos, then times its own user + system CPU over ``--photos`` photos; the
variants alternate within each of ``--rounds`` rounds and the medians are printed.

facelab's variants add one piece of :func:`facelab.collect.fetch.fetch_url` at a time:

* ``requests``: the download alone, through facelab's ``requests`` session;
* ``+ store``: md5, sha256 and the atomic write of the file;
* ``+ decode``: Pillow opens and decodes the photo (RGB JPEGs to their luma plane);
* ``+ hashes = fetch_url``: phash and dhash, that is all of ``fetch_url``.

The baselines: ``urllib`` (the download alone, with ``urllib.request.urlopen`` and a new
connection per photo, as img2dataset 1.47 downloads) and, with ``--img2dataset-python`` (an
interpreter with img2dataset's OpenCV), ``img2dataset's loop``: urlopen, ``cv2.imdecode``
(colour, full resolution), sha256 and the write of the photo and its JSON.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from collect_throughput import ROOT, SERVER, demo_photos, free_port, out_base  # noqa: E402

PRELUDE = """
import hashlib, io, json, os, pathlib, resource, shutil, sys, urllib.request
ROOT, LIST, OUT, VARIANT = sys.argv[1:5]
sys.path.insert(0, ROOT)
urls = pathlib.Path(LIST).read_text().split()
out = pathlib.Path(OUT)
shutil.rmtree(out, ignore_errors=True)
out.mkdir(parents=True)
"""
FACELAB = """
from PIL import Image
from facelab.collect import fetch
from facelab.io import atomic_write_bytes
settings = fetch.CollectSettings(workers=16, per_host=16, timeout=10.0, retries=0)
session = fetch._warm_up(settings)

def body(url):
    fetch._local.deadline = float("inf")
    with fetch._send(url, settings, session, 10.0, None) as response:
        return fetch._read_body(response, settings, "", 10.0, None)

def store(data):
    hashlib.md5(data, usedforsecurity=False).hexdigest()
    target = os.path.join(out, hashlib.sha256(data).hexdigest() + ".jpg")
    if not os.path.exists(target):
        atomic_write_bytes(target, data, make_parents=False)

def decode(data):
    with Image.open(io.BytesIO(data)) as image:
        fetch._decode(image)

STEPS = {
    "requests": lambda url: body(url),
    "+ store": lambda url: store(body(url)),
    "+ decode": lambda url: (lambda data: (store(data), decode(data)))(body(url)),
    "+ hashes = fetch_url": lambda url: fetch.fetch_url(url, settings, out, session, url),
}
one = STEPS[VARIANT]
"""
BASELINE = """
def body(url):
    request = urllib.request.Request(url, data=None, headers={"User-Agent": "bench"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read()

if VARIANT == "urllib":
    one = body
else:
    import cv2
    import numpy as np
    cv2.setNumThreads(1)
    count = iter(range(10**9))

    def one(url):
        data = body(url)
        if cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) is None:
            raise ValueError(url)
        sha = hashlib.sha256(data).hexdigest()
        key = out / f"{next(count):09d}"
        key.with_suffix(".jpg").write_bytes(data)
        key.with_suffix(".json").write_text(json.dumps({"url": url, "sha256": sha}))
"""
TIMING = """
for url in urls[:50]:
    one(url)
before = resource.getrusage(resource.RUSAGE_SELF)
for url in urls[50:]:
    one(url)
after = resource.getrusage(resource.RUSAGE_SELF)
shutil.rmtree(out, ignore_errors=True)
cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
print(1000 * cpu / (len(urls) - 50))
"""
FACELAB_VARIANTS = ["requests", "+ store", "+ decode", "+ hashes = fetch_url"]
I2D = "img2dataset's loop"


def run_variant(variant: str, python: str, urls: Path, out: Path) -> float:
    """CPU ms per photo of one variant, in a fresh process."""
    body = FACELAB if variant in FACELAB_VARIANTS else BASELINE
    done = subprocess.run([python, "-c", PRELUDE + body + TIMING, str(ROOT), str(urls),
                           str(out), variant], check=True, capture_output=True, text=True)
    return float(done.stdout.split()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--img2dataset-python", default=None,
                        help="a Python with img2dataset's OpenCV (e.g. /tmp/i2d/bin/python) "
                        "for the img2dataset-like loop")
    parser.add_argument("--demo", type=Path, default=None)
    args = parser.parse_args()
    if args.photos < 100:
        parser.error("--photos must be at least 100 (50 of them warm up)")

    demo, photos = demo_photos(args.demo)
    variants = {name: sys.executable for name in FACELAB_VARIANTS}
    variants["urllib"] = sys.executable
    if args.img2dataset_python:
        variants[I2D] = args.img2dataset_python
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(demo), str(port),
                               "HTTP/1.1", "0"])
    work = out_base(None) / f"facelab-per-image-{port}"
    try:
        time.sleep(1.0)
        work.mkdir(parents=True, exist_ok=True)
        urls = work / "urls.txt"
        count = min(args.photos + 50, len(photos))
        urls.write_text("\n".join(f"http://127.0.0.1:{port}/{p}"
                                  for p in photos["path"].iloc[:count]) + "\n")
        print(f"{count - 50:,} demo photos (after 50 to warm up), one at a time from a static "
              f"server process on 127.0.0.1; {args.rounds} rounds, variants alternating")
        cpu: dict[str, list[float]] = {name: [] for name in variants}
        for round_ in range(args.rounds):
            for name, python in variants.items():
                cpu[name].append(run_variant(name, python, urls, work / "out"))
            print(f"round {round_ + 1}: " + "; ".join(f"{n} {v[-1]:.2f}" for n, v in cpu.items()),
                  flush=True)
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)
    medians = {name: statistics.median(values) for name, values in cpu.items()}
    print("\nCPU ms per photo (median of the rounds; each facelab line adds one piece):")
    previous = 0.0
    for name in FACELAB_VARIANTS:
        print(f"  facelab {name:<22} {medians[name]:5.2f}  (+{medians[name] - previous:.2f})")
        previous = medians[name]
    for name in variants:
        if name not in FACELAB_VARIANTS:
            print(f"  {name:<30} {medians[name]:5.2f}")
    full = medians[FACELAB_VARIANTS[-1]]
    print(f"requests over urllib: {medians['requests'] - medians['urllib']:+.2f} ms; "
          f"phash + dhash: {full - medians['+ decode']:+.2f} ms", end="")
    if I2D in medians:
        print(f"; facelab's fetch_url / {I2D}: {full / medians[I2D]:.2f}x the CPU")
    else:
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
