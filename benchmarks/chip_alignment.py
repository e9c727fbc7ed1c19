"""How close facelab's face chips come to dlib's own, and where MTCNN_TEMPLATE comes from.

``python benchmarks/chip_alignment.py [--every 4] [--derive]``

dlib's face network expects dlib's chips: its HOG face detector, its 5-point shape
predictor, then ``get_face_chip(shape, 150, 0.25)``.  facelab cuts chips from MTCNN's five
landmarks instead (:mod:`facelab.faces.chips`), with a template of where those landmarks
fall in dlib's chips.  On real faces from ``../shared/data`` (``pubfig83-dev`` crops,
every ``--every``-th, and the ``five-celebrity`` photos), for every face that both
detectors find:

* ``--derive``: the template, measured on the people of one half (alternate names) and
  printed in :data:`facelab.faces.chips.MTCNN_TEMPLATE`'s form (the mean position of each
  MTCNN landmark in dlib's chip frame, before padding);
* always: on the people of the other half, the cosine between the embedding (facelab's
  Keras port of the network, :mod:`facelab.learn.face_resnet`) of facelab's chip and of
  dlib's chip of the same face: median, 5th percentile, share >= 0.95; and the same for a
  "box chip" (the MTCNN face box, squared, resized to 150) for comparison.

Needs the test-only ``dlib-bin`` package (``pip install dlib-bin==20.0.1.post1``) for dlib's
detector, shape predictor and chips; the 5-point predictor comes with
``face-recognition-models``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


def photos(every: int) -> list[tuple[str, Path]]:
    """(person, path) of the pubfig83-dev crops (every ``every``-th) and five-celebrity."""
    crops = sorted((DATA / "pubfig83-dev").glob("*/*.jpg"))[::every]
    whole = sorted((DATA / "five-celebrity").glob("*/*/*.jpg"))
    return [(p.parent.name, p) for p in crops + whole]


def measure(items: list[tuple[str, Path]]) -> list[dict]:
    """dlib's landmarks, chip and chip map, and MTCNN's landmarks, for every face found."""
    import dlib

    from facelab.faces import chips
    from facelab.faces.crops import detection_copy, load_photo
    from facelab.faces.mtcnn import MTCNNDetector
    from facelab.learn.face_resnet import weights_path

    hog = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(weights_path().parent /
                                         "shape_predictor_5_face_landmarks.dat"))
    mtcnn = MTCNNDetector()
    dlib_template = dict(enumerate(chips.DLIB_TEMPLATE))
    faces = []
    for person, path in items:
        image = load_photo(path.read_bytes())
        array = np.asarray(image)
        boxes = hog(array, 1)
        if not boxes:
            continue
        box = max(boxes, key=lambda r: r.area())
        shape = predictor(array, box)
        points = {i: (shape.part(i).x, shape.part(i).y) for i in range(5)}
        copy, factor = detection_copy(image, 320)
        found = [f.scaled(factor) for f in mtcnn.detect([copy])[0]]
        centre = np.array([(box.left() + box.right()) / 2, (box.top() + box.bottom()) / 2])
        found = [f for f in found if set(NAMES) <= set(f.landmarks)]
        if not found:
            continue
        face = min(found, key=lambda f: np.hypot((f.box[0] + f.box[2]) / 2 - centre[0],
                                                 (f.box[1] + f.box[3]) / 2 - centre[1]))
        a, b = chips.chip_to_image(points, template=dlib_template)
        faces.append({"person": person, "image": image, "face": face, "a": a, "b": b,
                      "dlib_chip": np.asarray(dlib.get_face_chip(array, shape, 150, 0.25))})
    return faces


def derive(faces: list[dict]) -> dict[str, tuple[float, float]]:
    """Mean unit-frame position of each MTCNN landmark in dlib's chips."""
    from facelab.faces.chips import CHIP_PADDING, CHIP_SIZE

    spots = {name: [] for name in NAMES}
    for f in faces:
        inverse = np.linalg.inv(f["a"])
        for name in NAMES:
            chip = inverse @ (np.asarray(f["face"].landmarks[name]) - f["b"])
            spots[name].append(chip / CHIP_SIZE * (2 * CHIP_PADDING + 1) - CHIP_PADDING)
    return {name: tuple(np.mean(v, axis=0).round(4)) for name, v in spots.items()}


def compare(faces: list[dict], template: dict) -> dict[str, np.ndarray]:
    """Cosines, facelab chip vs dlib chip and box chip vs dlib chip."""
    from facelab.faces.chips import cut_chip
    from facelab.learn.face_resnet import load_face_resnet

    net = load_face_resnet()
    ref = np.stack([f["dlib_chip"] for f in faces]).astype(np.float32)
    ours = np.stack([np.asarray(cut_chip(f["image"], f["face"].landmarks, template=template))
                     for f in faces]).astype(np.float32)
    boxes = []
    for f in faces:
        x0, y0, x1, y1 = f["face"].box
        side = max(x1 - x0, y1 - y0) / 2
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        square = f["image"].crop((round(cx - side), round(cy - side), round(cx + side),
                                  round(cy + side)))
        boxes.append(np.asarray(square.resize((150, 150), Image.Resampling.BILINEAR)))
    embed = [net.predict(x, batch_size=64, verbose=0)
             for x in (ref, ours, np.stack(boxes).astype(np.float32))]
    unit = [e / np.linalg.norm(e, axis=1, keepdims=True) for e in embed]
    return {"facelab chip": (unit[0] * unit[1]).sum(1), "box chip": (unit[0] * unit[2]).sum(1)}


def main() -> int:
    """Derive and/or measure; print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--every", type=int, default=4, help="use every N-th pubfig83 crop")
    parser.add_argument("--derive", action="store_true", help="print a new template")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if not DATA.is_dir():
        sys.exit(f"{DATA} is missing: this benchmark needs the shared real data")
    from facelab.faces.chips import MTCNN_TEMPLATE

    start = time.perf_counter()
    faces = measure(photos(args.every))
    people = sorted({f["person"] for f in faces})
    first = set(people[::2])
    fit_half = [f for f in faces if f["person"] in first]
    test_half = [f for f in faces if f["person"] not in first]
    print(f"{len(faces)} faces found by both detectors ({len(people)} people) in "
          f"{time.perf_counter() - start:.0f} s; derive on {len(fit_half)}, measure on "
          f"{len(test_half)}")
    template = dict(MTCNN_TEMPLATE)
    if args.derive:
        template = derive(fit_half)
        print("MTCNN_TEMPLATE = {")
        for name, (x, y) in template.items():
            print(f'    "{name}": ({x:.4f}, {y:.4f}),')
        print("}")
    for name, cos in compare(test_half, template).items():
        print(f"{name:>13} vs dlib's chip: median cosine {np.median(cos):.4f}, 5th percentile "
              f"{np.percentile(cos, 5):.4f}, >= 0.95: {np.mean(cos >= 0.95):.1%} "
              f"({len(cos)} faces)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
