"""The Cloud Vision backend through the real google-cloud-vision client (REST transport)
pointed at a local stdlib HTTP server that answers ``POST /v1/images:annotate`` in the API's
documented JSON shape.  No library code is patched."""

from __future__ import annotations

import base64
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from facelab import faces
from facelab.faces import vision
from facelab.manifest import parse_rect, read_manifest

pytestmark = pytest.mark.network_local

# case -> faces in relative coordinates (x0, y0, x1, y1, confidence, eye tilt)
CASES = {
    0: [(0.30, 0.20, 0.70, 0.70, 0.98, 0.0)],                                  # one face
    1: [(0.05, 0.20, 0.35, 0.60, 0.97, 0.0), (0.60, 0.25, 0.90, 0.65, 0.95, 0.0)],  # two
    2: [],                                                                     # none
    3: "error",                                                                # API error
    4: [(0.30, 0.20, 0.70, 0.70, 0.40, 0.0)],                                  # unsure
    5: [(0.25, 0.15, 0.75, 0.75, 0.99, 0.1)],                                  # tilted eyes
}


def case_image(case: int, size: tuple[int, int] = (320, 240)) -> np.ndarray:
    """A grey picture whose top-left corner colour tells the fake API which case it is."""
    image = np.full((size[1], size[0], 3), 128, np.uint8)
    image[: size[1] // 8, : size[0] // 8] = (case * 30 + 15, 0, 0)
    return image


def _vertices(x0: float, y0: float, x1: float, y1: float) -> list[dict[str, int]]:
    return [{"x": int(x0), "y": int(y0)}, {"x": int(x1), "y": int(y0)},
            {"x": int(x1), "y": int(y1)}, {"x": int(x0), "y": int(y1)}]


def annotate_one(request: dict) -> dict:
    """The fake API's answer for one AnnotateImageRequest (documented JSON shape)."""
    data = base64.b64decode(request["image"]["content"])
    with Image.open(io.BytesIO(data)) as im:
        width, height = im.size
        red = float(np.asarray(im.convert("RGB"))[2:10, 2:10, 0].mean())
    case = int(round((red - 15) / 30))
    spec = CASES.get(case, [])
    if spec == "error":
        return {"error": {"code": 3, "message": "Bad image data."}}
    annotations = []
    for x0, y0, x1, y1, conf, tilt in spec:
        X0, Y0, X1, Y1 = x0 * width, y0 * height, x1 * width, y1 * height
        w = X1 - X0
        eye_y = Y0 + 0.4 * (Y1 - Y0)
        annotations.append({
            "boundingPoly": {"vertices": _vertices(X0 - 0.1 * w, Y0 - 0.3 * w, X1 + 0.1 * w,
                                                   Y1)},
            "fdBoundingPoly": {"vertices": _vertices(X0, Y0, X1, Y1)},
            "landmarks": [
                {"type": "LEFT_EYE", "position": {"x": X0 + 0.3 * w,
                                                  "y": eye_y - tilt * w, "z": 0.0}},
                {"type": "RIGHT_EYE", "position": {"x": X0 + 0.7 * w,
                                                   "y": eye_y + tilt * w, "z": 0.0}},
                {"type": "NOSE_TIP", "position": {"x": X0 + 0.5 * w, "y": eye_y + 0.2 * w,
                                                  "z": 0.0}},
                {"type": "MOUTH_LEFT", "position": {"x": X0 + 0.35 * w, "y": eye_y + 0.4 * w}},
                {"type": "MOUTH_RIGHT", "position": {"x": X0 + 0.65 * w, "y": eye_y + 0.4 * w}},
            ],
            "rollAngle": 0.0, "panAngle": 0.0, "tiltAngle": 0.0,
            "detectionConfidence": conf, "landmarkingConfidence": 0.6,
            "joyLikelihood": "VERY_UNLIKELY", "headwearLikelihood": "VERY_UNLIKELY",
        })
    return {"faceAnnotations": annotations} if annotations else {}


class FakeVision:
    """A local ``images:annotate`` endpoint that logs every request."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.paths: list[str] = []
        log, paths = self.requests, self.paths

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - stdlib's name
                paths.append(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path.split("?")[0] != "/v1/images:annotate":
                    self.send_error(404)
                    return
                payload = json.loads(body)
                log.append(payload)
                answer = json.dumps({"responses": [annotate_one(r)
                                                   for r in payload["requests"]]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def images_seen(self) -> int:
        return sum(len(r["requests"]) for r in self.requests)


@pytest.fixture()
def fake_vision():
    fake = FakeVision()
    fake.thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()


def detector(fake: FakeVision, cache: Path, **kw) -> vision.VisionDetector:
    client = vision.make_client(fake.endpoint, anonymous=True)
    return vision.VisionDetector(client=client, cache_dir=cache, **kw)


def test_real_client_talks_plain_http_to_the_local_endpoint(fake_vision, tmp_path):
    client = vision.make_client(fake_vision.endpoint, anonymous=True)
    assert type(client._transport).__name__ == "ImageAnnotatorRestTransport"
    det = vision.VisionDetector(client=client, cache_dir=tmp_path / "cache")
    found = det.detect([case_image(0)])
    assert [p.split("?")[0] for p in fake_vision.paths] == ["/v1/images:annotate"]
    request = fake_vision.requests[0]["requests"][0]
    [feature] = request["features"]
    # the REST transport asks for enums as integers ($alt=json;enum-encoding=int)
    assert feature["type"] in ("FACE_DETECTION", 1) and feature["maxResults"] == 10
    assert base64.b64decode(request["image"]["content"])[:2] == b"\xff\xd8"   # a JPEG
    [face] = found[0]
    assert face.box == pytest.approx((96, 48, 224, 168), abs=1)
    assert face.confidence == pytest.approx(0.98)
    assert set(face.landmarks) == set(faces.LANDMARKS)


def test_batches_of_16_cache_hits_and_errors_not_cached(fake_vision, tmp_path):
    det = detector(fake_vision, tmp_path / "cache")
    # 20 distinct images (different sizes) over the six cases
    images = [case_image(k % 6, (300 + k, 240)) for k in range(20)]
    found = det.detect(images)
    assert len(fake_vision.requests) == 2                   # 16 + 4
    assert [len(r["requests"]) for r in fake_vision.requests] == [16, 4]
    for k, result in enumerate(found):
        case = k % 6
        if case == 3:
            assert isinstance(result, faces.DetectionFailure)
            assert "Bad image data" in result.reason
        else:
            assert len(result) == len(CASES[case])
    # a re-run sends only the images whose answer was an error (3 of them)
    again = det.detect(images)
    assert len(fake_vision.requests) == 3
    assert fake_vision.images_seen == 23
    assert [len(x) if isinstance(x, list) else -1 for x in again] == \
           [len(x) if isinstance(x, list) else -1 for x in found]
    # a fresh detector (new process) with the same cache folder sends nothing new
    fresh = detector(fake_vision, tmp_path / "cache")
    fresh.detect([images[0], images[1]])
    assert len(fake_vision.requests) == 3


def _write_photos(folder: Path) -> pd.DataFrame:
    rows = []
    for case, size in [(0, (320, 240)), (1, (400, 300)), (2, (300, 300)), (3, (256, 256)),
                       (4, (360, 240)), (5, (1600, 1200)), (1, (420, 300))]:
        person = f"person{case % 2}"
        path = folder / person / f"{case}-{size[0]}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(case_image(case, size)).save(path, quality=95)
        rect = ""
        if size == (420, 300):         # the labelled person is the right-hand face
            rect = f"{int(0.6 * 420)},{int(0.25 * 300)},{int(0.9 * 420)},{int(0.65 * 300)}"
        rows.append({"person": person, "imagenum": len(rows) + 1,
                     "path": path.relative_to(folder).as_posix(), "rect": rect,
                     "status": "ok", "reason": ""})
    rows.append({"person": "person0", "imagenum": 99, "path": "", "rect": "",
                 "status": "http_404", "reason": "HTTP 404"})
    df = pd.DataFrame(rows)
    df.to_csv(folder / "manifest.csv", index=False)
    return df


def test_face_stage_with_vision_backend_is_cached(fake_vision, tmp_path):
    src = tmp_path / "collected"
    _write_photos(src)
    det = detector(fake_vision, tmp_path / "cache")
    out = filter_out = tmp_path / "faces"
    df = faces.filter_faces(src, filter_out, detector=det, progress=False, verbose=False)
    by_name = {Path(p).name: r for p, r in zip(df["photo_path"], df.to_dict("records"),
                                               strict=True)}
    assert by_name["0-320.jpg"]["status"] == "ok"
    assert by_name["1-400.jpg"]["status"] == "multiple_faces"
    assert by_name["2-300.jpg"]["status"] == "no_face"
    assert by_name["3-256.jpg"]["status"] == "detector_error"
    assert by_name["4-360.jpg"]["status"] == "low_confidence"
    assert by_name["5-1600.jpg"]["status"] == "ok"              # detected on a 640 copy
    big = by_name["5-1600.jpg"]
    assert parse_rect(big["box"]) == pytest.approx((400, 180, 1200, 900), abs=4)
    recovered = by_name["1-420.jpg"]
    assert recovered["status"] == "ok" and recovered["recovered"]
    assert parse_rect(recovered["box"])[0] > 200          # the right-hand face
    assert (df["status"] == "http_404").sum() == 1               # carried over
    requests_after_first = len(fake_vision.requests)
    assert fake_vision.images_seen == 7
    # sent images are the downscaled copies (<= 640 px)
    for payload in fake_vision.requests:
        for r in payload["requests"]:
            with Image.open(io.BytesIO(base64.b64decode(r["image"]["content"]))) as im:
                assert max(im.size) <= 640
    # crops exist and are JPEG chips of the default size
    for path in df.loc[df["status"] == "ok", "path"]:
        with Image.open(out / path) as crop:
            assert crop.size == (150, 150) and crop.format == "JPEG"
    # re-run of the stage: detections come from the stage cache; only the error retried
    df2 = faces.filter_faces(src, out, detector=det, progress=False, verbose=False)
    assert len(fake_vision.requests) == requests_after_first + 1
    assert fake_vision.images_seen == 8
    assert df2["status"].tolist() == df["status"].tolist()
    # another output folder, fresh client: the Vision response cache answers
    det3 = detector(fake_vision, tmp_path / "cache")
    faces.filter_faces(src, tmp_path / "faces2", detector=det3, progress=False,
                       verbose=False)
    assert fake_vision.images_seen == 9                          # again only the error
    assert read_manifest(out)["status"].tolist() == df["status"].tolist()


def test_missing_credentials_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    with pytest.raises(ValueError, match="GOOGLE_APPLICATION_CREDENTIALS"):
        vision.make_client()


def test_rest_transport_keeps_the_http_scheme(fake_vision):
    client = vision.make_client(fake_vision.endpoint, anonymous=True)
    assert client._transport._host.startswith("http://127.0.0.1:")
