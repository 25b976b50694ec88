"""The metric catalogue: every figure a record can hold, with its unit, which way is better,
its group and what it means.

This is the one place where a metric's name, unit and direction are decided. The code that
computes figures builds its rows with :func:`metric` (so a record's unit is the catalogue's),
and the tables, figures, ``densbench compare`` and ``densbench list --metrics`` read it. A
direction is one of higher, lower, a target value (C2ST accuracy 0.5: a classifier that
cannot tell samples from data) or none (a reference figure or a setting of the run, for
which "better" has no meaning); :meth:`MetricInfo.badness` turns all four into one number
to minimise, so every comparison in the reports uses the same rule.

One entry is a family: ``test_iwae_k<K>``, the importance-weighted estimate at each K.

It is also where each metric is dispatched from: the figures of a group computed from a
cell's outputs (likelihood, truth) come from the one function declared for that group with
:func:`computes`, and each sample metric from the function declared for it in
:mod:`densbench.metrics.samples.dispatch`; diagnostics are an estimator's own and costs the
runner's measurements. :func:`compute_all` runs the group functions.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from densbench.metrics.base import CellOutputs, Metric
from densbench.registry import UnknownNameError

__all__ = [
    "CATALOGUE", "COST_METRICS", "FIT_SECONDS", "FLOOR_PREFIX", "IWAE_K", "KL_TO_TRUTH",
    "SAMPLES_OUTSIDE_TRUTH_SUPPORT", "SAMPLES_PREFIX", "SAMPLES_TRUTH_LOGLIK",
    "SAMPLE_METRICS", "SCORE_EXAMPLES_PER_S", "SPLITS", "TEST_BITS_PER_DIM", "TEST_ELBO",
    "TEST_LOGLIK", "TEST_LOGLIK_PER_DIM", "TEST_LOGLIK_TRUTH", "Direction", "Group",
    "GroupMetrics", "MetricInfo", "bits_per_dim", "compute_all", "computes", "floor", "get",
    "iwae_k", "iwae_k_of", "lookup", "loglik", "listing", "loglik_per_dim", "metric",
    "samples", "validation",
]


class Group(StrEnum):
    """What a figure is about."""

    LIKELIHOOD = "likelihood"
    TRUTH = "truth"
    SAMPLES = "samples"
    DIAGNOSTICS = "diagnostics"
    COST = "cost"


class Direction(StrEnum):
    """Which values are better."""

    HIGHER = "higher"
    LOWER = "lower"
    TARGET = "target"
    NONE = "none"


@dataclass(frozen=True)
class MetricInfo:
    """One catalogue entry.

    ``name`` is the record's metric name, or for a family a pattern with ``<K>`` standing
    for a positive integer. ``label`` is the short name that tables and axes print before
    the unit. ``target`` is set exactly when ``direction`` is ``TARGET``. ``reproducible``
    is False for measurements of the run itself (times, rates, memory, threads): they
    change from run to run and with the machine, so two runs agree on everything else.
    """

    name: str
    unit: str
    group: Group
    direction: Direction
    label: str
    meaning: str
    target: float | None = None
    reproducible: bool = True

    def badness(self, value: float) -> float:
        """A number that is smaller for a better ``value`` (NaN where the direction is none).

        Example:
            >>> get("samples_c2st_accuracy").badness(0.4), get(TEST_LOGLIK).badness(-2.0)
            (0.09999999999999998, 2.0)
        """
        if self.direction is Direction.HIGHER:
            return -value
        if self.direction is Direction.LOWER:
            return value
        if self.direction is Direction.TARGET:
            return abs(value - float(self.target))  # type: ignore[arg-type]
        return math.nan

    def worse(self, before: float, after: float) -> bool:
        """True when ``after`` is worse than ``before`` (never for direction none)."""
        return bool(self.badness(after) > self.badness(before))

    @property
    def arrow(self) -> str:
        """``↑`` higher is better, ``↓`` lower, ``→t`` closest to t, empty for none."""
        if self.direction is Direction.TARGET:
            return f"→{self.target:g}"
        return {Direction.HIGHER: "↑", Direction.LOWER: "↓", Direction.NONE: ""}[self.direction]

    @property
    def better(self) -> str:
        """The direction in words, for :func:`listing`."""
        if self.direction is Direction.TARGET:
            return f"closest to {self.target:g}"
        return {Direction.HIGHER: "higher", Direction.LOWER: "lower",
                Direction.NONE: "--"}[self.direction]

    @property
    def header(self) -> str:
        """A column heading: the label with the unit."""
        return f"{self.label} [{self.unit}]"


_H, _L, _T, _N = Direction.HIGHER, Direction.LOWER, Direction.TARGET, Direction.NONE

#: The data splits a likelihood figure is reported on, in report order.
SPLITS = ("test", "val", "train")


def loglik(split: str) -> str:
    """Name of the mean log-likelihood (nats/example) on ``split``."""
    return f"{split}_loglik"


def loglik_per_dim(split: str) -> str:
    """Name of the mean log-likelihood per dimension (nats/dim) on ``split``."""
    return f"{split}_loglik_per_dim"


def bits_per_dim(split: str) -> str:
    """Name of the negative log-likelihood in bits per dimension (discrete data)."""
    return f"{split}_bits_per_dim"


#: Record names of a sample metric ``<m>``: ``samples_<m>`` of the model's samples,
#: ``floor_<m>`` of validation rows (both against the test split).
SAMPLES_PREFIX = "samples_"
FLOOR_PREFIX = "floor_"


def samples(name: str) -> str:
    """Record name of the sample metric ``name`` of a model's samples."""
    return SAMPLES_PREFIX + name


def floor(name: str) -> str:
    """Record name of the floor of the sample metric ``name`` (validation vs test split)."""
    return FLOOR_PREFIX + name


TEST_LOGLIK = loglik("test")
TEST_LOGLIK_PER_DIM = loglik_per_dim("test")
TEST_BITS_PER_DIM = bits_per_dim("test")
TEST_LOGLIK_TRUTH = "test_loglik_truth"
KL_TO_TRUTH = "kl_to_truth"
SAMPLES_TRUTH_LOGLIK = "samples_truth_loglik"
SAMPLES_OUTSIDE_TRUTH_SUPPORT = "samples_outside_truth_support"
TEST_ELBO = "test_elbo"
IWAE_K = "test_iwae_k<K>"
FIT_SECONDS = "fit_seconds"
SCORE_EXAMPLES_PER_S = "score_examples_per_s"

_SPLIT_WORDS = {"test": "test", "val": "validation", "train": "training"}


def _likelihood() -> list[MetricInfo]:
    out = []
    for split in SPLITS:
        words = _SPLIT_WORDS[split]
        out += [
            MetricInfo(loglik(split), "nats/example", Group.LIKELIHOOD, _H, f"{split} log-lik",
                       f"Mean log-likelihood (or bound) of the {words} split, in the data's "
                       "own units."),
            MetricInfo(loglik_per_dim(split), "nats/dim", Group.LIKELIHOOD, _H,
                       f"{split} log-lik", f"The {words} log-likelihood over the dimension."),
            MetricInfo(bits_per_dim(split), "bits/dim", Group.LIKELIHOOD, _L, split,
                       f"Negative {words} log-likelihood in bits per dimension (discrete "
                       "data only)."),
        ]
    return out


_TRUTH = [
    MetricInfo(TEST_LOGLIK_TRUTH, "nats/example", Group.TRUTH, _N, "true test log-lik",
               "The true density's own mean test log-likelihood (synthetic data): a "
               "reference, not a model's figure."),
    MetricInfo(KL_TO_TRUTH, "nats", Group.TRUTH, _L, "KL to truth",
               "KL(p_true || model) estimated as mean(log p_true - log q) over test points."),
    MetricInfo(SAMPLES_TRUTH_LOGLIK, "nats/example", Group.TRUTH, _H, "E_model log p_true",
               "Mean true log-density of the model's samples (-inf if any falls outside "
               "the support)."),
    MetricInfo(SAMPLES_OUTSIDE_TRUTH_SUPPORT, "fraction", Group.TRUTH, _L,
               "outside support",
               "Fraction of the model's samples where the true density is zero."),
]

#: Every sample metric of :mod:`densbench.metrics.samples`, in report order. Each is
#: recorded twice: ``samples_<m>`` for the model's samples against the test split and
#: ``floor_<m>`` for validation rows against the test split, what a perfect sampler scores
#: at that sample size (a reference: no direction).
SAMPLE_METRICS: dict[str, MetricInfo] = {m.name: m for m in (
    MetricInfo("mmd2", "squared RKHS distance", Group.SAMPLES, _L, "MMD^2",
               "Unbiased MMD^2, mean of RBF kernels at 0.5/1/2 x median distance."),
    MetricInfo("energy_distance", "data units", Group.SAMPLES, _L, "energy distance",
               "Unbiased squared energy distance 2E|X-Y| - E|X-X'| - E|Y-Y'|."),
    MetricInfo("sliced_wasserstein", "data units", Group.SAMPLES, _L, "sliced Wasserstein",
               "Sliced 1-Wasserstein distance over 200 random directions (POT)."),
    MetricInfo("c2st_accuracy", "accuracy", Group.SAMPLES, _T, "C2ST accuracy",
               "5-fold accuracy of an MLP telling samples from data (0.5 = can't).",
               target=0.5),
    MetricInfo("precision", "fraction", Group.SAMPLES, _H, "precision",
               "Fraction of samples inside the data's 5-NN balls (fidelity)."),
    MetricInfo("recall", "fraction", Group.SAMPLES, _H, "recall",
               "Fraction of data inside the samples' 5-NN balls (diversity)."),
    MetricInfo("density", "ratio", Group.SAMPLES, _T, "density",
               "Mean number of data 5-NN balls holding a sample, over 5.", target=1.0),
    MetricInfo("coverage", "fraction", Group.SAMPLES, _H, "coverage",
               "Fraction of data 5-NN balls holding at least one sample."),
    MetricInfo("frechet_distance", "squared standardized units", Group.SAMPLES, _L,
               "Frechet distance",
               "Frechet distance of Gaussian fits, data standardized by Y."),
    MetricInfo("memorization_ratio", "ratio", Group.SAMPLES, _T, "memorization ratio",
               "Median NN distance to train: samples over held-out (0 = copies).",
               target=1.0),
)}


def _sample_entries() -> list[MetricInfo]:
    out = []
    for m in SAMPLE_METRICS.values():
        out.append(MetricInfo(samples(m.name), m.unit, m.group, m.direction, m.label,
                              m.meaning, m.target))
        out.append(MetricInfo(floor(m.name), m.unit, m.group, _N, f"{m.label} floor",
                              f"{m.name} of validation rows against the test split: what a "
                              "perfect sampler scores."))
    return out


_DIAGNOSTICS = [
    MetricInfo(TEST_ELBO, "nats/example", Group.DIAGNOSTICS, _H, "ELBO",
               "VAE: mean log importance weight, the evidence lower bound."),
    MetricInfo(IWAE_K, "nats/example", Group.DIAGNOSTICS, _H, "IWAE",
               "VAE: importance-weighted bound from the first K of the same draws."),
    MetricInfo("test_ess", "samples", Group.DIAGNOSTICS, _H, "ESS",
               "VAE: effective sample size 1 / sum w_k^2 of the normalized weights."),
    MetricInfo("test_iwae_mc_se", "nats", Group.DIAGNOSTICS, _L, "IWAE MC SE",
               "VAE: Monte-Carlo SE of the IWAE estimate (jackknife over blocks of draws)."),
    MetricInfo("test_bound_mean", "nats/example", Group.DIAGNOSTICS, _H, "bound (mean)",
               "Diffusion: the variational bound averaged over independent noise draws."),
    MetricInfo("test_bound_mc_se", "nats", Group.DIAGNOSTICS, _L, "bound MC SE",
               "Diffusion: Monte-Carlo SE of one example's bound (sd over noise draws)."),
    MetricInfo("test_prior_kl", "nats", Group.DIAGNOSTICS, _L, "prior KL",
               "Diffusion: KL of the fully noised data to the prior (a bound term)."),
    MetricInfo("test_diffusion_kl", "nats", Group.DIAGNOSTICS, _L, "diffusion KL",
               "Diffusion: sum of the bound's KL terms of steps t = 2..T."),
    MetricInfo("test_kde_error_bound", "nats", Group.DIAGNOSTICS, _L, "KDE error bound",
               "KDE: certified bound on each test log-density's error (its mean bounds "
               "test_loglik's); the lattice or tree path's tolerance or the exact path's "
               "rounding."),
    MetricInfo("test_kde_terms_summed", "fraction", Group.DIAGNOSTICS, _N, "KDE terms summed",
               "KDE: fraction of the kernel terms summed one by one (the tree path bounds "
               "the others); 1 on the exact path, 0 for rows from the lattice."),
]

_COST = [
    MetricInfo(FIT_SECONDS, "s", Group.COST, _L, "fit",
               "Wall time of fit (compilation excluded: compile_seconds).",
               reproducible=False),
    MetricInfo("compile_seconds", "s", Group.COST, _L, "compilation",
               "Wall time of the training steps during which PyTorch compiled the loss or "
               "loaded it from the compile cache (compiled cells only; not in fit_seconds).",
               reproducible=False),
    MetricInfo("train_examples_per_s", "examples/s", Group.COST, _H, "training",
               "Training rows over fit seconds.", reproducible=False),
    MetricInfo(SCORE_EXAMPLES_PER_S, "examples/s", Group.COST, _H, "scoring",
               "Test rows scored per second.", reproducible=False),
    MetricInfo("sample_examples_per_s", "examples/s", Group.COST, _H, "sampling",
               "Samples drawn per second.", reproducible=False),
    MetricInfo("sample_metrics_seconds", "s", Group.COST, _L, "sample metrics",
               "Wall time of the cell's sample metrics (their floors: per run).",
               reproducible=False),
    MetricInfo("peak_rss_mb", "MB", Group.COST, _L, "peak memory",
               "Peak resident memory of the cell, freed heap memory handed back first.",
               reproducible=False),
    MetricInfo("peak_device_mb", "MB", Group.COST, _L, "peak device memory",
               "Peak CUDA memory (only where CUDA was used).", reproducible=False),
    MetricInfo("tuning_seconds", "s", Group.COST, _L, "tuning",
               "Wall time of the tuning search: every candidate's fit and validation "
               "scoring (tuned cells only; the final fit is fit_seconds).",
               reproducible=False),
    MetricInfo("tuning_trials", "count", Group.COST, _L, "trials",
               "Candidate settings fitted and judged on the validation split (tuned cells "
               "only)."),
    MetricInfo("n_parameters", "count", Group.COST, _L, "parameters",
               "Number of learned scalar parameters."),
    MetricInfo("threads", "count", Group.COST, _N, "threads",
               "PyTorch threads the cell ran on (a setting of the run).",
               reproducible=False),
    MetricInfo("blas_threads", "count", Group.COST, _N, "BLAS threads",
               "BLAS threads the cell ran on (a setting of the run).", reproducible=False),
]

#: Every metric a record can hold, in report order.
CATALOGUE: tuple[MetricInfo, ...] = (*_likelihood(), *_TRUTH, *_sample_entries(),
                                     *_DIAGNOSTICS, *_COST)

#: Measurements of the run itself (they vary from run to run; everything else reproduces).
COST_METRICS: tuple[str, ...] = tuple(m.name for m in CATALOGUE if not m.reproducible)

_EXACT = {m.name: m for m in CATALOGUE if "<" not in m.name}
_FAMILIES = [(re.compile("^" + re.escape(m.name).replace("<K>", r"([1-9][0-9]*)") + "$"), m)
             for m in CATALOGUE if "<" in m.name]


def iwae_k(k: int) -> str:
    """Name of the IWAE estimate with ``k`` importance samples."""
    return IWAE_K.replace("<K>", str(int(k)))


def iwae_k_of(name: str) -> int | None:
    """K of an IWAE estimate's name, None for any other name.

    Example:
        >>> iwae_k_of("test_iwae_k5000"), iwae_k_of("test_elbo")
        (5000, None)
    """
    for pattern, info in _FAMILIES:
        match = pattern.match(name)
        if match and info.name == IWAE_K:
            return int(match.group(1))
    return None


def lookup(name: str) -> MetricInfo | None:
    """The entry of a record's metric ``name``, None when the catalogue does not know it
    (an outside estimator's own diagnostics)."""
    if name in _EXACT:
        return _EXACT[name]
    for pattern, info in _FAMILIES:
        if pattern.match(name):
            return info
    return None


def validation(name: str) -> MetricInfo | None:
    """The entry that gives the unit and direction of the tuning criterion ``name``: a
    likelihood figure (``val_loglik``) or ``val_<m>`` for the sample metric ``<m>`` of
    validation rows; None for any other name.

    Example:
        >>> validation("val_loglik").direction, validation("val_energy_distance").unit
        (<Direction.HIGHER: 'higher'>, 'data units')
    """
    prefix = "val_"
    if not name.startswith(prefix):
        return None
    return lookup(name) or SAMPLE_METRICS.get(name[len(prefix):])


def get(name: str) -> MetricInfo:
    """The entry of ``name``; an unknown name raises an error that lists the known ones."""
    info = lookup(name)
    if info is None:
        raise UnknownNameError(f"unknown metric {name!r}; known: "
                               f"{', '.join(m.name for m in CATALOGUE)}")
    return info


def metric(name: str, value: float, se: float | None) -> Metric:
    """A result row for ``name`` in the catalogue's unit.

    Example:
        >>> metric(KL_TO_TRUTH, 0.25, 0.01)
        Metric(metric='kl_to_truth', value=0.25, se=0.01, unit='nats', note=None)
    """
    return Metric(name, value, se, get(name).unit)


def listing() -> str:
    """Every entry, a line each and group by group: name, unit, which value is better and
    what it means (``densbench list --metrics``; the docs point there rather than keep a
    copy).

    Example:
        >>> print(listing().splitlines()[1])  # doctest: +NORMALIZE_WHITESPACE
          test_loglik  [nats/example] higher: Mean log-likelihood (or bound) of the test
          split, in the data's own units.
    """
    lines = []
    for group in Group:
        lines.append(f"{group.value}:")
        lines += [f"  {m.name:<32} [{m.unit}] {m.better}: {m.meaning}"
                  for m in CATALOGUE if m.group is group]
    return "\n".join(lines)


#: A group's metric function: every figure of its group that applies to a cell's outputs.
GroupMetrics = Callable[[CellOutputs], list[Metric]]

#: The function of each group computed from a cell's outputs, filled by :func:`computes`
#: where each is defined (:mod:`densbench.metrics.likelihood`, :mod:`~densbench.metrics.truth`).
_GROUP_FUNCTIONS: dict[Group, GroupMetrics] = {}

_G = TypeVar("_G", bound=GroupMetrics)


def computes(group: Group) -> Callable[[_G], _G]:
    """Declare the decorated function as the one :func:`compute_all` calls for the figures
    of ``group``; a group has at most one."""

    def declare(fn: _G) -> _G:
        if group in _GROUP_FUNCTIONS:
            raise ValueError(f"the {group.value} metrics are already computed by "
                             f"{_GROUP_FUNCTIONS[group].__qualname__}")
        _GROUP_FUNCTIONS[group] = fn
        return fn

    return declare


def compute_all(outputs: CellOutputs) -> list[Metric]:
    """Every figure that applies to ``outputs``, group by group in catalogue order. A row
    that is not an entry of its function's group is an error, so a record never holds a
    figure under a group that would read it wrong."""
    rows: list[Metric] = []
    for group in Group:
        fn = _GROUP_FUNCTIONS.get(group)
        for row in fn(outputs) if fn is not None else ():
            if get(row.metric).group is not group:
                raise ValueError(f"{fn.__qualname__} computes the {group.value} metrics; "
                                 f"{row.metric!r} is a {get(row.metric).group.value} metric")
            rows.append(row)
    return rows
