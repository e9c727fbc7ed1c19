"""``facelab fit``: the training stage's command-line options."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace

from facelab.learn.fitting import Recipe, fit
from facelab.manifest import METRICS_NAME


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``facelab fit``."""
    d = Recipe()
    parser.add_argument("source", help="folder of face crops per person (ROOT/<name>/*.jpg), "
                        "a face-stage folder (workdir/faces) or a split folder (workdir/split)")
    parser.add_argument("--out", required=True, help="output folder (model.keras, "
                        "labels.json, manifest.csv, metrics.json, figures)")
    parser.add_argument("--epochs", type=int, default=d.epochs,
                        help=f"training epochs (the head's, for face-resnet; {d.epochs})")
    parser.add_argument("--image-size", type=int, default=None,
                        help=f"the CNN's input size ({d.image_size}); face-resnet takes 150")
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--lr", type=float, default=d.peak_lr, help="peak learning rate")
    parser.add_argument("--balance", default=d.balance,
                        choices=["sample", "undersample", "oversample", "weights", "none"])
    parser.add_argument("--no-augment", action="store_true", help="no augmentation")
    parser.add_argument("--arch", default=d.arch, help="face-resnet (default: dlib's face "
                        "network pretrained on millions of faces, a head trained on its "
                        "embeddings; needs the face-recognition-models package), cnn (from "
                        "scratch) or a keras.applications backbone: MobileNetV2, "
                        "MobileNetV3Small, EfficientNetB0, ResNet50")
    parser.add_argument("--fine-tune", action="store_true", help="face-resnet: also "
                        "fine-tune the network's last two stages (slow without a GPU)")
    parser.add_argument("--fine-tune-epochs", type=int, default=5, metavar="N",
                        help="epochs of --fine-tune (5)")
    parser.add_argument("--weights", default=None, choices=[None, "imagenet"],
                        help="backbone weights: none (offline, default) or imagenet "
                        "(downloads them)")
    parser.add_argument("--patience", type=int, default=None, help="early-stopping patience")
    parser.add_argument("--split", nargs="+", type=float, default=[0.7, 0.15, 0.15],
                        metavar="F", help="train val [test] fractions when SOURCE has no "
                        "split (default 0.7 0.15 0.15)")
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--threshold", type=float, default=1.5,
                        help="dominant-class alarm: predicted / true share (default 1.5; "
                        "the swallowed-class and one-way-pair checks use their documented "
                        "defaults, facelab.analysis.bias)")
    parser.add_argument("--folds", type=int, default=None, metavar="N",
                        help="groups of people held out in turn to calibrate 'unknown' "
                        "(every person stays in the model; default 5 for face-resnet, "
                        "0 for cnn, whose folds are whole training runs)")
    parser.add_argument("--far", type=float, default=0.01, metavar="F",
                        help="false-accept rate of strangers to calibrate for (default 0.01)")
    parser.add_argument("--keep-known", nargs="+", default=[], metavar="NAME",
                        help="people never held out, e.g. those with a double (twin, "
                        "look-alike) among the others: a stranger who is a known person's "
                        "double scores like that person")
    parser.add_argument("--head", choices=["cosine", "softmax"], default=None,
                        help="classifier head: softmax (default) or cosine (an embedding "
                        "trained with a margin, CosFace; facelab.learn.heads)")
    parser.add_argument("--naive", action="store_true", help="the blog post's pipeline "
                        "(imbalanced, class-ordered, no augmentation), for comparison")
    parser.add_argument("--retrain", action="store_true",
                        help="start over even when --out holds a run")
    parser.epilog = ("Exit status 1 when the bias verdict fires on the scored split: a "
                     "dominant class (predicted more than --threshold times its true share), "
                     "a swallowed class (recall or predicted share far below the rest) or a "
                     "pair confused one way (a look-alike); the verdict line says which.  "
                     "Interrupted?  Run the same command again: training continues from its "
                     "backup.")


def run_cli(args: argparse.Namespace) -> int:
    """Entry point of ``facelab fit``."""
    base = Recipe.naive() if args.naive else Recipe()
    changes = {"image_size": args.image_size} if args.image_size is not None else {}
    recipe = replace(base, epochs=args.epochs, batch_size=args.batch_size, peak_lr=args.lr,
                     balance="none" if args.naive else args.balance,
                     augment=False if args.naive else not args.no_augment,
                     arch="cnn" if args.naive else args.arch, weights=args.weights,
                     patience=args.patience, seed=args.seed, head=args.head or base.head,
                     fine_tune_epochs=args.fine_tune_epochs if args.fine_tune else 0)
    start = time.perf_counter()
    result = fit(args.source, args.out, recipe, fractions=args.split,
                 split_seed=args.split_seed, threshold=args.threshold, retrain=args.retrain,
                 folds=args.folds, target_far=args.far, keep_known=args.keep_known,
                 **changes)
    print("\n".join(summary_lines(result.metrics)))
    print(f"wrote {result.out_dir}/model.keras, labels.json, manifest.csv, {METRICS_NAME} "
          f"and {len(result.figures)} figures in {time.perf_counter() - start:.0f}s")
    sys.stdout.flush()
    return 1 if result.metrics["alarm"]["fired"] else 0


def summary_lines(m: dict) -> list[str]:
    """What ``facelab fit`` prints: the scored split, the verdict, ``unknown``, the people."""
    lines = [f"{m['split']} split (scored once): accuracy {m['accuracy']:.3f}, balanced "
             f"accuracy {m['balanced_accuracy']:.3f}, macro-F1 {m['macro_f1']:.3f}, lowest "
             f"recall {m['min_recall']:.3f} ({m['n']} faces, {m['num_classes']} classes: "
             "every person of the source)", m["alarm"]["message"]]
    o = m.get("openset", {})
    held = o.get("held_out_in_turn") or []
    shown = ", ".join(held[:12]) + (f" and {len(held) - 12} more" if len(held) > 12 else "")
    how = (f"people held out in turn ({o.get('folds')} folds: {shown})" if held
           else str(o.get("method")))
    named = o.get("known_named_test")
    lines.append(f"'unknown' threshold {o.get('threshold', float('nan')):.3f} for "
                 f"{o.get('target_far', 0):.0%} false accepts, calibrated on {how}"
                 + (f"; {named:.0%} of the known test faces named" if named == named
                    and named is not None else ""))
    if o.get("warning"):
        lines.append(f"WARNING: {o['warning']}")
    if o.get("floor_note"):
        lines.append(f"NOTE: {o['floor_note']}")
    for person, info in m.get("people", {}).items():
        if info.get("note"):
            lines.append(f"  {person}: {info['note']}")
    return lines
