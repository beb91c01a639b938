"""The classifier bundle: model + preprocessing + category names + which model it is (`load_classifier`)."""

from __future__ import annotations

import io
import os
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from course_lib.vision.decoding import decode_image
from course_lib.vision.digits import DIGIT_CLASSES, DigitsPreprocess, load_digits_model

MODEL_ENV = "COURSE_IMAGE_MODEL"
MODEL_NAMES = ("auto", "imagenet", "digits")
DOWNLOAD_COMMAND = "python -m course_lib download-weights"


class WeightsUnavailableError(RuntimeError):
    """The ImageNet weights are neither cached nor downloadable."""


@dataclass
class Classifier:
    """A ready-to-use image classifier: eval-mode model, its preprocessing, category names and a label."""

    name: str  # "imagenet" or "digits"
    model: nn.Module
    preprocess: Callable[[Image.Image], torch.Tensor]
    categories: list[str]
    description: str
    accuracy: float | None = None  # held-out accuracy when the course measured it (digits)
    input_shape: tuple[int, ...] = field(default=(3, 224, 224))

    def batch(self, images: list[Image.Image]) -> torch.Tensor:
        """Preprocess RGB images into one (N, C, H, W) float tensor."""
        return torch.stack([self.preprocess(image) for image in images])

    def example_input(self, n: int = 2) -> torch.Tensor:
        """A deterministic (n, C, H, W) tensor for exports and warm-up."""
        return torch.linspace(-1.0, 1.0, n * int(np.prod(self.input_shape))).reshape(n, *self.input_shape)

    def probabilities(self, batch: torch.Tensor) -> np.ndarray:
        """Softmax probabilities (N, classes) from the PyTorch model in eager mode."""
        with torch.inference_mode():
            return torch.softmax(self.model(batch), dim=1).numpy()

    def predict(self, image: Image.Image | bytes, k: int = 5) -> dict[str, Any]:
        """Classify one image (PIL or encoded bytes) in process: top class, confidence, top-k, time."""
        if isinstance(image, bytes):
            image = decode_image(image)
        started = time.perf_counter()
        probs = self.probabilities(self.batch([image]))[0]
        return prediction(probs, self.categories, k, (time.perf_counter() - started) * 1000.0, self.name)


def prediction(probs: np.ndarray, categories: list[str], k: int, elapsed_ms: float, model: str) -> dict[str, Any]:
    """The API's answer for one probability vector: top_class, confidence, top_k list, time and model."""
    k = max(1, min(k, len(categories)))
    order = np.argsort(-probs, kind="stable")[:k]
    top = [{"class": categories[i], "probability": round(float(probs[i]), 6)} for i in order]
    return {
        "top_class": top[0]["class"],
        "confidence": top[0]["probability"],
        "top_5": top,
        "inference_time_ms": round(elapsed_ms, 3),
        "model": model,
    }


def imagenet_weights_path() -> Path:
    """Where torchvision keeps (or would keep) the ResNet-50 ImageNet weights: $TORCH_HOME/hub/checkpoints/."""
    from torchvision.models import ResNet50_Weights

    filename = ResNet50_Weights.DEFAULT.url.rsplit("/", 1)[-1]
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def imagenet_classifier(download: bool = True) -> Classifier:
    """torchvision ResNet-50 with ResNet50_Weights.DEFAULT, loaded by torchvision (cache, else download)."""
    from torchvision.models import ResNet50_Weights, resnet50

    weights = ResNet50_Weights.DEFAULT
    path = imagenet_weights_path()
    if not path.exists() and not download:
        raise WeightsUnavailableError(_how_to_get_weights(path, "they are not cached"))
    try:
        model = resnet50(weights=weights)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:  # URLError is an OSError; broken files
        raise WeightsUnavailableError(_how_to_get_weights(path, f"{type(exc).__name__}: {exc}")) from None
    model.eval()
    return Classifier(
        name="imagenet",
        model=model,
        preprocess=weights.transforms(),
        categories=list(weights.meta["categories"]),
        description=f"torchvision ResNet-50, ImageNet weights {weights.name} ({path.name})",
        input_shape=(3, 224, 224),
    )


def _how_to_get_weights(path: Path, reason: str) -> str:
    return (
        f"the ImageNet ResNet-50 weights are unavailable ({reason}). On a machine with internet access run "
        f"`{DOWNLOAD_COMMAND}` (it saves them to {path}), or copy {path.name} there; "
        f"set {MODEL_ENV}=digits to use the offline digits model instead."
    )


def digits_classifier(cache: Path | None = None) -> Classifier:
    """torchvision ResNet-18 trained on scikit-learn's digits (trained and cached on first use)."""
    from course_lib.vision.digits import INPUT_SIZE

    model, held_out, cached = load_digits_model(cache)
    source = "loaded from cache" if cached else "trained just now and cached"
    return Classifier(
        name="digits",
        model=model,
        preprocess=DigitsPreprocess(),
        categories=list(DIGIT_CLASSES),
        description=f"torchvision ResNet-18 trained on scikit-learn digits ({source}; held-out accuracy {held_out:.3f})",
        accuracy=held_out,
        input_shape=(1, INPUT_SIZE, INPUT_SIZE),
    )


def resolve_model_name(name: str = "auto") -> str:
    """Apply $COURSE_IMAGE_MODEL and the `auto` rule: imagenet when its weights are cached, else digits."""
    forced = os.environ.get(MODEL_ENV, "").strip().lower()
    if forced:
        if forced not in MODEL_NAMES:
            raise ValueError(f"{MODEL_ENV}={forced!r}; expected one of {', '.join(MODEL_NAMES)}")
        name = forced
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown image model {name!r}; expected one of {', '.join(MODEL_NAMES)}")
    if name == "auto":
        return "imagenet" if imagenet_weights_path().exists() else "digits"
    return name


def load_classifier(name: str = "auto", download: bool = True, verbose: bool = False) -> Classifier:
    """Load "imagenet", "digits" or "auto" ($COURSE_IMAGE_MODEL overrides name); `auto` never downloads."""
    chosen = resolve_model_name(name)
    automatic = (os.environ.get(MODEL_ENV, "").strip().lower() or name) == "auto"
    if chosen == "digits":
        classifier = digits_classifier()
    elif not automatic:
        classifier = imagenet_classifier(download=download)
    else:  # auto: the cached weights, never a download; a broken cache file falls back to digits
        try:
            classifier = imagenet_classifier(download=False)
        except WeightsUnavailableError:
            classifier = digits_classifier()
            classifier.description += (
                f"; auto chose digits because the cached ImageNet weights cannot be loaded (re-run `{DOWNLOAD_COMMAND}`)"
            )
    if verbose:
        print(f"image model: {classifier.name} — {classifier.description}")
    return classifier


def download_weights() -> Path:
    """Download the ResNet-50 ImageNet weights into the torch hub cache (needs internet) and return the path."""
    imagenet_classifier(download=True)
    return imagenet_weights_path()


def sample_images() -> dict[str, bytes]:
    """Offline sample pictures as encoded files: scikit-learn's two photos (JPEG) and three digits (PNG)."""
    from sklearn.datasets import load_sample_images

    from course_lib.vision.digits import digit_png

    samples: dict[str, bytes] = {}
    photos = load_sample_images()
    for filename, pixels in zip(photos.filenames, photos.images, strict=True):
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
        samples[Path(filename).name] = buffer.getvalue()
    for index in (0, 1, 2):
        samples[f"digit_{index}.png"] = digit_png(index)
    return samples
