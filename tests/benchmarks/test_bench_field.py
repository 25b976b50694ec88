"""fit and score_samples of EVERY registered estimator at the field's sizes, on synthetic
arrays in the format of the real sets, with peak memory (groups ``field-fit-<format>`` and
``field-score-<format>``):

- ``mnist``: 60,000 training, 10,000 validation and 10,000 test rows of 784 pixels with
  256 levels, stored as ``uint8`` and dequantized by ``data/transforms.py`` as the runner
  does (a discrete-native estimator gets the levels); ink in the middle, a 2-pixel border
  that is always 0 (constant columns, as in MNIST), a quarter of the ink saturated.
- ``power``: the UCI POWER set after the MAF paper's preprocessing, 1,659,917 / 184,435 /
  204,928 rows of 6 continuous columns: a correlated Gaussian mixture with one column of
  jittered integer levels (POWER's time and sub-metering columns are such).

Parameters: the published-protocol suite's (``densbench/suites/published.toml``) where it
runs the estimator on that set, else the estimator's defaults. A full neural fit takes
hours (thousands of epochs at the papers' settings), so a neural fit here is one epoch cut
at :data:`EPOCH_BUDGET_S` seconds of training; the entry records the training examples per
second and the extrapolated ``epoch_s`` (training rows over that rate; an epoch's
validation pass not included), from which a cell's cost is ``epochs x epoch_s``. Scoring
runs on the first :data:`SCORE_ROWS` test rows and records rows per second and the
extrapolated ``test_split_s``. Peak memory: the process's peak resident memory during the
call and its rise above the memory at the call's start (freed heap memory handed back
first, :func:`densbench.metrics.timing.release_free_memory`), which counts the estimator's
copies of the data and its working memory.

Sizes: with ``DENSBENCH_BENCH_FULL=1`` (``tox -e bench``) the sizes above (tens of minutes
on 2 cores for every estimator); otherwise (CI's one-round pass) the same formats at a few
dozen rows with each estimator's ``test_params()`` and one epoch, seconds in all, so that
the groups cannot rot.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import pytest

import densbench as db
from densbench.data.base import Dataset
from densbench.data.transforms import prepare
from densbench.metrics.timing import PeakMemory, release_free_memory

from .conftest import BENCH_THREADS

FULL = os.environ.get("DENSBENCH_BENCH_FULL") == "1"
#: threads (tests/benchmarks/conftest.py): the benchmarks' at full size; one at CI's small
#: size, where the arrays are too small to share and, on a busy machine, a BLAS call on two
#: threads waits for a core (a 784-D factor analysis of 200 rows took minutes on 2 threads
#: under load, seconds on one)
THREADS = BENCH_THREADS if FULL else 1
#: seconds of training a neural fit runs at full size before its epoch is cut short
EPOCH_BUDGET_S = float(os.environ.get("DENSBENCH_BENCH_EPOCH_S", "60"))


@dataclass(frozen=True)
class Format:
    name: str
    #: the published suite's dataset of this format
    published: str
    sizes: tuple[int, int, int]
    small: tuple[int, int, int]
    #: test rows scored at full size
    score_rows: int


FORMATS = {
    "mnist": Format("mnist", "mnist", (60_000, 10_000, 10_000), (64, 16, 16), 1_000),
    "power": Format("power", "uci_power", (1_659_917, 184_435, 204_928), (256, 64, 64),
                    5_000),
}


def _mnist_like(n: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:28, 0:28]
    r2 = ((yy - 13.5) ** 2 + (xx - 13.5) ** 2) / 49.0
    ink_p = 0.5 * np.exp(-r2)
    border = (yy < 2) | (yy > 25) | (xx < 2) | (xx > 25)
    ink_p[border] = 0.0
    ink = rng.random((n, 784), dtype=np.float32) < ink_p.ravel().astype(np.float32)
    level = np.where(rng.random((n, 784), dtype=np.float32) < 0.25, 255,
                     rng.integers(1, 255, size=(n, 784), dtype=np.uint8))
    return (ink * level).astype(np.uint8)


def _power_like(n: int, rng: np.random.Generator) -> np.ndarray:
    mix = np.random.default_rng(1).standard_normal((6, 6)) / math.sqrt(6)
    z = rng.standard_normal((n, 6))
    z[: n // 3] += 2.0  # two modes
    X = z @ mix
    X[:, 5] = np.floor(4 * X[:, 5]) / 4 + rng.random(n) * 0.01  # jittered levels
    return X


def make_dataset(fmt: Format) -> Dataset:
    sizes = fmt.sizes if FULL else fmt.small
    rng = np.random.default_rng(0)
    if fmt.name == "mnist":
        splits = [_mnist_like(n, rng) for n in sizes]
        return Dataset(f"{fmt.name}_format", 0, *splits, kind="discrete", levels=256,
                       image_shape=(28, 28))
    return Dataset(f"{fmt.name}_format", 0, *(_power_like(n, rng) for n in sizes))


#: What the data decide, never the tiny settings.
DATA_KEYS = ("image_shape", "levels")


def params(name: str, fmt: Format, ds: Dataset) -> dict:
    """The runner's parameters for ``name`` on this format (see the module docstring)."""
    cls = db.estimators.get(name)
    neural = "max_epochs" in getattr(cls, "training_defaults", {})
    if not FULL:
        # tiny settings, but the shape and levels of this format's data (the tiny settings
        # of an image model name the conformance checks' 4x4 images)
        tiny = {k: v for k, v in cls.test_params().items() if k not in DATA_KEYS}
        given = {**tiny, **({"max_epochs": 1} if neural else {})}
    else:
        from densbench.runner.plan import builtin_suite

        given = next((dict(s.params) for s in builtin_suite("published").estimators
                      if s.name == name and (s.only is None or fmt.published in s.only)),
                     {})
        if neural:
            given.update(max_epochs=1, time_budget_s=EPOCH_BUDGET_S)
    return {**cls.run_params(ds, seed=0, device="cpu"), **given}


@pytest.fixture(scope="module")
def field():
    """The dataset of one format and its prepared splits (continuous view, and the raw
    levels for discrete-native estimators), made on first use; one format held at a time
    (the cases run format by format)."""
    held: dict = {}

    def get(fmt: Format, discrete_native: bool):
        if held.get("format") != fmt.name:
            held.clear()
            held.update(format=fmt.name, dataset=make_dataset(fmt))
        ds = held["dataset"]
        native = discrete_native and ds.kind == "discrete"
        if native not in held:
            held[native] = prepare(ds, discrete_native=native, seed=0)
        return ds, held[native]

    return get


@pytest.fixture(scope="module")
def fitted():
    return {}


def _memory(benchmark, pm: PeakMemory) -> None:
    benchmark.extra_info["peak_rss_mb"] = pm.peak_bytes / 2**20
    benchmark.extra_info["rss_rise_mb"] = pm.delta_bytes / 2**20


#: (format, estimator), format by format
CASES = [(fmt, name) for fmt in FORMATS for name in db.estimators.names()]


@pytest.mark.parametrize(("fmt", "name"), CASES)
def test_field_fit(benchmark, name, fmt, field, fitted):
    f = FORMATS[fmt]
    cls = db.estimators.get(name)
    ds, prep = field(f, cls.discrete_native)
    if cls.image_model and ds.image_shape is None:
        pytest.skip("an image model: timed on the format that holds images")
    kw = params(name, f, ds)
    benchmark.group = f"field-fit-{fmt}"
    benchmark.extra_info.update(rows=len(prep.train), dim=ds.dim, params=repr(kw))

    def fit():
        release_free_memory()
        with PeakMemory() as pm:
            est = db.estimators.make(name, **kw).fit(prep.train, prep.val)
        return est, pm

    est, pm = benchmark.pedantic(fit, rounds=1, iterations=1)
    _memory(benchmark, pm)
    training = getattr(est, "training_", None)
    if training is not None and training.seconds > 0:
        rate = training.examples_seen / training.seconds
        benchmark.extra_info.update(train_examples_per_s=rate, epochs_run=training.epochs,
                                    epoch_s=len(prep.train) / rate,
                                    stopped=training.stopped)
    fitted[name, fmt] = est


@pytest.mark.parametrize(("fmt", "name"), CASES)
def test_field_score(benchmark, name, fmt, field, fitted):
    est = fitted.get((name, fmt))
    if est is None:
        pytest.skip("its fit did not run")
    if est.likelihood is db.estimators.LikelihoodKind.NONE:
        pytest.skip("implicit model")
    f = FORMATS[fmt]
    _, prep = field(f, type(est).discrete_native)
    T = prep.test[:f.score_rows]
    benchmark.group = f"field-score-{fmt}"
    benchmark.extra_info.update(rows=len(T))

    def score():
        release_free_memory()
        with PeakMemory() as pm:
            out = est.score_samples(T)
        return out, pm

    out, pm = benchmark.pedantic(score, rounds=1, iterations=1)
    _memory(benchmark, pm)
    assert out.shape == (len(T),) and np.isfinite(out).all()
    stats = getattr(benchmark, "stats", None)
    if stats is not None:
        rate = len(T) / float(stats.stats.min)
        benchmark.extra_info.update(rows_per_s=rate, test_split_s=len(prep.test) / rate)
