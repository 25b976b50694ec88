import numpy as np
import pytest

from densbench.report.layout import (
    CSS_PX_PER_INCH,
    DPI,
    MAX_WIDTH_IN,
    MIN_FONT_PT,
    mark_outliers,
    pyplot,
    robust_limits,
    save,
    styled,
)


def test_one_far_value_does_not_set_the_axis():
    # kde's Frechet distance on digits beside the others' and the floor (5.3)
    lo, hi = robust_limits([46.5, 30.7, 25.8, 3024.0], keep=[5.3])
    assert lo < 5.3 and 46.5 < hi < 100


@pytest.mark.parametrize("values", [
    [0.53, 0.73, 0.74, 0.53],  # spread out, nothing far
    [0.97, 0.972, 0.974, 0.999],
    [1.0, 2.0],  # too few to tell
    [0.0, 0.0, 0.0, 0.5],  # no spread to measure "far" by
])
def test_values_without_a_far_one_keep_plain_limits(values):
    assert robust_limits(values) is None


def test_a_far_value_among_two_is_told_by_the_kept_reference():
    # one model's Frechet distance and a far one, beside the floor
    lo, hi = robust_limits([0.026, 4618.0], keep=[0.007])
    assert lo < 0.007 and 0.026 < hi < 1


def test_error_bars_and_kept_values_stay_inside():
    lo, hi = robust_limits([1.0, 1.1, 1.2, 1.05, 500.0], spread=[0.3, 0.0, 0.0, 0.0, 1.0],
                           keep=[2.0])
    assert lo < 0.7 and hi > 2.0 and hi < 10


def test_far_values_are_drawn_at_the_edge_with_their_value():
    plt = pyplot()
    fig, ax = plt.subplots()
    try:
        drawn = mark_outliers(ax, np.array([1.0, 3024.0, -80.0]), np.array([0, 1, 2]),
                              (0.0, 2.0))
        assert drawn == [1, 2]
        assert [t.get_text() for t in ax.texts] == ["3024", "-80"]
        assert [line.get_xdata()[0] for line in ax.lines] == [2.0, 0.0]
    finally:
        plt.close(fig)


def test_save_says_how_big_the_smallest_text_is_and_how_wide_the_figure_is(tmp_path):
    @styled
    def build():
        fig, ax = pyplot().subplots(figsize=(4, 3))
        ax.plot([1, 2], [3, 4])
        ax.set_title("a title")
        ax.annotate("small", (1, 3), fontsize=6.5)
        return fig

    drawn = save(build(), tmp_path / "f.png")
    assert drawn.path.read_bytes()[:4] == b"\x89PNG"
    assert drawn.min_font_pt == 6.5 and drawn.dpi == DPI
    assert 3.5 * DPI < drawn.width_px < 4.2 * DPI  # tight bounding box, at DPI
    assert drawn.css_width == round(drawn.width_px * CSS_PX_PER_INCH / DPI)

    plain = save(styled(lambda: pyplot().subplots(figsize=(4, 3))[0])(), tmp_path / "g.png")
    assert plain.min_font_pt == MIN_FONT_PT  # the tick labels of the style
    # shown at 96 CSS px per inch, the smallest text of the style is >= 9 px, and the widest
    # figure fits a 1200 px column
    assert MIN_FONT_PT * CSS_PX_PER_INCH / 72 >= 9 and MAX_WIDTH_IN * CSS_PX_PER_INCH < 1200
