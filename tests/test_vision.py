"""course_lib.vision: decoding limits and conversions, Base64, the digits model, and model resolution."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from course_lib.vision import (
    MODEL_ENV,
    ImageError,
    WeightsUnavailableError,
    decode_base64,
    decode_image,
    encode_base64,
    load_classifier,
    resolve_model_name,
    sample_images,
)
from course_lib.vision.classifier import imagenet_weights_path


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
    with pytest.raises(ImageError) as info:
        decode_image(b"\xff" * 101, max_bytes=100)
    assert info.value.status == 413


def test_base64_with_and_without_data_url_prefix_and_line_breaks():
    data = sample_images()["digit_0.png"]
    plain = encode_base64(data)
    assert decode_base64(plain) == data
    assert decode_base64(encode_base64(data, "png")) == data
    assert decode_base64("data:image/jpeg;base64," + plain) == data
    assert decode_base64(base64.encodebytes(data).decode()) == data  # MIME line breaks


@pytest.mark.parametrize(
    "text",
    ["", "   ", "abc$", "iVBORw0KGgoA=", "aGVsbG8==", "aGVsbG8=x", "aGVsbG8", "aGVs bG8=", "a-_b", "data:text/plain;base64,aGVsbG8=",
     "data:image/png,aGVsbG8=", "data:image/png;base64,", "ü"],
)
def test_bad_base64_is_refused(text):
    with pytest.raises(ImageError) as info:
        decode_base64(text)
    assert info.value.status == 400


def test_too_long_base64_is_refused_before_decoding():
    with pytest.raises(ImageError) as info:
        decode_base64("A" * 200, max_bytes=100)
    assert info.value.status == 413


def test_sample_images_decode_and_digits_are_recognised():
    samples = sample_images()
    assert {"china.jpg", "flower.jpg", "digit_0.png", "digit_1.png", "digit_2.png"} <= set(samples)
    assert decode_image(samples["china.jpg"]).size == (640, 427)
    classifier = load_classifier("digits")
    for index in range(3):
        result = classifier.predict(samples[f"digit_{index}.png"])
        assert result["top_class"] == str(index) and result["model"] == "digits"
        assert [e["probability"] for e in result["top_5"]] == sorted((e["probability"] for e in result["top_5"]), reverse=True)


def test_digits_model_trains_deterministically_into_an_empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv(MODEL_ENV, "digits")
    trained = load_classifier()
    assert "trained just now" in trained.description
    assert trained.accuracy >= 0.95, trained.accuracy
    assert (tmp_path / "digits_resnet18_v1.pt").exists()
    cached = load_classifier("digits")
    assert "loaded from cache" in cached.description and cached.accuracy == trained.accuracy
    batch = cached.example_input(4)
    assert np.allclose(trained.probabilities(batch), cached.probabilities(batch), atol=1e-6)
    from course_lib.vision.digits import train_digits

    again, accuracy, _ = train_digits()  # deterministic: a second run gives the same weights
    assert accuracy == trained.accuracy
    for name, tensor in again.state_dict().items():
        assert torch.equal(tensor, trained.model.state_dict()[name]), name


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
    result = classifier.predict(sample_images()["china.jpg"])
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


def test_download_weights_command_uses_the_hub_cache(empty_torch_home):
    import os
    import subprocess
    import sys

    _, path = place_random_resnet50(empty_torch_home)
    env = {**os.environ, "TORCH_HOME": str(empty_torch_home)}
    result = subprocess.run(
        [sys.executable, "-m", "course_lib", "download-weights"], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert str(path) in result.stdout


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
