"""Plots are labelled in Japanese like the prose: the font comes with the course (matplotlib-fontja), and a glyph
missing from it is an error here, not a row of boxes in a learner's plot."""

from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import nbformat
import numpy as np
import pytest

from course_lib.bench import LatencyStats, plot_latency
from course_lib.plotting import FONT_FAMILY, use_japanese_font
from tests.helpers import MISSING_GLYPH, draw_strictly

ROOT = Path(__file__).resolve().parent.parent
# Every character the course's plots draw besides kana and kanji: units, arrows and the notebooks' punctuation.
SYMBOLS = "µs ≤ → × ÷ − ・ 〜 （）「」 % p50 p99"


def test_japanese_text_without_the_course_font_is_caught():
    # The check can fail: matplotlib's default font has no kana, and the warning it gives becomes an error.
    with matplotlib.rc_context({"font.family": ["DejaVu Sans"]}):
        fig, ax = plt.subplots()
        ax.set_title("レイテンシ")
        with pytest.raises(UserWarning, match=MISSING_GLYPH):
            draw_strictly(fig)


def test_the_bundled_font_alone_lacks_symbols_the_plots_use():
    # Why FONT_FAMILY has a fallback: IPAex Gothic has no µ (format_ms's "µs") and no ≤.
    use_japanese_font()
    with matplotlib.rc_context({"font.family": FONT_FAMILY[:1]}):
        fig, ax = plt.subplots()
        ax.set_title("0.4 µs")
        with pytest.raises(UserWarning, match=MISSING_GLYPH):
            draw_strictly(fig)


def test_japanese_labels_and_symbols_draw_with_no_missing_glyph():
    use_japanese_font()
    fig, ax = plt.subplots()
    ax.set(title="1 リクエストの時間の内訳（中央値に占める割合）", xlabel=SYMBOLS, ylabel="件/秒")
    ax.plot([1, 2], [3, 4], label="バッチなし p99")
    ax.legend()
    draw_strictly(fig)


def test_plot_latency_draws_japanese_labels():
    rng = np.random.default_rng(0)
    results = {f"{n} クライアント": LatencyStats.from_seconds(rng.uniform(0.001, 0.01, 50), wall_s=0.5) for n in (1, 4)}
    fig = plot_latency(results, title="digits モデル")
    hist, cdf = fig.axes
    assert hist.get_title() == "digits モデル: ヒストグラム" and cdf.get_xlabel() == "レイテンシ (ms)"
    draw_strictly(fig)


@pytest.mark.parametrize("folder", ["notebooks", "solutions"])
def test_every_notebook_that_draws_sets_the_japanese_font_where_it_imports_pyplot(folder):
    # A notebook that draws with pyplot itself sets the font in the cell that imports it (the course's helpers set
    # it themselves); nbval then fails a plot with a missing glyph: its warning is an output the committed one lacks.
    for path in sorted((ROOT / folder).glob("*.ipynb")):
        cells = nbformat.read(path, as_version=4).cells
        for source in (cell.source for cell in cells if cell.cell_type == "code"):
            if "import matplotlib.pyplot" in source:
                assert "use_japanese_font()" in source, (
                    f"{path.name}: a cell imports pyplot without use_japanese_font()"
                )
