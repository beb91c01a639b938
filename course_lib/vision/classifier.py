"""The classifier bundle: model + preprocessing + category names + which model it is (`load_classifier`).

`Classifier.classify` is the one inference path of the image model: bytes or an image → the answer the API sends.
"""

from __future__ import annotations

import io
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image
from sklearn.datasets import load_sample_images
from torch import nn
from torchvision.models import ResNet50_Weights, resnet50

from course_lib.vision.decoding import decode_image
from course_lib.vision.digits import DIGIT_CLASSES, INPUT_SIZE, DigitsPreprocess, digit_png, load_digits_model

MODEL_ENV = "COURSE_IMAGE_MODEL"
MODEL_NAMES = ("auto", "imagenet", "digits")
DOWNLOAD_COMMAND = "python -m course_lib download-weights"
HASH_IN_NAME = re.compile(r"-([a-f0-9]+)\.")  # torch.hub's rule: name-<sha256 prefix>.pth is checked on download
EAGER = "torch"  # the backend name of a classifier's own PyTorch model run eagerly


class Backend(Protocol):
    """What runs a classifier's network: a name for answers and softmax probabilities (N, classes) for a batch."""

    name: str

    def probabilities(self, batch: torch.Tensor) -> np.ndarray: ...


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
    summary_ja: str = ""  # the description for learners (load_classifier(verbose=True) prints it)

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

    def classify(self, image: bytes | Image.Image, backend: Backend | None = None) -> dict[str, Any]:
        """The body of the API's /predict answer for one image (encoded bytes or decoded), run by `backend`.

        Bytes go through `decode_image` (an ImageError carries the 4xx status). `backend=None` runs this
        classifier's own PyTorch model eagerly (named "torch"). inference_time_ms times the network only.
        """
        return self.classify_prepared([self.prepare(image)], backend)[0]

    def prepare(self, image: bytes | Image.Image) -> torch.Tensor:
        """The first half of `classify`: one image (bytes go through `decode_image`) as a (C, H, W) tensor."""
        return self.preprocess(decode_image(image) if isinstance(image, bytes) else image)

    def classify_prepared(self, prepared: list[torch.Tensor], backend: Backend | None = None) -> list[dict[str, Any]]:
        """The second half of `classify`: the answers for prepared images, run by `backend` as one batch.

        Each answer's inference_time_ms is the time of that one network call (the whole batch's).
        """
        run, backend_name = (self.probabilities, EAGER) if backend is None else (backend.probabilities, backend.name)
        batch = torch.stack(prepared)
        started = time.perf_counter()
        probs = run(batch)
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        return [format_answer(row, self.categories, elapsed_ms, self.name, backend_name) for row in probs]


def top_k(probs: np.ndarray, categories: list[str], k: int) -> list[dict[str, Any]]:
    """The k most likely classes, most likely first (ties keep category order): {"class", "probability"} each."""
    if not 1 <= k <= len(categories):
        raise ValueError(f"k must be between 1 and {len(categories)} (the number of classes), not {k}")
    order = np.argsort(-probs, kind="stable")[:k]
    return [{"class": categories[i], "probability": round(float(probs[i]), 6)} for i in order]


def format_answer(
    probs: np.ndarray, categories: list[str], elapsed_ms: float, model: str, backend: str
) -> dict[str, Any]:
    """The API's answer for one probability vector: top_class, confidence, top_5, inference_time_ms, model, backend."""
    top_5 = top_k(probs, categories, 5)
    return {
        "top_class": top_5[0]["class"],
        "confidence": top_5[0]["probability"],
        "top_5": top_5,
        "inference_time_ms": round(elapsed_ms, 3),
        "model": model,
        "backend": backend,
    }


def imagenet_weights_path() -> Path:
    """Where torchvision keeps (or would keep) the ResNet-50 ImageNet weights: $TORCH_HOME/hub/checkpoints/."""
    filename = ResNet50_Weights.DEFAULT.url.rsplit("/", 1)[-1]
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def imagenet_classifier(download: bool = True) -> Classifier:
    """torchvision ResNet-50 with ResNet50_Weights.DEFAULT from the hub cache (downloaded first when allowed)."""
    weights = ResNet50_Weights.DEFAULT
    path = imagenet_weights_path()
    if not path.exists():
        if not download:
            raise WeightsUnavailableError(_how_to_get_weights(path, "they are not cached"))
        download_weights()
    try:
        model = resnet50(weights=weights)
    except Exception as exc:  # noqa: BLE001 - a broken or cut file fails in many ways (zip, pickle, IndexError…)
        raise WeightsUnavailableError(_how_to_get_weights(path, f"{type(exc).__name__}: {exc}")) from None
    return _resnet50_classifier(
        model.eval(),
        name="imagenet",
        description=f"torchvision ResNet-50, ImageNet weights {weights.name} ({path.name})",
        summary_ja=f"torchvision の ResNet-50、ImageNet で学習済みの重み {weights.name}（{path.name}）",
    )


def _resnet50_classifier(model: nn.Module, name: str, description: str, summary_ja: str) -> Classifier:
    """A Classifier around a ResNet-50 with the DEFAULT weights' preprocessing and ImageNet category names."""
    weights = ResNet50_Weights.DEFAULT
    return Classifier(
        name=name,
        model=model,
        preprocess=weights.transforms(),
        categories=list(weights.meta["categories"]),
        description=description,
        input_shape=(3, 224, 224),
        summary_ja=summary_ja,
    )


def benchmark_resnet50(seed: int = 0) -> Classifier:
    """ResNet-50 at 224×224 for latency benchmarks: the ImageNet weights when cached, else seeded random weights.

    The time of a forward pass does not depend on the weight values, so random weights measure the same latency;
    their predictions are meaningless (the name "resnet50-random" says so in every answer).
    """
    try:
        return imagenet_classifier(download=False)
    except WeightsUnavailableError:
        pass
    with torch.random.fork_rng(devices=[]):  # the caller's random state stays as it was
        torch.manual_seed(seed)
        model = resnet50()
    return _resnet50_classifier(
        model.eval(),
        name="resnet50-random",
        description=f"torchvision ResNet-50 with random weights (seed {seed}): latency only, meaningless predictions",
        summary_ja=(
            f"torchvision の ResNet-50、乱数（シード {seed}）で初期化した重み。"
            "ImageNet の重みがキャッシュに無いための代わりで、計算の量は本物と同じ、予測には意味がありません"
        ),
    )


def _how_to_get_weights(path: Path, reason: str) -> str:
    return (
        f"the ImageNet ResNet-50 weights are unavailable ({reason}). On a machine with internet access run "
        f"`{DOWNLOAD_COMMAND}` (it saves them to {path}), or copy {path.name} there; "
        f"set {MODEL_ENV}=digits to use the offline digits model instead."
    )


def digits_classifier(cache: Path | None = None) -> Classifier:
    """torchvision ResNet-18 trained on scikit-learn's digits (trained and cached on first use)."""
    model, held_out, cached = load_digits_model(cache)
    source = "loaded from cache" if cached else "trained just now and cached"
    trained = f"{source}; held-out accuracy {held_out:.3f}"
    return Classifier(
        name="digits",
        model=model,
        preprocess=DigitsPreprocess(),
        categories=list(DIGIT_CLASSES),
        description=f"torchvision ResNet-18 trained on scikit-learn digits ({trained})",
        accuracy=held_out,
        input_shape=(1, INPUT_SIZE, INPUT_SIZE),
        summary_ja=(
            "scikit-learn の手書き数字で学習した torchvision の ResNet-18"
            f"（{'キャッシュから読み込み' if cached else '今学習してキャッシュに保存'}。"
            f"学習のときに、学習に使わなかった 20% で測った正解率 {held_out:.3f}）"
        ),
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
                "; auto chose digits because the cached ImageNet weights cannot be loaded"
                f" (re-run `{DOWNLOAD_COMMAND}`)"
            )
            classifier.summary_ja += (
                "。キャッシュにある ImageNet の重みが読めないので、auto は digits を選びました"
                f"（`{DOWNLOAD_COMMAND}` をやり直してください）"
            )
    if verbose:
        print(f"画像モデル: {classifier.name} — {classifier.summary_ja or classifier.description}")
    return classifier


def download_weights(url: str | None = None, progress: bool = True) -> Path:
    """Put the ResNet-50 ImageNet weights into the torch hub cache (from torchvision's URL, or a copy at `url`).

    An already cached file that loads is kept. A new file is checked before it replaces anything: against the
    SHA-256 prefix in its URL's name as torch.hub does (`resnet50-11ad3fa6.pth`), and by loading it into a
    ResNet-50. Any failure raises WeightsUnavailableError and leaves no file behind.
    """
    url = url or ResNet50_Weights.DEFAULT.url
    path = imagenet_weights_path()
    if path.exists():
        try:
            _check_resnet50_weights(path)
            return path
        except ValueError:
            pass  # a broken cached file is replaced by the download below
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    hashed = HASH_IN_NAME.search(url.rsplit("/", 1)[-1])
    try:
        torch.hub.download_url_to_file(url, str(partial), hash_prefix=hashed and hashed.group(1), progress=progress)
        _check_resnet50_weights(partial)
        partial.replace(path)  # atomic: a reader never sees half a file
    except (OSError, RuntimeError, ValueError) as exc:  # URLError is an OSError; a wrong hash is a RuntimeError
        raise WeightsUnavailableError(
            _how_to_get_weights(path, f"downloading {url} failed: {type(exc).__name__}: {exc}")
        ) from None
    finally:
        partial.unlink(missing_ok=True)
    return path


def _check_resnet50_weights(path: Path) -> None:
    """Raise ValueError unless the file holds a state dict that fits torchvision's ResNet-50 exactly."""
    try:
        resnet50().load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as exc:  # noqa: BLE001 - a broken file fails in many ways (zip, pickle, IndexError…)
        raise ValueError(f"{path.name} is not a ResNet-50 state dict ({type(exc).__name__}: {exc})") from None


def sample_images() -> dict[str, bytes]:
    """Offline sample pictures as encoded files: scikit-learn's two photos (JPEG) and three digits (PNG)."""
    samples: dict[str, bytes] = {}
    photos = load_sample_images()
    for filename, pixels in zip(photos.filenames, photos.images, strict=True):
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
        samples[Path(filename).name] = buffer.getvalue()
    for index in (0, 1, 2):
        samples[f"digit_{index}.png"] = digit_png(index)
    return samples
