import os
import threading
import time

import numpy as np
import pytest
import torch

import densbench as db
from densbench.estimators.base import DensityEstimator
from densbench.metrics.catalogue import SAMPLE_METRICS
from densbench.metrics.timing import blas_thread_count
from densbench.runner.cell import floor_metrics
from densbench.runner.execute import run_cell, run_cells
from densbench.runner.executors import RunOptions
from densbench.runner.executors.pool import PoolExecutor
from densbench.runner.plan import Cell, Spec, SuiteError, load_suite
from densbench.runner.store import RunStore, decode_array
from densbench.runner.supervise import assign_devices, cell_limits
from tests import gated

SMALL = {"n_train": 300, "n_val": 100, "n_test": 200}


def metrics_of(rec):
    return {m["metric"]: m for m in rec["metrics"]}


def test_ok_cell_records_likelihood_truth_and_costs():
    rec = run_cell(Cell(Spec("gaussian"), Spec("banana", SMALL), 0))
    assert rec["status"] == "ok", rec.get("traceback")
    m = metrics_of(rec)
    for key in ("test_loglik", "val_loglik", "train_loglik", "test_loglik_per_dim",
                "kl_to_truth", "test_loglik_truth", "fit_seconds", "score_examples_per_s",
                "sample_examples_per_s", "peak_rss_mb", "n_parameters", "threads",
                "blas_threads"):
        assert key in m, key
    assert m["test_loglik"]["unit"] == "nats/example" and m["kl_to_truth"]["unit"] == "nats"
    assert m["n_parameters"]["value"] == 2 + 3  # mean + covariance of a 2-D Gaussian
    per_ex = decode_array(rec["per_example"]["test_loglik"])
    assert per_ex.shape == (200,)
    assert np.mean(per_ex) == pytest.approx(m["test_loglik"]["value"], abs=1e-12)
    # the KL estimate is the paired mean difference to the truth
    ds = db.data.load("banana", seed=0, **SMALL)
    assert m["kl_to_truth"]["value"] == pytest.approx(
        np.mean(ds.log_prob(ds.test) - per_ex), abs=1e-12)


def test_discrete_data_report_bits_per_dim_in_data_units():
    rec = run_cell(Cell(Spec("diag_gaussian"), Spec("digits"), 0))
    assert rec["status"] == "ok", rec.get("traceback")
    assert rec["figure"].startswith("dequantized lower bound")
    m = metrics_of(rec)
    bpd = m["test_bits_per_dim"]["value"]
    assert bpd == pytest.approx(-m["test_loglik"]["value"] / (64 * np.log(2)))
    # 17 levels: a uniform model scores log2(17) = 4.09 bits/dim; a fitted one does better
    assert 0 < bpd < np.log2(17)
    assert "kl_to_truth" not in m
    assert rec["data"]["sequence_shape"] == [8, 8]


def test_a_logit_space_estimator_is_scored_in_bits_per_dim_of_the_levels(tmp_path):
    from densbench.data.transforms import prepare

    (tmp_path / "logit_model.py").write_text(
        "from densbench.estimators.gaussian import DiagGaussian\n\n\n"
        "class LogitDiagGaussian(DiagGaussian):\n"
        "    \"\"\"A diagonal Gaussian of the dequantized pixels in logit space.\"\"\"\n\n"
        "    logit_space = True\n")
    spec = f"{tmp_path / 'logit_model.py'}:LogitDiagGaussian"
    rec = run_cell(Cell(Spec(spec), Spec("digits"), 0))
    assert rec["status"] == "ok", rec.get("traceback")
    assert rec["transform"].endswith("logit transform, logit(1e-06 + (1 - 2 * 1e-06) y)")
    prep = prepare(db.data.load("digits", seed=0), discrete_native=False, logit_space=True)
    est = db.estimators.get(spec)().fit(prep.train, prep.val)
    want = np.mean(est.score_samples(prep.test) + prep.log_jacobian["test"])
    assert metrics_of(rec)["test_loglik"]["value"] == pytest.approx(want, rel=1e-12)


def test_sequence_shape_is_filled_from_the_dataset_and_recorded():
    small = {"n_train": 200, "n_val": 50, "n_test": 50, "n_steps": 4}
    rec = run_cell(Cell(Spec("hmm", {"n_states": 3, "n_iter": 20}), Spec("hmm_seq", small), 0))
    assert rec["status"] == "ok", rec.get("traceback")
    assert rec["data"]["sequence_shape"] == [4, 2]
    assert rec["effective_params"]["sequence_shape"] == [4, 2]
    assert "kl_to_truth" in metrics_of(rec)
    # a dataset without sequence metadata leaves the estimator's default (None)
    rec = run_cell(Cell(Spec("hmm", {"n_states": 2}), Spec("banana", SMALL), 0))
    assert rec["status"] == "ok", rec.get("traceback")
    assert rec["data"]["sequence_shape"] is None
    assert rec["effective_params"]["sequence_shape"] is None


def test_failing_cell_is_recorded_not_raised():
    rec = run_cell(Cell(Spec("kde", {"bandwidth": -1}), Spec("banana", SMALL), 0))
    assert rec["status"] == "failed"
    assert "kde: bandwidth must be" in rec["error"]


class _NaNEstimator(DensityEstimator):
    """Scores NaN on purpose."""

    def __init__(self, *, random_state=0):
        self.random_state = random_state

    def _fit(self, X, X_val):
        pass

    def _score_samples(self, X):
        return np.full(len(X), -np.inf)

    def _sample(self, n, rng):
        return rng.standard_normal((n, self.n_features_in_))

    def _n_parameters(self):
        return 1


def test_non_finite_likelihood_fails_the_cell(monkeypatch):
    _NaNEstimator.name = "nan_test"
    monkeypatch.setitem(db.estimators.REGISTRY._items, "nan_test", _NaNEstimator)
    rec = run_cell(Cell(Spec("nan_test"), Spec("banana", SMALL), 0))
    assert rec["status"] == "failed"
    assert "not finite" in rec["error"]


@pytest.mark.slow
def test_time_budget_stops_the_cell_in_compiled_code_and_the_run_goes_on(tmp_path):
    # KDE's bandwidth search spends its time in PyTorch kernels and a worker thread, which
    # a signal in the cell's own thread could not interrupt: the supervisor kills the
    # worker process at the limit and the next cell gets a fresh one
    slow = Cell(Spec("kde", {"bandwidth": "cv"}), Spec("banana", {"n_train": 20000,
                                                                 "n_val": 5000}), 0,
                timeout_s=0.5)
    fast = Cell(Spec("gaussian"), Spec("banana", SMALL), 0, timeout_s=60)
    store = RunStore(tmp_path / "r", create=True)
    summary = run_cells([slow, fast], store)
    rec = store.read(slow.id)
    assert rec["status"] == "timeout"
    assert rec["error"] == "cell exceeded its CPU-time budget of 0.5 s per thread"
    # what it used, and the stack it was stopped in (the fault handler's, on SIGUSR1)
    assert rec["usage"]["limit"] == "cpu" and rec["usage"]["cpu_seconds_per_thread"] > 0.5
    assert "most recent call first" in rec["traceback"] and "estimators/kde/" in rec["traceback"]
    assert store.read(fast.id)["status"] == "ok"
    assert store.read(fast.id)["pid"] != rec["pid"]  # a fresh worker
    assert (summary.ok, len(summary.failed)) == (1, 1)


@pytest.mark.slow
def test_the_cpu_budget_counts_computing_not_waiting_and_the_wall_clock_backs_it_up(tmp_path):
    # two cells wait at their gates, sleeping: no CPU time, so their 0.5 s budget holds
    # while the wall clock runs; the one with a wall-clock limit of 2 s is stopped there,
    # and only then is the other let go, well past 0.5 s of wall clock
    gate = tmp_path / "gate"
    gate.mkdir()
    spec = Spec(gated.SPEC, {"gate": str(gate)})
    waits, hangs = (Cell(spec, Spec("banana", SMALL), seed, timeout_s=0.5,
                         wall_timeout_s=wall, sample_metrics=False)
                    for seed, wall in ((0, None), (1, 2)))
    store = RunStore(tmp_path / "r", create=True)

    def open_once_the_other_is_stopped() -> None:
        while not store.path(hangs.id).exists():
            time.sleep(0.05)
        gated.open_gate(gate, 0)

    opener = threading.Thread(target=open_once_the_other_is_stopped, daemon=True)
    opener.start()
    summary = run_cells([waits, hangs], store, workers=2)
    opener.join()
    assert (summary.ok, len(summary.failed)) == (1, 1)
    ok, stopped = store.read(waits.id), store.read(hangs.id)
    assert ok["status"] == "ok" and ok["usage"]["limit"] is None
    assert ok["usage"]["cpu_seconds_per_thread"] < 0.5 < ok["usage"]["wall_seconds"]
    assert stopped["status"] == "timeout" and stopped["usage"]["limit"] == "wall"
    assert stopped["error"] == "cell exceeded its wall-clock limit of 2 s"
    assert stopped["usage"]["wall_seconds"] > 2 > stopped["usage"]["cpu_seconds"]
    assert "gated.py" in stopped["traceback"]  # where it waited, from its stack
    for rec in (ok, stopped):  # fresh workers: their start-up is counted apart
        assert rec["usage"]["startup_seconds"] > 0 and rec["wall_timeout_s"] == (
            None if rec is ok else 2)


def test_the_wall_clock_limit_defaults_to_ten_times_the_cpu_budget(tmp_path):
    suite = tmp_path / "s.toml"
    suite.write_text('[budget]\ncell_timeout_s = 3\n[[datasets]]\nname = "banana"\n'
                     '[[estimators]]\nname = "gaussian"\n')
    (cell,) = load_suite(suite).cells()
    assert cell_limits(cell) == (3, 30)
    suite.write_text(suite.read_text().replace("[budget]\n",
                                               "[budget]\ncell_wall_timeout_s = 7\n"))
    (cell,) = load_suite(suite).cells()
    assert cell_limits(cell) == (3, 7)
    assert cell_limits(Cell(Spec("gaussian"), Spec("banana"), 0)) == (None, None)
    suite.write_text(suite.read_text().replace("= 7", "= 0"))
    with pytest.raises(SuiteError, match="cell_wall_timeout_s must be a number > 0"):
        load_suite(suite)


@pytest.mark.slow
def test_a_timeout_inside_a_lazy_import_leaves_no_broken_worker(tmp_path):
    # the first maf cell's limit lands at its first check, while its own modules (zuko's
    # flows) are being imported or just after; the same worker process would keep a
    # half-imported module, a fresh one does not
    tiny = db.estimators.get("maf").test_params()
    first = Cell(Spec("maf", tiny), Spec("banana", SMALL), 0, timeout_s=0.001)
    second = Cell(Spec("maf", tiny), Spec("banana", SMALL), 1, timeout_s=120)
    store = RunStore(tmp_path / "r", create=True)
    run_cells([first, second], store)
    assert store.read(first.id)["status"] == "timeout"
    assert store.read(second.id)["status"] == "ok", store.read(second.id)["error"]


def test_data_dependent_hyperparameters_come_from_the_estimator():
    ds = db.data.load("digits", seed=0)
    made, kde = db.estimators.get("made"), db.estimators.get("kde")
    assert made.run_params(ds, seed=3, device="cpu") == {"random_state": 3, "levels": 17,
                                                          "device": "cpu"}
    assert kde.run_params(ds, seed=3, device="cuda:1") == {"random_state": 3}
    hmm = db.estimators.get("hmm")
    seq = db.data.load("hmm_seq", seed=0, n_train=50, n_val=10, n_test=10, n_steps=4)
    assert hmm.run_params(seq, seed=0, device="cpu")["sequence_shape"] == [4, 2]


def test_resume_skips_finished_cells(tmp_path):
    cells = [Cell(Spec("diag_gaussian"), Spec("banana", SMALL), s) for s in (0, 1)]
    store = RunStore(tmp_path / "r", create=True)
    first = run_cells(cells[:1], store, executor="inprocess")
    assert first.ok == 1
    before = store.path(cells[0].id).read_bytes()
    second = run_cells(cells, store, executor="inprocess")
    assert (second.skipped, second.ok) == (1, 1)
    assert store.path(cells[0].id).read_bytes() == before


@pytest.mark.slow
def test_a_floor_is_computed_once_per_dataset_and_seed_and_counted(tmp_path):
    # two estimators on one dataset and seed share one floor, stored with its cost; a
    # resumed run that adds a third reads it back instead of computing it again
    cells = [Cell(Spec(name), Spec("banana", SMALL), 0)
             for name in ("gaussian", "diag_gaussian", "ppca")]
    store = RunStore(tmp_path / "r", create=True)
    first = run_cells(cells[:2], store)
    floors = list((tmp_path / "r" / "floors").glob("*.json"))
    assert len(floors) == 1 and first.floor_seconds > 0
    expected = {m.metric: (m.value, m.se) for m in floor_metrics(cells[0])}
    assert set(expected) == {f"floor_{n}" for n in SAMPLE_METRICS}
    second = run_cells(cells, store)
    assert (second.skipped, second.ok, second.floor_seconds) == (2, 1, 0.0)
    for c in cells:
        rec = store.read(c.id)
        got = {m["metric"]: (m["value"], m["se"]) for m in rec["metrics"]
               if m["metric"].startswith("floor_")}
        assert set(got) == set(expected)
        for key, (value, se) in got.items():  # up to rounding: the thread counts differ
            assert value == pytest.approx(expected[key][0], rel=1e-9, abs=1e-12), key
            want = expected[key][1]
            assert se == (None if want is None else pytest.approx(want, rel=1e-9)), key
        assert rec["floor"] == {"key": floors[0].stem, "seconds": first.floor_seconds}
    # a cell without sample metrics gets no floor
    quiet = Cell(Spec("gaussian"), Spec("banana", SMALL), 1, sample_metrics=False)
    run_cells([quiet], store)
    assert "floor" not in store.read(quiet.id) and len(list(floors[0].parent.iterdir())) == 1


@pytest.mark.slow
def test_process_pool_gives_the_same_numbers(tmp_path):
    cells = [Cell(Spec("gaussian"), Spec("banana", SMALL), s) for s in (0, 1)]
    a = RunStore(tmp_path / "a", create=True)
    b = RunStore(tmp_path / "b", create=True)
    run_cells(cells, a)
    summary = run_cells(cells, b, workers=2)
    assert summary.ok == 2
    for c in cells:
        ra, rb = a.read(c.id), b.read(c.id)
        assert ra["per_example"] == rb["per_example"]
        assert metrics_of(ra)["threads"]["value"] >= metrics_of(rb)["threads"]["value"]
        # thread discipline: 2 workers x (cores / 2) threads, torch's and BLAS's alike
        per_worker = max(1, (os.cpu_count() or 1) // 2)
        assert metrics_of(rb)["threads"]["value"] == per_worker
        assert metrics_of(rb)["blas_threads"]["value"] == per_worker


def test_in_process_cells_run_on_every_core_within_the_process_limit(tmp_path, monkeypatch):
    # the session's limit (tests/conftest.py: 1) holds; with none set, one worker takes
    # every core, torch's and BLAS's alike, and the caller's counts come back after
    from densbench.metrics import timing

    cell = Cell(Spec("gaussian"), Spec("banana", SMALL), 0)
    run_cells([cell], RunStore(tmp_path / "limited", create=True), executor="inprocess")
    limited = metrics_of(RunStore(tmp_path / "limited").read(cell.id))
    assert limited["threads"]["value"] == limited["blas_threads"]["value"] == 1
    assert RunStore(tmp_path / "limited").read(cell.id)["pid"] == os.getpid()
    monkeypatch.setattr(timing, "_PROCESS_LIMIT", None)
    run_cells([cell], RunStore(tmp_path / "free", create=True), executor="inprocess")
    free = metrics_of(RunStore(tmp_path / "free").read(cell.id))
    cores = os.cpu_count() or 1
    assert free["threads"]["value"] == free["blas_threads"]["value"] == cores
    assert torch.get_num_threads() == 1 and blas_thread_count() == 1


@pytest.mark.slow
def test_dask_local_cluster_gives_the_same_records(tmp_path):
    pytest.importorskip("distributed")
    cells = [Cell(Spec("gaussian"), Spec("banana", SMALL), s) for s in (0, 1)]
    a = RunStore(tmp_path / "a", create=True)
    b = RunStore(tmp_path / "b", create=True)
    run_cells(cells, a)
    summary = run_cells(cells, b, workers=2, executor="dask")
    assert summary.ok == 2
    for c in cells:
        assert a.read(c.id)["per_example"] == b.read(c.id)["per_example"]
        assert b.read(c.id)["pid"] != a.read(c.id)["pid"]  # ran in worker processes


def test_unknown_executor_and_unreachable_scheduler_are_named(tmp_path):
    store = RunStore(tmp_path / "r", create=True)
    cells = [Cell(Spec("gaussian"), Spec("banana", SMALL), 0)]
    with pytest.raises(ValueError, match="unknown executor 'ray'"):
        run_cells(cells, store, executor="ray")
    pytest.importorskip("distributed")
    with pytest.raises(ValueError, match="cannot reach the Dask scheduler"):
        run_cells(cells, store, executor="dask", scheduler="tcp://127.0.0.1:1")


def test_devices_are_shared_out_to_workers_in_turn(monkeypatch):
    assert assign_devices("cuda", 3, 2) == ["cuda:0", "cuda:1", "cuda:0"]
    assert assign_devices("cuda", 2, 1) == ["cuda:0", "cuda:0"]
    assert assign_devices("cuda:1", 2, 2) == ["cuda:1", "cuda:1"]
    assert assign_devices("cpu", 2, 4) == ["cpu", "cpu"]
    with pytest.raises(ValueError, match="CUDA is not available"):
        assign_devices("cuda", 2, 0)
    with pytest.raises(ValueError, match="has 2 CUDA device"):
        assign_devices("cuda:2", 1, 2)
    with pytest.raises(ValueError, match="device must be cpu, cuda or cuda:N; got 'gpu'"):
        assign_devices("gpu", 1, 1)
    # the pool gives each worker process its own (nothing is started until a cell is sent)
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    pool = PoolExecutor(RunOptions(workers=3, device="cuda"))
    assert [w.device for w in pool._workers()] == ["cuda:0", "cuda:1", "cuda:0"]


def test_the_device_is_recorded_and_kept_out_of_the_cell_id():
    tiny = db.estimators.get("maf").test_params()
    cell = Cell(Spec("maf", tiny), Spec("banana", SMALL), 0)
    rec = run_cell(cell, "cpu")
    assert rec["status"] == "ok", rec.get("traceback")
    assert rec["device"] == "cpu" and rec["effective_params"]["device"] == "cpu"
    assert "device" not in rec["estimator"]["params"]
    # a device given as a hyperparameter would split a cell's results by where it ran
    with pytest.raises(ValueError, match="'device' is a setting of the run"):
        Cell(Spec("maf", {"device": "cpu"}), Spec("banana"), 0)


def test_compile_is_a_run_setting_for_the_estimators_that_take_it(tmp_path, monkeypatch):
    # the plumbing down to a worker process, not the compiler: TorchDynamo's tracing only
    monkeypatch.setenv("DENSBENCH_COMPILE_BACKEND", "eager")
    tiny = db.estimators.get("nsf").test_params()
    cells = [Cell(Spec("nsf", tiny), Spec("banana", SMALL), 0),
             Cell(Spec("gaussian"), Spec("banana", SMALL), 0)]
    assert db.estimators.get("nsf").compilable
    assert not db.estimators.get("gaussian").compilable
    eager, fast = (RunStore(tmp_path / name, create=True) for name in ("eager", "fast"))
    run_cells(cells[:1], eager, executor="inprocess")  # the figures to compare with
    assert run_cells(cells, fast, workers=1, compile=True).ok == 2  # down to a worker
    flow, gauss = (fast.read(c.id) for c in cells)
    assert flow["compile"] == {"compiled": True, "fallback": None}
    assert flow["effective_params"]["compile"] is True and "compile" not in flow["estimator"][
        "params"]
    seconds = metrics_of(flow)["compile_seconds"]
    assert seconds["value"] > 0 and seconds["unit"] == "s"
    assert "compile" not in gauss and "compile_seconds" not in metrics_of(gauss)
    assert "compile" not in eager.read(cells[0].id)
    np.testing.assert_allclose(decode_array(flow["per_example"]["test_loglik"]),
                               decode_array(eager.read(cells[0].id)["per_example"][
                                   "test_loglik"]), rtol=1e-5)
    with pytest.raises(ValueError, match="'compile' is a setting of the run"):
        Cell(Spec("maf", {"compile": True}), Spec("banana"), 0)


@pytest.mark.parametrize("device", ["gpu", "cpu:0", "cuda:x", "cuda:", ""])
def test_a_run_and_an_estimator_refuse_the_same_devices(device):
    # One check of a device's name: what a run refuses, an estimator's parameter refuses.
    with pytest.raises(ValueError, match="device must be cpu, cuda or cuda:N"):
        RunOptions(device=device)
    with pytest.raises(ValueError, match="device"):
        db.estimators.REGISTRY.get("made").check_params({"device": device})
    assert RunOptions(device="cuda:1").device == "cuda:1"


def test_run_settings_are_one_object_or_its_fields_as_keywords(tmp_path):
    cells = [Cell(Spec("gaussian"), Spec("banana", SMALL), 0)]
    settings = RunOptions(executor="inprocess")
    summary = run_cells(cells, RunStore(tmp_path / "a", create=True), settings)
    assert summary.ok == 1
    again = run_cells(cells, RunStore(tmp_path / "a"), settings, retry_failed=True)
    assert (again.ok, again.skipped) == (0, 1)
    with pytest.raises(TypeError, match="threads"):
        run_cells(cells, RunStore(tmp_path / "b", create=True), threads=2)
    with pytest.raises(ValueError, match="workers must be an integer >= 1"):
        run_cells(cells, RunStore(tmp_path / "c", create=True), workers=0)
