"""One cell, start to finish: a short pipeline of named steps, each with one job.

:func:`run_cell` is a pure function of a cell and the device it runs on (it writes
nothing): prepare (data, hyperparameters, the transform to the estimator's space), fit,
score (three splits, the 2-D density grid, the estimator's diagnostics), sample, truth
(on synthetic data), sample metrics and costs. The floor beside which sample metrics are
read depends on the data alone: :func:`floor_metrics` computes it, and the driver does so
once per dataset, seed and sample size for a whole run (:mod:`densbench.runner.floors`).
Any exception inside a step is caught once, at the top, and becomes a failure record built by
:func:`failure_record`, the one builder of failure records (the executors use it for
cells whose process died, ran out of time or out of memory).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import traceback
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from densbench.devices import DEFAULT_DEVICE
from densbench.runner.plan import Cell
from densbench.runner.records import encode_array

__all__ = ["GRID_SIZE", "MAX_TRAIN_SCORED", "PREVIEW_ROWS", "PREVIEW_ROWS_2D",
           "SAMPLE_REFERENCE_ROWS", "density_grid_axes", "failure_record", "floor_metrics",
           "now", "run_cell"]

#: The training split's log-likelihood (an overfitting check) is taken on its first rows.
MAX_TRAIN_SCORED = 2000
#: Sample metrics compare with the first rows of the test split (the pairwise metrics
#: cost O((n + m)^2); the floor uses the same reference rows).
SAMPLE_REFERENCE_ROWS = 2000
#: Samples kept in each record for the report's galleries (2-D scatter / image grid).
PREVIEW_ROWS_2D, PREVIEW_ROWS = 2000, 64
#: Side of the grid on which 2-D densities are stored for the report.
GRID_SIZE = 64


def now() -> str:
    """The current UTC time as the records write it."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def failure_record(cell: Cell, status: str, error: str, *,
                   record: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """The record of a cell that did not finish: ``record`` (what the cell had recorded
    before it failed, if anything) with its ``status`` ("failed" or "timeout"), ``error``
    and ``extra`` fields (a traceback, the pid and device of a process that died)."""
    out = dict(record) if record is not None else {**cell.to_dict(), "started": None}
    out.update(status=status, error=error, **extra)
    out["finished"] = now()
    return out


@dataclass
class _State:
    """What the steps of one cell pass on to each other."""

    cell: Cell
    record: dict[str, Any]
    ds: Any = None
    cls: Any = None
    est: Any = None
    prep: Any = None
    out: Any = None
    cost: list = field(default_factory=list)
    diag: list = field(default_factory=list)

    @property
    def has_likelihood(self) -> bool:
        from densbench.estimators.base import LikelihoodKind

        return self.est.likelihood is not LikelihoodKind.NONE


def run_cell(cell: Cell, device: str = DEFAULT_DEVICE, *,
             compile: bool = False) -> dict[str, Any]:
    """Fit, score and sample one cell on ``device``, compiled where ``compile`` and the
    estimator is ``compilable``; return its record (never raises for the cell's
    own errors: they are recorded)."""
    from densbench.metrics.timing import PeakMemory, release_free_memory

    refused = cell.estimator.refused or cell.dataset.refused
    if refused:  # its check ran past a cell's limits: running it would too
        return failure_record(cell, "timeout", refused)
    st = _State(cell, {**cell.to_dict(), "status": "running", "error": None,
                       "started": now(), "pid": os.getpid(), "device": device})
    try:
        _prepare(st, device, compile)
        if cell.estimator.tune is not None:
            _tune(st)
        release_free_memory()  # what earlier cells of this process freed is not this cell's
        with PeakMemory() as mem:
            _fit(st)
            if st.has_likelihood:
                _score(st)
            if cell.n_samples != 0:
                _sample(st)
        _truth(st)
        if st.out.samples is not None and cell.sample_metrics:
            _sample_metrics(st)
        _costs(st, mem)
        _finish(st)
    except Exception as exc:  # a failing cell is recorded, the run goes on
        return failure_record(cell, "failed", f"{type(exc).__name__}: {exc}",
                              record=st.record, traceback=traceback.format_exc(limit=8))
    st.record["finished"] = now()
    return st.record


# -- the steps -------------------------------------------------------------------------

def _prepare(st: _State, device: str, compile: bool = False) -> None:
    """Load the data, make the estimator (the suite's hyperparameters over those the
    estimator takes from the run) and move the data into the estimator's space."""
    from densbench import estimators
    from densbench.data.transforms import prepare

    cell = st.cell
    st.ds = ds = _dataset(cell)
    st.cls = cls = estimators.get(cell.estimator.name)
    params = {**cls.run_params(ds, seed=cell.seed, device=device), **cell.estimator.params}
    if compile and cls.compilable:  # a run setting like the device: not in the cell id
        params.setdefault("compile", True)
    st.est = estimators.make(cell.estimator.name, **params)
    st.prep = prep = prepare(ds, discrete_native=cls.discrete_native,
                             logit_space=cls.logit_space, seed=cell.seed,
                             redraws_binarization=cls.redraws_binarization)
    st.record.update({
        "likelihood_kind": st.est.likelihood.value,
        "figure": prep.figure if st.has_likelihood else None,
        "transform": prep.transform,
        "data": {"dim": ds.dim, "kind": ds.kind, "levels": ds.levels,
                 "sequence_shape": (None if ds.sequence_shape is None
                                    else list(ds.sequence_shape)),
                 "n_train": len(ds.train), "n_val": len(ds.val),
                 "n_test": len(ds.test), "has_truth": ds.has_truth,
                 # what reports read, so that they need neither data nor loader
                 "info": _jsonable_info(ds.info),
                 **({"test_preview": _preview(ds.test[:PREVIEW_ROWS_2D])}
                    if ds.dim == 2 else {})},
        "effective_params": _jsonable(st.est.get_params()),
    })


def _tune(st: _State) -> None:
    """The suite's tuning protocol (:mod:`densbench.runner.tuning`): candidates judged on
    the validation split; the estimator is remade with the chosen values (fitted next)."""
    from densbench import estimators
    from densbench.metrics.catalogue import metric
    from densbench.runner.tuning import tune

    name = st.cell.estimator.name
    params, st.record["tuning"] = tune(name, st.est.get_params(deep=False),
                                       st.cell.estimator.tune, st.prep, st.cell.seed)
    st.est = estimators.make(name, **params)
    st.record["effective_params"] = _jsonable(st.est.get_params())
    st.cost.append(metric("tuning_seconds", st.record["tuning"]["seconds"], None))
    st.cost.append(metric("tuning_trials", float(len(st.record["tuning"]["trials"])), None))


def _fit(st: _State) -> None:
    from densbench.metrics import CellOutputs
    from densbench.metrics.catalogue import FIT_SECONDS, metric
    from densbench.metrics.timing import Stopwatch

    with Stopwatch() as sw:
        st.est.fit(st.prep.train, st.prep.val, **st.prep.fit_keywords())
    # compiling (or loading compiled code) is a cost of its own, not the fit's
    compiling = float(getattr(st.est, "compile_seconds_", 0.0))
    seconds = max(sw.seconds - compiling, 0.0)
    st.cost.append(metric(FIT_SECONDS, seconds, None))
    st.cost.append(metric("train_examples_per_s", len(st.prep.train) / max(seconds, 1e-9),
                          None))
    if getattr(st.est, "compile", False):
        st.cost.append(metric("compile_seconds", compiling, None))
        fallback = getattr(getattr(st.est, "training_", None), "compile_fallback", None)
        st.record["compile"] = {"compiled": fallback is None, "fallback": fallback}
    st.out = CellOutputs(dim=st.ds.dim, discrete=st.ds.kind == "discrete",
                         likelihood_kind=st.est.likelihood.value)


def _score(st: _State) -> None:
    """Log-likelihoods in the data's units (test, val and the first training rows; a
    stochastic bound, costly, on the test split only), the 2-D density grid and the
    estimator's own diagnostics."""
    from densbench.data.transforms import FIGURE_CONTINUOUS
    from densbench.estimators.base import LikelihoodKind

    stochastic = st.est.likelihood is LikelihoodKind.STOCHASTIC_BOUND
    for split in ("test",) if stochastic else ("test", "val", "train"):
        _score_split(st, split)
    if st.ds.dim == 2 and st.prep.figure == FIGURE_CONTINUOUS:
        st.record["density_grid"] = _density_grid(st.est, st.ds.test)
        if st.ds.truth is not None:  # reports draw the truth beside it from the record
            st.record["truth_grid"] = _truth_grid(st.ds)
    _diagnostics(st)


def _score_split(st: _State, split: str) -> None:
    from densbench.metrics.catalogue import SCORE_EXAMPLES_PER_S, metric
    from densbench.metrics.timing import Stopwatch

    X = getattr(st.prep, split)
    if split == "train":  # the overfitting check needs no more rows
        X = X[:MAX_TRAIN_SCORED]
    with Stopwatch() as sw:
        scores = st.est.score_samples(X)
    ll = scores + st.prep.log_jacobian[split][:len(scores)]
    bad, minus_inf = int((~np.isfinite(ll)).sum()), int(np.isneginf(ll).sum())
    if bad:
        raise FloatingPointError(
            f"{bad} of {len(ll)} {split} log-likelihoods are not finite" + (
                f" ({minus_inf} -inf: the model gives those rows zero density, or one too "
                "small for float64)" if minus_inf else ""))
    st.out.loglik[split] = ll
    if split == "test":
        st.cost.append(metric(SCORE_EXAMPLES_PER_S, len(ll) / max(sw.seconds, 1e-9), None))


def _diagnostics(st: _State) -> None:
    """The estimator's extra per-example figures; log-likelihood-like ones in data units.
    An effective sample size (``ess``) is kept for the likelihood metrics, and when it is
    too low every figure from those draws carries the low-ESS note."""
    from densbench.metrics import Metric, mean_se
    from densbench.metrics.likelihood import low_ess_note, with_note

    diag = {key: (np.asarray(values, dtype=np.float64), unit)
            for key, (values, unit) in st.est.diagnostics(st.prep.test).items()}
    st.out.test_ess = diag["ess"][0] if "ess" in diag else None
    note = low_ess_note(st.out.test_ess)
    for key, (values, unit) in diag.items():
        if unit == "loglik":
            values = st.prep.to_data_units("test", values)
            unit = "nats/example"
        m, se = mean_se(values)
        st.diag.append(with_note(Metric(f"test_{key}", m, se, unit), note))


def _sample(st: _State) -> None:
    """Draw samples (as many as validation rows unless the suite says) and keep a preview
    for the report's galleries, in the data's own space. A sampler that fails (or cannot
    sample) is noted in the record, which keeps its likelihoods."""
    from densbench.metrics.catalogue import SAMPLE_METRICS, metric
    from densbench.metrics.samples import failed
    from densbench.metrics.timing import Stopwatch

    n = st.cell.n_samples or len(st.ds.val)
    try:
        with Stopwatch() as sw:
            samples = st.est.sample(n, random_state=st.cell.seed)
        if not np.isfinite(samples).all():
            raise FloatingPointError(f"{int((~np.isfinite(samples)).sum())} sampled values "
                                     "are NaN or inf")
    except NotImplementedError as exc:  # it cannot sample: the likelihoods stand
        why = str(exc) or f"{st.cls.name}: sampling is not implemented"
        st.record["samples_note"] = f"no samples: {why}"
        return
    except Exception as exc:  # its sampler failed: so do its sample metrics, nothing else
        st.record["samples_note"] = f"no samples: {type(exc).__name__}: {exc}"
        if st.cell.sample_metrics:
            _record_sample_scores(st, dict.fromkeys(SAMPLE_METRICS, failed(exc)))
        return
    st.cost.append(metric("sample_examples_per_s", n / max(sw.seconds, 1e-9), None))
    st.out.samples = samples
    preview = st.prep.to_data_space(samples[:PREVIEW_ROWS_2D if st.ds.dim <= 2
                                            else PREVIEW_ROWS])
    st.record["samples_preview"] = _preview(preview)


def _truth(st: _State) -> None:
    """The true log-density of the test rows and of the samples, where it is known."""
    from densbench.data.transforms import FIGURE_CONTINUOUS

    if st.ds.truth is None or st.prep.figure != FIGURE_CONTINUOUS:
        return
    st.out.truth_loglik = {"test": st.ds.log_prob(st.ds.test)}
    if st.out.samples is not None:
        with np.errstate(divide="ignore"):
            st.out.truth_of_samples = st.ds.log_prob(st.out.samples)


def _sample_metrics(st: _State) -> None:
    """Samples against the TEST split, in the data's own space (their floor is added by the
    driver: :mod:`densbench.runner.floors`). A metric that fails is recorded as failed
    (see :func:`_record_sample_scores`); the cell's other figures stand."""
    from densbench.metrics.catalogue import SAMPLE_METRICS, metric
    from densbench.metrics.samples import failed
    from densbench.metrics.timing import Stopwatch

    with Stopwatch() as sw:
        try:
            samples = st.prep.to_data_space(st.out.samples)
            scores = _sample_scores(st.ds, samples, st.cell.seed)
        except Exception as exc:  # every metric failed alike
            scores = dict.fromkeys(SAMPLE_METRICS, failed(exc))
    _record_sample_scores(st, scores)
    st.cost.append(metric("sample_metrics_seconds", sw.seconds, None))


def _record_sample_scores(st: _State, scores: dict[str, Any]) -> None:
    """The ``samples_<m>`` rows; a failed metric's row has no value and a note, and its
    error and traceback go to ``sample_metric_errors`` (one entry per distinct failure,
    with the metrics it took)."""
    from densbench.metrics.catalogue import SAMPLES_PREFIX
    from densbench.metrics.samples import to_metrics

    st.diag.extend(to_metrics(scores, SAMPLES_PREFIX))
    errors: dict[tuple[str, str], list[str]] = {}
    for name, score in scores.items():
        if "error" in score.extra:
            errors.setdefault((score.extra["error"], score.extra["traceback"]), []).append(
                SAMPLES_PREFIX + name)
    if errors:
        st.record["sample_metric_errors"] = [
            {"metrics": names, "error": error, "traceback": tb}
            for (error, tb), names in errors.items()]


def _costs(st: _State, mem: Any) -> None:
    from densbench.metrics.catalogue import metric
    from densbench.metrics.timing import blas_thread_count, thread_count

    st.cost.append(metric("peak_rss_mb", mem.peak_bytes / 2**20, None))
    if mem.device_peak_bytes is not None:  # only where CUDA was used
        st.cost.append(metric("peak_device_mb", mem.device_peak_bytes / 2**20, None))
    try:
        st.cost.append(metric("n_parameters", float(st.est.n_parameters()), None))
    except NotImplementedError:  # an outside estimator need not count its parameters
        pass
    st.cost.append(metric("threads", float(thread_count()), None))
    st.cost.append(metric("blas_threads", float(blas_thread_count()), None))


def _finish(st: _State) -> None:
    """Every metric, the fitted scalars, the training curve and per-example figures."""
    from densbench.metrics import compute_all

    rec = st.record
    rec["metrics"] = [m.to_dict() for m in compute_all(st.out) + st.diag + st.cost]
    rec["fitted"] = _fitted_scalars(st.est)
    training = getattr(st.est, "training_", None)
    if training is not None:  # neural estimators: epochs, stop reason, curve
        rec["training"] = asdict(training)
    if "test" in st.out.loglik:
        rec["per_example"] = {"test_loglik": encode_array(st.out.loglik["test"])}
    rec["status"] = "ok"


# -- helpers ---------------------------------------------------------------------------

def _params_json(cell: Cell) -> str:
    return json.dumps(cell.dataset.params, sort_keys=True)


def _dataset(cell: Cell) -> Any:
    return _load_dataset(cell.dataset.name, _params_json(cell), cell.seed, cell.content)


@lru_cache(maxsize=8)
def _load_dataset(name: str, params_json: str, seed: int, content: str | None) -> Any:
    """The dataset of a cell, cached per process (``content``: a file's digest, so a
    changed file is read again)."""
    from densbench import data

    return data.load(name, seed=seed, **json.loads(params_json))


def floor_metrics(cell: Cell) -> list:
    """The floor of ``cell``: every sample metric of as many validation rows as the cell
    draws samples (a subset chosen by its seed when it draws fewer) against the test split,
    i.e. what a perfect sampler scores at that sample size, as ``floor_<m>`` metrics."""
    from densbench.metrics.catalogue import FLOOR_PREFIX
    from densbench.metrics.samples import to_metrics

    ds = _dataset(cell)
    n = cell.n_samples or len(ds.val)
    rng = np.random.default_rng([cell.seed, 0xF100])
    val = ds.val if n >= len(ds.val) else ds.val[rng.choice(len(ds.val), n, replace=False)]
    return to_metrics(_sample_scores(ds, val, cell.seed), FLOOR_PREFIX)


def _sample_scores(ds: Any, samples: np.ndarray, seed: int) -> dict:
    """Every sample metric of ``samples`` against the test split's reference rows; for
    labelled images the Frechet distance is taken in a trained classifier's feature space."""
    from densbench.metrics.features import classifier_features
    from densbench.metrics.samples import failed, frechet_distance, sample_metrics

    ref = ds.test[:SAMPLE_REFERENCE_ROWS]
    scores = sample_metrics(samples, ref, train=ds.train, seed=seed, keep_going=True)
    if ds.image_shape is not None:
        try:
            feats = classifier_features(ds)
            if feats is not None:
                scores["frechet_distance"] = frechet_distance(samples, ref, features=feats)
        except Exception as exc:  # this metric's failure, not the others'
            scores["frechet_distance"] = failed(exc)
    return scores


def _fitted_scalars(est: Any) -> dict[str, Any]:
    """Learned scalar hyperparameters (``bandwidth_``, ``n_components_``...) for provenance."""
    out = {}
    for key, value in vars(est).items():
        if key.endswith("_") and not key.startswith("_") \
                and key not in ("n_features_in_", "compile_seconds_"):  # a cost row
            if isinstance(value, bool | int | float | str | np.integer | np.floating):
                out[key] = value.item() if isinstance(value, np.generic) else value
    return out


def density_grid_axes(data: np.ndarray, size: int = GRID_SIZE) -> tuple[np.ndarray, ...]:
    """The grid on which 2-D densities are drawn: the data's 0.5-99.5% range, padded."""
    lo, hi = np.percentile(data, 0.5, axis=0), np.percentile(data, 99.5, axis=0)
    pad = 0.15 * (hi - lo)
    return tuple(np.linspace(lo[j] - pad[j], hi[j] + pad[j], size) for j in range(2))


def _density_grid(est: Any, data: np.ndarray) -> dict[str, Any]:
    """The estimator's log-density on a GRID_SIZE^2 grid over the data (for reports)."""
    gx, gy = density_grid_axes(data)
    xx, yy = np.meshgrid(gx, gy)
    logp = est.score_samples(np.column_stack([xx.ravel(), yy.ravel()]))
    return {"x": [float(gx[0]), float(gx[-1])], "y": [float(gy[0]), float(gy[-1])],
            "size": GRID_SIZE, **encode_array(logp)}


def _truth_grid(ds: Any) -> dict[str, Any]:
    """The true log-density on :func:`_density_grid`'s grid (encoded; -inf where it is 0)."""
    xx, yy = np.meshgrid(*density_grid_axes(ds.test))
    with np.errstate(divide="ignore"):
        return encode_array(ds.log_prob(np.column_stack([xx.ravel(), yy.ravel()])))


def _preview(rows: np.ndarray) -> dict[str, Any]:
    """Rows (n, d) as a record stores them for reports: shape and encoded values."""
    return {"shape": list(rows.shape), **encode_array(np.ravel(rows))}


def _jsonable_info(info: Any) -> dict[str, Any]:
    """A :class:`~densbench.data.base.DatasetInfo` as JSON-ready values."""
    return json.loads(json.dumps(asdict(info), default=str))


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in params.items():
        if isinstance(v, np.generic):
            v = v.item()
        out[k] = v if isinstance(v, bool | int | float | str | list | tuple | type(None)) \
            else repr(v)
    return out
