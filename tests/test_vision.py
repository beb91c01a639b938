"""course_lib.vision: decoding limits and conversions, Base64, the digits model, model resolution, and classify."""

from __future__ import annotations

import base64
import dataclasses
import io
import os
import re
import struct
import subprocess
import sys
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from PIL import Image

from course_lib.vision import (
    MODEL_ENV,
    ImageError,
    WeightsUnavailableError,
    benchmark_resnet50,
    decode_base64,
    decode_image,
    encode_base64,
    format_answer,
    load_classifier,
    resolve_model_name,
    sample_images,
    top_k,
)
from course_lib.vision.backends import OnnxBackend
from course_lib.vision.classifier import digits_classifier, imagenet_weights_path
from course_lib.vision.digits import digits_resnet18


def encoded(image: Image.Image, fmt: str, **save_kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save_kwargs)
    return buffer.getvalue()


def png_with_size(width: int, height: int) -> bytes:
    """A small PNG file whose header claims width×height pixels (a decompression-bomb shape)."""
    raw = bytearray(encoded(Image.new("L", (8, 8), 0), "PNG"))
    ihdr = 8  # signature, then length(4) type(4) data(13) crc(4)
    raw[ihdr + 8 : ihdr + 16] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(raw[ihdr + 4 : ihdr + 21])) & 0xFFFFFFFF
    raw[ihdr + 21 : ihdr + 25] = struct.pack(">I", crc)
    return bytes(raw)


RED = (220, 30, 30)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "GIF"])
def test_allowed_formats_decode_to_rgb_of_the_same_size(fmt):
    image = decode_image(encoded(Image.new("RGB", (40, 30), RED), fmt))
    assert image.mode == "RGB" and image.size == (40, 30)
    r, g, b = image.getpixel((20, 15))
    assert r > 180 and g < 80 and b < 80


@pytest.mark.parametrize(
    ("mode", "color", "fmt", "expected"),
    [
        ("L", 128, "PNG", (128, 128, 128)),
        ("1", 1, "PNG", (255, 255, 255)),
        ("LA", (0, 0), "PNG", (255, 255, 255)),  # fully transparent → white paper
        ("RGBA", (200, 10, 10, 255), "PNG", (200, 10, 10)),
        ("RGBA", (0, 0, 0, 0), "PNG", (255, 255, 255)),
        ("CMYK", (0, 255, 255, 0), "JPEG", (255, 0, 0)),
        ("I;16", 65535, "PNG", (255, 255, 255)),
        ("I;16", 32768, "PNG", (128, 128, 128)),
    ],
)
def test_modes_are_converted_to_8_bit_rgb(mode, color, fmt, expected):
    image = decode_image(encoded(Image.new(mode, (16, 16), color), fmt))
    assert image.mode == "RGB"
    assert np.allclose(image.getpixel((8, 8)), expected, atol=12), image.getpixel((8, 8))


def test_palette_images_with_and_without_transparency():
    palette = Image.new("RGB", (16, 16), RED).quantize(4)
    assert decode_image(encoded(palette, "PNG")).getpixel((3, 3))[0] > 180
    transparent = palette.copy()
    transparent.info["transparency"] = palette.getpixel((0, 0))
    assert decode_image(encoded(transparent, "PNG")).getpixel((3, 3)) == (255, 255, 255)


def test_gif_first_frame_is_used():
    frames = [Image.new("RGB", (20, 20), RED), Image.new("RGB", (20, 20), (20, 20, 220))]
    data = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    r, _, b = decode_image(data).getpixel((10, 10))
    assert r > 180 and b < 80


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (60, 20), RED)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    assert decode_image(encoded(image, "JPEG", exif=exif.tobytes())).size == (20, 60)


@pytest.mark.parametrize(
    ("data", "status", "words"),
    [
        (b"", 400, "empty"),
        (b"hello, this is not an image", 415, "not a JPEG"),
        (b"%PDF-1.7\n", 415, "not a JPEG"),
        ("tiff", 415, "not a JPEG"),
        ("truncated-png", 400, "corrupt or truncated"),
        ("truncated-jpeg", 400, "corrupt or truncated"),
        ("bomb", 413, "pixels"),
        ("bomb-warning", 413, "pixels"),
        ("over-course-limit", 413, "pixels"),
    ],
)
def test_bad_images_raise_image_error_with_a_status(data, status, words):
    photo = Image.new("RGB", (64, 64), RED)
    data = {
        "tiff": lambda: encoded(photo, "TIFF"),
        "truncated-png": lambda: encoded(Image.effect_noise((64, 64), 50).convert("RGB"), "PNG")[:400],
        "truncated-jpeg": lambda: encoded(Image.effect_noise((64, 64), 50).convert("RGB"), "JPEG")[:600],
        "bomb": lambda: png_with_size(50_000, 50_000),  # Pillow's own hard limit
        "bomb-warning": lambda: png_with_size(12_000, 12_000),  # Pillow would only warn
        "over-course-limit": lambda: png_with_size(8_000, 8_000),  # 64 M pixels > MAX_PIXELS
    }.get(data, lambda: data)()
    with pytest.raises(ImageError, match=words) as info:
        decode_image(data)
    assert info.value.status == status


def test_size_limit_is_checked_before_decoding():
    with pytest.raises(ImageError, match="101 bytes; the limit is 100 bytes") as info:
        decode_image(b"\xff" * 101, max_bytes=100)
    assert info.value.status == 413


def header_with_size(fmt: str, width: int, height: int) -> bytes:
    """A small valid file of format `fmt` whose header is rewritten to claim width×height pixels."""
    raw = bytearray(encoded(Image.new("RGB", (8, 8), RED), fmt))
    if fmt == "PNG":
        return png_with_size(width, height)
    if fmt == "JPEG":  # start-of-frame: length(2) precision(1) height(2) width(2)
        sof = raw.index(b"\xff\xc0")
        raw[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    elif fmt == "BMP":  # BITMAPINFOHEADER: width and height as signed 32-bit integers
        raw[18:26] = struct.pack("<ii", width, height)
    elif fmt == "GIF":  # logical screen and the first image descriptor
        raw[6:10] = struct.pack("<HH", width, height)
        descriptor = raw.index(b"\x2c", 13)
        raw[descriptor + 5 : descriptor + 9] = struct.pack("<HH", width, height)
    return bytes(raw)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "GIF"])
@pytest.mark.parametrize(("width", "height"), [(0, 8), (8, 0), (0, 0)])
def test_a_zero_pixel_image_is_a_4xx_image_error(fmt, width, height):
    # Pillow identifies no format for a header with zero width or height, so this is the 415 of an unknown file
    with pytest.raises(ImageError, match="not a JPEG, PNG, WebP, BMP or GIF") as info:
        decode_image(header_with_size(fmt, width, height))
    assert info.value.status == 415


def test_base64_with_and_without_data_url_prefix_and_line_breaks():
    data = sample_images()["digit_0.png"]
    plain = encode_base64(data)
    assert decode_base64(plain) == data
    assert decode_base64(encode_base64(data, "png")) == data
    assert decode_base64("data:image/jpeg;base64," + plain) == data
    assert decode_base64(base64.encodebytes(data).decode()) == data  # MIME line breaks


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "abc$",
        "iVBORw0KGgoA=",
        "aGVsbG8==",
        "aGVsbG8=x",
        "aGVsbG8",
        "aGVs bG8=",
        "a-_b",
        "data:text/plain;base64,aGVsbG8=",
        "data:image/png,aGVsbG8=",
        "data:image/png;base64,",
        "ü",
    ],
)
def test_bad_base64_is_refused(text):
    with pytest.raises(ImageError, match="Base64|data URL") as info:
        decode_base64(text)
    assert info.value.status == 400


@pytest.mark.parametrize("value", [None, 42, 4.2, b"aGVsbG8=", ["aGVsbG8="], {"image": "aGVsbG8="}])
def test_base64_that_is_not_a_string_is_a_400(value):
    with pytest.raises(ImageError, match="must be a Base64 string") as info:
        decode_base64(value)
    assert info.value.status == 400


def test_too_long_base64_is_refused_before_decoding():
    with pytest.raises(ImageError, match="more than 100 bytes") as info:
        decode_base64("A" * 200, max_bytes=100)
    assert info.value.status == 413


def test_sample_images_decode_and_digits_are_recognised():
    samples = sample_images()
    assert {"china.jpg", "flower.jpg", "digit_0.png", "digit_1.png", "digit_2.png"} <= set(samples)
    assert decode_image(samples["china.jpg"]).size == (640, 427)
    classifier = load_classifier("digits")
    for index in range(3):
        result = classifier.classify(samples[f"digit_{index}.png"])
        assert result["top_class"] == str(index) and result["model"] == "digits"
        probabilities = [e["probability"] for e in result["top_5"]]
        assert probabilities == sorted(probabilities, reverse=True)


def without_time(answer: dict) -> dict:
    """An answer without inference_time_ms, the one key that differs from call to call."""
    return {key: value for key, value in answer.items() if key != "inference_time_ms"}


def test_classify_answers_the_api_body_from_the_models_probabilities(classifier):
    data = sample_images()["digit_2.png"]
    answer = classifier.classify(data)
    assert set(answer) == {"top_class", "confidence", "top_5", "inference_time_ms", "model", "backend"}
    assert answer["model"] == "digits" and answer["backend"] == "torch" and answer["top_class"] == "2"
    probs = classifier.probabilities(classifier.batch([decode_image(data)]))[0]
    order = np.argsort(-probs, kind="stable")[:5]
    assert answer["top_5"] == [
        {"class": classifier.categories[i], "probability": round(float(probs[i]), 6)} for i in order
    ]
    assert answer["top_5"][0] == {"class": answer["top_class"], "probability": answer["confidence"]}
    assert answer["inference_time_ms"] > 0
    assert without_time(classifier.classify(decode_image(data))) == without_time(answer)  # bytes or decoded alike


def test_classify_raises_the_decoders_image_error_for_bytes_that_are_no_image(classifier):
    with pytest.raises(ImageError, match="not a JPEG, PNG") as info:
        classifier.classify(b"hello, world")
    assert info.value.status == 415


def test_classify_runs_the_given_backend_and_names_it(classifier):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        untrained = digits_resnet18().eval()  # another network, so the answer shows which one ran
    backend = OnnxBackend(dataclasses.replace(classifier, model=untrained))
    data = sample_images()["digit_2.png"]
    answer = classifier.classify(data, backend)
    assert answer["backend"] == "onnx" and answer["model"] == "digits"
    probs = backend.probabilities(classifier.batch([decode_image(data)]))[0]
    assert answer["top_5"] == top_k(probs, classifier.categories, 5)
    assert answer["top_5"] != classifier.classify(data)["top_5"]


def test_top_k_lists_the_k_most_likely_first_rounded_to_6_decimals_ties_in_category_order():
    probs = np.array([0.1, 0.3, 0.05, 0.3, 0.2500004, 0.0])
    categories = ["a", "b", "c", "d", "e", "f"]
    assert top_k(probs, categories, 3) == [
        {"class": "b", "probability": 0.3},
        {"class": "d", "probability": 0.3},
        {"class": "e", "probability": 0.25},
    ]
    assert [entry["class"] for entry in top_k(probs, categories, 6)] == ["b", "d", "e", "a", "c", "f"]
    for k in (0, -1, 7):
        with pytest.raises(ValueError, match="between 1 and 6"):
            top_k(probs, categories, k)


def test_format_answer_holds_the_top_5_and_names_model_and_backend():
    probs = np.arange(10, dtype=np.float32) / 45
    categories = [str(i) for i in range(10)]
    assert format_answer(probs, categories, 1.23456, "digits", "onnx") == {
        "top_class": "9",
        "confidence": 0.2,
        "top_5": top_k(probs, categories, 5),
        "inference_time_ms": 1.235,
        "model": "digits",
        "backend": "onnx",
    }


def test_the_cached_digits_model_is_the_accurate_one_it_says(classifier):
    """The model every test and notebook uses (trained with EPOCHS by this code on a fresh machine); its saved
    held-out accuracy is measured again here."""
    from course_lib.vision.digits import accuracy, digits_tensors

    _, X_test, _, y_test = digits_tensors()
    assert classifier.name == "digits" and classifier.accuracy >= 0.95, classifier.description
    assert accuracy(classifier.model, X_test, y_test) == pytest.approx(classifier.accuracy, abs=1e-6)


def test_digits_model_trains_once_into_an_empty_cache_while_another_waits(tmp_path):
    from course_lib.vision.digits import CACHE_FILE, load_digits_model

    with pytest.raises(FileNotFoundError, match="no trained digits model"):
        load_digits_model(tmp_path, train_if_missing=False)
    with ThreadPoolExecutor(2) as pool:  # two kernels or test workers at once: one trains, the other waits for it
        both = list(pool.map(lambda _: load_digits_model(tmp_path, epochs=1), range(2)))
    (trained, trained_accuracy, _), (loaded, loaded_accuracy, _) = sorted(both, key=lambda result: result[2])
    assert [cached for _, _, cached in both].count(True) == 1, "both trained, or neither"
    assert (tmp_path / CACHE_FILE).exists() and loaded_accuracy == trained_accuracy
    for name, tensor in trained.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    assert not loaded.training and not trained.training  # served in eval mode
    assert "loaded from cache" in digits_classifier(tmp_path).description


def test_digits_training_is_deterministic():
    from course_lib.vision.digits import train_digits

    # two runs give the same weights (a few steps each, the code path of the full training)
    (first, first_accuracy, _), (second, second_accuracy, _) = (train_digits(max_steps=4) for _ in range(2))
    assert first_accuracy == second_accuracy
    for name, tensor in first.state_dict().items():
        assert torch.equal(tensor, second.state_dict()[name]), name


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(MODEL_ENV, raising=False)
    return tmp_path / "torch"


def place_random_resnet50(torch_home) -> tuple[dict, object]:
    """Save a seeded random ResNet-50 state dict under torchvision's expected file name (no network needed)."""
    from torchvision.models import resnet50

    torch.manual_seed(0)
    weights = resnet50().state_dict()
    path = torch_home / "hub" / "checkpoints" / "resnet50-11ad3fa6.pth"
    path.parent.mkdir(parents=True)
    torch.save(weights, path)
    return weights, path


def test_imagenet_loads_through_torchvision_from_the_hub_cache(empty_torch_home):
    weights, path = place_random_resnet50(empty_torch_home)
    assert imagenet_weights_path() == path
    assert resolve_model_name("auto") == "imagenet"
    classifier = load_classifier("auto")
    assert classifier.name == "imagenet" and len(classifier.categories) == 1000
    assert classifier.categories[0] == "tench" and classifier.categories[207] == "golden retriever"
    assert torch.equal(classifier.model.fc.weight, weights["fc.weight"])
    assert not classifier.model.training
    result = classifier.classify(sample_images()["china.jpg"])
    assert result["model"] == "imagenet" and len(result["top_5"]) == 5


def test_auto_falls_back_to_digits_and_forced_imagenet_explains_how_to_download(empty_torch_home, monkeypatch):
    assert resolve_model_name("auto") == "digits"
    with pytest.raises(WeightsUnavailableError, match="python -m course_lib download-weights"):
        load_classifier("imagenet", download=False)
    monkeypatch.setenv(MODEL_ENV, "imagenet")
    assert resolve_model_name("digits") == "imagenet"  # the environment variable wins
    monkeypatch.setenv(MODEL_ENV, "resnet")
    with pytest.raises(ValueError, match=MODEL_ENV):
        resolve_model_name()


def download_command(torch_home, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m course_lib download-weights ARGS` with TORCH_HOME pointing at a test folder."""
    env = {**os.environ, "TORCH_HOME": str(torch_home)}
    env.pop(MODEL_ENV, None)
    return subprocess.run(
        [sys.executable, "-m", "course_lib", "download-weights", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_download_weights_keeps_a_cached_file_that_loads(empty_torch_home):
    _, path = place_random_resnet50(empty_torch_home)
    before = path.stat().st_mtime_ns
    result = download_command(empty_torch_home, "--url", "http://127.0.0.1:9/never-asked.pth")
    assert result.returncode == 0, result.stderr
    assert f"ResNet-50 ImageNet weights ready: {path}" in result.stdout
    assert path.stat().st_mtime_ns == before


@pytest.fixture
def mirror(tmp_path):
    """A folder served over HTTP on 127.0.0.1 (a stand-in for download.pytorch.org: no internet needed)."""
    from starlette.applications import Starlette
    from starlette.routing import Mount
    from starlette.staticfiles import StaticFiles

    from course_lib.servers import serve

    folder = tmp_path / "mirror"
    folder.mkdir()
    with serve(Starlette(routes=[Mount("/", StaticFiles(directory=folder))])) as server:  # a missing file is a 404
        yield folder, server.url


def test_download_weights_fetches_checks_and_caches_the_file(empty_torch_home, mirror):
    from torchvision.models import resnet50

    folder, url = mirror
    torch.manual_seed(0)
    weights = {k: v.half() if v.is_floating_point() else v for k, v in resnet50().state_dict().items()}  # half the size
    torch.save(weights, folder / "resnet50-copy.pth")  # no hash in the name: checked by loading it
    result = download_command(empty_torch_home, "--url", f"{url}/resnet50-copy.pth")
    assert result.returncode == 0, result.stderr
    path = empty_torch_home / "hub" / "checkpoints" / "resnet50-11ad3fa6.pth"
    assert f"ResNet-50 ImageNet weights ready: {path}" in result.stdout
    assert torch.equal(torch.load(path, weights_only=True)["fc.weight"], weights["fc.weight"])
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no partial file left
    classifier = load_classifier("auto")
    assert classifier.name == "imagenet"
    assert torch.equal(classifier.model.fc.weight, weights["fc.weight"].float())


@pytest.mark.parametrize(
    ("served", "words"),
    [
        pytest.param("resnet50-11ad3fa6.pth", "invalid hash value", id="hash-in-the-name-does-not-match"),
        pytest.param("resnet50-copy.pth", "is not a ResNet-50 state dict", id="not-a-checkpoint"),
        pytest.param(None, "HTTPError: HTTP Error 404", id="not-found"),
    ],
)
def test_a_failed_download_exits_1_with_advice_and_leaves_no_file(empty_torch_home, mirror, served, words):
    folder, url = mirror
    name = served or "resnet50-missing.pth"
    if served:
        (folder / served).write_bytes(b"a small file that is not a ResNet-50 checkpoint")
    result = download_command(empty_torch_home, "--url", f"{url}/{name}")
    assert result.returncode == 1, result.stdout + result.stderr
    assert re.search(words, result.stderr), result.stderr
    assert "error: the ImageNet ResNet-50 weights are unavailable" in result.stderr
    assert "python -m course_lib download-weights" in result.stderr and "Traceback" not in result.stderr
    checkpoints = empty_torch_home / "hub" / "checkpoints"
    assert not checkpoints.exists() or not any(checkpoints.iterdir())
    assert resolve_model_name("auto") == "digits"


def test_a_download_from_a_closed_port_fails_with_advice(empty_torch_home):
    from course_lib.servers import free_port

    result = download_command(empty_torch_home, "--url", f"http://127.0.0.1:{free_port()}/resnet50.pth")
    assert result.returncode == 1
    assert "URLError" in result.stderr and "Connection refused" in result.stderr


def test_benchmark_resnet50_uses_seeded_random_weights_without_the_imagenet_file(empty_torch_home):
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = benchmark_resnet50()
    assert torch.equal(torch.rand(3), expected_next)  # the caller's random state is untouched
    second = benchmark_resnet50()
    assert first.name == "resnet50-random" and "meaningless" in first.description and "乱数" in first.summary_ja
    assert first.input_shape == (3, 224, 224) and len(first.categories) == 1000 and not first.model.training
    assert torch.equal(first.model.fc.weight, second.model.fc.weight)
    assert first.batch([decode_image(sample_images()["china.jpg"])]).shape == (1, 3, 224, 224)


def test_benchmark_resnet50_uses_the_imagenet_weights_when_cached(empty_torch_home):
    weights, _ = place_random_resnet50(empty_torch_home)
    classifier = benchmark_resnet50()
    assert classifier.name == "imagenet" and torch.equal(classifier.model.fc.weight, weights["fc.weight"])


def test_verbose_loading_prints_one_japanese_line(capsys):
    load_classifier("digits", verbose=True)
    line = capsys.readouterr().out
    assert line.startswith("画像モデル: digits — scikit-learn の手書き数字で学習した torchvision の ResNet-18")
    assert line.count("\n") == 1


@pytest.mark.parametrize("content", ["garbage", "truncated"])
def test_a_broken_cached_weights_file_makes_auto_fall_back_and_imagenet_explain(empty_torch_home, monkeypatch, content):
    from torchvision.models import resnet50

    path = imagenet_weights_path()
    path.parent.mkdir(parents=True)
    if content == "garbage":
        path.write_bytes(b"this is not a checkpoint")
    else:
        buffer = io.BytesIO()
        torch.save(resnet50().state_dict(), buffer)
        path.write_bytes(buffer.getvalue()[:1_000_000])  # an interrupted download
    classifier = load_classifier("auto")
    assert classifier.name == "digits" and "cached ImageNet weights cannot be loaded" in classifier.description
    with pytest.raises(WeightsUnavailableError, match="python -m course_lib download-weights"):
        load_classifier("imagenet", download=False)
    monkeypatch.setenv(MODEL_ENV, "imagenet")  # forced: no silent fallback
    with pytest.raises(WeightsUnavailableError, match="python -m course_lib download-weights"):
        load_classifier("auto", download=False)
