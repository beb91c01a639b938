"""Input drift (notebook 08): is the live input still distributed like the data the model was trained on?

Per feature, two scores compare a sliding window of live inputs with a reference kept from training:
- PSI, the population stability index, over bins cut at the reference's quantiles:
  sum over bins of (live share - reference share) x ln(live share / reference share). The usual reading:
  under 0.1 stable, 0.1 to 0.25 worth a look, over 0.25 shifted.
- The two-sample Kolmogorov-Smirnov test (`scipy.stats.ks_2samp`): its p-value says how surprising the largest gap
  between the two distribution functions is for samples of these sizes.
A feature drifts when both agree (PSI over its threshold and p under alpha): in a small window PSI alone reacts to
sampling noise (notebook 08 measures it: iris, 120 reference rows, windows of 50 rows), and with large samples on both
sides the KS test alone flags shifts too small to matter. Both compare values recorded the same way: live values
rounded or scaled differently from the reference move between quantile bins and raise PSI without any drift.

Images have no features of their own, so the image API is watched through a few cheap statistics per image
(`image_statistics`), which then drift like iris features (`image_drift_monitor`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy.stats import ks_2samp

PSI_BINS = 10
PSI_THRESHOLD = 0.25
KS_ALPHA = 0.01
SHARE_FLOOR = 1e-4  # an empty bin's share: ln(0) would make PSI infinite
IMAGE_STATISTICS = ("brightness", "contrast", "sharpness", "dark_share", "bright_share")
DARK_LEVEL = 0.05  # gray levels at or under this count as near-black (under-exposed, clipped shadows)
BRIGHT_LEVEL = 0.95  # gray levels at or over this count as near-white (over-exposed, clipped highlights, paper)


def quantile_edges(reference: np.ndarray, bins: int = PSI_BINS) -> np.ndarray:
    """Interior bin edges at the reference's quantiles, each a reference value, without repeats.

    Recorded data has ties (iris is measured in 0.1 cm steps): interpolated quantiles would put edges between two
    recorded values and repeated ones would make bins no reference value can fall into, which the share floor then
    turns into a large PSI for any live value that lands there. Edges taken from the values themselves, repeats
    dropped, give fewer bins but every bin holds reference values.
    """
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1], method="inverted_cdf"))
    return edges[edges > reference.min()]


def psi(reference: np.ndarray, live: np.ndarray, bins: int = PSI_BINS) -> float:
    """Population stability index of live against reference (1-D), over bins at the reference's quantiles."""
    reference, live = np.asarray(reference, dtype=float).ravel(), np.asarray(live, dtype=float).ravel()
    if reference.size == 0 or live.size == 0:
        raise ValueError("psi needs at least one reference value and one live value")
    edges = quantile_edges(reference, bins)
    expected = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=edges.size + 1) / reference.size
    actual = np.bincount(np.searchsorted(edges, live, side="right"), minlength=edges.size + 1) / live.size
    expected, actual = np.maximum(expected, SHARE_FLOOR), np.maximum(actual, SHARE_FLOOR)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's drift scores for one window, and the verdict."""

    feature: str
    psi: float
    ks_statistic: float
    p_value: float
    drifted: bool


def feature_drift(
    name: str, reference: np.ndarray, live: np.ndarray, psi_threshold: float = PSI_THRESHOLD, alpha: float = KS_ALPHA
) -> FeatureDrift:
    """PSI and the KS test of one feature; drifted when PSI > psi_threshold and the KS p-value < alpha."""
    score = psi(reference, live)
    test = ks_2samp(reference, live)
    drifted = bool(score > psi_threshold and test.pvalue < alpha)
    return FeatureDrift(name, score, float(test.statistic), float(test.pvalue), drifted)


class DriftMonitor:
    """Keeps the last `window` live rows and scores each feature against the reference rows from training."""

    def __init__(
        self,
        reference: np.ndarray,
        features: Sequence[str],
        window: int = 200,
        psi_threshold: float = PSI_THRESHOLD,
        alpha: float = KS_ALPHA,
    ) -> None:
        self.reference = np.asarray(reference, dtype=float)
        if self.reference.ndim != 2 or self.reference.shape[1] != len(features):
            raise ValueError(f"reference must be (rows, {len(features)}), got {self.reference.shape}")
        if window < 2:
            raise ValueError(f"window must be at least 2 rows, got {window}")
        self.features, self.window = list(features), window
        self.psi_threshold, self.alpha = psi_threshold, alpha
        self.live: deque[np.ndarray] = deque(maxlen=window)
        self.seen = 0  # rows added since the start, including those that left the window

    def add(self, rows: np.ndarray) -> None:
        """Append live rows (one row or a batch); the oldest fall out of the window."""
        rows = np.asarray(rows, dtype=float).reshape(-1, len(self.features))
        self.live.extend(rows)
        self.seen += len(rows)

    @property
    def full(self) -> bool:
        """Whether the window holds `window` rows (scores on fewer rows are noisier)."""
        return len(self.live) == self.window

    def report(self) -> list[FeatureDrift]:
        """Each feature's scores over the rows in the window now."""
        if len(self.live) < 2:
            raise ValueError("the window holds fewer than 2 rows: nothing to compare yet")
        live = np.stack(list(self.live))
        return [
            feature_drift(name, self.reference[:, i], live[:, i], self.psi_threshold, self.alpha)
            for i, name in enumerate(self.features)
        ]

    def drifted(self) -> list[str]:
        """The features that drift in the window now."""
        return [score.feature for score in self.report() if score.drifted]


def image_statistics(image: Image.Image | bytes) -> np.ndarray:
    """Cheap statistics of one image, in the order of IMAGE_STATISTICS, on its grayscale pixels scaled to [0, 1].

    - brightness: the mean gray level; catches a camera or scanner that got darker or brighter.
    - contrast: the standard deviation of the gray levels; catches washed-out or flat pictures.
    - sharpness: the mean absolute difference between neighbouring pixels (across and down); catches blur
      (it falls) and sensor noise (it rises).
    - dark_share, bright_share: the shares of near-black and near-white pixels; catch clipping and pictures
      from another source with another background (the digits are dark ink on white paper).
    No aspect ratio or size: they are constant over the digits, and PSI over a constant reference's quantile bins
    puts every larger live value into the reference's one bin (PSI 0), so the rule could never flag them.
    Bytes are decoded by `decode_image`, with the API's limits; an image goes through the same RGB conversion.
    """
    from course_lib.vision.decoding import decode_image, to_rgb  # here: course_lib.vision imports torch (~4 s)

    rgb = decode_image(image) if isinstance(image, bytes) else to_rgb(image)
    gray = np.asarray(rgb.convert("L"), dtype=np.float64) / 255.0
    across, down = np.abs(np.diff(gray, axis=1)), np.abs(np.diff(gray, axis=0))
    pairs = across.size + down.size  # a 1×1 image has no neighbours at all
    sharpness = (across.sum() + down.sum()) / pairs if pairs else 0.0
    return np.array(
        [
            gray.mean(),
            gray.std(),
            sharpness,
            np.mean(gray <= DARK_LEVEL),
            np.mean(gray >= BRIGHT_LEVEL),
        ]
    )


def image_statistics_rows(images: Iterable[Image.Image | bytes]) -> np.ndarray:
    """The statistics of each image as one row: an (n, len(IMAGE_STATISTICS)) array."""
    rows = [image_statistics(image) for image in images]
    return np.stack(rows) if rows else np.empty((0, len(IMAGE_STATISTICS)))


def image_drift_monitor(
    reference_images: Iterable[Image.Image | bytes],
    window: int = 200,
    psi_threshold: float = PSI_THRESHOLD,
    alpha: float = KS_ALPHA,
) -> DriftMonitor:
    """A DriftMonitor over IMAGE_STATISTICS, its reference the statistics of the training images.

    Feed it with `monitor.add(image_statistics(image))` for each image the API receives.
    """
    reference = image_statistics_rows(reference_images)
    return DriftMonitor(reference, IMAGE_STATISTICS, window=window, psi_threshold=psi_threshold, alpha=alpha)
