"""Pair-aware refining over seeds: the weakest class's test recall before and after.

Usage (from the repository root):

    .venv/bin/python benchmarks/pair_refining.py [--seeds 0 1 2 3 4]
        [--crop-style chip|square] [--work /tmp/facelab-pair-refining/CROP_STYLE]
        [--epochs 14] [--split test|val] [--refine-epochs N] [--pair-share F]
        [--refine-lr F] [--no-keep-best] [--min-share F] [--min-count N]

Notebook 08's remedy for a class swallowed by its look-alike, on the full demo, once per
seed.  The data: the full demo's photos (``facelab demo-data --scale full``, seed 0) through
the face stage (``--crop-style``: its default aligned chips, or the square crops it made
before them), made once under ``--work``.  Per seed ``s``:

1. notebook 07's CNN: ``learn.fit(faces, WORK/seed-s, learn.Recipe(arch="cnn",
   epochs=14, image_size=64, batch_size=64, seed=s), split_seed=s)``, a stratified
   70/15/15 split of its own (trained once; a finished run in ``WORK/seed-s`` is reused);
2. as notebook 08: the pairs from the **validation** verdict (``learn.pairs_to_refine``),
   ``learn.refine`` on them, then the test split scored (once per setting).

Printed per seed: the pairs, the weakest class's recall before -> after (and who), the
balanced accuracy before -> after, the classes under 0.5, the refining time and the
epoch kept (0: the model as it came); then the median over the seeds.  ``--split val``
scores the validation split instead and never reads the test split: the setting to tune
with (the validation split chooses).  The refining options default to ``learn.refine``'s
own defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def ensure_faces(work: Path, crop_style: str) -> Path:
    """The full demo's faces under ``work/faces`` (generated and detected once).

    ``chip``: the face stage's default (150 px aligned chips); ``square``: the face box
    with a margin of 0.25, 128 px (notebook 02's crops before the chips).
    """
    from facelab import demo
    from facelab.faces import filter_faces

    faces = work / "faces"
    if (faces / "manifest.csv").is_file():
        settings = json.loads((faces / "face_settings.json").read_text())
        if settings.get("crop_style", "square") != crop_style:
            sys.exit(f"{faces} holds {settings.get('crop_style', 'square')} crops, not "
                     f"{crop_style}: pass another --work")
        return faces
    photos = demo.ensure_demo(work / "demo", scale="full", seed=0)
    collected = work / "demo" / "collected.csv"      # the photos as a collection manifest
    photos.assign(status="ok", reason="").to_csv(collected, index=False)
    shape = {"crop_size": 128, "margin": 0.25} if crop_style == "square" else {}
    filter_faces(collected, faces, crop_style=crop_style, **shape)
    return faces


def base_model(faces: Path, work: Path, seed: int, epochs: int) -> Path:
    """Notebook 07's CNN for one seed (trained once); its model folder."""
    from facelab import learn

    out = work / f"seed-{seed}"
    metrics = out / "metrics.json"
    if metrics.is_file() and json.loads(metrics.read_text())["recipe"]["epochs"] == epochs:
        return out
    recipe = learn.Recipe(arch="cnn", epochs=epochs, image_size=64, batch_size=64, seed=seed)
    start = time.perf_counter()
    learn.fit(faces, out, recipe, split_seed=seed, verbose=0, progress=False)
    print(f"seed {seed}: trained in {time.perf_counter() - start:.0f}s", flush=True)
    return out


def scored(model: Any, faces: pd.DataFrame, split: str, label_map: Any,
           recipe: dict[str, Any]) -> pd.DataFrame:
    """``analysis.predict_split`` with the recipe's input size and flip averaging."""
    from facelab import analysis

    return analysis.predict_split(model, faces, split, label_map,
                                  image_size=recipe["image_size"],
                                  flip_average=recipe["flip_average"])


def figures(preds: pd.DataFrame, names: list[str]) -> dict[str, Any]:
    """Weakest class (recall, name), balanced accuracy, classes under 0.5, verdict."""
    from facelab import analysis

    s = analysis.summarise(preds["true"], preds["pred"], names)
    recall = pd.Series(s["per_class_recall"])[preds["person"].unique()]
    return {"min_recall": float(recall.min()), "weakest": str(recall.idxmin()),
            "balanced_accuracy": s["balanced_accuracy"], "accuracy": s["accuracy"],
            "under_half": int((recall < 0.5).sum()),
            "verdict": ", ".join(s["alarm"]["fired_checks"]) or "quiet"}


def one_seed(model_dir: Path, split: str, options: dict[str, Any],
             pair_options: dict[str, Any]) -> dict[str, Any]:
    """Notebook 08's remedy on one trained model: figures before and after."""
    from facelab import analysis, learn
    from facelab.data import LabelMap, load_faces

    recipe = json.loads((model_dir / "metrics.json").read_text())["recipe"]
    label_map = LabelMap.load(model_dir)
    names = list(label_map.names)
    faces = load_faces(model_dir)
    faces = faces[faces["person"].isin(names)].reset_index(drop=True)
    model = learn.load_model(model_dir / "model.keras")
    val_preds = scored(model, faces, "val", label_map, recipe)
    before = val_preds if split == "val" else scored(model, faces, split, label_map, recipe)
    verdict = analysis.bias_verdict(val_preds["true"], val_preds["pred"], names)
    pairs = learn.pairs_to_refine(verdict, val_preds, **pair_options)
    start = time.perf_counter()
    refined = learn.refine(learn.load_model(model_dir / "model.keras"), faces, label_map,
                           pairs, image_size=recipe["image_size"], seed=recipe["seed"],
                           **options)
    seconds = time.perf_counter() - start
    after = scored(refined, faces, split, label_map, recipe)
    history = refined.history.history if pairs and refined.history is not None else {}
    kept = history.get("refined_epoch", [len(history.get("loss", []))])[0]   # 0: as it came
    return {"pairs": pairs, "before": figures(before, names), "after": figures(after, names),
            "seconds": seconds, "n": len(after), "kept": kept}


def table(results: dict[int, dict[str, Any]]) -> pd.DataFrame:
    """One row per seed, then the median."""
    rows = {}
    for seed, r in results.items():
        b, a = r["before"], r["after"]
        rows[f"seed {seed}"] = {
            "pairs": len(r["pairs"]), "lowest before": b["min_recall"],
            "lowest after": a["min_recall"], "bal. acc. before": b["balanced_accuracy"],
            "bal. acc. after": a["balanced_accuracy"], "<0.5 before": b["under_half"],
            "<0.5 after": a["under_half"], "refine s": r["seconds"],
            "kept epoch": r["kept"], "weakest before": b["weakest"],
            "weakest after": a["weakest"], "verdict after": a["verdict"]}
    frame = pd.DataFrame(rows).T
    numeric = frame.columns[:8]
    frame.loc["median", numeric] = frame[numeric].astype(float).median()
    frame.loc["median", frame.columns[8:]] = ""
    return frame


def main(argv: list[str] | None = None) -> int:
    """Train (once) per seed, refine, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--work", type=Path, help="data and models (default "
                        "/tmp/facelab-pair-refining/CROP_STYLE; reused when present)")
    parser.add_argument("--crop-style", choices=("chip", "square"), default="chip",
                        help="face crops made under --work when it has none (default chip)")
    parser.add_argument("--epochs", type=int, default=14, help="notebook 07's epochs")
    parser.add_argument("--split", choices=("test", "val"), default="test",
                        help="split to score (val: for tuning; the test split is not read)")
    parser.add_argument("--refine-epochs", type=int, help="learn.refine epochs")
    parser.add_argument("--pair-share", type=float, help="learn.refine pair_share")
    parser.add_argument("--refine-lr", type=float, help="learn.refine peak_lr")
    parser.add_argument("--no-keep-best", dest="keep_best", action="store_false",
                        default=None, help="learn.refine keep_best=False (the last epoch)")
    parser.add_argument("--min-share", type=float, help="learn.pairs_to_refine min_share")
    parser.add_argument("--min-count", type=int, help="learn.pairs_to_refine min_count")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    options = {k: v for k, v in {"epochs": args.refine_epochs, "pair_share": args.pair_share,
                                 "peak_lr": args.refine_lr,
                                 "keep_best": args.keep_best}.items() if v is not None}
    pair_options = {k: v for k, v in {"min_share": args.min_share,
                                      "min_count": args.min_count}.items() if v is not None}
    print(f"load average {os.getloadavg()[0]:.1f}; refine {options or 'defaults'}; pairs "
          f"{pair_options or 'defaults'}; scored split: {args.split}", flush=True)
    work = args.work or Path("/tmp/facelab-pair-refining") / args.crop_style
    faces = ensure_faces(work, args.crop_style)
    results = {}
    for seed in args.seeds:
        model_dir = base_model(faces, work, seed, args.epochs)
        results[seed] = r = one_seed(model_dir, args.split, options, pair_options)
        print(f"seed {seed}: pairs {r['pairs']}; lowest recall {r['before']['min_recall']:.2f}"
              f" -> {r['after']['min_recall']:.2f}, balanced accuracy "
              f"{r['before']['balanced_accuracy']:.3f} -> {r['after']['balanced_accuracy']:.3f}"
              f" ({r['n']} {args.split} faces, refined in {r['seconds']:.0f}s, kept epoch "
              f"{r['kept']})", flush=True)
    print()
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table(results).to_string(float_format=lambda v: f"{v:.3g}"))
    print(f"load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
