"""int8 static quantization of a classifier's ONNX model with onnxruntime.quantization (QDQ, uint8 activations,
per-channel int8 weights).

The steps, as onnxruntime documents them: `quant_pre_process` (shape inference and graph clean-up), a calibration
data reader that feeds representative preprocessed images, `quantize_static` (QuantizeLinear/DequantizeLinear pairs
around every Conv/Gemm/…, activation ranges from the calibration run, one weight scale per output channel). The
calibration images are the project's own: the digits training split for the digits model, and seeded random
crops and flips of scikit-learn's two sample photos for ResNet-50 — never network data. The result is cached
under `cache_dir()/onnx`, keyed by the fp32 model's bytes and every setting, so a second start-up loads it.

On x86 CPUs without VNNI (AVX2 only, or AVX-512 without VNNI), onnxruntime's int8 convolution multiplies
uint8 × int8 pairs with VPMADDUBSW, which adds two products into a saturating int16: with full 8-bit weights the
sums can clip, and the digits model loses about 3 points of accuracy to it (the QDQ arithmetic itself loses none).
`reduce_range=True` quantizes weights to 7 bits, which keeps the sums in range. VNNI (VPDPBUSD) accumulates in
int32 and needs no such care. So by default reduce_range is on unless the CPU reports VNNI.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import platform
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime
from onnxruntime.quantization import CalibrationDataReader
from PIL import Image

from course_lib.vision.classifier import Classifier
from course_lib.vision.digits import cache_dir, digits_tensors

CALIBRATION_SEED = 0
PARITY_SEED = 1  # another seed than calibration's, so the start-up check sees crops the calibration did not
CALIBRATION_PHOTOS = 32  # random crops of the sample photos for a photo model
PARITY_PHOTOS = 32
CALIBRATION_BATCH = 64
# The start-up check: share of fixed inputs whose int8 top-1 class is fp32's. A broken int8 model (another model's
# file, or calibration data that misses the activations' range) agrees about as often as chance — 10 % on the
# digits — while a correct one agrees on ≥ 99.7 % of the held-out digits; the margin leaves room for photo crops
# that sit between two ImageNet classes. What quantization costs in accuracy is measured apart (accuracy_cost).
MIN_TOP1_AGREEMENT = 0.9
VNNI_FLAGS = {"avx512_vnni": "AVX-512 VNNI", "avx_vnni": "AVX-VNNI"}
# The instructions int8 inference leans on, by the flag Linux lists ("flags" on x86, "Features" on ARM).
INT8_INSTRUCTION_FLAGS = {
    "avx2": "AVX2",
    "avx512f": "AVX-512",
    "avx512_vnni": "AVX-512 VNNI",
    "avx_vnni": "AVX-VNNI",
    "asimddp": "ARM dot product",
}
# ResNet-50 on ONNX Runtime, batch 1, 2 threads, 2 cores, the course's int8 recipe: measured on other machines of
# the course's (issue 28), quoted beside a learner's own run so each CPU kind's lesson is visible on any machine.
INT8_MEASURED_ELSEWHERE = [
    {"cpu": "Intel Xeon, AVX-512 VNNI", "fp32_ms": 29.7, "int8_ms": 12.3},
    {"cpu": "AMD EPYC, AVX2 only (no VNNI)", "fp32_ms": 47.9, "int8_ms": 44.3},
    {"cpu": "AMD EPYC, AVX2 only, int8 as S8S8 (signed activations)", "fp32_ms": 47.9, "int8_ms": 69.3},
    {"cpu": "Apple silicon / ARM with dot product", "fp32_ms": None, "int8_ms": None},  # never measured by the course
]


class QuantizationParityError(RuntimeError):
    """The int8 model's top-1 classes disagree with the fp32 model's more often than allowed."""


@dataclass(frozen=True)
class Parity:
    """Top-1 agreement of an int8 model with its fp32 model on a fixed set of inputs."""

    agreement: float  # share of inputs with the same top-1 class
    n: int
    threshold: float

    @property
    def ok(self) -> bool:
        """Whether the agreement reaches the threshold."""
        return self.agreement >= self.threshold


# --- the CPU -------------------------------------------------------------------------------------------------


def vnni_support(cpuinfo: str | Path = "/proc/cpuinfo") -> dict[str, bool] | None:
    """{"AVX-512 VNNI": bool, "AVX-VNNI": bool} from the CPU flags Linux reports; None where they cannot be read."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return None
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), None)
    if flags is None:
        return None
    return {label: flag in flags for flag, label in VNNI_FLAGS.items()}


def cpu_instructions(cpuinfo: str | Path = "/proc/cpuinfo") -> dict[str, bool] | None:
    """Which of INT8_INSTRUCTION_FLAGS' instructions the CPU reports (x86 or ARM Linux); None where unreadable."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return None
    lines = [line.split(":", 1) for line in text.splitlines() if line.startswith(("flags", "Features"))]
    if not lines:
        return None
    flags = set(lines[0][1].split())
    return {label: flag in flags for flag, label in INT8_INSTRUCTION_FLAGS.items()}


def int8_outlook(fp32_ms: float, int8_ms: float, cpuinfo: str | Path = "/proc/cpuinfo") -> list[dict[str, object]]:
    """fp32 and int8 medians with int8's speed-up: this machine's (given) first, then INT8_MEASURED_ELSEWHERE."""
    found = cpu_instructions(cpuinfo)
    listed = "unknown" if found is None else ", ".join(label for label, present in found.items() if present) or "none"
    rows = [{"cpu": f"this machine ({platform.machine()}: {listed})", "fp32_ms": fp32_ms, "int8_ms": int8_ms}]
    rows += [dict(row) for row in INT8_MEASURED_ELSEWHERE]
    for row in rows:
        measured = row["fp32_ms"] is not None and row["int8_ms"] is not None
        row["int8_speedup"] = row["fp32_ms"] / row["int8_ms"] if measured else None
    return rows


def has_vnni(cpuinfo: str | Path = "/proc/cpuinfo") -> bool | None:
    """Whether the CPU has an int8 dot-product instruction (AVX-512 VNNI or AVX-VNNI); None when unknown."""
    support = vnni_support(cpuinfo)
    return None if support is None else any(support.values())


def describe_vnni(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """One line for a notebook: the CPU's VNNI support, or "unknown" where /proc/cpuinfo cannot be read."""
    support = vnni_support(cpuinfo)
    if support is None:
        return f"{platform.machine()}: VNNI support unknown (no CPU flags to read on {platform.system()})"
    listed = ", ".join(f"{label}: {'yes' if present else 'no'}" for label, present in support.items())
    return f"{platform.machine()}: {listed}"


# --- calibration data -----------------------------------------------------------------------------------------


def random_crops(n: int, seed: int = CALIBRATION_SEED) -> list[Image.Image]:
    """n seeded random crops (10–100 % of the area, aspect 3:4–4:3, half of them mirrored) of the sample photos."""
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(seed)
    photos = [Image.fromarray(pixels) for pixels in load_sample_images().images]
    crops = []
    for i in range(n):
        photo = photos[i % len(photos)]
        crop = photo.crop(_crop_box(photo.size, rng))
        crops.append(crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else crop)
    return crops


def _crop_box(size: tuple[int, int], rng: np.random.Generator) -> tuple[int, int, int, int]:
    """A random (left, upper, right, lower) box inside an image of `size`."""
    width, height = size
    area = width * height * rng.uniform(0.1, 1.0)
    aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    w = int(min(width, round(np.sqrt(area * aspect))))
    h = int(min(height, round(np.sqrt(area / aspect))))
    left, upper = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
    return left, upper, left + w, upper + h


def calibration_inputs(classifier: Classifier, seed: int = CALIBRATION_SEED) -> np.ndarray:
    """Preprocessed calibration inputs (N, C, H, W): the digits training split, or random crops of the photos."""
    if classifier.name == "digits":
        x_train, _, _, _ = digits_tensors()
        return x_train.numpy()
    return classifier.batch(random_crops(CALIBRATION_PHOTOS, seed)).numpy()


def parity_inputs(classifier: Classifier) -> np.ndarray:
    """The fixed inputs of the start-up check: the held-out digits, or crops of the photos with another seed."""
    if classifier.name == "digits":
        _, x_test, _, _ = digits_tensors()
        return x_test.numpy()
    return classifier.batch(random_crops(PARITY_PHOTOS, PARITY_SEED)).numpy()


class BatchReader(CalibrationDataReader):
    """Feeds `inputs` to the calibration in batches of `batch_size`, in order; rewind() starts over."""

    def __init__(self, input_name: str, inputs: np.ndarray, batch_size: int = CALIBRATION_BATCH) -> None:
        self.input_name = input_name
        self.inputs = np.ascontiguousarray(inputs, dtype=np.float32)
        self.batch_size = batch_size
        self._batches: Iterator[np.ndarray] = iter(())
        self.rewind()

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next batch as an input feed, None when all were given."""
        batch = next(self._batches, None)
        return None if batch is None else {self.input_name: batch}

    def rewind(self) -> None:
        """Start again from the first batch."""
        self._batches = (self.inputs[i : i + self.batch_size] for i in range(0, len(self.inputs), self.batch_size))

    def __len__(self) -> int:
        return -(-len(self.inputs) // self.batch_size)


# --- quantization -----------------------------------------------------------------------------------------------

QUANT_RECIPE = "qdq-u8s8-perchannel-minmax-v1"  # part of the cache key: change it when the recipe below changes


def quantize_onnx(
    fp32_path: str | Path, int8_path: str | Path, reader: BatchReader, reduce_range: bool | None = None
) -> Path:
    """quant_pre_process, then static QDQ quantization: uint8 activations, per-channel int8 weights, MinMax ranges.

    uint8 activations rather than onnxruntime's default int8: with int8 ones, onnxruntime's CPU provider turns only the
    convolutions that do not feed a residual Add into integer kernels and runs the Adds (and the 20 convolutions
    before them, in ResNet-50) in float between layout transposes; with uint8 ones every Conv and Add becomes an
    integer kernel (QLinearConv, QLinearAdd) in one layout — twice as fast (see bench_onnx_speed).
    reduce_range=None chooses 7-bit weights unless the CPU has VNNI (see the module's docstring).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quant_pre_process, quantize_static

    int8_path = Path(int8_path)
    reduce = _reduce_range(reduce_range)
    with tempfile.TemporaryDirectory(prefix="course-quant-") as tmp, _quiet():
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared))
        reader.rewind()
        quantize_static(
            str(prepared),
            str(int8_path),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=reduce,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
    return int8_path


def int8_format(int8_path: str | Path) -> dict[str, object]:
    """What a QDQ model's file says about its format: activation and weight types, per-channel scales, weight bits."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(int8_path)).graph
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    quantize = [n for n in graph.node if n.op_type == "QuantizeLinear"]
    weights = [
        (values[n.input[0]], values[n.input[1]])
        for n in graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] in values and values[n.input[0]].ndim == 4
    ]
    if not quantize or not weights:
        raise ValueError(f"{int8_path} is not a QDQ model with quantized convolution weights")
    widest = max(int(np.abs(w.astype(np.int16)).max()) for w, _ in weights)
    return {
        "activations": "/".join(sorted({str(values[n.input[2]].dtype) for n in quantize})),
        "weights": "/".join(sorted({str(w.dtype) for w, _ in weights})),
        "per_channel": all(scale.size == w.shape[0] > 1 for w, scale in weights),
        "weight_bits": 7 if widest <= 64 else 8,  # reduce_range keeps symmetric int8 weights within ±64
    }


def _reduce_range(reduce_range: bool | None) -> bool:
    """The reduce_range to use: as given, or on unless the CPU reports VNNI."""
    return reduce_range if reduce_range is not None else not has_vnni()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Keep the quantization tool's progress prints and log lines out of a notebook cell."""
    import logging

    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


def cached_int8_path(classifier: Classifier, fp32_path: str | Path, reduce_range: bool | None = None) -> Path:
    """Where the int8 model of this fp32 file and recipe is cached: `cache_dir()/onnx/<name>-<key>-int8.onnx`."""
    key = hashlib.sha256(Path(fp32_path).read_bytes())
    settings = f"{QUANT_RECIPE}|reduce_range={_reduce_range(reduce_range)}|seed={CALIBRATION_SEED}"
    key.update(f"{settings}|onnxruntime={onnxruntime.__version__}".encode())
    return cache_dir() / "onnx" / f"{classifier.name}-{key.hexdigest()[:16]}-int8.onnx"


def quantize_classifier(classifier: Classifier, fp32_path: str | Path, reduce_range: bool | None = None) -> Path:
    """The int8 model of the classifier's fp32 ONNX file: from the cache, or quantized now and cached."""
    path = cached_int8_path(classifier, fp32_path, reduce_range)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.stem}.{os.getpid()}.partial.onnx")
    try:
        session = onnxruntime.InferenceSession(str(fp32_path), providers=["CPUExecutionProvider"])
        reader = BatchReader(session.get_inputs()[0].name, calibration_inputs(classifier))
        quantize_onnx(fp32_path, partial, reader, reduce_range)
        partial.replace(path)  # atomic: a parallel process never reads half a file
    finally:
        partial.unlink(missing_ok=True)
    return path


# --- parity -----------------------------------------------------------------------------------------------------


def logits(session: onnxruntime.InferenceSession, inputs: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """The session's first output for inputs, run in batches."""
    name = session.get_inputs()[0].name
    x = np.ascontiguousarray(inputs, dtype=np.float32)
    return np.concatenate([session.run(None, {name: x[i : i + batch_size]})[0] for i in range(0, len(x), batch_size)])


def top1_agreement(fp32: onnxruntime.InferenceSession, int8: onnxruntime.InferenceSession, inputs: np.ndarray) -> float:
    """Share of inputs on which both sessions pick the same top-1 class."""
    return float(np.mean(logits(fp32, inputs).argmax(1) == logits(int8, inputs).argmax(1)))


def required_agreement(classifier: Classifier) -> float:
    """MIN_TOP1_AGREEMENT, or 0 (report only) for a network with random weights, whose top-1 class means nothing.

    Random weights (`benchmark_resnet50` without the ImageNet weights, named "resnet50-random") give logits whose
    top two differ by less than int8's rounding error, so their top-1 flips under any correct quantization.
    """
    return 0.0 if classifier.name.endswith("-random") else MIN_TOP1_AGREEMENT


def check_parity(
    fp32: onnxruntime.InferenceSession,
    int8: onnxruntime.InferenceSession,
    inputs: np.ndarray,
    threshold: float = MIN_TOP1_AGREEMENT,
) -> Parity:
    """Compare top-1 classes on inputs; raise QuantizationParityError when the agreement is below threshold."""
    parity = Parity(top1_agreement(fp32, int8, inputs), len(inputs), threshold)
    if not parity.ok:
        raise QuantizationParityError(
            f"the int8 model agrees with the fp32 model on the top-1 class of only {parity.agreement:.1%} of "
            f"{parity.n} fixed inputs (at least {threshold:.0%} required); the calibration data or the quantized "
            "file is wrong for this model — re-quantize, or serve the fp32 backend 'onnx'"
        )
    return parity


# --- what int8 costs in accuracy --------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccuracyCost:
    """fp32 vs int8 on one set of inputs: top-1 agreement, and accuracies when the inputs have labels."""

    inputs: str  # what was classified, e.g. "360 held-out digits"
    agreement: float
    fp32_accuracy: float | None = None
    int8_accuracy: float | None = None

    @property
    def drop_points(self) -> float | None:
        """fp32 accuracy minus int8 accuracy, in percentage points (None without labels)."""
        if self.fp32_accuracy is None or self.int8_accuracy is None:
            return None
        return (self.fp32_accuracy - self.int8_accuracy) * 100


def accuracy_cost(classifier: Classifier, fp32_path: str | Path, int8_path: str | Path) -> AccuracyCost:
    """Measure int8 against fp32: the held-out digits with their labels, or the photo crops of the start-up check.

    The photo crops have no labels, so for ResNet-50 only the agreement is measured (meaningful with the ImageNet
    weights; with random weights the top-1 class means nothing).
    """
    from course_lib.serialization import onnx_session

    fp32, int8 = onnx_session(fp32_path), onnx_session(int8_path)
    if classifier.name == "digits":
        _, x_test, _, y_test = digits_tensors()
        fp32_top, int8_top = (logits(s, x_test.numpy()).argmax(1) for s in (fp32, int8))
        labels = y_test.numpy()
        return AccuracyCost(
            inputs=f"{len(labels)} held-out digits",
            agreement=float(np.mean(fp32_top == int8_top)),
            fp32_accuracy=float(np.mean(fp32_top == labels)),
            int8_accuracy=float(np.mean(int8_top == labels)),
        )
    inputs = parity_inputs(classifier)
    photos = f"{len(inputs)} random crops of the sample photos"
    return AccuracyCost(inputs=photos, agreement=top1_agreement(fp32, int8, inputs))
