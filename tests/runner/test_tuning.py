"""The tuning protocol: candidates from a suite, chosen per cell on the validation split."""

import itertools
import math
import subprocess
import sys
import tomllib

import numpy as np
import pytest
import tomli_w
from sklearn.neighbors import KernelDensity

import densbench as db
from densbench.data.transforms import prepare
from densbench.estimators.selection import SearchSpace
from densbench.registry import UnknownNameError
from densbench.report.render import write_report
from densbench.report.tables import leaderboards
from densbench.runner import tuning
from densbench.runner.cell import run_cell
from densbench.runner.execute import run_cells
from densbench.runner.plan import Cell, Spec, SuiteError, parse_suite
from densbench.runner.store import RunStore, load

SMALL = {"n_train": 300, "n_val": 100, "n_test": 300}
BANDWIDTHS = [0.05, 0.2, 0.8]


def _cell(name, tune, params=None, seed=0, **search):
    space = SearchSpace.parse(tune, who=name, **search)
    return Cell(Spec(name, params or {}, tune=space), Spec("banana", SMALL), seed,
                n_samples=0, sample_metrics=False)


def _metric(record, name):
    return next(m["value"] for m in record["metrics"] if m["metric"] == name)


def test_scores_are_scikit_learns_and_the_best_is_refitted():
    rec = run_cell(_cell("kde", {"bandwidth": BANDWIDTHS}))
    assert rec["status"] == "ok", rec["error"]
    t = rec["tuning"]
    ds = db.data.load("banana", seed=0, **SMALL)
    reference = [KernelDensity(bandwidth=h).fit(ds.train).score_samples(ds.val).mean()
                 for h in BANDWIDTHS]
    assert [tr["params"]["bandwidth"] for tr in t["trials"]] == BANDWIDTHS
    assert [tr["score"] for tr in t["trials"]] == pytest.approx(reference, abs=1e-9)
    best = int(np.argmax(reference))
    assert t["chosen"] == {"bandwidth": BANDWIDTHS[best]} and t["chosen_index"] == best
    assert t["criterion"] == "val_loglik" and t["search"] == "grid"
    # the final model is the chosen setting refitted: same validation figure, same params
    assert _metric(rec, "val_loglik") == pytest.approx(t["trials"][best]["score"], abs=1e-12)
    assert rec["effective_params"]["bandwidth"] == BANDWIDTHS[best]
    assert _metric(rec, "tuning_trials") == 3
    assert 0 < _metric(rec, "tuning_seconds") >= sum(tr["seconds"] for tr in t["trials"])


def test_selection_never_touches_the_test_split(monkeypatch):
    """A spy on every fit and score of the estimator: no test row before selection is
    over (and the spy does see them afterwards, when the test split is scored)."""
    ds = db.data.load("banana", seed=0, **SMALL)
    test_rows = {tuple(r) for r in ds.test}
    cls = db.estimators.get("kde")
    phase = {"tuning": False}
    seen = {True: [], False: []}

    def spy(method):
        original = getattr(cls, method)

        def wrapped(self, X, *args, **kwargs):
            for arr in (X, *args):
                if arr is not None:
                    seen[phase["tuning"]].append(
                        any(tuple(r) in test_rows for r in np.asarray(arr)))
            return original(self, X, *args, **kwargs)
        return wrapped

    for method in ("fit", "score_samples"):
        monkeypatch.setattr(cls, method, spy(method))
    real_tune = tuning.tune

    def marked(*args, **kwargs):
        phase["tuning"] = True
        try:
            return real_tune(*args, **kwargs)
        finally:
            phase["tuning"] = False

    monkeypatch.setattr(tuning, "tune", marked)
    rec = run_cell(_cell("kde", {"bandwidth": BANDWIDTHS}))
    assert rec["status"] == "ok", rec["error"]
    assert len(seen[True]) == 3 * len(BANDWIDTHS)  # fit(train, val), score(val)
    assert not any(seen[True])
    assert any(seen[False])  # the final model is scored on the test split


class _NoTest:
    """The prepared splits with a test split that raises when read."""

    def __init__(self, prep):
        self._prep = prep

    def __getattr__(self, name):
        if name == "test":
            raise AssertionError("the test split was read during selection")
        return getattr(self._prep, name)


def test_implicit_model_is_judged_by_validation_energy_distance():
    ds = db.data.load("banana", seed=0, **SMALL)
    prep = _NoTest(prepare(ds, discrete_native=False, seed=0))
    base = {"max_epochs": 1, "hidden": 16, "random_state": 0}
    space = SearchSpace.parse({"lr": [1e-5, 3e-3]}, who="gan")
    params, rec = tuning.tune("gan", base, space, prep, seed=0)
    assert rec["criterion"] == "val_energy_distance" and rec["better"] == "lower"
    scores = [t["score"] for t in rec["trials"]]
    assert params["lr"] == [1e-5, 3e-3][int(np.argmin(scores))]
    assert params["max_epochs"] == 1


def test_a_failing_candidate_is_recorded_and_the_others_go_on():
    # gmm's own selection (a list of sizes) inside a candidate keeps working
    rec = run_cell(_cell("gmm", {"n_components": [[1, 2, 3], 1000]}))
    assert rec["status"] == "ok", rec["error"]
    good, bad = rec["tuning"]["trials"]
    assert bad["score"] is None and "exceeds the number of training rows" in bad["error"]
    assert rec["tuning"]["chosen"] == {"n_components": [1, 2, 3]}
    assert rec["fitted"]["n_components_"] in (1, 2, 3)
    rec = run_cell(_cell("gmm", {"n_components": [999, 1000]}))
    assert rec["status"] == "failed" and "every tuning candidate failed" in rec["error"]


def test_grid_is_every_combination_and_random_search_is_seeded():
    grid = SearchSpace.parse({"a": [1, 2, 3], "b": ["x", "y"]}, who="e").trials()
    assert sorted((t["a"], t["b"]) for t in grid) == sorted(
        itertools.product([1, 2, 3], ["x", "y"]))
    space = {"lr": {"log_uniform": [1e-4, 1e-2]}, "depth": {"int_uniform": [1, 3]},
             "w": [[8, 8], [16]]}
    draws = SearchSpace.parse(space, n_trials=200, seed=3, who="e").trials()
    assert draws == SearchSpace.parse(space, n_trials=200, seed=3, who="e").trials()
    assert draws != SearchSpace.parse(space, n_trials=200, seed=4, who="e").trials()
    lr = np.array([t["lr"] for t in draws])
    assert lr.min() >= 1e-4 and lr.max() <= 1e-2 and isinstance(draws[0]["lr"], float)
    assert abs(np.median(np.log10(lr)) + 3) < 0.25  # log-uniform: median at 10^-3
    assert {t["depth"] for t in draws} == {1, 2, 3}  # both ends included
    assert {tuple(t["w"]) for t in draws} == {(8, 8), (16,)}  # a list is one candidate
    # a search over lists draws without replacement: at most every combination
    assert len(SearchSpace.parse({"a": [1, 2]}, n_trials=5, who="e").trials()) == 2


def _suite(**entry):
    """A one-estimator suite's text with ``entry`` (tune, search) added to its entry."""
    made = {"name": "made", "params": {"max_epochs": 2}, **entry}
    return tomli_w.dumps({"name": "t", "datasets": [{"name": "banana"}], "estimators": [made]})


LOG_UNIFORM = {"log_uniform": [1e-4, 0.1]}


@pytest.mark.parametrize("entry, message", [
    ({"tune": {"lr": [0.01, -1.0]}}, "tune candidate 1 {'lr': -1.0}: made: lr must be"),
    ({"tune": {"lr": {"log_uniform": [0.0, 0.1]}}, "search": {"n_trials": 2}},
     "tune.lr.log_uniform must be [low, high] with low < high > 0"),
    ({"tune": {"lr": LOG_UNIFORM}}, "a random search needs search.n_trials"),
    ({"tune": {"lr": {"normal": [0, 1]}}, "search": {"n_trials": 2}},
     "tune.lr must be one of uniform, log_uniform, int_uniform"),
    ({"tune": {"max_epochs": [1, 2]}}, "max_epochs given both as params and as tune"),
    ({"tune": {"lr": []}}, "tune.lr must be a non-empty list of candidates"),
    ({"tune": {"lr": [0.01]}, "search": {"n_trials": 0}}, "search.n_trials must be an int >= 1"),
    ({"tune": {"lr": [0.01]}, "search": {"budget": 3}}, "search has unknown key(s) budget"),
    ({"search": {"n_trials": 3}}, "'search' without 'tune'"),
    ({"tune": {"random_state": [0, 1]}}, "settings of the run"),
])
def test_candidates_are_checked_before_anything_runs(entry, message):
    with pytest.raises(SuiteError) as info:
        parse_suite(_suite(**entry), "t.toml")
    assert message in str(info.value) and "t.toml: estimators[0] (made)" in str(info.value)


def test_unknown_hyperparameter_to_tune_is_named():
    with pytest.raises(UnknownNameError, match="made: unknown parameter.*widht"):
        parse_suite(_suite(tune={"widht": [1, 2]}), "t.toml")


def test_tuning_is_part_of_the_cell_id_and_untuned_ids_are_unchanged():
    plain = Cell(Spec("kde", {}), Spec("banana", SMALL), 0)
    assert "tune" not in plain.estimator.to_dict()
    a = Cell(Spec("kde", {}, tune=SearchSpace.parse({"bandwidth": [0.1]}, who="kde")),
             Spec("banana", SMALL), 0)
    b = Cell(Spec("kde", {}, tune=SearchSpace.parse({"bandwidth": [0.2]}, who="kde")),
             Spec("banana", SMALL), 0)
    assert len({plain.id, a.id, b.id}) == 3
    s = parse_suite(_suite(tune={"lr": [0.01, 0.001]}), "t.toml")
    assert s.cells()[0].estimator.tune.trials() == [{"lr": 0.01}, {"lr": 0.001}]


def test_report_has_a_tuning_table_per_estimator_and_dataset(tmp_path):
    store = RunStore(tmp_path, create=True)
    untuned = Cell(Spec("kde"), Spec("banana", SMALL), 0, n_samples=0, sample_metrics=False)
    run_cells([_cell("kde", {"bandwidth": BANDWIDTHS}, seed=s) for s in (0, 1)] + [untuned],
              store)
    # the tuned and the untuned kde (same fixed params) are two rows, not one mean
    assert len(leaderboards(load(tmp_path))["banana"]) == 2
    text = write_report(tmp_path, ("md",))[0].read_text()
    section = text.split("## Tuning: kde on banana", 1)[1].split("\n## ", 1)[0]
    assert "grid search over bandwidth: 3 candidates" in section
    assert "| val_loglik [nats/example] ↑ |" in section
    rows = [r for r in section.splitlines() if r.startswith("| ") and r[2].isdigit()]
    assert len(rows) == 3
    recs = sorted((r for r in RunStore(tmp_path).records() if "tuning" in r),
                  key=lambda r: r["seed"])
    scores = np.array([[t["score"] for t in r["tuning"]["trials"]] for r in recs])
    means = scores.mean(axis=0)
    for i, row in enumerate(rows):
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] == str(BANDWIDTHS[i])
        se = scores[:, i].std(ddof=1) / math.sqrt(2)
        assert cells[2].strip("*") == f"{means[i]:.3f} ± {se:.3f}"
        assert cells[2].startswith("**") == (i == int(np.argmax(means)))
        assert cells[3] == (", ".join(str(r["seed"]) for r in recs
                                      if r["tuning"]["chosen_index"] == i) or "--")
    found = tomllib.loads((tmp_path / "tuning.toml").read_text())["found"]
    assert [(f["seed"], f["chosen"]) for f in found] == [
        (r["seed"], r["tuning"]["chosen"]) for r in recs]
    assert found[0]["params"] == {"bandwidth": recs[0]["tuning"]["chosen"]["bandwidth"]}
    assert found[0]["search"] == "grid" and found[0]["n_trials"] == 3


def test_the_report_writes_tuning_toml_and_the_runner_writes_only_records():
    # A fresh interpreter: rendering a report must not load the tuning search, and the
    # search module holds no report writer.
    code = ("import sys, densbench.report.render; "
            "loaded = 'densbench.runner.tuning' in sys.modules; "
            "import densbench.runner.tuning as t; "
            "print(loaded, hasattr(t, 'found_settings'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout.split()
    assert out == ["False", "False"]


def test_a_dynamically_binarized_set_reaches_the_fits_of_a_cell_and_its_search(monkeypatch):
    """A cell on mnist5k(binarize="dynamic") fits the neural estimator (each candidate of
    its search, and the winner) with the training images' pixel means, so it redraws
    them every epoch; a classical estimator fits the one draw."""
    calls = []
    for name in ("vae", "diag_gaussian"):
        cls = db.estimators.get(name)
        original = cls.fit

        def spy(self, X, X_val=None, _original=original, **kwargs):
            calls.append((self.name, kwargs.get("binarize_from")))
            return _original(self, X, X_val, **kwargs)
        monkeypatch.setattr(cls, "fit", spy)
    data = Spec("mnist5k", {"binarize": "dynamic", "n_val": 50, "n_test": 50})
    vae = {"decoder": "bernoulli", "latent_dim": 2, "hidden": 8, "max_epochs": 2,
           "k_eval": 4}
    space = SearchSpace.parse({"lr": [1e-3, 3e-3]}, who="vae")
    means = db.data.load("mnist5k", seed=0, binarize="dynamic", n_val=50,
                         n_test=50).train_means
    for spec in (Spec("vae", vae, tune=space), Spec("diag_gaussian")):
        rec = run_cell(Cell(spec, data, 0, sample_metrics=False))
        assert rec["status"] == "ok", rec["error"]
    assert [name for name, _ in calls] == ["vae"] * 3 + ["diag_gaussian"]
    for _, given in calls[:3]:
        np.testing.assert_array_equal(given, means)
    assert calls[3][1] is None
