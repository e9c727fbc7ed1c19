"""``facelab predict`` and ``facelab export``: the options of the recognize stage.

Both commands live here (``facelab.cli`` imports this module for either); the parser's
``prog`` says which one is being built.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from facelab.io import atomic_write_bytes
from facelab.lock import lock_folder

SHEET_MAX = 64      # photos on the --annotate contact sheet


def _predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="photo, folder (searched recursively), URL, manifest .csv "
                        "(path or url column) or PubFig .txt list")
    parser.add_argument("--model", required=True, help="model folder written by facelab fit")
    parser.add_argument("--out", default="predictions",
                        help="output folder for predictions.csv (default ./predictions)")
    parser.add_argument("--top-k", type=int, default=3, help="names listed per face (3)")
    parser.add_argument("--threshold", default="auto", help="'auto' (the threshold "
                        "calibrated at fit time, default) or a number in [0, 1]: faces "
                        "whose score (cosine to the named person's centroid) is below it "
                        "are 'unknown'")
    parser.add_argument("--annotate", action="store_true", help="also write a copy of each "
                        "photo with boxes and names, and a contact sheet of the first 64")
    parser.add_argument("--max-pixels", type=float, default=150e6,
                        help="photos with more pixels get a too_large row (150e6)")
    parser.add_argument("--crops", action="store_true", help="every input is already one "
                        "face crop of the kind the model was trained on (LFW, PubFig83, "
                        "another tool's crops): no face search, one row per image")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model folder written by facelab fit")
    parser.add_argument("--format", choices=["savedmodel", "tflite"], default="savedmodel",
                        help="savedmodel (default) or tflite")
    parser.add_argument("--out", default=None,
                        help="output folder (default MODEL/export-FORMAT)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``facelab predict`` or ``facelab export`` (by the parser's name)."""
    if parser.prog.split()[-1] == "export":
        _export_arguments(parser)
    else:
        _predict_arguments(parser)


def _annotated_name(index: int, photo: str) -> str:
    stem = Path(photo.split("?")[0]).stem or "photo"
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in stem)[:60]
    return f"{index:04d}-{safe}.jpg"


def _predict(args: argparse.Namespace) -> int:
    from facelab.recognize.recognizer import load, predictions_frame

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    recognizer = load(args.model, crops=args.crops)
    rows, sheet, captions = [], [], []
    annotated = out / "annotated"
    for index, result in enumerate(recognizer.iter_predict(
            args.inputs, top_k=args.top_k, threshold=args.threshold,
            downloads=out / "downloads", max_pixels=int(args.max_pixels),
            progress=not args.no_progress, crops=args.crops)):
        rows.extend(result.rows)
        if args.annotate and result.image is not None:
            from facelab.recognize.plots import annotate_photo

            picture = annotate_photo(result.image, result.rows)
            annotated.mkdir(exist_ok=True)
            picture.save(annotated / _annotated_name(index, result.item.photo), quality=90)
            if len(sheet) < SHEET_MAX:          # thumbnails only: folders can be large
                picture.thumbnail((320, 320))
                sheet.append(picture)
                captions.append(Path(result.item.photo).name)
    table = predictions_frame(rows, min(args.top_k, len(recognizer.names)))
    atomic_write_bytes(out / "predictions.csv", table.to_csv(index=False).encode("utf-8"))
    if len(sheet) > 1:
        from facelab.recognize.plots import contact_sheet

        contact_sheet(sheet, captions=captions).save(out / "contact_sheet.jpg", quality=88)
    faces = table[table["face_index"].notna()]
    named = faces[~faces["decision"].isin(["unknown", "skipped"])]
    print(f"{table['photo'].nunique()} photos, {len(faces)} faces: {len(named)} named, "
          f"{int((faces['decision'] == 'unknown').sum())} unknown, "
          f"{int((table['decision'] == 'skipped').sum())} skipped -> {out / 'predictions.csv'}")
    return 0


def run_cli(args: argparse.Namespace) -> int:
    """Entry point of ``facelab predict`` and ``facelab export``."""
    if args.command == "export":
        from facelab.recognize.export import export_model

        target = export_model(args.model, args.out, args.format)
        print(f"wrote {args.format} export to {target}")
        return 0
    if args.top_k < 1:
        print("facelab predict: error: --top-k must be at least 1", file=sys.stderr)
        return 2
    with lock_folder(args.out, "predict"):    # one writer per --out folder (facelab.lock)
        return _predict(args)
