"""How a report's figures are sized, styled, saved and shown, so that they stay legible.

A figure is saved at :data:`DPI` and shown in the HTML at :data:`CSS_PX_PER_INCH` CSS
pixels per figure inch (:attr:`Drawn.css_width`), so a text of ``s`` points is
``s * 96 / 72`` CSS pixels on the page: every text is at least :data:`MIN_FONT_PT` (10.7 px)
and no figure is wider than :data:`MAX_WIDTH_IN`, so the page (at most 1200 CSS px of
content) never scales one down. :func:`save` records what the page needs to check that
(smallest font, resolution, pixel size) in a :class:`Drawn`.

An axis is set by the bulk of its values where a few values lie so far out that they
would squash the rest (:func:`robust_limits`); those are drawn at the axis' edge with
their value (:func:`mark_outliers`), and the report's caption says so.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

__all__ = ["CSS_PX_PER_INCH", "DPI", "Drawn", "MAX_WIDTH_IN", "MIN_FONT_PT", "OUTLIER_COLOR",
           "STYLE", "mark_outliers", "pyplot", "robust_limits", "save", "styled"]

#: Resolution of the saved PNGs (sharp on a screen of device-pixel ratio 1.5).
DPI = 144.0
#: How many CSS pixels the HTML gives one inch of a figure (the CSS inch).
CSS_PX_PER_INCH = 96.0
#: The smallest text in any figure: 8 pt is 10.7 CSS px as shown.
MIN_FONT_PT = 8.0
#: The widest figure: 11.5 in is 1104 CSS px, inside the report's 1200 px column.
MAX_WIDTH_IN = 11.5
#: Where a value far outside its axis is drawn.
OUTLIER_COLOR = "tab:orange"

#: Font sizes of every report figure (points): none below MIN_FONT_PT.
STYLE = {"font.size": 9.0, "axes.titlesize": 9.5, "axes.labelsize": 9.0,
         "xtick.labelsize": MIN_FONT_PT, "ytick.labelsize": MIN_FONT_PT,
         "legend.fontsize": MIN_FONT_PT, "legend.title_fontsize": 9.0,
         "figure.titlesize": 10.5, "savefig.dpi": DPI}

#: Outliers: farther from the median than this many median absolute deviations...
_FAR_MADS = 8.0
#: ...and the rest would fill less than this share of an axis that showed them all.
_SQUASHED = 0.1

_T = TypeVar("_T")


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def styled(fn: Callable[..., _T]) -> Callable[..., _T]:
    """``fn`` run under :data:`STYLE` (text made inside it takes those sizes)."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> _T:
        with pyplot().rc_context(STYLE):
            return fn(*args, **kwargs)
    return wrapper


@dataclass(frozen=True)
class Drawn:
    """A saved figure and what a page needs to show it legibly."""

    path: Path
    #: resolution it was saved at (pixels per figure inch)
    dpi: float
    #: the size of its smallest text, in points
    min_font_pt: float
    width_px: int
    height_px: int
    #: what a caption should say of it (values drawn at an axis' edge, say)
    notes: tuple[str, ...] = ()

    @property
    def css_width(self) -> int:
        """Its width on the page, in CSS pixels (:data:`CSS_PX_PER_INCH` per inch)."""
        return round(self.width_px * CSS_PX_PER_INCH / self.dpi)


def _png_size(path: Path) -> tuple[int, int]:
    """Width and height of a PNG, from its header."""
    head = path.read_bytes()[:24]
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def _smallest_font(fig: Any) -> float:
    """The size of the smallest text of a drawn figure (tick labels get their text when
    drawn), in points."""
    from matplotlib.text import Text

    sizes = [t.get_fontsize() for t in fig.findobj(Text)
             if t.get_visible() and t.get_text().strip()]
    return float(min(sizes)) if sizes else STYLE["font.size"]


def save(fig: Any, path: Path, notes: Sequence[str] = ()) -> Drawn:
    """Save ``fig`` as a PNG at ``path`` (its folder made), close it, and say how big its
    smallest text is."""
    plt = pyplot()
    path.parent.mkdir(parents=True, exist_ok=True)
    with plt.rc_context(STYLE):
        fig.savefig(path, dpi=DPI, bbox_inches="tight")
    smallest = _smallest_font(fig)
    plt.close(fig)
    return Drawn(path, DPI, smallest, *_png_size(path), tuple(notes))


def robust_limits(values: Sequence[float] | np.ndarray, spread: Any = None,
                  keep: Sequence[float] = ()) -> tuple[float, float] | None:
    """Axis limits that hold the bulk of ``values`` (each ± its ``spread``, e.g. an SE)
    and every value of ``keep`` (a reference line, say), where the values farther than
    8 median absolute deviations from their median would leave the others under a tenth
    of an axis that showed them all; ``None`` where plain limits serve.

    Example:
        >>> robust_limits([5.3, 46.5, 30.7, 25.8, 3024.0])
        (2.004, 49.796)
        >>> robust_limits([0.53, 0.73, 0.74, 0.53]) is None
        True
    """
    v = np.asarray(values, dtype=float)
    s = np.zeros_like(v) if spread is None else np.nan_to_num(np.asarray(spread, float))
    fin = np.isfinite(v)
    v, s = v[fin], s[fin]
    kept = np.asarray(keep, dtype=float)
    kept = kept[np.isfinite(kept)]
    both = np.concatenate([v, kept])  # a kept value is data too, though never far
    if len(both) < 3 or not len(v):
        return None
    med = np.median(both)
    mad = np.median(np.abs(both - med))
    if mad == 0:
        return None
    bulk = np.abs(v - med) <= _FAR_MADS * mad
    if not bulk.any():
        return None
    lo = min(np.min(v[bulk] - s[bulk]), *kept) if len(kept) else np.min(v[bulk] - s[bulk])
    hi = max(np.max(v[bulk] + s[bulk]), *kept) if len(kept) else np.max(v[bulk] + s[bulk])
    full = max(hi, np.max(v)) - min(lo, np.min(v))
    if bulk.all() or hi <= lo or hi - lo >= _SQUASHED * full:
        return None
    pad = 0.08 * (hi - lo)
    return round(float(lo - pad), 12), round(float(hi + pad), 12)


def mark_outliers(ax: Any, values: np.ndarray, where: np.ndarray,
                  limits: tuple[float, float], axis: str = "x") -> list[int]:
    """Draw each of ``values`` outside ``limits`` at the edge of ``ax``'s ``axis`` (a
    triangle pointing out, in :data:`OUTLIER_COLOR`) with its value written beside it;
    ``where`` is each value's position on the other axis. The indices of those drawn."""
    lo, hi = limits
    out = []
    for i, (v, w) in enumerate(zip(values, where, strict=True)):
        if not np.isfinite(v) or lo <= v <= hi:
            continue
        high = v > hi
        edge = hi if high else lo
        if axis == "x":
            xy, marker = (edge, w), ">" if high else "<"
            offset, ha, va = ((-7, 0), "right", "center") if high else ((7, 0), "left",
                                                                        "center")
        else:
            xy, marker = (w, edge), "^" if high else "v"
            offset, ha, va = ((0, -7), "center", "top") if high else ((0, 7), "center",
                                                                      "bottom")
        ax.plot(*xy, marker=marker, color=OUTLIER_COLOR, ms=7, clip_on=False, zorder=5)
        ax.annotate(f"{v:.4g}", xy, xytext=offset, textcoords="offset points", ha=ha,
                    va=va, color=OUTLIER_COLOR, fontsize=MIN_FONT_PT,
                    annotation_clip=False)
        out.append(i)
    return out
