"""The offline detector backend: MTCNN (the ``mtcnn`` package, which ships its weights)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from facelab.faces.base import DetectionFailure, Face


class MTCNNDetector:
    """The offline MTCNN detector (``mtcnn`` package, weights included), batched.

    Images are sorted by shape and sent to ``MTCNN.detect_faces`` as lists of
    ``batch_size`` (the package pads a batch to its largest image, so similar shapes
    waste little).  A batch that fails is retried image by image.

    Args:
        batch_size: Images per ``detect_faces`` call.
        min_face_size: Smallest face MTCNN looks for, in pixels of the detection copy.
        thresholds: PNet, RNet and ONet score thresholds.
        device: TensorFlow device (default: ``GPU:0`` when TensorFlow sees a GPU, else
            ``CPU:0``).
    """

    name = "mtcnn"

    def __init__(self, batch_size: int = 16, min_face_size: int = 20,
                 thresholds: tuple[float, float, float] = (0.6, 0.7, 0.8),
                 device: str | None = None) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if min_face_size < 12 or min_face_size > 20:
            # mtcnn 1.0.0 sizes its pyramid for min_face_size <= 20; larger values make
            # its last levels smaller than PNet's input and crash.  Detect on a smaller
            # copy instead (detect_max_side), which is equivalent and faster.
            raise ValueError("min_face_size must be between 12 and 20 (to ignore small faces "
                             "faster, lower detect_max_side instead)")
        self.batch_size = batch_size
        self.min_face_size = min_face_size
        self.thresholds = tuple(float(t) for t in thresholds)
        self.device = device
        self._mtcnn: Any = None

    def cache_key(self) -> str:
        """Backend, package version and the options that change results."""
        from importlib.metadata import version

        t = self.thresholds
        return (f"mtcnn-{version('mtcnn')}:mfs{self.min_face_size}:"
                f"t{t[0]:g},{t[1]:g},{t[2]:g}")

    def _load(self) -> Any:
        if self._mtcnn is None:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
            import tensorflow as tf
            from mtcnn import MTCNN

            device = self.device
            if device is None:
                device = "GPU:0" if tf.config.list_physical_devices("GPU") else "CPU:0"
            self._mtcnn = MTCNN(device=device)
        return self._mtcnn

    def _run(self, images: list[np.ndarray]) -> list[list[Face]]:
        t_pnet, t_rnet, t_onet = self.thresholds
        out = self._load().detect_faces(
            list(images), box_format="xyxy", min_face_size=self.min_face_size,
            threshold_pnet=t_pnet, threshold_rnet=t_rnet, threshold_onet=t_onet)
        result = []
        for faces in out:
            result.append([Face(tuple(float(v) for v in f["box"]), float(f["confidence"]),
                                {k: (float(v[0]), float(v[1]))
                                 for k, v in f.get("keypoints", {}).items()})
                           for f in faces])
        return result

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Face] | DetectionFailure]:
        """Detect faces in each image (RGB uint8 arrays), in shape-sorted batches."""
        results: list[list[Face] | DetectionFailure] = [[] for _ in images]
        # PNet needs at least 12 px; below ~24 px no face can be found anyway
        todo = [i for i, im in enumerate(images) if min(im.shape[:2]) >= 24]
        todo.sort(key=lambda i: (images[i].shape[0], images[i].shape[1]))
        for start in range(0, len(todo), self.batch_size):
            batch = todo[start:start + self.batch_size]
            try:
                found = self._run([images[i] for i in batch])
            except Exception:  # noqa: BLE001 - retry one by one to isolate the culprit
                found = []
                for i in batch:
                    try:
                        found.extend(self._run([images[i]]))
                    except Exception as error:  # noqa: BLE001 - a failure is a row
                        found.append(DetectionFailure(  # type: ignore[arg-type]
                            f"MTCNN failed: {type(error).__name__}: {str(error)[:200]}"))
            for i, faces in zip(batch, found, strict=True):
                results[i] = faces
        return results
