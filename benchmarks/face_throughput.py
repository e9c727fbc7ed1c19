"""Face stage throughput: facelab's MTCNN stage vs a bare ``MTCNN().detect_faces`` loop.

Both run in this one process on the same demo photos (250-800 px, ~10% group photos with a
known rect).  The bare loop is what a notebook would write: decode each photo at full
resolution and call ``detect_faces`` on it, one photo at a time.  The facelab stage
detects on downscaled copies (``--side``), in shape-sorted batches, and also does the rest
of the stage's work (sha256, the one-face rule, aligned crops, the manifest).  Recall is
measured the same way for both: the photo is kept by the one-face/rect rule and the kept
face overlaps the true labelled rect (IoU >= 0.5).

    .venv/bin/python benchmarks/face_throughput.py                 # small demo, 200 photos
    .venv/bin/python benchmarks/face_throughput.py --photos 300 --side 256
    .venv/bin/python benchmarks/face_throughput.py --demo-dir runs/demo/work/demo

No extra package is needed.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image  # noqa: E402

from facelab import faces
from facelab.manifest import OK, parse_rect  # noqa: E402


def build_source(demo_dir: Path, root: Path, n: int, seed: int) -> pd.DataFrame:
    photos = pd.read_csv(demo_dir / "photos.csv")
    if n < len(photos):
        photos = photos.sample(n=n, random_state=seed).sort_index()
    df = photos.reset_index(drop=True)
    df["path"] = [os.path.relpath(demo_dir / p, root) for p in df["path"]]
    df["status"], df["reason"] = "ok", ""
    root.mkdir(parents=True, exist_ok=True)
    df.to_csv(root / "manifest.csv", index=False)
    return df


def correct(box: tuple | None, rect: str) -> bool:
    truth = parse_rect(rect)
    return box is not None and truth is not None and faces.iou(box, truth) >= 0.5


def bare_loop(paths: list[Path], rects: list[str]) -> dict:
    from mtcnn import MTCNN

    detector = MTCNN()
    detector.detect_faces(np.zeros((64, 64, 3), np.uint8))        # warm-up, not timed
    kept = good = 0
    wall, cpu = time.perf_counter(), time.process_time()
    for path, rect in zip(paths, rects, strict=True):
        image = np.asarray(Image.open(path).convert("RGB"))
        found = detector.detect_faces(image, box_format="xyxy")
        dets = [faces.Face(tuple(f["box"]), float(f["confidence"])) for f in found]
        decision = faces.apply_rule(dets, parse_rect(rect))
        if decision.status == OK:
            kept += 1
            good += correct(dets[decision.index].box, rect)
    return {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu,
            "kept": kept, "correct": good}


def facelab_stage(src: Path, out: Path, side: int, batch: int) -> dict:
    detector = faces.MTCNNDetector(batch_size=batch)
    detector.detect([np.zeros((64, 64, 3), np.uint8)])            # warm-up, not timed
    wall, cpu = time.perf_counter(), time.process_time()
    df = faces.filter_faces(src, out, detector=detector, detect_max_side=side,
                            progress=False, verbose=False)
    result = {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}
    ok = df[df["status"] == OK]
    result["kept"] = len(ok)
    result["correct"] = int(sum(correct(parse_rect(b), r)
                                for b, r in zip(ok["box"], ok["rect"], strict=True)))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo-dir", type=Path, default=None,
                        help="a demo folder with photos.csv (default: generate the small demo)")
    parser.add_argument("--photos", type=int, default=200, help="photos to run (200)")
    parser.add_argument("--side", type=int, default=320, help="facelab detect_max_side (320)")
    parser.add_argument("--batch", type=int, default=16, help="facelab MTCNN batch (16)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="face-bench-") as tmp:
        tmp = Path(tmp)
        demo_dir = args.demo_dir
        if demo_dir is None:
            from facelab import demo

            demo_dir = tmp / "demo"
            demo.generate(demo_dir, scale="small", seed=args.seed, progress=False)
        df = build_source(demo_dir, tmp / "src", args.photos, args.seed)
        paths = [(tmp / "src" / p).resolve() for p in df["path"]]
        n = len(df)
        groups = int((df["n_faces"] > 1).sum()) if "n_faces" in df else 0
        print(f"{n} demo photos ({groups} group photos), "
              f"{df['width'].min()}-{df['width'].max()} px wide; {os.cpu_count()} CPUs")
        stage = facelab_stage(tmp / "src", tmp / "out", args.side, args.batch)
        bare = bare_loop(paths, df["rect"].fillna("").tolist())
        print(f"{'':28}{'photos/s':>9}{'cpu s/photo':>13}{'kept':>6}{'recall':>8}")
        for name, r in (("bare MTCNN loop (full res)", bare),
                        (f"facelab stage (side {args.side}, b{args.batch})", stage)):
            print(f"{name:<28}{n / r['wall']:>9.2f}{r['cpu'] / n:>13.3f}{r['kept']:>6}"
                  f"{r['correct'] / n:>8.3f}")
        print(f"speed-up (wall): {bare['wall'] / stage['wall']:.2f}x   "
              f"(cpu time): {bare['cpu'] / stage['cpu']:.2f}x   "
              f"recall: {stage['correct'] / n:.3f} vs {bare['correct'] / n:.3f}")


if __name__ == "__main__":
    main()
