"""Executors: run cells in-process or in a local process pool; the driver writes records.

:func:`run_cell` is a pure function of a cell (it writes nothing); :func:`run_suite` is the
driver and the only caller of the store's writer, so records are written by one process.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import signal
import threading
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from densbench.runner.plan import Cell, Spec
from densbench.runner.store import RunStore, encode_array

__all__ = ["CellTimeout", "Progress", "RunSummary", "run_cell", "run_cells"]


#: Metrics that measure cost (they vary from run to run; everything else is reproducible).
COST_METRICS = ("fit_seconds", "train_examples_per_s", "score_examples_per_s",
                "sample_examples_per_s", "sample_metrics_seconds", "peak_rss_mb",
                "peak_device_mb", "threads", "blas_threads")

#: The training split's log-likelihood (an overfitting check) is taken on its first rows.
MAX_TRAIN_SCORED = 2000
#: Sample metrics compare with the first rows of the test split (the pairwise metrics
#: cost O((n + m)^2); the floor uses the same reference rows).
SAMPLE_REFERENCE_ROWS = 2000
#: Samples kept in each record for the report's galleries (2-D scatter / image grid).
PREVIEW_ROWS_2D, PREVIEW_ROWS = 2000, 64
#: Side of the grid on which 2-D densities are stored for the report.
GRID_SIZE = 64


class CellTimeout(Exception):
    """A cell exceeded its time budget."""


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


@contextlib.contextmanager
def _time_limit(seconds: float | None) -> Iterator[None]:
    """Raise :class:`CellTimeout` in this thread after ``seconds`` (main thread, POSIX only;
    elsewhere the limit is not enforced). Compiled code is interrupted when it returns to
    Python."""
    usable = (seconds is not None and hasattr(signal, "setitimer")
              and threading.current_thread() is threading.main_thread())
    if not usable:
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise CellTimeout(f"cell exceeded its time budget of {seconds:g} s")

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, float(seconds))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@lru_cache(maxsize=8)
def _load_dataset(name: str, params_json: str, seed: int):
    import json

    from densbench import data

    return data.load(name, seed=seed, **json.loads(params_json))


@lru_cache(maxsize=32)
def _floor(name: str, params_json: str, seed: int, n: int) -> tuple:
    """Sample metrics of ``n`` validation rows against the test split: the floor, i.e. what
    a perfect sampler scores at that sample size (cached per dataset, seed and size)."""
    from densbench.metrics.samples import to_metrics

    ds = _load_dataset(name, params_json, seed)
    rng = np.random.default_rng([seed, 0xF100])
    val = ds.val if n >= len(ds.val) else ds.val[rng.choice(len(ds.val), n, replace=False)]
    return tuple(to_metrics(_sample_scores(ds, val, seed), "floor_"))


def _sample_scores(ds: Any, samples: np.ndarray, seed: int) -> dict:
    """Every sample metric of ``samples`` against the test split's reference rows; for
    labelled images the Frechet distance is taken in a trained classifier's feature space."""
    from densbench.metrics.features import classifier_features
    from densbench.metrics.samples import frechet_distance, sample_metrics

    ref = ds.test[:SAMPLE_REFERENCE_ROWS]
    scores = sample_metrics(samples, ref, train=ds.train, seed=seed)
    feats = classifier_features(ds) if ds.image_shape is not None else None
    if feats is not None:
        scores["frechet_distance"] = frechet_distance(samples, ref, features=feats)
    return scores


def _fitted_scalars(est: Any) -> dict[str, Any]:
    """Learned scalar hyperparameters (``bandwidth_``, ``n_components_``...) for provenance."""
    out = {}
    for key, value in vars(est).items():
        if key.endswith("_") and not key.startswith("_") and key != "n_features_in_":
            if isinstance(value, bool | int | float | str | np.integer | np.floating):
                out[key] = value.item() if isinstance(value, np.generic) else value
    return out


def run_cell(cell: Cell) -> dict[str, Any]:
    """Fit, score and sample one cell; return its record (never raises for cell errors)."""
    import json

    from densbench import estimators
    from densbench.data.transforms import FIGURE_CONTINUOUS, prepare
    from densbench.metrics import CellOutputs, Metric, compute_all, mean_se
    from densbench.metrics.timing import (
        PeakMemory,
        Stopwatch,
        blas_thread_count,
        release_free_memory,
        thread_count,
    )

    record: dict[str, Any] = {
        **cell.to_dict(), "status": "running", "error": None, "started": _now(),
        "pid": os.getpid(),
    }
    try:
        with _time_limit(cell.timeout_s):
            ds = _load_dataset(cell.dataset.name,
                               json.dumps(cell.dataset.params, sort_keys=True), cell.seed)
            cls = estimators.get(cell.estimator.name)
            params = dict(cell.estimator.params)
            # data-dependent defaults: the seed, the number of levels of discrete data for
            # estimators that model them natively, and the (T, D) of sequence data for
            # estimators that read rows as sequences
            if "random_state" in cls._get_param_names():
                params.setdefault("random_state", cell.seed)
            if (cls.discrete_native and ds.kind == "discrete"
                    and "levels" in cls._get_param_names()):
                params.setdefault("levels", ds.levels)
            if ds.sequence_shape is not None and "sequence_shape" in cls._get_param_names():
                params.setdefault("sequence_shape", list(ds.sequence_shape))
            est = estimators.make(cell.estimator.name, **params)
            prep = prepare(ds, discrete_native=cls.discrete_native, seed=cell.seed)
            record.update({
                "likelihood_kind": cls.likelihood.value,
                "figure": prep.figure if cls.likelihood.value != "none" else None,
                "transform": prep.transform,
                "data": {"dim": ds.dim, "kind": ds.kind, "levels": ds.levels,
                         "sequence_shape": (None if ds.sequence_shape is None
                                            else list(ds.sequence_shape)),
                         "n_train": len(ds.train), "n_val": len(ds.val),
                         "n_test": len(ds.test), "has_truth": ds.has_truth},
                "effective_params": _jsonable(est.get_params()),
            })
            cost: list[Metric] = []
            diag: list[Metric] = []
            # what earlier cells of this process freed is not this cell's memory
            release_free_memory()
            with PeakMemory() as mem:
                with Stopwatch() as fit_sw:
                    est.fit(prep.train, prep.val)
                cost.append(Metric("fit_seconds", fit_sw.seconds, None, "s"))
                cost.append(Metric("train_examples_per_s",
                                   len(prep.train) / max(fit_sw.seconds, 1e-9), None,
                                   "examples/s"))
                out = CellOutputs(dim=ds.dim, discrete=ds.kind == "discrete",
                                  likelihood_kind=cls.likelihood.value)
                if cls.likelihood.value != "none":
                    # a stochastic bound (IWAE with K = 5000) is costly: test split only
                    splits = (("test",) if cls.likelihood.value == "stochastic_bound"
                              else ("test", "val", "train"))
                    for split in splits:
                        X_split = getattr(prep, split)
                        if split == "train":  # the overfitting check needs no more rows
                            X_split = X_split[:MAX_TRAIN_SCORED]
                        with Stopwatch() as sw:
                            scores = est.score_samples(X_split)
                        ll = scores + prep.log_jacobian[split][:len(scores)]
                        bad = int((~np.isfinite(ll)).sum())
                        if bad:
                            raise FloatingPointError(
                                f"{bad} of {len(ll)} {split} log-likelihoods are not finite")
                        out.loglik[split] = ll
                        if split == "test":
                            cost.append(Metric("score_examples_per_s",
                                               len(ll) / max(sw.seconds, 1e-9), None,
                                               "examples/s"))
                    if ds.dim == 2 and prep.figure == FIGURE_CONTINUOUS:
                        record["density_grid"] = _density_grid(est, ds.test)
                    for key, (values, unit) in est.diagnostics(prep.test).items():
                        values = np.asarray(values, dtype=np.float64)
                        if unit == "loglik":
                            values = prep.to_data_units("test", values)
                            unit = "nats/example"
                        m, se = mean_se(values)
                        diag.append(Metric(f"test_{key}", m, se, unit))
                if cls.can_sample:
                    n_samples = cell.n_samples or len(ds.val)
                    with Stopwatch() as sw:
                        samples = est.sample(n_samples, random_state=cell.seed)
                    if not np.isfinite(samples).all():
                        raise FloatingPointError("samples contain NaN or inf")
                    cost.append(Metric("sample_examples_per_s",
                                       n_samples / max(sw.seconds, 1e-9), None, "examples/s"))
                    out.samples = samples
                    # a preview for the report's galleries, in the data's own space
                    n_keep = PREVIEW_ROWS_2D if ds.dim <= 2 else PREVIEW_ROWS
                    preview = prep.to_data_space(samples[:n_keep])
                    record["samples_preview"] = {"shape": list(preview.shape),
                                                 **encode_array(preview.ravel())}
            if ds.truth is not None and prep.figure == FIGURE_CONTINUOUS:
                out.truth_loglik = {"test": ds.log_prob(ds.test)}
                if out.samples is not None:
                    with np.errstate(divide="ignore"):
                        out.truth_of_samples = ds.log_prob(out.samples)
            if out.samples is not None and cell.sample_metrics:
                # samples against the TEST split, in the data's own space, beside the floor
                # (validation vs test: what a perfect sampler scores at that sample size)
                from densbench.metrics.samples import to_metrics

                with Stopwatch() as sw:
                    scores = _sample_scores(ds, prep.to_data_space(out.samples), cell.seed)
                diag.extend(to_metrics(scores, "samples_"))
                diag.extend(_floor(cell.dataset.name,
                                   json.dumps(cell.dataset.params, sort_keys=True),
                                   cell.seed, len(out.samples)))
                cost.append(Metric("sample_metrics_seconds", sw.seconds, None, "s"))
            cost.append(Metric("peak_rss_mb", mem.peak_bytes / 2**20, None, "MB"))
            if mem.device_peak_bytes is not None:  # only where CUDA was used
                cost.append(Metric("peak_device_mb", mem.device_peak_bytes / 2**20, None,
                                   "MB"))
            cost.append(Metric("n_parameters", float(est.n_parameters()), None, "count"))
            cost.append(Metric("threads", float(thread_count()), None, "count"))
            cost.append(Metric("blas_threads", float(blas_thread_count()), None, "count"))
            metrics = compute_all(out) + diag + cost
            record["metrics"] = [m.to_dict() for m in metrics]
            record["fitted"] = _fitted_scalars(est)
            training = getattr(est, "training_", None)
            if training is not None:  # neural estimators: epochs, stop reason, curve
                from dataclasses import asdict

                record["training"] = asdict(training)
            if "test" in out.loglik:
                record["per_example"] = {"test_loglik": encode_array(out.loglik["test"])}
            record["status"] = "ok"
    except CellTimeout as exc:
        record.update(status="timeout", error=str(exc))
    except Exception as exc:  # a failing cell is recorded, the run goes on
        record.update(status="failed", error=f"{type(exc).__name__}: {exc}",
                      traceback=traceback.format_exc(limit=8))
    record["finished"] = _now()
    return record


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


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in params.items():
        if isinstance(v, np.generic):
            v = v.item()
        out[k] = v if isinstance(v, bool | int | float | str | list | tuple | type(None)) \
            else repr(v)
    return out


# -- the driver ------------------------------------------------------------------------

@dataclass
class Progress:
    """An event for the progress callback: a cell finished (or was skipped)."""

    done: int
    total: int
    cell: Cell
    status: str


@dataclass
class RunSummary:
    total: int = 0
    skipped: int = 0
    ok: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)

    @property
    def n_failed(self) -> int:
        return len(self.failed)


def _worker_init(threads: int) -> None:
    # Thread discipline: N workers x (cores / N) threads each (PyTorch and every BLAS),
    # never oversubscribed.
    from densbench.metrics.timing import limit_threads, steady_allocator

    limit_threads(threads)
    steady_allocator()


EXECUTORS = ("local", "dask")


def run_cells(cells: list[Cell], store: RunStore, *, workers: int = 1,
              retry_failed: bool = False, executor: str = "local",
              scheduler: str | None = None,
              on_progress: Callable[[Progress], None] | None = None) -> RunSummary:
    """Run every cell not yet recorded in ``store``; write each record as it finishes.

    ``executor="local"`` runs in this process (``workers=1``) or in a local process pool;
    ``executor="dask"`` submits the cells to a Dask distributed scheduler at ``scheduler``
    (``tcp://host:8786``) or, without an address, to a LocalCluster of ``workers``
    processes. Whatever the executor, this process alone writes the records. Worker
    processes started here are set up for measurement: cores / workers threads and
    :func:`~densbench.metrics.timing.steady_allocator` (the CLI does the latter for
    itself; a caller running cells in its own process decides for its process). The
    workers of an external Dask scheduler are left as their owner started them: each
    record's ``threads`` and ``blas_threads`` say what they used.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; known: {', '.join(EXECUTORS)}")
    summary = RunSummary(total=len(cells))
    done_ids = store.finished_ids(include_failed=not retry_failed)
    todo = [c for c in cells if c.id not in done_ids]
    summary.skipped = len(cells) - len(todo)
    done = summary.skipped

    def finish(cell: Cell, record: dict[str, Any]) -> None:
        nonlocal done
        store.write(record)
        done += 1
        if record["status"] == "ok":
            summary.ok += 1
        else:
            summary.failed.append(record)
        if on_progress:
            on_progress(Progress(done, len(cells), cell, record["status"]))

    if executor == "dask":
        _run_dask(todo, workers, scheduler, finish)
        return summary
    if workers <= 1:
        for cell in todo:
            finish(cell, run_cell(cell))
        return summary

    import multiprocessing as mp

    threads = max(1, (os.cpu_count() or 1) // workers)
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init,
                             initargs=(threads,)) as pool:
        pending: dict[Future, Cell] = {pool.submit(run_cell, c): c for c in todo}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                cell = pending.pop(fut)
                try:
                    record = fut.result()
                except Exception as exc:  # the worker process died
                    record = {**cell.to_dict(), "status": "failed", "started": None,
                              "finished": _now(),
                              "error": f"worker process failed: {type(exc).__name__}: {exc}"}
                finish(cell, record)
    return summary


def _run_dask(todo: list[Cell], workers: int, scheduler: str | None,
              finish: Callable[[Cell, dict[str, Any]], None]) -> None:
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise ValueError("the dask executor needs dask.distributed: "
                         "pip install 'densbench[dask]'") from None
    cluster = None
    if scheduler is None:
        n = max(1, workers)
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
        client.run(_worker_init, max(1, (os.cpu_count() or 1) // n))
    else:
        try:
            client = Client(scheduler, timeout=5)
        except OSError as exc:
            raise ValueError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") \
                from None
    try:
        futures = {client.submit(run_cell, c, pure=False, key=f"cell-{c.id}"): c
                   for c in todo}
        for fut in as_completed(futures):
            cell = futures[fut]
            try:
                record = fut.result()
            except Exception as exc:  # the worker died or the task was lost
                record = {**cell.to_dict(), "status": "failed", "started": None,
                          "finished": _now(),
                          "error": f"dask worker failed: {type(exc).__name__}: {exc}"}
            finish(cell, record)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def cell_from_dict(d: dict[str, Any]) -> Cell:
    """Rebuild a :class:`Cell` from a record (for retries and reports)."""
    return Cell(Spec(d["estimator"]["name"], d["estimator"].get("params", {})),
                Spec(d["dataset"]["name"], d["dataset"].get("params", {})),
                int(d["seed"]), d.get("timeout_s"), d.get("n_samples"),
                d.get("sample_metrics", True))




# -- a whole run: manifest + cells ----------------------------------------------------

def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for pkg in ("densbench", "torch", "numpy", "scipy", "scikit-learn", "pandas"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[pkg] = metadata.version(pkg)
    return out


def _git(*args: str) -> str | None:
    import subprocess
    from pathlib import Path

    here = Path(__file__).resolve().parent
    try:
        res = subprocess.run(["git", *args], cwd=here, capture_output=True, text=True,
                             timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() if res.returncode == 0 else None


def _git_commit() -> str | None:
    """HEAD of the densbench checkout, with ``+dirty`` when it has uncommitted changes."""
    head = _git("rev-parse", "HEAD")
    if not head:
        return None
    status = _git("status", "--porcelain", "--untracked-files=no")
    return head + ("+dirty" if status else "")


def _machine() -> dict[str, Any]:
    import platform

    return {"platform": platform.platform(), "processor": platform.processor(),
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "hostname": platform.node()}


def run_suite(suite: Any, store: RunStore, *, command: str = "", workers: int = 1,
              retry_failed: bool = False, executor: str = "local",
              scheduler: str | None = None,
              on_progress: Callable[[Progress], None] | None = None) -> RunSummary:
    """Run ``suite`` into ``store``: manifest first, then cells (resuming), then the end time."""
    manifest = store.read_manifest()
    invocation = {"command": command, "started": _now(), "finished": None,
                  "workers": workers, "executor": executor, "scheduler": scheduler,
                  "suite": suite.name, "n_cells": len(suite.cells())}
    manifest.update({
        "schema": 1,
        "suite": {"name": suite.name, "source": suite.source, "seeds": list(suite.seeds),
                  "estimators": [s.to_dict() for s in suite.estimators],
                  "datasets": [s.to_dict() for s in suite.datasets],
                  "cell_timeout_s": suite.cell_timeout_s},
        "versions": _versions(), "git_commit": _git_commit(), "machine": _machine(),
    })
    manifest.setdefault("invocations", []).append(invocation)
    store.write_manifest(manifest)
    summary = run_cells(suite.cells(), store, workers=workers, retry_failed=retry_failed,
                        executor=executor, scheduler=scheduler, on_progress=on_progress)
    invocation.update(finished=_now(), ok=summary.ok, failed=summary.n_failed,
                      skipped=summary.skipped)
    store.write_manifest(manifest)
    return summary
