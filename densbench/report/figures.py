"""Figures of a run (matplotlib, Agg backend), drawn from what the records store only
(:mod:`densbench.report.datasets`), under the report's own folder.

The galleries are saved here (:func:`render_sample_figures`); the run-level figures are
built here and returned as matplotlib figures (so their axes can be checked), and saved by
:func:`~densbench.report.layout.save`. Sizes and fonts follow
:mod:`densbench.report.layout`, so every text is legible where the HTML report shows it.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from densbench.metrics import catalogue as C
from densbench.report.datasets import confined, dataset_info, stored_test_rows, truth_grid
from densbench.report.layout import (
    MAX_WIDTH_IN,
    Drawn,
    mark_outliers,
    pyplot,
    robust_limits,
    save,
    styled,
)

__all__ = ["DENSITY_UNIT", "Galleries", "OUTLIER_NOTE", "density_figure", "image_grid",
           "iwae_figure", "quality_vs_cost", "rank_figure", "render_sample_figures",
           "sample_metrics_figure", "scatter_beside_data", "tile"]

#: The colour bar of a density map: p(x) of 2-D data, per unit area of the data's space.
DENSITY_UNIT = "density p(x) [1 / data unit²]"

#: What a caption says of a figure with values drawn at an axis' edge.
OUTLIER_NOTE = ("each axis holds the bulk of its values; a value far outside it is drawn at "
                "the edge as an orange triangle with its value")


def tile(images: np.ndarray, image_shape: tuple[int, ...], ncols: int) -> np.ndarray:
    """Images (rows) laid out as one array, ``ncols`` per row, a blank pixel between them.

    One array drawn once: a grid of one axes per image cost matplotlib a second per
    gallery (axes, ticks and layout per image), which every report paid per cell.
    """
    h, w = image_shape[:2]
    n = len(images)
    nrows = max(1, int(np.ceil(n / ncols)))
    out = np.zeros((nrows * (h + 1) - 1, ncols * (w + 1) - 1, *image_shape[2:]))
    for i in range(n):
        r, c = divmod(i, ncols)
        out[r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = \
            images[i].reshape(image_shape)
    return out


@styled
def image_grid(images: np.ndarray, image_shape: tuple[int, int], *, levels: int | None,
               title: str, path: Path, ncols: int = 8) -> Drawn:
    """Save up to ``ncols^2`` images (rows of ``images``) as one grid PNG."""
    plt = pyplot()
    n = min(len(images), ncols * ncols)
    nrows = max(1, int(np.ceil(n / ncols)))
    fig, ax = plt.subplots(figsize=(ncols * 0.8, nrows * 0.8 + 0.4))
    ax.axis("off")
    vmax = (levels - 1) if levels else float(np.max(images[:n])) if n else 1.0
    if n:
        img = tile(np.asarray(images[:n], dtype=float), tuple(image_shape), ncols)
        if img.ndim == 3:  # colour (height, width, RGB): imshow takes values in [0, 1]
            img = np.clip(img / vmax, 0.0, 1.0)
        ax.imshow(img, cmap="gray_r", vmin=0, vmax=vmax, interpolation="nearest")
    ax.set_title(title)  # on the grid's axes: a figure title floats above a short grid
    return save(fig, path)


@styled
def scatter_beside_data(samples: np.ndarray, data: np.ndarray | None, *, title: str,
                        path: Path) -> Drawn:
    """Save model samples beside held-out data (2-D), on shared axes; the samples alone
    where the data are not at hand (``data`` None)."""
    plt = pyplot()
    samples = samples[np.isfinite(samples).all(axis=1)]
    if data is not None:
        data = data[np.isfinite(data).all(axis=1)]
    if not len(samples) or data is not None and not len(data):
        raise ValueError("no finite rows to draw")
    panels = [(data, "test data")] if data is not None else []
    panels.append((samples, "samples"))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.0 * len(panels), 3.2), sharex=True,
                             sharey=True, squeeze=False)
    ref = data if data is not None else samples
    lo = np.percentile(ref, 0.5, axis=0)
    hi = np.percentile(ref, 99.5, axis=0)
    pad = 0.15 * (hi - lo)
    for ax, (pts, label) in zip(axes[0], panels, strict=True):
        ax.scatter(pts[:, 0], pts[:, 1], s=1.5, alpha=0.4, color="k", linewidths=0)
        ax.set_title(label)
        outside = int(((pts < lo - pad) | (pts > hi + pad)).any(axis=1).sum())
        if outside >= 0.1 * len(pts):  # an empty-looking panel says where its points are
            ax.text(0.5, 0.5, f"{outside} of {len(pts)}\noutside this view",
                    transform=ax.transAxes, ha="center", va="center", color="0.3")
        ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
        ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
        ax.set_aspect("equal", adjustable="box")
    fig.suptitle(title)
    return save(fig, path)


@dataclass
class Galleries:
    """By cell id: the sample galleries, what a record lacked to draw its gallery in full
    (a key of :data:`~densbench.report.datasets.MISSING`) and why a gallery could not be
    drawn from what its record holds."""

    paths: dict[str, Drawn] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


def render_sample_figures(records: list[dict[str, Any]], root: Path,
                          folder: str = "figures",
                          names: dict[str, str] | None = None) -> Galleries:
    """One gallery per ok cell with a sample preview, as ``root/folder/<cell id>.png``:
    2-D data: samples beside the stored test rows; image data: a grid of samples.
    ``records`` are checked (:func:`~densbench.runner.records.check_record`); ``names``
    gives an estimator's name as figures show it (default: its name)."""
    out = Galleries()
    names = names or {}
    confined(root, folder).mkdir(parents=True, exist_ok=True)
    for rec in records:
        prev = rec.get("samples_preview")
        if rec.get("status") != "ok" or not prev:
            continue
        est = rec["estimator"]["name"]
        title = f"{names.get(est, est)} on {rec['dataset']['name']} (seed {rec['seed']})"
        path = confined(root, folder, f"{rec['id']}.png")
        try:
            drawn, lacking = _gallery(rec, title, path)
        except (ValueError, OverflowError) as exc:  # values matplotlib cannot draw
            out.failed[rec["id"]] = f"{title}: {exc}"
            continue
        if drawn is not None:
            out.paths[rec["id"]] = drawn
        if lacking is not None:
            out.missing[rec["id"]] = lacking
    return out


def _gallery(rec: dict[str, Any], title: str, path: Path) -> tuple[Drawn | None, str | None]:
    """One checked record's gallery at ``path`` (None if it has none to show), and what
    the record lacked to draw it in full (a key of ``MISSING``, or None)."""
    from densbench.runner.records import decode_array

    prev = rec["samples_preview"]
    samples = decode_array(prev).reshape(prev["shape"])
    ds = dataset_info(rec)
    if ds is not None and ds.image_shape is not None:
        return image_grid(samples, ds.image_shape, levels=ds.levels, title=title,
                          path=path), None
    if samples.shape[1] != 2:
        return None, "info" if ds is None else None
    data = stored_test_rows(rec)
    return (scatter_beside_data(samples, data, title=title, path=path),
            "test_preview" if data is None else None)


# -- run-level figures -----------------------------------------------------------------

def _wrapped(label: str, width: int = 28, *, break_words: bool = True) -> str:
    """A long label (an estimator with its parameters) on a few lines; a name that must
    stay whole (a dataset's) is broken at spaces only."""
    return "\n".join(textwrap.wrap(label, width, break_long_words=break_words)) or label


@styled
def rank_figure(agg: Any, failures: dict[tuple[str, str], str] | None = None) -> Any:
    """Rank of each estimator on each dataset by mean test log-likelihood (1 = best); an
    estimator with no figure on a dataset is a grey hatched square saying why: its cells
    failed (``failures`` by (dataset, label)), it ran without a likelihood (an implicit
    model: other figures but none of test log-likelihood), or it was not run there (a suite
    that restricts an estimator to some datasets). None without figures."""
    import seaborn as sns

    ll = agg[agg["metric"] == C.TEST_LOGLIK]
    if ll.empty:
        return None
    wide = ll.pivot_table(index="label", columns="dataset", values="mean", aggfunc="first")
    for (dataset, label) in failures or {}:
        if dataset in wide.columns and label not in wide.index:
            wide.loc[label] = np.nan
    ranks = wide.map(C.get(C.TEST_LOGLIK).badness).rank(method="min")
    ranks = ranks.loc[ranks.mean(axis=1).sort_values().index]
    seen = set(zip(agg["dataset"], agg["label"], strict=True))
    plt = pyplot()
    width = min(MAX_WIDTH_IN, 1.2 * len(ranks.columns) + 3.0)
    fig, ax = plt.subplots(figsize=(width, 0.45 * len(ranks) + 1.6))
    sns.heatmap(ranks, annot=True, fmt=".0f", cmap="viridis_r", ax=ax, linewidths=0.5,
                cbar_kws={"label": "rank (1 = best)"})
    for i, label in enumerate(ranks.index):
        for j, dataset in enumerate(ranks.columns):
            if np.isnan(ranks.iloc[i, j]):
                ran = "no likelihood" if (dataset, label) in seen else "not run"
                why = (failures or {}).get((dataset, label), ran)
                _hatched(ax, j, i, _in_brief(why))
    ax.set_yticklabels([_wrapped(str(t)) for t in ranks.index], rotation=0)
    ax.set_xticklabels([_wrapped(str(t), 16, break_words=False) for t in ranks.columns],
                       rotation=0)
    ax.set_xlabel("dataset")
    ax.set_ylabel("estimator")
    ax.set_title("Rank by test log-likelihood (mean over seeds)")
    fig.tight_layout()
    return fig


def _in_brief(why: str) -> str:
    """Why a cell failed as a heatmap square can say it: the status and, where the error
    opens with one, the exception's name (``failed: ValueError: ...`` -> ``failed
    ValueError``); the table gives the rest."""
    parts = why.split(": ")
    brief = parts[0]
    if len(parts) > 2 and parts[1].isidentifier() and len(parts[1]) <= 24:
        brief += "\n" + parts[1]
    return brief


def _hatched(ax: Any, x: int, y: int, text: str) -> None:
    """A grey hatched cell of a heatmap at column ``x``, row ``y``, saying ``text``."""
    from matplotlib.patches import Rectangle

    ax.add_patch(Rectangle((x, y), 1, 1, facecolor="0.88", edgecolor="0.55", hatch="///",
                           lw=0.5))
    ax.text(x + 0.5, y + 0.5, text, ha="center", va="center", color="0.15",
            bbox={"facecolor": "white", "edgecolor": "none", "pad": 1.0, "alpha": 0.85})


def _pareto(x: np.ndarray, y: np.ndarray, x_higher_better: bool) -> np.ndarray:
    """Indices of the Pareto front (maximize y; maximize or minimize x), sorted by x."""
    idx = np.argsort(-x if x_higher_better else x)
    front, best_y = [], -np.inf
    for i in idx:
        if y[i] > best_y:
            front.append(i)
            best_y = y[i]
    return np.array(sorted(front, key=lambda i: x[i]))


def _marker_styles(labels: list[str]) -> dict[str, dict[str, Any]]:
    """A marker and colour per label, the same in every panel: points are named by a
    legend, never by text beside them (two close points' names would overlap)."""
    import matplotlib

    colors = matplotlib.colormaps["tab10"].colors
    markers = "osD^vP*Xph<>"
    return {lab: {"marker": markers[i % len(markers)],
                  "color": colors[(i // len(markers) + i) % len(colors)]}
            for i, lab in enumerate(labels)}


def _panels(n: int, ncols: int, size: tuple[float, float], extra_h: float = 0.0) -> Any:
    """A figure of ``n`` panels, ``ncols`` a row, each ``size`` inches (the unused ones
    off); (figure, flat list of the first ``n`` axes)."""
    plt = pyplot()
    ncols = max(1, min(ncols, n))
    nrows = max(1, math.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, squeeze=False, layout="constrained",
                             figsize=(min(MAX_WIDTH_IN, size[0] * ncols),
                                      size[1] * nrows + extra_h))
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    return fig, list(axes.ravel()[:n])


@styled
def quality_vs_cost(agg: Any) -> tuple[Any, list[str]] | None:
    """Test log-likelihood against scoring throughput and fit time (log x), per dataset,
    with the Pareto front of each; one marker per estimator, named in the legend. (The
    figure, what its caption should say), or None without figures."""
    ll = agg[agg["metric"] == C.TEST_LOGLIK].set_index(["dataset", "label"])["mean"]
    if ll.empty:
        return None
    axes_x = [C.get(C.SCORE_EXAMPLES_PER_S), C.get(C.FIT_SECONDS)]
    costs = {m.name: agg[agg["metric"] == m.name].set_index(["dataset", "label"])["mean"]
             for m in axes_x}
    datasets = sorted(set(ll.index.get_level_values(0)))
    styles = _marker_styles(sorted(set(ll.index.get_level_values(1))))
    fig, axes = _panels(2 * len(datasets), 4, (2.75, 2.7), extra_h=0.3 * len(styles) / 3)
    outliers = []
    for j, ds in enumerate(datasets):
        for i, info in enumerate(axes_x):
            ax = axes[2 * j + i]
            outliers += _cost_panel(ax, ll.loc[ds], costs[info.name], ds, info, styles)
            ax.set_title(f"{_wrapped(ds, 30)}: {'speed' if i == 0 else 'fit time'}")
            if 2 * j + i == 0 or (2 * j + i) % 4 == 0:
                ax.set_ylabel(C.get(C.TEST_LOGLIK).header)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], ls="", ms=7, **s) for s in styles.values()]
    fig.legend(handles, [_wrapped(str(lab)) for lab in styles], loc="outside lower center",
               ncols=min(4, len(styles)), frameon=False)
    fig.suptitle("Quality vs cost (red line: Pareto front)")
    return fig, [OUTLIER_NOTE] if outliers else []


def _cost_panel(ax: Any, y: Any, cost: Any, dataset: str, info: Any,
                styles: dict[str, dict[str, Any]]) -> list[int]:
    """One dataset's test log-likelihoods (``y``, by label) against one cost; the indices
    of values drawn at the edge."""
    from matplotlib.ticker import LogLocator, NullFormatter

    x = cost.reindex(pd_index(dataset, y.index)).to_numpy()
    yv = y.to_numpy()
    ok = np.isfinite(x) & np.isfinite(yv) & (x > 0)
    labels = np.asarray(y.index)[ok]
    for name, xi, yi in zip(labels, x[ok], yv[ok], strict=True):
        ax.plot(xi, yi, ls="", ms=6, alpha=0.85, **styles[name])
    if ok.sum() >= 2:
        front = _pareto(x[ok], yv[ok], info.direction is C.Direction.HIGHER)
        # the boundary of the dominated region: flat until the next front point
        ax.plot(x[ok][front], yv[ok][front], color="tab:red", lw=1, drawstyle="steps-post",
                zorder=0)
    ax.set_xscale("log")
    if ok.any():  # whole decades, so that the axis has labelled ticks at both ends
        ax.set_xlim(10.0 ** np.floor(np.log10(x[ok].min()) - 0.05),
                    10.0 ** np.ceil(np.log10(x[ok].max()) + 0.05))
    ax.xaxis.set_major_locator(LogLocator(numticks=4))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(info.header)
    limits = robust_limits(yv[ok])
    if limits is None:
        return []
    ax.set_ylim(*limits)
    return mark_outliers(ax, yv[ok], x[ok], limits, axis="y")


def pd_index(dataset: str, labels: Any) -> Any:
    import pandas as pd

    return pd.MultiIndex.from_tuples([(dataset, lab) for lab in labels])


def _density_panels(recs: list[dict[str, Any]],
                    names: dict[str, str]) -> tuple[list[tuple[str, np.ndarray]], bool]:
    """(title, density on the grid) of the truth where stored and of each record on the
    first one's grid; whether the truth is among them."""
    from densbench.runner.records import decode_array

    size = int(recs[0]["density_grid"]["size"])
    panels = []
    truth = truth_grid(recs[0])
    if truth is not None:
        panels.append(("truth", np.exp(truth)))
    for r in recs:
        if int(r["density_grid"]["size"]) == size:  # one grid for every panel
            est = r["estimator"]["name"]
            panels.append((names.get(est, est),
                           np.exp(decode_array(r["density_grid"])).reshape(size, size)))
    return panels, truth is not None


@styled
def density_figure(records: list[dict[str, Any]],
                   names: dict[str, str] | None = None) -> tuple[Any, bool]:
    """Each estimator's density (first seed) beside the true density where the records
    store it, on one 2-D grid and one colour scale (its bar in :data:`DENSITY_UNIT`);
    (the figure or None, whether the truth was drawn)."""
    recs = [r for r in records if r.get("density_grid")]
    if not recs:
        return None, False
    first = min(int(r["seed"]) for r in recs)
    recs = sorted((r for r in recs if int(r["seed"]) == first),
                  key=lambda r: r["estimator"]["name"])
    grid = recs[0]["density_grid"]
    panels, with_truth = _density_panels(recs, names or {})
    ncols = min(len(panels), 5)
    fig, axes = _panels(len(panels), ncols, (2.05, 2.1), extra_h=0.4)
    top = float(np.nanmax([np.nanmax(d) for _, d in panels]))
    vmax = float(np.nanpercentile(panels[0][1], 99.5)) or None
    image = None
    for ax, (name, dens) in zip(axes, panels, strict=True):
        image = ax.imshow(dens, origin="lower", aspect="auto", cmap="magma", vmin=0,
                          vmax=vmax, extent=(*grid["x"], *grid["y"]))
        ax.set_title(_wrapped(name, 24))
        ax.set_xticks([])
        ax.set_yticks([])
    clipped = vmax is not None and top > vmax
    fig.colorbar(image, ax=fig.axes, label=DENSITY_UNIT, extend="max" if clipped else
                 "neither", shrink=0.9)
    fig.suptitle(f"Densities on {recs[0]['dataset']['name']} (seed {first})"
                 + ("; colours capped at the first panel's 99.5th percentile" if clipped
                    else ""))
    return fig, with_truth


@styled
def iwae_figure(agg: Any) -> Any:
    """The importance-weighted estimate against K (log scale), per dataset and estimator.
    None without IWAE figures."""
    k = agg["metric"].map(C.iwae_k_of)
    sel = agg[k.notna()].assign(K=k[k.notna()].astype(int))
    if sel.empty:
        return None
    datasets = sorted(sel["dataset"].unique())
    fig, axes = _panels(len(datasets), 3, (3.6, 3.0))
    for ax, ds in zip(axes, datasets, strict=True):
        for label, g in sel[sel["dataset"] == ds].groupby("label"):
            g = g.sort_values("K")
            ax.errorbar(g["K"], g["mean"], yerr=g["se"], marker="o", ms=3,
                        label=_wrapped(str(label)))
            elbo = agg[(agg["dataset"] == ds) & (agg["label"] == label)
                       & (agg["metric"] == C.TEST_ELBO)]
            if len(elbo):
                ax.axhline(elbo["mean"].iloc[0], ls="--", lw=0.8, color="gray")
        ax.set_xscale("log")
        ax.set_xlabel("K")
        ax.set_title(ds)
        ax.legend()
    axes[0].set_ylabel("IWAE estimate [nats/example]\n(dashed: ELBO)")
    return fig


@styled
def sample_metrics_figure(agg: Any, dataset: str) -> tuple[Any, list[str]] | None:
    """Each sample metric per estimator (dots, ± SE) against its floor (red line: the same
    metric between the validation and test splits), each axis held to the bulk of its
    values (:func:`~densbench.report.layout.robust_limits`). (The figure, what its caption
    should say), or None without sample metrics."""
    from matplotlib.ticker import MaxNLocator

    g = agg[agg["dataset"] == dataset]
    names = [n for n in C.SAMPLE_METRICS if (g["metric"] == C.samples(n)).any()]
    if not names:
        return None
    # every panel on one y axis of all labels (a label's row is the same in every panel,
    # whichever metrics it has), written once per row of panels: labels on every panel
    # would be most of the figure's drawing time
    labels = sorted(g.loc[g["metric"].isin([C.samples(n) for n in names]), "label"].unique())
    shown = [_wrapped(str(lab), 22) for lab in labels]
    label_in = 0.3 + 0.075 * max(len(line) for s in shown for line in s.split("\n"))
    ncols = min(len(names), max(2, int((MAX_WIDTH_IN - label_in) // 1.85)))
    height = 0.3 * sum(s.count("\n") + 1 for s in shown) + 1.3
    fig, axes = _panels(len(names), ncols, ((MAX_WIDTH_IN - label_in) / ncols, height))
    row = {label: i for i, label in enumerate(labels)}
    outliers = []
    for k, (ax, n) in enumerate(zip(axes, names, strict=True)):
        if k % ncols:
            ax.sharey(axes[k - k % ncols])
            ax.tick_params(labelleft=False)
        else:
            ax.set_yticks(np.arange(len(labels)), shown)
            ax.set_ylim(len(labels) - 0.5, -0.5)
        outliers += _metric_panel(ax, g, n, row)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=3))
    fig.suptitle(f"Sample metrics on {dataset} (red: floor, validation vs test)")
    return fig, [f"{OUTLIER_NOTE} ({'; '.join(outliers)})"] if outliers else []


def _metric_panel(ax: Any, g: Any, name: str, row: dict[str, int]) -> list[str]:
    """One sample metric's panel: estimators' values ± SE and the floor; the values drawn
    at the edge, as "metric: label value"."""
    info = C.get(C.samples(name))
    vals = g[g["metric"] == C.samples(name)]
    y = vals["label"].map(row).to_numpy()
    mean, se = vals["mean"].to_numpy(dtype=float), vals["se"].fillna(0).to_numpy(dtype=float)
    floor = g[g["metric"] == C.floor(name)]
    keep = [float(floor["mean"].iloc[0])] if len(floor) else []
    limits = robust_limits(mean, se, keep)
    far = np.zeros(len(mean), dtype=bool)
    if limits is not None:
        far[mark_outliers(ax, mean, y, limits, axis="x")] = True
        ax.set_xlim(*limits)
    ax.errorbar(mean[~far], y[~far], xerr=se[~far], fmt="o", ms=3.5, color="k")
    if keep:
        ax.axvline(keep[0], color="tab:red", lw=1)
    ax.set_title(f"{info.label} {info.arrow}")
    ax.set_xlabel(f"[{info.unit}]")
    labels = vals["label"].to_numpy()
    return [f"{name}: {labels[i]} {mean[i]:.4g}" for i in np.flatnonzero(far)]
