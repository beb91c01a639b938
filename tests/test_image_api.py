"""The image-classification API over real HTTP: both input routes, every backend, 30+ bad inputs, the CLI."""

from __future__ import annotations

import dataclasses
import io
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import torch
from PIL import Image

from course_lib.apps.image_api import MAX_BODY_BYTES, backend_of, classifier_of, create_app
from course_lib.servers import serve, serve_script
from course_lib.vision import MAX_IMAGE_BYTES, encode_base64, sample_images

SAMPLES = sample_images()
BACKENDS = ["torch", "onnx", "onnx-int8"]


def _running(classifier, backend: str):
    with serve(create_app(classifier, backend=backend)) as server:
        yield server.url


@pytest.fixture(scope="module")
def torch_server(classifier):
    yield from _running(classifier, "torch")


@pytest.fixture(scope="module")
def onnx_server(classifier):
    yield from _running(classifier, "onnx")


@pytest.fixture(scope="module")
def onnx_int8_server(classifier):
    yield from _running(classifier, "onnx-int8")


@pytest.fixture
def servers(request):
    """servers(backend) → base URL of a running API with that backend (started once per module)."""
    return lambda backend: request.getfixturevalue(f"{backend.replace('-', '_')}_server")


def upload(url: str, name: str, data: bytes, mime: str = "image/png") -> requests.Response:
    """The source's client: POST the file as multipart field `file`."""
    return requests.post(url + "/predict", files={"file": (name, data, mime)}, timeout=30)


def assert_prediction(body: dict, classifier, backend: str) -> None:
    assert set(body) >= {"top_class", "confidence", "top_5", "inference_time_ms", "model", "backend"}
    assert body["model"] == classifier.name and body["backend"] == backend
    probabilities = [entry["probability"] for entry in body["top_5"]]
    assert len(body["top_5"]) == 5 and probabilities == sorted(probabilities, reverse=True)
    assert body["top_5"][0] == {"class": body["top_class"], "probability": body["confidence"]}
    assert all(entry["class"] in classifier.categories for entry in body["top_5"])
    assert 0 < body["confidence"] <= 1 and body["inference_time_ms"] > 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_health_says_which_model_and_backend(servers, classifier, backend):
    body = requests.get(servers(backend) + "/health", timeout=10).json()
    assert body["status"] == "ok" and body["model"] == "digits" and body["backend"] == backend
    assert body["classes"] == 10


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("digit", [0, 1, 2])
def test_upload_recognises_digit_pictures(servers, classifier, backend, digit):
    response = upload(servers(backend), f"digit_{digit}.png", SAMPLES[f"digit_{digit}.png"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert_prediction(body, classifier, backend)
    assert body["top_class"] == str(digit)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_base64_with_and_without_prefix_answers_like_the_upload(servers, classifier, backend, name):
    data = SAMPLES[name]
    kind = "jpeg" if name.endswith(".jpg") else "png"
    by_upload = upload(servers(backend), name, data, f"image/{kind}").json()
    for text in (encode_base64(data), encode_base64(data, kind)):
        response = requests.post(servers(backend) + "/predict/base64", json={"image": text}, timeout=30)
        assert response.status_code == 200, response.text
        body = response.json()
        assert_prediction(body, classifier, backend)
        assert body["top_class"] == by_upload["top_class"]
        assert body["confidence"] == pytest.approx(by_upload["confidence"], abs=1e-5)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_onnx_and_torch_backends_agree(servers, name):
    torch_body, onnx_body = (upload(servers(b), name, SAMPLES[name]).json() for b in ("torch", "onnx"))
    assert torch_body["top_class"] == onnx_body["top_class"]
    for a, b in zip(torch_body["top_5"], onnx_body["top_5"], strict=True):
        assert a["probability"] == pytest.approx(b["probability"], abs=1e-3)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_int8_backend_picks_the_class_torch_picks(servers, name):
    """Parity of the quantized model on every sample image (its probabilities move by int8 rounding, not its pick)."""
    torch_body, int8_body = (upload(servers(b), name, SAMPLES[name]).json() for b in ("torch", "onnx-int8"))
    assert int8_body["backend"] == "onnx-int8" and int8_body["top_class"] == torch_body["top_class"]
    assert int8_body["confidence"] == pytest.approx(torch_body["confidence"], abs=0.05)


@pytest.mark.parametrize("backend", BACKENDS)
def test_both_routes_answer_what_classify_gives_with_the_apps_backend(classifier, backend):
    app = create_app(classifier, backend=backend)
    assert classifier_of(app) is classifier and backend_of(app).name == backend
    data = SAMPLES["china.jpg"]
    expected = classifier.classify(data, backend_of(app))
    del expected["inference_time_ms"]  # the one key that differs from call to call
    with serve(app) as server:
        for body in (
            upload(server.url, "china.jpg", data, "image/jpeg").json(),
            requests.post(server.url + "/predict/base64", json={"image": encode_base64(data)}, timeout=30).json(),
        ):
            assert body.pop("inference_time_ms") > 0
            assert body == expected


class GatedModel(torch.nn.Module):
    """The real digits network behind a gate: forward() waits until the test opens it (an inference that takes long)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.gate = threading.Event()
        self.entered = threading.Event()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Signal that inference started, wait for the gate, then run the real model."""
        self.entered.set()
        if not self.gate.wait(timeout=60):
            raise RuntimeError("gate never opened")
        return self.model(x)


@pytest.mark.parametrize("route", ["/predict", "/predict/base64"])
def test_health_answers_while_an_inference_is_still_running(classifier, route):
    """Blocking inference runs in the thread pool: the event loop keeps answering other requests meanwhile."""
    gated = GatedModel(classifier.model)
    gated.gate.set()  # create_app's warm-up call passes
    app = create_app(dataclasses.replace(classifier, model=gated), backend="torch")
    gated.gate.clear()
    gated.entered.clear()
    data = SAMPLES["digit_0.png"]
    with serve(app) as server, ThreadPoolExecutor(1) as pool:
        if route == "/predict":
            pending = pool.submit(upload, server.url, "digit_0.png", data)
        else:
            pending = pool.submit(requests.post, server.url + route, json={"image": encode_base64(data)}, timeout=60)
        try:
            assert gated.entered.wait(timeout=30), "the prediction never reached the model"
            health = requests.get(server.url + "/health", timeout=10)  # a blocked event loop would not answer
            assert health.status_code == 200 and not pending.done()
        finally:
            gated.gate.set()
        response = pending.result(timeout=60)
    assert response.status_code == 200 and response.json()["top_class"] == "0"


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def png_header_claiming(width: int, height: int) -> bytes:
    import struct
    import zlib

    raw = bytearray(encoded(Image.new("L", (8, 8)), "PNG"))
    raw[16:24] = struct.pack(">II", width, height)
    raw[29:33] = struct.pack(">I", zlib.crc32(bytes(raw[12:29])) & 0xFFFFFFFF)
    return bytes(raw)


NOISE_PNG = encoded(Image.effect_noise((64, 64), 60).convert("RGB"), "PNG")
NOISE_JPEG = encoded(Image.effect_noise((64, 64), 60).convert("RGB"), "JPEG")


def chunked(data: bytes, size: int = 1 << 20):
    """A generator body: requests sends it with Transfer-Encoding: chunked (no Content-Length)."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


def file_field(data: bytes, name: str = "x.png", mime: str = "image/png") -> dict:
    return {"files": {"file": (name, data, mime)}}


def b64(value) -> dict:
    return {"json": {"image": value}}


BAD_INPUTS = {
    # multipart upload
    "empty file": ("/predict", file_field(b""), 400),
    "text file": ("/predict", file_field(b"just some text", "notes.txt", "text/plain"), 415),
    "pdf": ("/predict", file_field(b"%PDF-1.7\n%\xe2\xe3\n1 0 obj", "doc.pdf", "application/pdf"), 415),
    "tiff": ("/predict", file_field(encoded(Image.new("RGB", (8, 8)), "TIFF"), "x.tif", "image/tiff"), 415),
    "svg": ("/predict", file_field(b"<svg xmlns='http://www.w3.org/2000/svg'/>", "x.svg", "image/svg+xml"), 415),
    "truncated png": ("/predict", file_field(NOISE_PNG[:300]), 400),
    "truncated jpeg": ("/predict", file_field(NOISE_JPEG[:500], "x.jpg", "image/jpeg"), 400),
    "png signature only": ("/predict", file_field(b"\x89PNG\r\n\x1a\n"), 415),
    "zero-width png": ("/predict", file_field(png_header_claiming(0, 8)), 415),  # Pillow identifies no format
    "zero-height png": ("/predict", file_field(png_header_claiming(8, 0)), 415),
    "decompression bomb": ("/predict", file_field(png_header_claiming(50_000, 50_000)), 413),
    "too many pixels": ("/predict", file_field(png_header_claiming(8_000, 8_000)), 413),
    "file over 10 MiB": ("/predict", file_field(b"\xff\xd8" + b"\x00" * MAX_IMAGE_BYTES), 413),
    "body over the limit": ("/predict", file_field(b"\x00" * (MAX_BODY_BYTES + 1)), 413),
    "chunked body over the limit": (
        "/predict",
        {"data": chunked(b"\x00" * (MAX_BODY_BYTES + 1)), "headers": {"Content-Type": "image/png"}},
        413,
    ),
    "wrong field name": ("/predict", {"files": {"image": ("x.png", SAMPLES["digit_0.png"], "image/png")}}, 422),
    "no body": ("/predict", {}, 422),
    "text field instead of file": ("/predict", {"data": {"file": "digit_0.png"}}, 422),
    "json to the upload route": ("/predict", b64(encode_base64(SAMPLES["digit_0.png"])), 422),
    "broken multipart": (
        "/predict",
        {
            "data": b"--xyz\r\nContent-Disposition: form-da",
            "headers": {"Content-Type": "multipart/form-data; boundary=xyz"},
        },
        422,
    ),
    # Base64 JSON
    "invalid base64 characters": ("/predict/base64", b64("iVBORw0KGgo$$$"), 400),
    "url-safe base64 alphabet": ("/predict/base64", b64("iVBORw0KGgo-_"), 400),
    "bad base64 padding": ("/predict/base64", b64("iVBORw0KGgoA="), 400),
    "empty base64": ("/predict/base64", b64(""), 400),
    "malformed data url": ("/predict/base64", b64("data:image/png," + encode_base64(SAMPLES["digit_0.png"])), 400),
    "non-image data url": ("/predict/base64", b64("data:text/plain;base64,aGVsbG8="), 400),
    "base64 of text": ("/predict/base64", b64(encode_base64(b"hello world")), 415),
    "base64 of truncated png": ("/predict/base64", b64(encode_base64(NOISE_PNG[:300])), 400),
    "base64 over the limit": ("/predict/base64", b64("A" * ((MAX_IMAGE_BYTES + 2) // 3 * 4 + 4)), 413),
    "json over the body limit": ("/predict/base64", b64("A" * (MAX_BODY_BYTES + 10)), 413),
    "image is a number": ("/predict/base64", b64(12345), 422),
    "image is null": ("/predict/base64", b64(None), 422),
    "image is a list": ("/predict/base64", b64([encode_base64(SAMPLES["digit_0.png"])]), 422),
    "image is an object": ("/predict/base64", b64({"data": encode_base64(SAMPLES["digit_0.png"])}), 422),
    "image is true": ("/predict/base64", b64(True), 422),
    "base64 of a zero-pixel png": ("/predict/base64", b64(encode_base64(png_header_claiming(0, 0))), 415),
    "image key missing": ("/predict/base64", {"json": {"img": "aGVsbG8="}}, 422),
    "NaN in the body": (
        "/predict/base64",
        {"data": '{"image": NaN}', "headers": {"Content-Type": "application/json"}},
        422,
    ),
    "not json": ("/predict/base64", {"data": "image=abc", "headers": {"Content-Type": "application/json"}}, 422),
    "json array": ("/predict/base64", {"json": ["aGVsbG8="]}, 422),
    "upload to the base64 route": ("/predict/base64", file_field(SAMPLES["digit_0.png"]), 422),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_gets_a_clear_4xx_json_error_and_the_server_keeps_serving(servers, case):
    path, kwargs, status = BAD_INPUTS[case]
    url = servers("torch")
    response = requests.post(url + path, timeout=60, **kwargs)
    assert response.status_code == status, response.text[:300]
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body.get("error"), str) and body["error"], body
    assert requests.get(url + "/health", timeout=10).status_code == 200
    assert upload(url, "digit_1.png", SAMPLES["digit_1.png"]).json()["top_class"] == "1"


@pytest.mark.parametrize(
    ("method", "path", "status"), [("GET", "/predict", 405), ("POST", "/nope", 404), ("DELETE", "/health", 405)]
)
def test_wrong_routes_and_methods_answer_json(servers, method, path, status):
    response = requests.request(method, servers("torch") + path, timeout=10)
    assert response.status_code == status and "error" in response.json()


def test_many_bad_inputs_in_a_row_leave_the_server_healthy(servers):
    url = servers("torch")
    for case in ("truncated png", "invalid base64 characters", "decompression bomb", "NaN in the body") * 5:
        path, kwargs, status = BAD_INPUTS[case]
        assert requests.post(url + path, timeout=30, **kwargs).status_code == status
    assert upload(url, "digit_2.png", SAMPLES["digit_2.png"]).json()["top_class"] == "2"


def test_demo_page_and_its_assets_are_served_locally(servers):
    url = servers("torch")
    page = requests.get(url + "/", timeout=10)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "http://" not in page.text and "https://" not in page.text  # no CDN, no external assets
    for asset in ("/static/app.js", "/static/style.css"):
        response = requests.get(url + asset, timeout=10)
        assert response.status_code == 200 and "https://" not in response.text
    docs = requests.get(url + "/docs", timeout=10)
    assert docs.status_code == 200 and "cdn.jsdelivr.net" not in docs.text  # Swagger UI served offline


def test_serve_without_the_imagenet_weights_exits_with_advice_instead_of_downloading(tmp_path):
    import os
    import subprocess
    import sys

    from course_lib.vision import MODEL_ENV

    env = {**os.environ, "TORCH_HOME": str(tmp_path / "torch")}  # an empty hub cache
    env.pop(MODEL_ENV, None)
    result = subprocess.run(
        [sys.executable, "-m", "course_lib", "serve", "image-api", "--model", "imagenet", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "error: the ImageNet ResNet-50 weights are unavailable (they are not cached)" in result.stderr
    assert "python -m course_lib download-weights" in result.stderr and "Traceback" not in result.stderr
    assert "serving" not in result.stdout and not (tmp_path / "torch").exists()  # nothing was downloaded


def test_standalone_server_from_the_command_line(classifier):
    command = "python -m course_lib serve image-api --port {port} --model digits --backend torch"
    with serve_script(command, ready_path="/health", timeout=180) as server:
        health = requests.get(server.url + "/health", timeout=10).json()
        response = upload(server.url, "digit_0.png", SAMPLES["digit_0.png"])
    assert health["model"] == "digits" and health["backend"] == "torch"
    assert response.status_code == 200 and response.json()["top_class"] == "0"


def test_listening_socket_is_tcp_so_asyncio_disables_nagle():
    """Keep-alive clients (the benchmark's requests.Session) need TCP_NODELAY on uvicorn's accepted sockets."""
    import socket

    from course_lib.servers import bind_socket

    with bind_socket() as sock:
        assert sock.proto == socket.IPPROTO_TCP
