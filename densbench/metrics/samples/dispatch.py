"""Which function computes each catalogue sample metric (the :func:`_computes` decorator),
the all-in-one :func:`sample_metrics`, and result rows (:func:`to_metrics`)."""

from __future__ import annotations

import math
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import numpy as np

from densbench.metrics import catalogue
from densbench.metrics.base import Metric
from densbench.metrics.catalogue import SAMPLE_METRICS
from densbench.metrics.samples.points import SampleScore, _as_points, _pair
from densbench.metrics.samples.scale import _check_range, common_scale
from densbench.registry import UnknownNameError

__all__ = ["failed", "sample_metrics", "to_metrics"]


@dataclass(frozen=True)
class _How:
    """How :func:`sample_metrics` calls a sample metric's function ``fn``: with ``seed=``
    when ``seeded``, as ``fn(X, train, Y)`` when ``needs_train``; ``unit_extras`` are the
    keys of a score's ``extra`` in the data's units. Whether the value and SE are in the
    data's units is the catalogue's unit (``data units``)."""

    fn: Callable[..., Any]
    seeded: bool = False
    needs_train: bool = False
    unit_extras: tuple[str, ...] = ()


#: The function of each sample metric, filled by :func:`_computes` where each is defined.
_HOW: dict[str, _How] = {}

_Fn = TypeVar("_Fn", bound=Callable[..., Any])


def _computes(*names: str, seeded: bool = False, needs_train: bool = False,
              unit_extras: tuple[str, ...] = ()) -> Callable[[_Fn], _Fn]:
    """Declare the decorated function as the one :func:`sample_metrics` calls for the
    catalogue's sample metrics ``names`` (a function of several returns a dict of
    :class:`SampleScore` keyed by name). A name the catalogue lacks is an error here, so
    no metric is computed that a record could not describe."""
    unknown = [n for n in names if n not in SAMPLE_METRICS]
    if unknown:
        raise UnknownNameError(f"sample metric {unknown[0]!r} has no entry in "
                               "densbench.metrics.catalogue.SAMPLE_METRICS")

    def declare(fn: _Fn) -> _Fn:
        for name in names:
            _HOW[name] = _How(fn, seeded, needs_train, unit_extras)
        return fn

    return declare


def failed(error: Exception) -> SampleScore:
    """The score of a metric that raised ``error`` (call it in the ``except`` block): a NaN
    value, and the error and its traceback in ``extra``, so that the metric's failure is
    recorded as that metric's and the others stand."""
    return SampleScore(math.nan, None, {"error": f"{type(error).__name__}: {error}",
                                        "traceback": traceback.format_exc(limit=8)})


def _in_data_units(score: SampleScore, name: str, scale: float) -> SampleScore:
    """``score`` of the metric ``name`` of data divided by ``scale`` as the score of the
    data themselves."""
    if scale == 1.0 or "error" in score.extra:
        return score
    extra = dict(score.extra)
    for key in _HOW[name].unit_extras:
        value = extra.get(key)
        if isinstance(value, list):
            extra[key] = [v * scale for v in value]
        elif value is not None:
            extra[key] = value * scale
    if SAMPLE_METRICS[name].unit != "data units":
        return SampleScore(score.value, score.se, extra)
    return SampleScore(score.value * scale, None if score.se is None else score.se * scale,
                       extra)


def _names(which: Iterable[str] | None, with_train: bool) -> list[str]:
    if which is None:
        return [n for n in SAMPLE_METRICS if with_train or not _HOW[n].needs_train]
    names = list(which)
    unknown = [n for n in names if n not in SAMPLE_METRICS]
    if unknown:
        raise UnknownNameError(f"unknown sample metric {unknown[0]!r}; known: "
                               f"{', '.join(SAMPLE_METRICS)}")
    return names


def sample_metrics(X: np.ndarray, Y: np.ndarray, *, train: np.ndarray | None = None,
                   seed: int = 0, which: Iterable[str] | None = None,
                   keep_going: bool = False) -> dict[str, SampleScore]:
    """Compute the sample metrics named in ``which`` (default: all that apply) for samples
    ``X`` against held-out data ``Y``, each with its default settings and ``seed``.

    ``memorization_ratio`` needs ``train`` (the data the model was fit to): it is skipped
    when ``which`` is None and ``train`` is not given, and an error when asked for by name.
    Metrics computed together are computed once: ``mmd2`` and ``energy_distance`` in one
    pass over the squared distances, ``precision``, ``recall``, ``density`` and
    ``coverage`` from one set of k-NN balls.

    Data at any finite scale: every sample is divided by :func:`common_scale` of ``Y``
    (exactly: a power of two) and the figures in the data's units (energy distance, sliced
    Wasserstein, distances in ``extra``) are multiplied back, so every figure is in its
    stated units; the others do not depend on a common scale.

    ``keep_going``: a metric that raises is returned as :func:`failed` (NaN, with the error)
    and the others are computed; otherwise the error propagates.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> s = sample_metrics(rng.normal(size=(200, 2)), rng.normal(size=(200, 2)),
        ...                    which=["energy_distance", "coverage"])
        >>> list(s), 0.9 < s["coverage"].value <= 1.0
        (['energy_distance', 'coverage'], True)
    """
    names = _names(which, train is not None)
    x, y = _pair(X, Y)
    tr = None if train is None else _as_points(train, "train", x.shape[1])
    scale = common_scale(y)
    if scale != 1.0:
        x, y, tr = x / scale, y / scale, None if tr is None else tr / scale
    try:
        _check_range(x, y, scale)
    except ValueError as exc:
        if not keep_going:
            raise
        return dict.fromkeys(names, failed(exc))
    results: dict[Callable[..., Any], Any] = {}
    out: dict[str, SampleScore] = {}
    for name in names:
        how = _HOW[name]
        if how.needs_train and tr is None:
            raise ValueError(f"sample metric {name!r} needs the training set (train=)")
        if how.fn not in results:
            kwargs: dict[str, Any] = {"seed": seed} if how.seeded else {}
            args = (x, tr, y) if how.needs_train else (x, y)
            try:
                results[how.fn] = how.fn(*args, **kwargs)
            except Exception as exc:
                if not keep_going:
                    raise
                results[how.fn] = failed(exc)
        result = results[how.fn]
        score = result[name] if isinstance(result, dict) else result
        out[name] = _in_data_units(score, name, scale)
    return out


def to_metrics(scores: Mapping[str, SampleScore],
               prefix: str = catalogue.SAMPLES_PREFIX) -> list[Metric]:
    """Result rows (:class:`~densbench.metrics.base.Metric`) for named scores, recorded as
    ``prefix + name`` (:data:`~densbench.metrics.catalogue.SAMPLES_PREFIX` for a model's
    samples, :data:`~densbench.metrics.catalogue.FLOOR_PREFIX` for the floor) in the
    catalogue's units.

    Example:
        >>> to_metrics({"mmd2": SampleScore(0.01, 0.002)})  # doctest: +NORMALIZE_WHITESPACE
        [Metric(metric='samples_mmd2', value=0.01, se=0.002, unit='squared RKHS distance',
                note=None)]
    """
    return [_metric(prefix + key, s) for key, s in scores.items()]


def _metric(name: str, score: SampleScore) -> Metric:
    """A score as a result row; one that failed or is not finite carries a note saying so
    (its value is then recorded as missing)."""
    row = catalogue.metric(name, float(score.value),
                           None if score.se is None else float(score.se))
    if "error" in score.extra:
        return replace(row, note=f"not computed: {score.extra['error']}")
    if not math.isfinite(row.value):
        return replace(row, note=f"not computed: the value is {row.value} in float64 (the "
                                 "samples or the data are too far apart to compare)")
    return row
