"""The pretrained face network: facelab's reader of dlib's file, the Keras port, the chips.

The port is checked against dlib itself (the test-only ``dlib-bin`` package): the same
150 x 150 chips must give the same embeddings (cosine >= 0.9999 on 200 chips), and
facelab's chips, cut from MTCNN's landmarks, must embed like dlib's own chips of the same
faces (median cosine >= 0.95).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import SHARED_DATA

pytest.importorskip("face_recognition_models",
                    reason="face-recognition-models (the network's weights) is not installed")


def _dlib():
    return pytest.importorskip("dlib", reason="dlib-bin (the test-only reference) is absent")


def _real_faces(n: int) -> list[Path]:
    source = SHARED_DATA / "pubfig83-dev"
    if not source.is_dir():
        pytest.skip(f"real faces {source} are absent (../shared/data is never copied in)")
    files = sorted(source.glob("*/*.jpg"))
    return files[:: max(1, len(files) // n)][:n]


@pytest.fixture(scope="module")
def network():
    from facelab.learn.face_resnet import load_face_resnet

    return load_face_resnet()


def test_the_file_is_read_layer_by_layer() -> None:
    from facelab.learn.dlib_reader import read_face_resnet
    from facelab.learn.face_resnet import weights_path

    net = read_face_resnet(weights_path())
    kinds = [layer.kind for layer in net.layers]
    assert kinds.count("con") == 29 and kinds.count("affine") == 29
    assert kinds.count("add_prev") == 14 and kinds[-1] == "fc"
    assert net.input_size == (150, 150)
    assert net.input_means == pytest.approx((122.782, 117.001, 104.298), abs=1e-3)
    assert net.layers[0].arrays["filters"].shape == (32, 3, 7, 7)
    assert net.layers[-1].arrays["weights"].shape == (256, 128)


def test_a_damaged_or_altered_file_is_an_error_naming_it(tmp_path: Path) -> None:
    from facelab.learn.dlib_reader import DlibFormatError, read_face_resnet
    from facelab.learn.face_resnet import (
        WeightsFileError,
        cached_weights,
        verify_weights,
        weights_path,
    )

    data = weights_path().read_bytes()
    short = tmp_path / "short.dat"
    short.write_bytes(data[: len(data) // 2])
    with pytest.raises(DlibFormatError, match=r"short\.dat.*ends early"):
        read_face_resnet(short)
    with pytest.raises(WeightsFileError, match=r"short\.dat.*damaged or altered"):
        cached_weights(short)
    altered = tmp_path / "altered.dat"
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x40                       # one bit inside a weight tensor
    altered.write_bytes(bytes(flipped))
    read_face_resnet(altered)                             # parses: only the digest sees it
    with pytest.raises(WeightsFileError, match=r"altered\.dat.*force-reinstall"):
        verify_weights(altered)
    other = tmp_path / "other.dat"
    other.write_bytes(b"\x01\x01\x01\x0bnot_a_layer" + data[20:400])
    with pytest.raises(DlibFormatError, match=r"other\.dat"):
        read_face_resnet(other)


def test_a_missing_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from facelab.learn import face_resnet

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(face_resnet.WeightsUnavailable,
                       match=r"pip install face-recognition-models==0\.3\.0"):
        face_resnet.weights_path()


def test_converted_weights_are_cached(facelab_cache: Path, tmp_path: Path) -> None:
    from facelab.learn import face_resnet

    copy = tmp_path / face_resnet.WEIGHTS_FILE
    shutil.copy(face_resnet.weights_path(), copy)
    first = face_resnet.cached_weights(copy)
    cache = facelab_cache / "face-resnet" / f"{face_resnet.NETWORK_KEY}.npz"
    assert cache.is_file() and first["conv28_kernel"].shape == (3, 3, 256, 256)
    copy.write_bytes(b"")                # the cache is not trusted for a changed file
    with pytest.raises(face_resnet.WeightsFileError):
        face_resnet.cached_weights(copy)


def test_keras_port_matches_dlib_on_200_chips(network) -> None:
    dlib = _dlib()
    from facelab.learn.face_resnet import weights_path

    chips = np.stack([np.asarray(Image.open(f).convert("RGB").resize((150, 150)))
                      for f in _real_faces(200)])
    reference = dlib.face_recognition_model_v1(str(weights_path()))
    theirs = np.array([reference.compute_face_descriptor(chip) for chip in chips])
    ours = network.predict(chips.astype(np.float32), batch_size=50, verbose=0)
    cosine = (ours * theirs).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(
        theirs, axis=1)
    assert len(chips) == 200 and cosine.min() >= 0.9999
    assert np.abs(ours - theirs).max() < 1e-3             # not just the direction


def test_chip_geometry_is_dlibs() -> None:
    dlib = _dlib()
    from facelab.faces.chips import DLIB_TEMPLATE, cut_chip
    from facelab.learn.face_resnet import weights_path

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(weights_path().parent /
                                         "shape_predictor_5_face_landmarks.dat"))
    checked = 0
    for path in _real_faces(20):
        image = Image.open(path).convert("RGB")
        array = np.asarray(image)
        boxes = detector(array, 1)
        if not boxes:
            continue
        shape = predictor(array, boxes[0])
        points = {i: (shape.part(i).x, shape.part(i).y) for i in range(5)}
        theirs = np.asarray(dlib.get_face_chip(array, shape, 150, 0.25), float)
        ours = np.asarray(cut_chip(image, points, template=dict(enumerate(DLIB_TEMPLATE))),
                          float)
        diff = np.abs(ours - theirs)          # same pixels but along the photo's border, where
        assert np.percentile(diff, 95) <= 1.0, path   # dlib blackens a partial neighbourhood
        checked += 1
    assert checked >= 15


def test_facelab_chips_embed_like_dlibs_chips(network) -> None:
    dlib = _dlib()
    from facelab.faces.chips import cut_chip
    from facelab.faces.mtcnn import MTCNNDetector
    from facelab.learn.face_resnet import weights_path

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(weights_path().parent /
                                         "shape_predictor_5_face_landmarks.dat"))
    mtcnn = MTCNNDetector()
    theirs, ours = [], []
    files = _real_faces(80)
    found = mtcnn.detect([np.asarray(Image.open(f).convert("RGB")) for f in files])
    for path, faces in zip(files, found, strict=True):
        array = np.asarray(Image.open(path).convert("RGB"))
        boxes = detector(array, 1)
        if not boxes or not faces:
            continue
        face = max(faces, key=lambda f: f.width * f.height)
        theirs.append(np.asarray(dlib.get_face_chip(array, predictor(array, boxes[0]),
                                                    150, 0.25)))
        ours.append(np.asarray(cut_chip(Image.fromarray(array), face.landmarks)))
    a, b = (network.predict(np.stack(x).astype(np.float32), verbose=0) for x in (theirs, ours))
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert len(cosine) >= 60 and np.median(cosine) >= 0.95


def test_embeddings_are_cached_by_chip(tmp_path: Path, facelab_cache: Path) -> None:
    from facelab.learn.embeddings import ChipError, chip_embeddings

    rng = np.random.default_rng(0)
    paths = []
    for i in range(3):
        path = tmp_path / f"{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (150, 150, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    first = chip_embeddings(paths)
    assert first.shape == (3, 2, 128)
    assert (facelab_cache / "embeddings").is_dir()
    again = chip_embeddings([paths[2], paths[0]])
    assert np.array_equal(again, first[[2, 0]])
    small = tmp_path / "small.jpg"
    Image.new("RGB", (100, 100)).save(small)
    with pytest.raises(ChipError, match=r"small\.jpg is 100x100.*150x150 chips"):
        chip_embeddings([small])
