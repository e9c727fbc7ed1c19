"""``facelab predict`` throughput against the face stage alone, and a cold single photo.

Targets (issue 12): predict on a folder of 500 demo photos runs at >= 0.8x the photos/s of
the face stage alone on the same photos (the classifier adds little), and one photo from a
cold start (a new ``facelab predict`` process) answers in under 5 s on 2 CPU cores.

Both throughput runs use the model folder's own face settings (detector, detection size,
crop) on the same photos, in this one process, MTCNN loaded and warmed up first:

* face stage: :func:`facelab.faces.filter_faces` into an empty folder (detect, one-face
  rule, aligned crops written, manifest);
* predict: :meth:`facelab.recognize.Recognizer.predict` (detect, crop every face, classify
  with flip averaging, decide), the model loaded once before timing.

    .venv/bin/python benchmarks/predict_throughput.py --model runs/demo/work/model \\
        --demo-dir runs/demo/work/demo --photos 500

No extra package is needed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def sample_photos(demo_dir: Path, n: int, seed: int) -> list[Path]:
    """``n`` demo photos (seeded sample, in list order)."""
    photos = pd.read_csv(demo_dir / "photos.csv")
    if n < len(photos):
        photos = photos.sample(n=n, random_state=seed).sort_index()
    return [demo_dir.resolve() / p for p in photos["path"]]


def face_stage(paths: list[Path], settings: dict, root: Path, detector) -> float:
    """Seconds of the face stage on ``paths`` with the model's face settings."""
    from facelab import faces

    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"person": "x", "path": [str(p) for p in paths], "status": "ok",
                  "reason": ""}).to_csv(root / "manifest.csv", index=False)
    keys = ("crop_size", "margin", "min_confidence", "min_face_px", "iou_threshold",
            "detect_max_side", "jpeg_quality")
    start = time.perf_counter()
    df = faces.filter_faces(root, root / "faces", detector=detector, progress=False,
                            verbose=False, **{k: settings[k] for k in keys})
    seconds = time.perf_counter() - start
    print(f"face stage statuses: {df['status'].value_counts().to_dict()}")
    return seconds


def predict(recognizer, paths: list[Path]) -> tuple[float, pd.DataFrame]:
    """Seconds of ``Recognizer.predict`` on ``paths`` (model already loaded)."""
    start = time.perf_counter()
    table = recognizer.predict(paths)
    return time.perf_counter() - start, table


def cold_start(model: Path, photo: Path) -> float:
    """Wall seconds of a fresh ``facelab predict`` process on one photo."""
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "facelab", "predict", str(photo), "--model",
                        str(model), "--out", out, "--no-progress"], check=True,
                       capture_output=True, cwd=ROOT)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "runs/demo/work/model")
    parser.add_argument("--demo-dir", type=Path, default=ROOT / "runs/demo/work/demo")
    parser.add_argument("--photos", type=int, default=500)
    parser.add_argument("--cold-runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from facelab import recognize

    recognizer = recognize.load(args.model)
    settings = recognizer.faces
    paths = sample_photos(args.demo_dir, args.photos, args.seed)
    print(f"{len(paths)} photos from {args.demo_dir}; model {args.model} "
          f"({len(recognizer.names)} classes); {os.cpu_count()} CPUs")
    detector = recognize.detector_from_settings(settings)
    detector.detect([np.zeros((64, 64, 3), np.uint8)])                    # warm-up
    recognizer.predict(paths[:2])                                         # warm-up
    with tempfile.TemporaryDirectory() as tmp:
        stage_s = face_stage(paths, settings, Path(tmp) / "stage", detector)
    predict_s, table = predict(recognizer, paths)
    faces_found = int(table["face_index"].notna().sum())
    stage_rate, predict_rate = len(paths) / stage_s, len(paths) / predict_s
    print(f"face stage alone: {stage_s:6.1f} s  {stage_rate:5.1f} photos/s")
    print(f"facelab predict:  {predict_s:6.1f} s  {predict_rate:5.1f} photos/s "
          f"({faces_found} faces, {int((table['decision'] == 'unknown').sum())} unknown)")
    print(f"predict / face stage: {predict_rate / stage_rate:.2f}x (target >= 0.8x)")
    colds = [cold_start(args.model, paths[0]) for _ in range(args.cold_runs)]
    print(f"cold start, one photo (new process): median {np.median(colds):.1f} s "
          f"(runs: {', '.join(f'{c:.1f}' for c in colds)}; target < 5 s)")


if __name__ == "__main__":
    main()
