"""The offline image model: a torchvision ResNet-18 trained deterministically on scikit-learn's digits."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torchvision.models import resnet18

DIGIT_CLASSES = [str(d) for d in range(10)]
INPUT_SIZE = 16  # the model sees 16×16 grayscale pictures (the 8×8 digits upscaled)
RENDER_SIZE = 32  # digit pictures are rendered as 32×32 images, dark ink on white paper
CACHE_FILE = "digits_resnet18_v1.pt"
TRAIN_SEED = 0
EPOCHS = 6  # held-out accuracy above 0.95 (tests/test_vision.py checks the cached model)


def cache_dir() -> Path:
    """Where the trained digits model is kept: $COURSE_CACHE_DIR or ~/.cache/ml-deploy-course."""
    return Path(os.environ.get("COURSE_CACHE_DIR") or Path.home() / ".cache" / "ml-deploy-course")


def render_digit(pixels: np.ndarray, size: int = RENDER_SIZE) -> Image.Image:
    """An 8×8 digits array (0 = paper … 16 = ink) as a size×size RGB picture with dark ink on white."""
    gray = (255 - np.asarray(pixels, dtype=np.float64) * (255 / 16)).round().astype(np.uint8)
    return Image.fromarray(gray).resize((size, size), Image.Resampling.BILINEAR).convert("RGB")


def digit_png(index: int = 0) -> bytes:
    """PNG bytes of digits image number `index` (a sample to send to the API)."""
    buffer = io.BytesIO()
    render_digit(load_digits().images[index]).save(buffer, format="PNG")
    return buffer.getvalue()


class DigitsPreprocess:
    """RGB picture → (1, 16, 16) float tensor: grayscale, resize, ink = high values, standardized."""

    mean = 0.30
    std = 0.31

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """Preprocess one PIL image."""
        small = image.convert("L").resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BILINEAR)
        ink = 1.0 - np.asarray(small, dtype=np.float32) / 255.0
        return torch.from_numpy((ink - self.mean) / self.std).unsqueeze(0)

    def __repr__(self) -> str:
        return f"DigitsPreprocess(grayscale, resize {INPUT_SIZE}×{INPUT_SIZE}, invert, standardize)"


def digits_resnet18() -> nn.Module:
    """torchvision's ResNet-18 with 10 classes and a 3×3 one-channel first convolution for small digits."""
    model = resnet18(num_classes=10)
    model.conv1 = nn.Conv2d(1, 64, kernel_size=3, stride=1, padding=1, bias=False)
    return model


def digits_split(random_state: int = 42) -> tuple[np.ndarray, np.ndarray]:
    """Indices into load_digits() of the model's 80/20 stratified split: (training, held out)."""
    target = load_digits().target
    idx_train, idx_test = train_test_split(
        np.arange(len(target)), test_size=0.2, random_state=random_state, stratify=target
    )
    return idx_train, idx_test


def digit_images(random_state: int = 42) -> tuple[list[Image.Image], list[Image.Image]]:
    """The digits as the API receives them (rendered RGB images): (training images, held-out images)."""
    pixels = load_digits().images
    idx_train, idx_test = digits_split(random_state)
    return [render_digit(pixels[i]) for i in idx_train], [render_digit(pixels[i]) for i in idx_test]


def digits_tensors(random_state: int = 42) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Digits rendered and preprocessed exactly as served; an 80/20 stratified split (X_tr, X_te, y_tr, y_te)."""
    digits = load_digits()
    preprocess = DigitsPreprocess()
    X = torch.stack([preprocess(render_digit(img)) for img in digits.images])
    y = torch.from_numpy(digits.target.astype(np.int64))
    idx_train, idx_test = digits_split(random_state)
    return X[idx_train], X[idx_test], y[idx_train], y[idx_test]


def accuracy(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    """Share of correct top-1 predictions of model (in eval mode) on X."""
    model.eval()
    with torch.inference_mode():
        return float((model(X).argmax(1) == y).float().mean())


def train_digits(
    epochs: int = EPOCHS, batch_size: int = 64, seed: int = TRAIN_SEED, max_steps: int | None = None
) -> tuple[nn.Module, float, float]:
    """Train the digits ResNet-18 deterministically; return (model in eval mode, held-out accuracy, seconds).

    max_steps stops after that many optimizer steps (the schedule unchanged): a test checks determinism on a few.
    """
    started = time.perf_counter()
    X_train, X_test, y_train, y_test = digits_tensors()
    with torch.random.fork_rng(devices=[]):  # seeded training; the caller's random state stays as it was
        torch.manual_seed(seed)
        model = digits_resnet18()
        order = torch.Generator().manual_seed(seed)
        optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
        steps = epochs * ((len(y_train) + batch_size - 1) // batch_size)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=steps)
        loss_fn = nn.CrossEntropyLoss()
        model.train()
        batches = (b for _ in range(epochs) for b in torch.randperm(len(y_train), generator=order).split(batch_size))
        for step, batch in enumerate(batches):
            if max_steps is not None and step >= max_steps:
                break
            optimizer.zero_grad()
            loss_fn(model(X_train[batch]), y_train[batch]).backward()
            optimizer.step()
            schedule.step()
    held_out = accuracy(model, X_test, y_test)
    return model, held_out, time.perf_counter() - started


def load_digits_model(
    cache: Path | None = None, train_if_missing: bool = True, epochs: int = EPOCHS
) -> tuple[nn.Module, float, bool]:
    """The cached digits model (trained for `epochs` and saved on first use); return (model, held-out accuracy,
    was_cached). The course always trains EPOCHS; a test of the cache itself trains one."""
    path = (cache or cache_dir()) / CACHE_FILE
    if not path.exists() and not train_if_missing:
        raise FileNotFoundError(f"no trained digits model at {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    # Parallel test workers or kernels that all find no model wait for the one that trains it, then load its file.
    with FileLock(path.with_suffix(".lock")):
        if path.exists():
            model = digits_resnet18()
            saved = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(saved["state_dict"])
            model.eval()
            return model, float(saved["accuracy"]), True
        model, held_out, _ = train_digits(epochs)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        torch.save({"state_dict": model.state_dict(), "accuracy": held_out}, partial)
        partial.replace(path)  # atomic: a reader without the lock never sees half a file
    return model, held_out, False
