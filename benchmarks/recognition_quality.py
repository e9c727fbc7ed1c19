"""Recognition quality: facelab's CNN recipe vs eigenfaces + SVM on PubFig83 (40 people).

Usage (from the repository root; the baseline needs scikit-learn, which facelab itself does
not use: ``.venv/bin/pip install scikit-learn==1.9.1``, or ``pip install .[bench]``):

    .venv/bin/python benchmarks/recognition_quality.py [--data ../shared/data/pubfig83-dev]
        [--epochs 30] [--out /tmp/facelab-recognition-bench] [--skip-baseline]

Both models get the same stratified 75/25 split (scikit-learn ``train_test_split``,
``random_state=42``, like the reference figures in ``../shared/data/README.md``).
facelab carves its validation split (15% of the training rows, stratified, seed 0) out of
the training rows: the best-epoch checkpoint is chosen there, and the recipe was tuned
only there; the test split is scored once, at the end.

* baseline: eigenfaces + RBF SVM (50x50 grayscale, 150 whitened PCA components,
  ``class_weight="balanced"``, a small grid over C and gamma with 3-fold CV);
* facelab: :func:`facelab.learn.fit` with the CNN recipe, ``Recipe(arch="cnn")`` (from
  scratch: no pretrained weights; ``face_network_quality.py`` measures the pretrained
  network, facelab's default).

Prints accuracy, balanced accuracy, macro-F1, the largest predicted/true class-share
ratio, training time and the CPU/GPU it ran on, and the ratios facelab / baseline.
The run folder is kept (``--out``): run the same command again after an interruption and
the training continues from its backup.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def load(data: Path) -> pd.DataFrame:
    """One row per crop: absolute ``path`` and ``person``."""
    from facelab.data.labels import load_faces

    return load_faces(data)


def baseline(df: pd.DataFrame, train_idx: np.ndarray, test_idx: np.ndarray,
             seed: int = 0) -> dict:
    """Eigenfaces + RBF SVM on 50x50 grayscale crops."""
    from PIL import Image
    from sklearn.decomposition import PCA
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import SVC

    x = np.stack([np.asarray(Image.open(p).convert("L").resize((50, 50)), dtype=np.float32)
                  .ravel() / 255.0 for p in df["path"]])
    y = df["label"].to_numpy()
    start = time.perf_counter()
    pipe = make_pipeline(PCA(150, whiten=True, random_state=seed),
                         SVC(kernel="rbf", class_weight="balanced"))
    grid = GridSearchCV(pipe, {"svc__C": [1, 10, 100], "svc__gamma": ["scale", 1e-3, 5e-3]},
                        cv=3, n_jobs=1)
    grid.fit(x[train_idx], y[train_idx])
    seconds = time.perf_counter() - start
    pred = grid.predict(x[test_idx])
    return {"pred": pred, "seconds": seconds, "params": grid.best_params_}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/pubfig83-dev")
    parser.add_argument("--epochs", type=int, default=None,
                        help="override the recipe's epochs (default: the recipe's)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/facelab-recognition-bench"))
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        print(f"no data at {args.data}: this benchmark needs ../shared/data/pubfig83-dev")
        return 2

    from sklearn.model_selection import train_test_split

    from facelab import analysis
    from facelab.data.labels import add_labels
    from facelab.data.split import stratified_split
    from facelab.learn.fitting import Recipe, fit
    from facelab.learn.training import device_summary

    df, label_map = add_labels(load(args.data))
    names = list(label_map.names)
    idx = np.arange(len(df))
    train_idx, test_idx = train_test_split(idx, test_size=0.25, stratify=df["label"],
                                           random_state=42)
    train_rows = stratified_split(df.iloc[train_idx], {"train": 0.85, "val": 0.15}, seed=0)
    split = pd.Series("test", index=df.index)
    split.loc[train_rows.index] = train_rows["split"]
    df["split"] = split
    print(f"{len(df)} crops, {len(names)} people; split: "
          f"{df['split'].value_counts().to_dict()}; {device_summary()}", flush=True)

    recipe = Recipe(arch="cnn") if args.epochs is None else Recipe(arch="cnn",
                                                                   epochs=args.epochs)
    start = time.perf_counter()
    result = fit(df, args.out, recipe, verbose=2)
    wall = time.perf_counter() - start
    m = result.metrics
    facelab_row = {"model": "facelab CNN (from scratch)", **_row(m),
                   "train_s": m["training_seconds_total"]}
    print(f"facelab done: fit() {wall:.0f}s", flush=True)
    rows = []
    if not args.skip_baseline:
        base = baseline(df, train_idx, test_idx)
        bm = analysis.summarise(df["label"].to_numpy()[test_idx], base["pred"], names)
        rows.append({"model": "eigenfaces + SVM", **_row(bm), "train_s": base["seconds"]})
        print(f"baseline done in {base['seconds']:.0f}s, best {base['params']}", flush=True)

    rows.append(facelab_row)
    table = pd.DataFrame(rows).set_index("model")
    print()
    print(f"PubFig83 dev, 40 people, test split {m['n']} crops (stratified 75/25, seed 42)")
    print(f"device: {m['device']}")
    print(f"facelab recipe: {json.dumps(m['recipe'])}")
    print(f"facelab: best epoch {m['best_epoch']} of {m['epochs']}, val balanced accuracy "
          f"{m['val']['balanced_accuracy']:.3f}; fit() wall time {wall:.0f}s "
          "(training + evaluation + figures)")
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    if len(rows) == 2:
        ratio = table.iloc[1][["accuracy", "balanced_accuracy", "macro_f1"]] / \
            table.iloc[0][["accuracy", "balanced_accuracy", "macro_f1"]]
        print("facelab / baseline: " + ", ".join(f"{k} x{v:.2f}" for k, v in ratio.items()))
    print(m["alarm"]["message"])
    (args.out / "benchmark.json").write_text(json.dumps(
        {"table": table.reset_index().to_dict("records"), "device": m["device"],
         "recipe": m["recipe"], "fit_wall_s": wall}, indent=2, default=str))
    return 0


def _row(m: dict) -> dict:
    return {"accuracy": m["accuracy"], "balanced_accuracy": m["balanced_accuracy"],
            "macro_f1": m["macro_f1"], "max_share_ratio": m["max_share_ratio"]}


if __name__ == "__main__":
    raise SystemExit(main())
