"""Figures of a run (matplotlib, Agg backend): sample galleries saved with the run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["image_grid", "render_sample_figures", "scatter_beside_data"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def image_grid(images: np.ndarray, image_shape: tuple[int, int], *, levels: int | None,
               title: str, path: Path, ncols: int = 8) -> Path:
    """Save up to ``ncols^2`` images (rows of ``images``) as one grid PNG."""
    plt = _pyplot()
    n = min(len(images), ncols * ncols)
    nrows = max(1, int(np.ceil(n / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * 0.8, nrows * 0.8 + 0.4))
    vmax = (levels - 1) if levels else float(np.max(images[:n])) if n else 1.0
    for i, ax in enumerate(np.atleast_1d(axes).ravel()):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i].reshape(image_shape), cmap="gray_r", vmin=0, vmax=vmax,
                      interpolation="nearest")
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def scatter_beside_data(samples: np.ndarray, data: np.ndarray, *, title: str,
                        path: Path) -> Path:
    """Save model samples beside held-out data (2-D), on shared axes."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(7, 3.5), sharex=True, sharey=True)
    lo = np.percentile(data, 0.5, axis=0)
    hi = np.percentile(data, 99.5, axis=0)
    pad = 0.15 * (hi - lo)
    for ax, pts, label in ((axes[0], data, "test data"), (axes[1], samples, "samples")):
        ax.scatter(pts[:, 0], pts[:, 1], s=1.5, alpha=0.4, color="k", linewidths=0)
        ax.set_title(label, fontsize=9)
        ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
        ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
        ax.set_aspect("equal", adjustable="box")
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def render_sample_figures(records: list[dict[str, Any]], out_dir: Path) -> dict[str, Path]:
    """One gallery per ok cell with a sample preview: cell id -> PNG path.

    2-D data: samples beside the test split; image data: a grid of samples.
    """
    from densbench import data
    from densbench.runner.store import decode_array

    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    datasets: dict[tuple[str, str, int], Any] = {}
    for rec in records:
        prev = rec.get("samples_preview")
        if rec.get("status") != "ok" or not prev:
            continue
        samples = decode_array(prev).reshape(prev["shape"])
        key = (rec["dataset"]["name"], repr(sorted(rec["dataset"].get("params", {}).items())),
               int(rec["seed"]))
        if key not in datasets:
            datasets[key] = data.load(rec["dataset"]["name"], seed=int(rec["seed"]),
                                      **rec["dataset"].get("params", {}))
        ds = datasets[key]
        title = f"{rec['estimator']['name']} on {ds.name} (seed {rec['seed']})"
        path = out_dir / f"{rec['id']}.png"
        if ds.image_shape is not None:
            paths[rec["id"]] = image_grid(samples, ds.image_shape, levels=ds.levels,
                                          title=title, path=path)
        elif ds.dim == 2:
            paths[rec["id"]] = scatter_beside_data(samples, ds.test[:len(samples)],
                                                   title=title, path=path)
    return paths
