"""Figures of a run (matplotlib, Agg backend), drawn from what the records store only
(:mod:`densbench.report.datasets`), under the report's own folder."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from densbench.metrics import catalogue as C
from densbench.report.datasets import confined, dataset_info, stored_test_rows, truth_grid

__all__ = ["Galleries", "image_grid", "render_sample_figures", "scatter_beside_data", "tile"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


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


def image_grid(images: np.ndarray, image_shape: tuple[int, int], *, levels: int | None,
               title: str, path: Path, ncols: int = 8) -> Path:
    """Save up to ``ncols^2`` images (rows of ``images``) as one grid PNG."""
    plt = _pyplot()
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
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def scatter_beside_data(samples: np.ndarray, data: np.ndarray | None, *, title: str,
                        path: Path) -> Path:
    """Save model samples beside held-out data (2-D), on shared axes; the samples alone
    where the data are not at hand (``data`` None)."""
    plt = _pyplot()
    samples = samples[np.isfinite(samples).all(axis=1)]
    if data is not None:
        data = data[np.isfinite(data).all(axis=1)]
    if not len(samples) or data is not None and not len(data):
        raise ValueError("no finite rows to draw")
    panels = [(data, "test data")] if data is not None else []
    panels.append((samples, "samples"))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.5 * len(panels), 3.5), sharex=True,
                             sharey=True, squeeze=False)
    ref = data if data is not None else samples
    lo = np.percentile(ref, 0.5, axis=0)
    hi = np.percentile(ref, 99.5, axis=0)
    pad = 0.15 * (hi - lo)
    for ax, (pts, label) in zip(axes[0], panels, strict=True):
        ax.scatter(pts[:, 0], pts[:, 1], s=1.5, alpha=0.4, color="k", linewidths=0)
        ax.set_title(label, fontsize=9)
        ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
        ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
        ax.set_aspect("equal", adjustable="box")
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


@dataclass
class Galleries:
    """By cell id: the sample galleries, what a record lacked to draw its gallery in full
    (a key of :data:`~densbench.report.datasets.MISSING`) and why a gallery could not be
    drawn from what its record holds."""

    paths: dict[str, Path] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


def render_sample_figures(records: list[dict[str, Any]], root: Path,
                          folder: str = "figures") -> Galleries:
    """One gallery per ok cell with a sample preview, as ``root/folder/<cell id>.png``:
    2-D data: samples beside the stored test rows; image data: a grid of samples.
    ``records`` are checked (:func:`~densbench.runner.records.check_record`)."""
    out = Galleries()
    confined(root, folder).mkdir(parents=True, exist_ok=True)
    for rec in records:
        prev = rec.get("samples_preview")
        if rec.get("status") != "ok" or not prev:
            continue
        title = f"{rec['estimator']['name']} on {rec['dataset']['name']} (seed {rec['seed']})"
        path = confined(root, folder, f"{rec['id']}.png")
        try:
            path, lacking = _gallery(rec, title, path)
        except (ValueError, OverflowError) as exc:  # values matplotlib cannot draw
            out.failed[rec["id"]] = f"{title}: {exc}"
            continue
        if path is not None:
            out.paths[rec["id"]] = path
        if lacking is not None:
            out.missing[rec["id"]] = lacking
    return out


def _gallery(rec: dict[str, Any], title: str, path: Path) -> tuple[Path | None, str | None]:
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


# -- run-level figures (issue: comparison reports) -------------------------------------

def _save(fig: Any, path: Path) -> Path:
    plt = _pyplot()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def rank_heatmap(agg: Any, path: Path) -> Path | None:
    """Rank of each estimator on each dataset by mean test log-likelihood (1 = best)."""
    import seaborn as sns

    ll = agg[agg["metric"] == C.TEST_LOGLIK]
    if ll.empty:
        return None
    wide = ll.pivot_table(index="label", columns="dataset", values="mean", aggfunc="first")
    ranks = wide.map(C.get(C.TEST_LOGLIK).badness).rank(method="min")
    order = ranks.mean(axis=1).sort_values().index
    ranks = ranks.loc[order]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.1 * len(ranks.columns) + 2.5, 0.45 * len(ranks) + 1.5))
    sns.heatmap(ranks, annot=True, fmt=".0f", cmap="viridis_r", cbar_kws={"label": "rank"},
                ax=ax, linewidths=0.5)
    ax.set_xlabel("dataset")
    ax.set_ylabel("estimator")
    ax.set_title("Rank by test log-likelihood (1 = best; mean over seeds)")
    return _save(fig, path)


def _pareto(x: np.ndarray, y: np.ndarray, x_higher_better: bool) -> np.ndarray:
    """Indices of the Pareto front (maximize y; maximize or minimize x), sorted by x."""
    idx = np.argsort(-x if x_higher_better else x)
    front, best_y = [], -np.inf
    for i in idx:
        if y[i] > best_y:
            front.append(i)
            best_y = y[i]
    return np.array(sorted(front, key=lambda i: x[i]))


def quality_vs_cost(agg: Any, path: Path) -> Path | None:
    """Test log-likelihood against scoring throughput and fit time (log x), per dataset,
    with the Pareto front of each."""
    ll = agg[agg["metric"] == C.TEST_LOGLIK].set_index(["dataset", "label"])["mean"]
    if ll.empty:
        return None
    axes_x = [C.get(C.SCORE_EXAMPLES_PER_S), C.get(C.FIT_SECONDS)]
    costs = {m.name: agg[agg["metric"] == m.name].set_index(["dataset", "label"])["mean"]
             for m in axes_x}
    datasets = sorted(set(ll.index.get_level_values(0)))
    plt = _pyplot()
    from matplotlib.ticker import NullFormatter

    fig, axes = plt.subplots(2, len(datasets), figsize=(3.2 * len(datasets), 6.4),
                             squeeze=False)
    for j, ds in enumerate(datasets):
        for i, info in enumerate(axes_x):
            ax = axes[i, j]
            y = ll.loc[ds]
            x = costs[info.name].reindex(pd_index(ds, y.index)).to_numpy()
            yv = y.to_numpy()
            ok = np.isfinite(x) & np.isfinite(yv) & (x > 0)
            ax.scatter(x[ok], yv[ok], s=18, color="k")
            for name, xi, yi in zip(np.asarray(y.index)[ok], x[ok], yv[ok], strict=True):
                ax.annotate(name, (xi, yi), fontsize=7, xytext=(3, 2),
                            textcoords="offset points")
            if ok.sum() >= 2:
                front = _pareto(x[ok], yv[ok], info.direction is C.Direction.HIGHER)
                # the boundary of the dominated region: flat until the next front point
                ax.plot(x[ok][front], yv[ok][front], color="tab:red", lw=1,
                        drawstyle="steps-post")
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel(info.header, fontsize=8)
            if j == 0:
                ax.set_ylabel(C.get(C.TEST_LOGLIK).header, fontsize=8)
            if i == 0:
                ax.set_title(ds, fontsize=9)
            ax.tick_params(labelsize=7)
    fig.suptitle("Quality vs cost (red: Pareto front)", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def pd_index(dataset: str, labels: Any) -> Any:
    import pandas as pd

    return pd.MultiIndex.from_tuples([(dataset, lab) for lab in labels])


def density_panels(records: list[dict[str, Any]], path: Path) -> tuple[Path | None, bool]:
    """Each estimator's density (first seed) beside the true density where the records
    store it, on one 2-D grid; (the figure or None, whether the truth was drawn)."""
    from densbench.runner.records import decode_array

    recs = [r for r in records if r.get("density_grid")]
    if not recs:
        return None, False
    first = min(int(r["seed"]) for r in recs)
    recs = sorted((r for r in recs if int(r["seed"]) == first),
                  key=lambda r: r["estimator"]["name"])
    grid = recs[0]["density_grid"]
    size = int(grid["size"])
    gx = np.linspace(grid["x"][0], grid["x"][1], size)
    gy = np.linspace(grid["y"][0], grid["y"][1], size)
    panels = []
    truth = truth_grid(recs[0])
    if truth is not None:
        panels.append(("truth", np.exp(truth)))
    for r in recs:
        if int(r["density_grid"]["size"]) == size:  # one grid for every panel
            panels.append((r["estimator"]["name"],
                           np.exp(decode_array(r["density_grid"])).reshape(size, size)))
    plt = _pyplot()
    ncols = min(len(panels), 7)
    nrows = int(np.ceil(len(panels) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.2 * ncols, 2.3 * nrows), squeeze=False)
    vmax = np.nanpercentile(panels[0][1], 99.5) or None
    for ax, (name, dens) in zip(axes.ravel(), panels, strict=False):
        ax.imshow(dens, origin="lower", extent=(gx[0], gx[-1], gy[0], gy[-1]),
                  cmap="magma", vmin=0, vmax=vmax, aspect="auto")
        ax.set_title(name, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    fig.suptitle(f"Densities on {recs[0]['dataset']['name']} (seed {first})", fontsize=10)
    fig.tight_layout()
    return _save(fig, path), truth is not None


def iwae_curves(agg: Any, path: Path) -> Path | None:
    """The importance-weighted estimate against K (log scale), per dataset and estimator."""
    k = agg["metric"].map(C.iwae_k_of)
    sel = agg[k.notna()].assign(K=k[k.notna()].astype(int))
    if sel.empty:
        return None
    datasets = sorted(sel["dataset"].unique())
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(datasets), figsize=(3.2 * len(datasets), 3),
                             squeeze=False)
    for ax, ds in zip(axes[0], datasets, strict=True):
        for label, g in sel[sel["dataset"] == ds].groupby("label"):
            g = g.sort_values("K")
            ax.errorbar(g["K"], g["mean"], yerr=g["se"], marker="o", ms=3, label=label)
            elbo = agg[(agg["dataset"] == ds) & (agg["label"] == label)
                       & (agg["metric"] == C.TEST_ELBO)]
            if len(elbo):
                ax.axhline(elbo["mean"].iloc[0], ls="--", lw=0.8, color="gray")
        ax.set_xscale("log")
        ax.set_xlabel("K", fontsize=8)
        ax.set_title(ds, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    axes[0, 0].set_ylabel("IWAE estimate [nats/example]\n(dashed: ELBO)", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def sample_metrics_vs_floor(agg: Any, dataset: str, path: Path) -> Path | None:
    """Each sample metric per estimator (dots, ± SE) against its floor (red line: the same
    metric between the validation and test splits)."""
    g = agg[agg["dataset"] == dataset]
    names = [n for n in C.SAMPLE_METRICS if (g["metric"] == C.samples(n)).any()]
    if not names:
        return None
    plt = _pyplot()
    ncols = min(5, len(names))
    nrows = int(np.ceil(len(names) / ncols))
    # every panel on one y axis of all labels (a label's row is the same in every panel,
    # whichever metrics it has), written once per row of panels: labels on every panel
    # would be most of the figure's drawing time
    labels = sorted(g.loc[g["metric"].isin([C.samples(n) for n in names]), "label"].unique())
    row = {label: i for i, label in enumerate(labels)}
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.9 * ncols, 0.28 * len(labels)
                                                    * nrows + 1.6 * nrows), squeeze=False,
                             sharey=True)
    axes[0, 0].set_yticks(np.arange(len(labels)))
    axes[0, 0].set_yticklabels(labels, fontsize=7)
    axes[0, 0].set_ylim(len(labels) - 0.5, -0.5)
    for ax, n in zip(axes.ravel(), names, strict=False):
        vals = g[g["metric"] == C.samples(n)]
        y = vals["label"].map(row).to_numpy()
        ax.errorbar(vals["mean"], y, xerr=vals["se"].fillna(0), fmt="o", ms=3, color="k")
        floor = g[g["metric"] == C.floor(n)]
        if len(floor):
            ax.axvline(floor["mean"].iloc[0], color="tab:red", lw=1)
        ax.set_title(n, fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    fig.suptitle(f"Sample metrics on {dataset} (red: floor, validation vs test)", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)
