"""Google Cloud Vision face detection as a :class:`facelab.faces.base.Detector` backend.

Uses the official ``google-cloud-vision`` client: credentials come from the environment
(``GOOGLE_APPLICATION_CREDENTIALS`` or application default credentials), images go in
batched ``images:annotate`` requests (at most 16 images per request, the API's limit),
and every response is cached on disk under the sha256 of the bytes sent, so a re-run, or
another run over the same photos, sends nothing and pays nothing.

For tests and emulators, ``endpoint="http://127.0.0.1:PORT"`` with ``anonymous=True``
points the real client (REST transport) at a local server.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from facelab.faces.base import DetectionFailure, Face
from facelab.io import atomic_write_bytes

MAX_IMAGES_PER_REQUEST = 16       # the Vision API's documented limit per request
DEFAULT_CACHE = Path.home() / ".cache" / "facelab" / "vision"
# Vision landmark type names -> facelab's landmark names
LANDMARK_NAMES = {"LEFT_EYE": "left_eye", "RIGHT_EYE": "right_eye", "NOSE_TIP": "nose",
                  "MOUTH_LEFT": "mouth_left", "MOUTH_RIGHT": "mouth_right"}


def make_client(endpoint: str | None = None, anonymous: bool = False) -> Any:
    """Build an ``ImageAnnotatorClient``.

    Args:
        endpoint: ``None`` for Google's endpoint, or e.g. ``"http://127.0.0.1:8080"``
            (then the REST transport is used; an ``http://`` scheme is kept as is).
        anonymous: Send no credentials (local test servers and emulators).

    Raises:
        ValueError: When no credentials are found (with how to provide them).
    """
    import google.auth.exceptions
    from google.cloud import vision

    kwargs: dict[str, Any] = {}
    if endpoint:
        kwargs["transport"] = "rest"
        kwargs["client_options"] = {"api_endpoint": endpoint}
    if anonymous:
        from google.auth.credentials import AnonymousCredentials

        kwargs["credentials"] = AnonymousCredentials()
    try:
        return vision.ImageAnnotatorClient(**kwargs)
    except google.auth.exceptions.DefaultCredentialsError as error:
        raise ValueError(
            "Google Cloud Vision needs credentials: set GOOGLE_APPLICATION_CREDENTIALS to a "
            "service-account JSON key with the Vision API enabled (or run `gcloud auth "
            "application-default login`), or use --backend mtcnn, which works offline. "
            f"({error})") from error


def faces_from_response(response: Any) -> list[Face]:
    """Turn one ``AnnotateImageResponse`` into faces (``fdBoundingPoly`` boxes).

    ``fdBoundingPoly`` is the tight box around the skin of the face, comparable with
    MTCNN's boxes; ``boundingPoly`` (head and hair) is wider.
    """
    faces = []
    for annotation in response.face_annotations:
        poly = annotation.fd_bounding_poly.vertices or annotation.bounding_poly.vertices
        if not poly:
            continue
        xs = [float(v.x) for v in poly]
        ys = [float(v.y) for v in poly]
        landmarks = {}
        for landmark in annotation.landmarks:
            name = LANDMARK_NAMES.get(landmark.type_.name)
            if name:
                landmarks[name] = (float(landmark.position.x), float(landmark.position.y))
        faces.append(Face((min(xs), min(ys), max(xs), max(ys)),
                          float(annotation.detection_confidence), landmarks))
    return faces


class VisionDetector:
    """Face detection with the Google Cloud Vision API, batched and cached on disk.

    Args:
        client: A ready ``ImageAnnotatorClient`` (default: built on first use from the
            environment, or from ``endpoint``/``anonymous``).
        endpoint: Optional API endpoint (see :func:`make_client`).
        anonymous: Send no credentials (local servers).
        cache_dir: Where responses are kept, one JSON file per sha256 of the bytes sent
            (default ``~/.cache/facelab/vision``).
        batch_size: Images per request (at most 16).
        max_results: Faces asked for per image.
        jpeg_quality: Quality of the JPEG sent (the copies are small, see
            ``detect_max_side``).
        timeout: Seconds per request.
    """

    name = "vision"

    def __init__(self, client: Any = None, endpoint: str | None = None,
                 anonymous: bool = False, cache_dir: str | os.PathLike[str] | None = None,
                 batch_size: int = MAX_IMAGES_PER_REQUEST, max_results: int = 10,
                 jpeg_quality: int = 90, timeout: float = 60.0) -> None:
        if not 1 <= batch_size <= MAX_IMAGES_PER_REQUEST:
            raise ValueError(f"batch_size must be 1..{MAX_IMAGES_PER_REQUEST} (the API's "
                             "limit per request)")
        self._client = client
        self.endpoint = endpoint
        self.anonymous = anonymous
        self.cache_dir = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE
        self.batch_size = batch_size
        self.max_results = max_results
        self.jpeg_quality = jpeg_quality
        self.timeout = timeout
        self.requests_sent = 0
        self.images_sent = 0

    def cache_key(self) -> str:
        """Return the backend and the options that change results."""
        return f"vision-face-v1:max{self.max_results}:q{self.jpeg_quality}"

    @property
    def client(self) -> Any:
        """The API client (built on first use)."""
        if self._client is None:
            self._client = make_client(self.endpoint, self.anonymous)
        return self._client

    def _cache_path(self, digest: str) -> Path:
        return self.cache_dir / digest[:2] / f"{digest}.json"

    def encode(self, image: np.ndarray) -> bytes:
        """Encode an RGB array as the JPEG bytes that are sent (deterministic)."""
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=self.jpeg_quality)
        return buffer.getvalue()

    def annotate(self, contents: Sequence[bytes]) -> list[Any]:
        """Send images (JPEG bytes) in batched requests, using and filling the cache.

        Returns:
            One ``AnnotateImageResponse`` per image, or a :class:`DetectionFailure` for
            an image the API could not process (failures are not cached).
        """
        from google.api_core import exceptions as api_exceptions
        from google.cloud import vision

        digests = [hashlib.sha256(c).hexdigest() for c in contents]
        results: list[Any] = [None] * len(contents)
        todo = []
        for k, digest in enumerate(digests):
            path = self._cache_path(digest)
            if path.exists():
                try:
                    results[k] = vision.AnnotateImageResponse.from_json(
                        path.read_text(encoding="utf-8"), ignore_unknown_fields=True)
                    continue
                except ValueError:
                    pass                      # damaged cache file: ask again
            todo.append(k)
        feature = vision.Feature(type_=vision.Feature.Type.FACE_DETECTION,
                                 max_results=self.max_results)
        for start in range(0, len(todo), self.batch_size):
            batch = todo[start:start + self.batch_size]
            requests = [vision.AnnotateImageRequest(image=vision.Image(content=contents[k]),
                                                    features=[feature]) for k in batch]
            try:
                reply = self.client.batch_annotate_images(requests=requests,
                                                          timeout=self.timeout)
            except (api_exceptions.Unauthenticated, api_exceptions.PermissionDenied) as error:
                raise ValueError(f"Cloud Vision refused the credentials ({error}); check "
                                 "GOOGLE_APPLICATION_CREDENTIALS and that the Vision API is "
                                 "enabled for the project") from error
            except api_exceptions.GoogleAPICallError as error:
                for k in batch:
                    results[k] = DetectionFailure(f"Cloud Vision request failed: "
                                                  f"{type(error).__name__}: {error}"[:300])
                continue
            finally:
                self.requests_sent += 1
                self.images_sent += len(batch)
            if len(reply.responses) != len(batch):
                for k in batch:
                    results[k] = DetectionFailure(
                        f"Cloud Vision answered {len(reply.responses)} responses for "
                        f"{len(batch)} images")
                continue
            for k, response in zip(batch, reply.responses, strict=True):
                if response.error.code:
                    results[k] = DetectionFailure(f"Cloud Vision error {response.error.code}: "
                                                  f"{response.error.message}"[:300])
                    continue
                text = vision.AnnotateImageResponse.to_json(response)
                atomic_write_bytes(self._cache_path(digests[k]), text.encode("utf-8"))
                results[k] = response
        return results

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Face] | DetectionFailure]:
        """Detect faces in RGB uint8 arrays (coordinates in each array's pixels)."""
        responses = self.annotate([self.encode(image) for image in images])
        return [r if isinstance(r, DetectionFailure) else faces_from_response(r)
                for r in responses]
