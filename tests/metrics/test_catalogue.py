"""The metric catalogue covers every metric real records hold, in the records' units; its
directions order values the way each metric's definition says; `densbench list --metrics`
shows every entry, and the docs keep no copy of it."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from densbench import estimators
from densbench.estimators.selection import SearchSpace
from densbench.metrics import catalogue as C
from densbench.metrics import samples as S
from densbench.registry import UnknownNameError
from densbench.report.tables import tuning_tables
from densbench.runner import execute
from densbench.runner.cell import run_cell
from densbench.runner.execute import run_cells
from densbench.runner.plan import Cell, Spec
from densbench.runner.store import RunStore

SMALL = {"n_train": 300, "n_val": 100, "n_test": 200}
METRICS_DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


def _tiny(name: str) -> dict:
    """Tiny settings; the data's own shape and levels come from the run, not from the
    conformance checks' tiny images."""
    params = estimators.get(name).test_params()
    return {k: v for k, v in params.items() if k not in ("image_shape", "levels")}


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> list[dict]:
    """One tiny cell per kind of record: exact likelihood with a truth (kde on banana),
    discrete data (kde on digits), an implicit model (gan), the VAE's and the diffusion
    model's diagnostics."""
    cells = [Cell(Spec("kde", {"bandwidth": 0.3}), Spec("banana", SMALL), 0),
             Cell(Spec("kde", {"bandwidth": 1.0}), Spec("digits"), 0, sample_metrics=False),
             Cell(Spec("gan", _tiny("gan")), Spec("banana", SMALL), 0),
             Cell(Spec("vae", {**_tiny("vae"), "k_eval": 20}), Spec("digits"), 0,
                  sample_metrics=False),
             Cell(Spec("diffusion", _tiny("diffusion")), Spec("banana", SMALL), 0,
                  sample_metrics=False)]
    store = RunStore(tmp_path_factory.mktemp("run"), create=True)
    run_cells(cells, store)  # the driver adds the floors
    out = [store.read(c.id) for c in cells]
    for rec in out:
        assert rec["status"] == "ok", rec["error"]
    return out


def test_every_metric_of_a_real_record_is_in_the_catalogue_with_its_unit(records):
    seen = set()
    for rec in records:
        for m in rec["metrics"]:
            info = C.get(m["metric"])
            assert m["unit"] == info.unit, m["metric"]
            seen.add(info.name)
    # the cells reach every group, the IWAE family and both sides of a sample metric
    assert {C.get(n).group for n in seen if n != C.IWAE_K} == set(C.Group)
    assert {C.IWAE_K, C.TEST_BITS_PER_DIM, C.KL_TO_TRUTH, "samples_mmd2",
            "floor_mmd2", "test_diffusion_kl"} <= seen


def test_names_are_unique_and_every_entry_is_complete():
    names = [m.name for m in C.CATALOGUE]
    assert len(names) == len(set(names))
    for m in C.CATALOGUE:
        assert m.unit and m.label and m.meaning.endswith(".") and "\n" not in m.meaning
        assert (m.target is not None) == (m.direction is C.Direction.TARGET), m.name
    assert set(C.COST_METRICS) <= {m.name for m in C.CATALOGUE if m.group is C.Group.COST}


def test_the_cost_metrics_the_driver_sets_aside_are_the_catalogues():
    """The metrics left out when two runs are compared are exactly the catalogue's
    measurements of the run itself, so a new cost entry needs no second list."""
    assert execute.COST_METRICS == C.COST_METRICS
    assert set(C.COST_METRICS) == {m.name for m in C.CATALOGUE if not m.reproducible}


def test_a_cells_cost_rows_are_catalogue_figures_in_its_units():
    """Every cost row ``run_cell`` writes (a tuned cell, so the tuning rows too) has a
    catalogue entry of the cost group and its unit."""
    space = SearchSpace.parse({"bandwidth": [0.3, 0.6]}, who="kde")
    cell = Cell(Spec("kde", {"bandwidth": 0.5}, tune=space),
                Spec("banana", {"n_train": 80, "n_val": 40, "n_test": 40}), 0,
                sample_metrics=False)
    rec = run_cell(cell)
    assert rec["status"] == "ok", rec["error"]
    cost = [m for m in rec["metrics"] if C.get(m["metric"]).group is C.Group.COST]
    assert {"tuning_seconds", "tuning_trials", C.FIT_SECONDS} <= {m["metric"] for m in cost}
    for m in rec["metrics"]:
        assert m["unit"] == C.get(m["metric"]).unit, m["metric"]


def test_samples_dispatch_is_the_catalogues_and_refuses_a_name_it_lacks():
    assert set(S.dispatch._HOW) == set(C.SAMPLE_METRICS)
    with pytest.raises(UnknownNameError, match="'dummy' has no entry"):
        S.dispatch._computes("dummy")


def test_the_catalogue_dispatches_the_likelihood_and_truth_groups(monkeypatch):
    from densbench import metrics
    from densbench.metrics.likelihood import likelihood_metrics
    from densbench.metrics.truth import truth_metrics

    assert C._GROUP_FUNCTIONS == {C.Group.LIKELIHOOD: likelihood_metrics,
                                  C.Group.TRUTH: truth_metrics}
    assert metrics.compute_all is C.compute_all
    with pytest.raises(ValueError, match="already computed by likelihood_metrics"):
        C.computes(C.Group.LIKELIHOOD)(truth_metrics)
    # a group's function that returns another group's figure is refused, by name
    monkeypatch.setitem(C._GROUP_FUNCTIONS, C.Group.TRUTH,
                        lambda out: [C.metric(C.FIT_SECONDS, 1.0, None)])
    out = metrics.CellOutputs(dim=1, discrete=False, likelihood_kind="exact")
    with pytest.raises(ValueError, match="'fit_seconds' is a cost metric"):
        C.compute_all(out)


def _tuned_record(criterion: str, scores: list[float]) -> dict:
    trials = [{"params": {"h": h}, "score": s, "se": 0.1, "seconds": 1.0}
              for h, s in zip((1, 2), scores, strict=True)]
    tuning = {"space": {"h": [1, 2]}, "trials": trials, "chosen_index": 0, "seconds": 2.0,
              "criterion": criterion, "search": "grid", "seed": 0, "final": "refit"}
    return {"status": "ok", "seed": 0, "tuning": tuning, "dataset": {"name": "d"},
            "estimator": {"name": "e", "params": {}, "tune": {"h": [1, 2]}}}


@pytest.mark.parametrize(("criterion", "best", "arrow"), [
    ("val_loglik", "2", "↑"), ("val_energy_distance", "1", "↓")])
def test_the_tuning_table_takes_the_criterions_direction_from_the_catalogue(
        criterion, best, arrow):
    """The best candidate (bold) and the heading's arrow follow the catalogue's direction
    of the criterion, whatever the record's own direction string says."""
    (_, _, table), = tuning_tables([_tuned_record(criterion, [1.0, 3.0])])
    column = next(c for c in table.columns if c.startswith(criterion))
    assert column.endswith(arrow)
    bold = [str(i) for i, h in zip(table["h"], table[column], strict=True)
            if h.startswith("**")]
    assert bold == [best]


def test_lookup_matches_families_and_refuses_unknown_names():
    assert C.get("test_iwae_k5000").name == C.IWAE_K == C.get(C.iwae_k(1)).name
    assert C.iwae_k_of(C.iwae_k(250)) == 250 and C.iwae_k_of(C.TEST_ELBO) is None
    assert C.lookup("test_iwae_k") is None and C.lookup("my_own_diagnostic") is None
    with pytest.raises(UnknownNameError, match="unknown metric 'fid'; known: test_loglik"):
        C.get("fid")
    with pytest.raises(UnknownNameError):
        C.metric("fid", 1.0, None)


@pytest.mark.parametrize(("name", "better", "worse"), [
    (C.TEST_LOGLIK, -1.0, -2.0),
    (C.TEST_BITS_PER_DIM, 2.0, 3.0),
    (C.KL_TO_TRUTH, 0.1, 0.2),
    ("samples_mmd2", 0.001, 0.01),             # a discrepancy: 0 for the same law
    ("samples_energy_distance", 0.0, 0.5),
    ("samples_sliced_wasserstein", 0.1, 0.3),
    ("samples_frechet_distance", 0.1, 1.0),
    ("samples_c2st_accuracy", 0.52, 0.9),      # 0.5: the classifier cannot tell
    ("samples_c2st_accuracy", 0.52, 0.4),      # below 0.5 is as far from chance
    ("samples_density", 1.1, 0.5),             # 1 in expectation for the same law
    ("samples_memorization_ratio", 0.9, 0.1),  # near 0: copies of training points
    ("samples_coverage", 0.97, 0.5),
    ("samples_outside_truth_support", 0.0, 0.2),
    ("test_ess", 300.0, 10.0),
    ("fit_seconds", 1.0, 2.0),
    ("score_examples_per_s", 1e5, 1e3),
])
def test_directions_order_values_as_the_definitions_say(name, better, worse):
    info = C.get(name)
    assert info.worse(better, worse) and not info.worse(worse, better)
    assert info.badness(better) < info.badness(worse)


def test_references_and_settings_have_no_better_value():
    for name in ("floor_mmd2", "floor_c2st_accuracy", C.TEST_LOGLIK_TRUTH, "threads"):
        info = C.get(name)
        assert math.isnan(info.badness(1.0)) and not info.worse(0.0, 1.0)
        assert info.arrow == ""
    assert C.get("samples_c2st_accuracy").arrow == "→0.5"
    assert C.get("samples_mmd2").arrow == "↓" and C.get("samples_recall").arrow == "↑"


def test_the_sample_metrics_computed_are_the_catalogues():
    rng = np.random.default_rng(0)
    X, Y, train = (rng.normal(size=(60, 2)) for _ in range(3))
    assert list(S.sample_metrics(X, Y, train=train)) == list(C.SAMPLE_METRICS)
    rows = S.to_metrics(S.sample_metrics(X, Y, which=["c2st_accuracy"]), "floor_")
    assert rows[0].metric == "floor_c2st_accuracy" and rows[0].unit == "accuracy"


def test_densbench_list_metrics_shows_every_entry_and_the_docs_keep_no_copy(capsys):
    from densbench.cli import main

    assert main(["list", "--metrics"]) == 0
    out = capsys.readouterr().out
    for m in C.CATALOGUE:
        assert f"  {m.name} " in out and f"[{m.unit}] {m.better}: {m.meaning}" in out, m.name
    # the metrics page shows the command, not a list that a new metric would leave stale
    text = METRICS_DOC.read_text()
    assert "densbench list --metrics" in text
    assert not re.search(r"^\| `test_loglik`", text, re.M)
