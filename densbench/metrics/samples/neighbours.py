"""k-nearest-neighbour metrics: :func:`prdc` (precision, recall, density, coverage) and
:func:`memorization_ratio`."""

from __future__ import annotations

import numpy as np
import sklearn
import torch
from sklearn.neighbors import NearestNeighbors

from densbench.metrics.base import mean_se
from densbench.metrics.samples.dispatch import _computes
from densbench.metrics.samples.pairwise import _centred, _sq_dist_blocks
from densbench.metrics.samples.points import SampleScore, _as_points, _need_rows, _pair

__all__ = ["memorization_ratio", "prdc"]

#: sklearn's scratch memory (MiB) for nearest-neighbour queries.
_WORKING_MEMORY_MIB = 64


def _kth_neighbour_distance(A: np.ndarray, k: int) -> np.ndarray:
    """Distance from each row of ``A`` to its k-th nearest *other* row."""
    with sklearn.config_context(working_memory=_WORKING_MEMORY_MIB):
        dist, _ = NearestNeighbors(n_neighbors=k).fit(A).kneighbors()
    return dist[:, -1]


@_computes("precision", "recall", "density", "coverage")
def prdc(X: np.ndarray, Y: np.ndarray, *, k: int = 5) -> dict[str, SampleScore]:
    """Precision, recall, density and coverage of fake samples ``X`` against real data ``Y``.

    Each real point ``y_j`` gets a ball of radius ``r_j`` = distance to its k-th nearest
    other real point, each fake point ``x_i`` one of radius ``s_i`` likewise among the fakes
    (Euclidean, strict inequalities as in the authors' code):

    - precision = fraction of fakes inside at least one real ball (fidelity);
    - recall = fraction of reals inside at least one fake ball (diversity);
    - density = ``(1 / (k n)) sum_i #{j: |x_i - y_j| < r_j}`` (ideal 1, may exceed 1);
    - coverage = fraction of real balls that contain at least one fake.

    For ``X`` and ``Y`` from one continuous distribution, ``E[density] = 1`` and
    ``E[coverage] = 1 - prod_{i=1..k} (m - i) / (n + m - i)`` (~ 1 - 2^-k = 0.969 for k = 5
    and n = m; Naeem et al. 2020); precision and recall stay below 1 at finite k and fall
    with the dimension. Each SE is the plain ``mean_se`` of the per-point indicators
    (counts for density): it ignores the dependence through the shared radii.

    One blocked pass over the fake x real distances gives all four; the radii come from
    sklearn ``NearestNeighbors``.

    References:
        M. F. Naeem, S. J. Oh, Y. Uh, Y. Choi, J. Yoo, "Reliable fidelity and diversity
        metrics for generative models", ICML 2020; T. Kynkaanniemi, T. Karras, S. Laine,
        J. Lehtinen, T. Aila, "Improved precision and recall metric for assessing
        generative models", NeurIPS 2019.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> Y = rng.normal(size=(500, 2))
        >>> s = prdc(Y * [1.0, 0.0], Y)     # samples collapsed onto a line
        >>> s["precision"].value > 0.9, s["recall"].value < 0.3
        (True, True)
    """
    x, y = _pair(X, Y)
    k = int(k)
    if k < 1:
        raise ValueError(f"prdc: k must be >= 1; got {k}")
    _need_rows(x, "X", k + 1, "prdc")
    _need_rows(y, "Y", k + 1, "prdc")
    r_real2 = torch.from_numpy(_kth_neighbour_distance(y, k) ** 2)
    r_fake2 = torch.from_numpy(_kth_neighbour_distance(x, k) ** 2)
    in_real, counts, covered, in_fake = _ball_counts(x, y, r_real2, r_fake2)
    extra = {"k": k}
    out = {}
    for name, per_point in (("precision", in_real.double()), ("recall", in_fake.double()),
                            ("density", counts / k), ("coverage", covered.double())):
        value, se = mean_se(per_point.numpy())
        out[name] = SampleScore(value, se, dict(extra))
    return out


def _ball_counts(x: np.ndarray, y: np.ndarray, r_real2: torch.Tensor, r_fake2: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One blocked pass over the fake x real squared distances: for each fake, whether it
    lies in some real ball and in how many; for each real point, whether its ball holds a
    fake and whether it lies in some fake ball (squared radii ``r_real2``, ``r_fake2``)."""
    n, m = x.shape[0], y.shape[0]
    in_real = torch.zeros(n, dtype=torch.bool)       # precision: fake i in some real ball
    counts = torch.zeros(n, dtype=torch.float64)     # density: how many real balls
    covered = torch.zeros(m, dtype=torch.bool)       # coverage: real ball j holds a fake
    in_fake = torch.zeros(m, dtype=torch.bool)       # recall: real j in some fake ball
    xt, yt = _centred(x, y)
    for r0, c0, d2 in _sq_dist_blocks(xt, yt):
        h, w = d2.shape
        inside = d2 < r_real2[c0:c0 + w].unsqueeze(0)
        in_real[r0:r0 + h] |= inside.any(dim=1)
        counts[r0:r0 + h] += inside.sum(dim=1)
        covered[c0:c0 + w] |= inside.any(dim=0)
        in_fake[c0:c0 + w] |= (d2 < r_fake2[r0:r0 + h].unsqueeze(1)).any(dim=0)
    return in_real, counts, covered, in_fake


@_computes("memorization_ratio", seeded=True, needs_train=True,
           unit_extras=("median_sample_distance", "median_heldout_distance"))
def memorization_ratio(X: np.ndarray, train: np.ndarray, Y: np.ndarray, *, seed: int = 0,
                       n_boot: int = 200) -> SampleScore:
    """Median distance from each sample in ``X`` to its nearest ``train`` point, divided by
    the median distance from each held-out point in ``Y`` to its nearest ``train`` point.

    Near 0: samples sit on training points (copying); about 1: samples are as far from the
    training set as fresh data are (``Y`` must not overlap ``train``); above 1: samples are
    further (off the data). The median (not the mean) keeps a few far-off samples from
    hiding many copies. Nearest neighbours are exact (sklearn ``NearestNeighbors``).

    Standard error: bootstrap over ``n_boot`` resamples of the two sets of nearest-neighbour
    distances (``np.random.default_rng(seed)``), the training set held fixed.

    ``extra``: ``median_sample_distance``, ``median_heldout_distance`` and
    ``frac_below_heldout_q05``, the fraction of samples closer to the training set than 95%
    of held-out points are (about 0.05 for fresh samples; the share of copies otherwise).

    References:
        The distance-to-training-set check of, e.g., C. Meehan, K. Chaudhuri, S. Dasgupta,
        "A non-parametric test to detect data-copying in generative models", AISTATS 2020
        (this ratio is a simpler, un-tested summary).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> train, Y = rng.normal(size=(400, 2)), rng.normal(size=(400, 2))
        >>> memorization_ratio(train[:100], train, Y).value
        0.0
    """
    x = _as_points(X, "X")
    tr = _as_points(train, "train", x.shape[1])
    y = _as_points(Y, "Y", x.shape[1])
    with sklearn.config_context(working_memory=_WORKING_MEMORY_MIB):
        nn = NearestNeighbors(n_neighbors=1).fit(tr)
        dx = nn.kneighbors(x)[0][:, 0]
        dy = nn.kneighbors(y)[0][:, 0]
    med_x, med_y = float(np.median(dx)), float(np.median(dy))
    if med_y <= 0.0:
        raise ValueError("memorization_ratio: most held-out points coincide with training "
                         "points; Y must be data that was not trained on")
    rng = np.random.default_rng(seed)
    boot = np.empty(int(n_boot), dtype=np.float64)
    for b in range(boot.size):
        num = np.median(dx[rng.integers(0, dx.size, dx.size)])
        den = np.median(dy[rng.integers(0, dy.size, dy.size)])
        boot[b] = num / den if den > 0.0 else np.nan
    boot = boot[np.isfinite(boot)]
    se = float(np.std(boot, ddof=1)) if boot.size > 1 else None
    extra = {"median_sample_distance": med_x, "median_heldout_distance": med_y,
             "frac_below_heldout_q05": float(np.mean(dx < np.quantile(dy, 0.05)))}
    return SampleScore(med_x / med_y, se, extra)
