from itertools import combinations

import numpy as np
import pandas as pd
import pytest

from densbench.metrics import catalogue as C
from densbench.report import figures as F
from densbench.report.figures import tile
from densbench.runner.records import encode_array


def test_tile_places_each_image_in_its_cell_with_a_blank_pixel_between():
    images = np.arange(1, 13, dtype=float).reshape(3, 4)  # three 2x2 images
    out = tile(images, (2, 2), ncols=2)
    assert out.shape == (5, 5)
    np.testing.assert_array_equal(out[:2, :2], [[1, 2], [3, 4]])
    np.testing.assert_array_equal(out[:2, 3:], [[5, 6], [7, 8]])
    np.testing.assert_array_equal(out[3:, :2], [[9, 10], [11, 12]])
    assert not out[2].any() and not out[:, 2].any() and not out[3:, 3:].any()


def test_tile_keeps_colour_channels():
    images = np.random.default_rng(0).random((2, 3 * 2 * 3))
    out = tile(images, (3, 2, 3), ncols=2)
    assert out.shape == (3, 5, 3)
    np.testing.assert_array_equal(out[:, 3:], images[1].reshape(3, 2, 3))


# -- run-level figures, built from aggregated figures as tables.aggregate_seeds gives them


def _agg(rows):
    """An aggregated frame of (dataset, label, metric, mean, se) rows."""
    return pd.DataFrame([{"dataset": d, "label": lab, "estimator": lab, "metric": m,
                          "mean": v, "se": se, "se_kind": "examples", "n_seeds": 1,
                          "unit": C.get(m).unit, "likelihood_kind": "exact",
                          "figure": "log-density", "note": None}
                         for d, lab, m, v, se in rows])


#: gaussian and diag_gaussian: the same quality and nearly the same cost (close points)
CLOSE = _agg([(d, lab, m, v, 0.01) for d in ("banana", "digits")
              for lab, ll, speed, fit in (("gaussian", -3.227, 9.3e6, 5e-4),
                                          ("diag_gaussian", -3.228, 9.0e6, 6e-4),
                                          ("gmm", -2.2, 3e5, 2.0), ("kde", -2.6, 3e4, 1.5))
              for m, v in ((C.TEST_LOGLIK, ll), (C.SCORE_EXAMPLES_PER_S, speed),
                           (C.FIT_SECONDS, fit))])


def _sample_rows(dataset, frechet_kde):
    rows = []
    for n in C.SAMPLE_METRICS:
        rows.append((dataset, "floor", C.floor(n), 0.5, 0.01))
        for i, lab in enumerate(("diag_gaussian", "gaussian", "gmm", "kde")):
            value = frechet_kde if n == "frechet_distance" and lab == "kde" else 0.6 + 0.1 * i
            rows.append((dataset, lab, C.samples(n), value, 0.02))
    return _agg(rows)


def _unshown_tick_labels(fig):
    """The labels of ticks outside their axis' view: kept by matplotlib, never drawn."""
    out = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            slack = 1e-9 * (hi - lo)
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                if not lo - slack <= tick.get_loc() <= hi + slack:
                    out |= {id(tick.label1), id(tick.label2)}
    return out


def _texts(fig):
    """Every piece of text the drawn figure shows, with its box on the canvas."""
    from matplotlib.text import Text

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    shown = fig.bbox
    unshown = _unshown_tick_labels(fig)
    out = []
    for t in fig.findobj(Text):
        if not t.get_visible() or not t.get_text().strip() or id(t) in unshown:
            continue
        box = t.get_window_extent(renderer)
        if box.width and box.x0 >= shown.x0 - 1 and box.x1 <= shown.x1 + 1:
            out.append((t.get_text(), box))
    return out


def _overlaps(fig):
    return [(a, b) for (a, ba), (b, bb) in combinations(_texts(fig), 2)
            if ba.overlaps(bb) and ba.intersection(ba, bb).width > 1
            and ba.intersection(ba, bb).height > 1]


def _close(fig):
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_quality_vs_cost_names_close_points_without_overlapping_text():
    fig, notes = F.quality_vs_cost(CLOSE)
    try:
        texts = [t for t, _ in _texts(fig)]
        assert {"gaussian", "diag_gaussian"} <= set(texts)  # in the legend, once each
        assert texts.count("gaussian") == 1
        assert not _overlaps(fig), _overlaps(fig)
        assert notes == []
    finally:
        _close(fig)


def test_sample_metrics_axes_hold_the_bulk_and_mark_the_outlier_at_the_edge():
    agg = _sample_rows("digits", frechet_kde=3024.0)
    fig, notes = F.sample_metrics_figure(agg, "digits")
    try:
        by_title = {ax.get_title(): ax for ax in fig.axes}
        frechet = by_title[f"{C.get(C.samples('frechet_distance')).label} ↓"]
        lo, hi = frechet.get_xlim()
        assert hi < 10  # the panel shows the bulk (0.5 .. 0.9), not 3024
        assert any(t.get_text() == "3024" for t in frechet.texts)
        assert notes and "kde 3024" in notes[0]
        assert not _overlaps(fig), _overlaps(fig)
        assert min(size for size in (t.get_fontsize() for t in fig.findobj(
            lambda a: hasattr(a, "get_fontsize")))) >= 8
    finally:
        _close(fig)


def _grid_record(name, centre):
    size = 16
    g = np.linspace(-2, 2, size)
    xx, yy = np.meshgrid(g, g)
    logp = -0.5 * ((xx - centre) ** 2 + yy ** 2) - np.log(2 * np.pi)
    return {"id": name * 2, "estimator": {"name": name}, "dataset": {"name": "banana"},
            "seed": 0, "status": "ok",
            "density_grid": {"x": [-2.0, 2.0], "y": [-2.0, 2.0], "size": size,
                             **encode_array(logp.ravel())}}


def test_density_maps_have_a_colour_bar_in_units():
    fig, with_truth = F.density_figure([_grid_record("gaussian", 0.0),
                                        _grid_record("/home/x/model.py:Far", 1.0)],
                                       {"/home/x/model.py:Far": "model.py:Far"})
    try:
        bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
        assert len(bars) == 1 and not with_truth
        assert bars[0].get_ylabel() == F.DENSITY_UNIT and "[1 / data unit²]" in F.DENSITY_UNIT
        titles = {ax.get_title() for ax in fig.axes}
        assert {"gaussian", "model.py:Far"} <= titles
    finally:
        _close(fig)


@pytest.mark.parametrize("why, brief", [
    ("failed: ValueError: kde: bandwidth must be > 0", "failed\nValueError"),
    ("timeout: ran past 60 s of CPU", "timeout")])
def test_rank_map_marks_a_failed_cell_and_says_why_in_brief(why, brief):
    fig = F.rank_figure(CLOSE[CLOSE["label"] != "kde"], {("banana", "kde"): why})
    try:
        texts = [t.get_text() for t in fig.axes[0].texts]
        assert brief in texts
        hatched = [p for p in fig.axes[0].patches if p.get_hatch()]
        assert len(hatched) == 2  # kde on banana (failed) and on digits (not run)
        assert "not run" in texts and "no likelihood" not in texts
    finally:
        _close(fig)


def test_rank_map_tells_a_model_without_likelihood_from_one_not_run_there():
    """odd has a likelihood on banana and ran on digits without one (only its cost was
    recorded); kde ran on banana only (a suite restricting it); the dataset names are
    kept whole on the axis."""
    rows = CLOSE[(CLOSE["label"] != "kde") | (CLOSE["dataset"] == "banana")]
    odd = _agg([("banana", "odd", C.TEST_LOGLIK, -3.0, 0.1),
                ("digits", "odd", C.FIT_SECONDS, 3.0, 0.1)])
    long_name = CLOSE.assign(dataset="binarized_mnist5k")
    fig = F.rank_figure(pd.concat([rows, odd, long_name]))
    try:
        ax = fig.axes[0]
        texts = [t.get_text() for t in ax.texts]
        assert texts.count("no likelihood") == 1  # odd on digits
        assert texts.count("not run") == 2        # kde on digits, odd on binarized_mnist5k
        assert "binarized_mnist5k" in [t.get_text() for t in ax.get_xticklabels()]
    finally:
        _close(fig)
