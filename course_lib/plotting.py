"""Plots labelled in Japanese like the prose: matplotlib-fontja's bundled IPAex Gothic, DejaVu Sans for symbols."""

import matplotlib
import matplotlib_fontja

# IPAex Gothic has no µ or ≤; matplotlib falls back glyph by glyph along this list (DejaVu Sans ships with it).
FONT_FAMILY = ["IPAexGothic", "DejaVu Sans"]


def use_japanese_font() -> None:
    """Make every later figure draw Japanese text without a system font (and µ, ≤ without a missing glyph)."""
    matplotlib_fontja.japanize()  # registers the font file bundled with the package with matplotlib
    matplotlib.rcParams["font.family"] = FONT_FAMILY
