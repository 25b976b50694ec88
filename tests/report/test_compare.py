import json
import shutil

import numpy as np
import pytest

from densbench.cli import main
from densbench.report.compare import by_estimator_dataset, compare_runs, status_changes
from densbench.runner.execute import run_cells
from densbench.runner.plan import Cell, Spec
from densbench.runner.store import RunStore, decode_array, encode_array

SMALL = {"n_train": 300, "n_val": 100, "n_test": 400}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("a")
    run_cells([Cell(Spec("gaussian"), Spec("banana", SMALL), s) for s in (0, 1)],
              RunStore(root, create=True))
    return root


def _shifted_copy(base, dst, shift, noise=0.0, relative=0.0):
    """A copy of the run whose test log-likelihoods moved by ``shift`` nats per example
    (plus ``noise`` x N(0, 1), plus ``relative`` x U(0, 1) of their size)."""
    shutil.copytree(base, dst)
    rng = np.random.default_rng(0)
    store = RunStore(dst)
    for rec in store.records():
        ll = decode_array(rec["per_example"]["test_loglik"])
        ll = ll + shift + noise * rng.standard_normal(ll.size)
        ll = ll * (1.0 + relative * rng.random(ll.size))
        rec["per_example"]["test_loglik"] = encode_array(ll)
        for m in rec["metrics"]:
            if m["metric"] == "test_loglik":
                m["value"] = float(ll.mean())
            if m["metric"] == "kl_to_truth":
                m["value"] -= shift
        store.write(rec)
    return dst


def test_identical_runs_show_no_change(base, capsys):
    table = compare_runs(base, base)
    assert not table["significant"].any()
    assert main(["compare", str(base), str(base)]) == 0
    assert "0 significantly worse" in capsys.readouterr().out


def test_a_change_within_rounding_is_not_significant(base, tmp_path):
    # a relative 1e-13 per example (another order of sums) has a paired SE smaller still:
    # without the rounding floor every such cell was "significantly" better or worse
    table = compare_runs(base, _shifted_copy(base, tmp_path / "r", shift=0.0, relative=1e-13))
    ll = table[table.metric == "test_loglik"]
    assert (ll["change"] != 0).all() and (ll["se"] < ll["change"].abs()).all()
    assert not table["significant"].any()


def test_a_small_paired_regression_is_caught_and_exits_1(base, tmp_path, capsys):
    worse = _shifted_copy(base, tmp_path / "worse", shift=-0.01, noise=0.001)
    table = compare_runs(base, worse)
    ll = table[table.metric == "test_loglik"]
    assert ll["paired"].all() and ll["worse"].all()
    # 0.01 nats is far below the marginal SE of the test mean: only pairing can see it
    se_marginal = table[(table.metric == "test_loglik")]["se"].max()
    assert se_marginal < 0.001
    kl = table[table.metric == "kl_to_truth"]
    assert kl["worse"].all() and np.allclose(kl["change"], 0.01)
    assert main(["compare", str(base), str(worse)]) == 1
    assert "2 significantly worse" in capsys.readouterr().out


def test_per_estimator_and_dataset_the_seeds_are_pooled(base, tmp_path, capsys):
    # 0.002 nats per example worse in each of 2 seeds: one family x dataset row, worse,
    # its SE the cells' SEs pooled over the seeds
    worse = _shifted_copy(base, tmp_path / "w", shift=-0.002, noise=0.001)
    cells = compare_runs(base, worse)
    summary = by_estimator_dataset(cells)
    assert len(summary) == 1
    row = summary.iloc[0]
    ll = cells[cells.metric == "test_loglik"]
    assert (row["estimator"], row["dataset"], row["seeds"]) == ("gaussian", "banana", 2)
    assert row["change"] == pytest.approx(ll["change"].mean())
    assert row["se"] == pytest.approx(np.sqrt((ll["se"] ** 2).sum()) / 2)
    assert row["worse"] and not row["better"] and row["z"] < -1.96
    assert not by_estimator_dataset(compare_runs(base, base))[["worse", "better"]].any().any()
    assert main(["compare", str(base), str(worse)]) == 1
    out = capsys.readouterr().out
    assert "estimator x dataset: 0 significantly better, 1 significantly worse" in out


def test_two_entries_of_one_estimator_on_a_dataset_are_not_pooled():
    import pandas as pd

    rows = [{"estimator": "gmm", "params": p, "dataset": "banana", "metric": "test_loglik",
             "paired": True, "a": -2.0, "b": -2.0 + c, "change": c, "se": 0.001}
            for p, c in (('{"n_init": 1}', -0.01), ('{"n_init": 3}', 0.01)) for _ in (0, 1)]
    summary = by_estimator_dataset(pd.DataFrame(rows))
    assert list(summary["seeds"]) == [2, 2]
    assert list(summary["worse"]) == [True, False] and list(summary["better"]) == [False, True]


def test_an_improvement_exits_0(base, tmp_path):
    better = _shifted_copy(base, tmp_path / "better", shift=+0.05, noise=0.001)
    table = compare_runs(base, better)
    assert table[table.metric == "test_loglik"]["significant"].all()
    assert not table["worse"][table.metric == "test_loglik"].any()
    assert main(["compare", str(base), str(better)]) == 0


def test_compare_refuses_a_folder_that_is_not_a_run(base, tmp_path, capsys):
    assert main(["compare", str(base), str(tmp_path / "nope")]) == 2
    assert "no such run folder" in capsys.readouterr().err


def _moved_copy(base, dst, moves):
    """A copy of the run with the named metrics' (value, se) set to ``move(value, se)``."""
    shutil.copytree(base, dst)
    store = RunStore(dst)
    for rec in store.records():
        for m in rec["metrics"]:
            if m["metric"] in moves:
                m["value"], m["se"] = moves[m["metric"]](m["value"], m["se"])
        store.write(rec)
    return dst


def test_sample_metrics_are_judged_by_the_catalogues_direction(base, tmp_path, capsys):
    moved = _moved_copy(base, tmp_path / "moved", {
        "samples_mmd2": lambda v, se: (v + 10 * se, se),            # a discrepancy grew
        "samples_energy_distance": lambda v, se: (v - 10 * se, se),  # one shrank
        "samples_c2st_accuracy": lambda v, se: (0.95, 0.01),         # away from chance
        "floor_mmd2": lambda v, se: (v + 10 * se, se),               # the data's own
    })
    table = compare_runs(base, moved)
    expected = {"samples_mmd2": "worse", "samples_energy_distance": "better",
                "samples_c2st_accuracy": "worse",
                "floor_mmd2": ""}
    for metric, mark in expected.items():
        rows = table[table.metric == metric]
        assert len(rows) == 2 and rows["significant"].all(), metric
        marks = np.where(rows["worse"], "worse", np.where(rows["better"], "better", ""))
        assert (marks == mark).all(), (metric, marks)
    assert main(["compare", str(base), str(moved), "--all-metrics"]) == 0
    out = capsys.readouterr().out.splitlines()
    for metric, mark in expected.items():
        lines = [ln.rstrip() for ln in out if f" {metric} " in ln]
        assert len(lines) == 2 and all(ln.endswith(mark or tuple("0123456789"))
                                       for ln in lines), (metric, lines)


def test_cells_whose_settings_changed_are_paired_by_estimator_dataset_and_seed(tmp_path,
                                                                               capsys):
    """New default settings give a cell a new id; it is still compared, paired, with the
    old cell of the same estimator, dataset and seed (and nothing else is paired)."""
    runs = {}
    for name, h in (("old", 0.5), ("new", 0.25)):
        runs[name] = tmp_path / name
        run_cells([Cell(Spec("kde", {"bandwidth": h}), Spec("banana", SMALL), 0),
                   Cell(Spec("gaussian"), Spec("banana", SMALL), int(name == "new"))],
                  RunStore(runs[name], create=True))
    table = compare_runs(runs["old"], runs["new"])
    ll = table[table.metric == "test_loglik"]
    assert list(ll["estimator"]) == ["kde"] and ll["settings_changed"].all()
    recs = {n: {r["estimator"]["name"]: r for r in RunStore(p).records()}
            for n, p in runs.items()}
    diff = (decode_array(recs["new"]["kde"]["per_example"]["test_loglik"])
            - decode_array(recs["old"]["kde"]["per_example"]["test_loglik"]))
    assert ll["change"].iloc[0] == pytest.approx(diff.mean(), abs=1e-12)
    assert ll["se"].iloc[0] == pytest.approx(diff.std(ddof=1) / np.sqrt(diff.size))
    assert ll["paired"].all()
    main(["compare", str(runs["old"]), str(runs["new"])])
    out = capsys.readouterr().out
    assert "1 of them paired across changed settings" in out
    assert "(settings changed)" in out


def _broken_copy(base, dst, edit):
    """A copy of the run with ``edit(records)`` applied to its records (by file)."""
    shutil.copytree(base, dst)
    records = {p: json.loads(p.read_text()) for p in sorted((dst / "cells").glob("*.json"))}
    edit(records)
    return dst


def _no_longer_ok(status):
    def edit(records):
        path, rec = next(iter(records.items()))
        if status == "absent":
            path.unlink()
        else:  # as the runner records a cell that failed or ran out of time
            rec.update(status=status, error=f"cell {status}", metrics=[])
            rec.pop("per_example")
            path.write_text(json.dumps(rec))
    return edit


@pytest.mark.parametrize("status", ["timeout", "failed", "absent"])
def test_a_cell_ok_before_and_not_now_is_a_regression_and_exits_1(base, tmp_path, capsys,
                                                                   status):
    worse = _broken_copy(base, tmp_path / "worse", _no_longer_ok(status))
    changes = status_changes(base, worse)
    assert list(changes["status_a"]) == ["ok"] and list(changes["status_b"]) == [status]
    assert changes["worse"].all() and not changes["better"].any()
    assert main(["compare", str(base), str(worse)]) == 1
    out = capsys.readouterr().out
    assert "cell status: 1 no longer ok (regressions), 0 ok again." in out
    # the other way round the cell is fixed (or new): not a regression
    assert main(["compare", str(worse), str(base)]) == 0
    assert "0 no longer ok" in capsys.readouterr().out


def test_a_record_without_its_estimator_exits_2_naming_the_file(base, tmp_path, capsys):
    def edit(records):
        path, rec = next(iter(records.items()))
        del rec["estimator"]
        path.write_text(json.dumps(rec))
        edit.path = path

    broken = _broken_copy(base, tmp_path / "broken", edit)
    for args in ([str(base), str(broken)], [str(broken), str(base)]):
        assert main(["compare", *args]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("densbench: error: invalid record")
        assert str(edit.path) in err and "estimator is missing" in err


def test_an_empty_run_is_refused_with_one_line(base, tmp_path, capsys):
    RunStore(tmp_path / "empty", create=True)
    for args in ([str(base), str(tmp_path / "empty")], [str(tmp_path / "empty"), str(base)]):
        assert main(["compare", *args]) == 2
        err = capsys.readouterr().err
        assert err == f"densbench: error: no cell records in {tmp_path / 'empty'}: nothing " \
                      "to compare\n"
