"""``densbench export`` and ``densbench.results``: real runs of tiny cells, exported and
read back with pandas."""

import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest

import densbench as db
from densbench.cli import main
from densbench.runner.execute import run_suite
from densbench.runner.plan import Spec, Suite
from densbench.runner.store import RunStore

TINY = {"n_train": 200, "n_val": 50, "n_test": 100}


def _make_run(root, seeds, estimators):
    root.parent.mkdir(parents=True, exist_ok=True)
    suite = Suite("tiny", tuple(estimators), (Spec("banana", TINY),), seeds, n_samples=50,
                  sample_metrics=False)
    run_suite(suite, RunStore(root, create=True), executor="inprocess")
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two runs in folders of the same name: one with a failing cell, one with two seeds."""
    root = tmp_path_factory.mktemp("runs")
    a = _make_run(root / "a" / "run", (0,),
                  [Spec("diag_gaussian"), Spec("kde", {"bandwidth": -1.0})])  # kde fails
    b = _make_run(root / "b" / "run", (0, 1), [Spec("gaussian")])
    return a, b


def _export(capsys, *args):
    code = main(["export", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_export_of_two_runs_is_one_parquet_table_equal_to_load(runs, tmp_path, capsys):
    out = tmp_path / "both.parquet"
    code, stdout, _ = _export(capsys, *runs, "--out", out)
    assert code == 0
    table = db.results.load(*runs)
    assert stdout.strip() == (f"wrote {len(table)} rows (2 runs, 4 cells; 1 not ok, one row "
                              f"each with status and error, no value) to {out}")
    back = pd.read_parquet(out)
    pd.testing.assert_frame_equal(back, table)
    pd.testing.assert_frame_equal(back, db.results.load(list(runs)))
    assert list(back["run"].unique()) == ["a/run", "b/run"]
    assert back["seed"].dtype == np.int64 and back["value"].dtype == np.float64
    ok = back[back["status"] == "ok"]
    assert ok["unit"].notna().all() and ok["commit"].notna().all()
    test_ll = ok[ok["metric"] == "test_loglik"]
    assert set(test_ll["unit"]) == {"nats/example"} and len(test_ll) == 3
    assert set(ok["data_kind"]) == {"continuous"} and set(ok["device"]) == {"cpu"}
    assert set(ok["likelihood_kind"]) == {"exact"}
    [failed] = back[back["status"] != "ok"].itertuples()
    assert (failed.estimator, failed.status) == ("kde", "failed")
    assert pd.isna(failed.metric) and np.isnan(failed.value) and "bandwidth" in failed.error
    # the figures are the records' own, to the bit
    rec = next(r for r in RunStore(runs[1]).records() if r["seed"] == 1)
    stored = {m["metric"]: m["value"] for m in rec["metrics"]}
    mine = back[(back["run"] == "b/run") & (back["cell_id"] == rec["id"])]
    assert dict(zip(mine["metric"], mine["value"], strict=True)) == stored


def test_csv_export_reads_back_the_same_table(runs, tmp_path, capsys):
    out = tmp_path / "both.txt"
    code, _, _ = _export(capsys, *runs, "--out", out, "--format", "csv")
    assert code == 0
    back = pd.read_csv(out)
    pd.testing.assert_frame_equal(back, db.results.load(*runs), check_dtype=False)
    assert back["seed"].dtype == np.int64 and back["value"].dtype == np.float64
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary


def test_a_run_whose_records_name_code_is_exported_as_data(runs, tmp_path, capsys):
    marker = tmp_path / "MARKER"
    crafted = tmp_path / "crafted"
    shutil.copytree(runs[0], crafted)
    source = next(r for r in RunStore(crafted).records() if r["status"] == "ok")
    evil = {**source, "id": "e" * 16,
            "estimator": {"name": "os:system", "params": {"command": f"touch {marker}"}},
            "dataset": {"name": "timeit:main", "params": {"args": [
                "-n", "1", "-r", "1", "-s",
                f"import pathlib; pathlib.Path({str(marker)!r}).touch()", "pass"]}}}
    (crafted / "cells" / f"{evil['id']}.json").write_text(json.dumps(evil))
    out = tmp_path / "crafted.parquet"
    code, _, err = _export(capsys, crafted, "--out", out)
    assert code == 0, err
    assert not marker.exists()
    back = pd.read_parquet(out)
    assert set(back.loc[back["cell_id"] == "e" * 16, "estimator"]) == {"os:system"}
    # a record that is not one: named with its file and field, and nothing written
    bad = crafted / "cells" / f"{'1' * 16}.json"
    bad.write_text(json.dumps({**source, "id": "../../x"}))
    before = out.read_bytes()
    code, stdout, err = _export(capsys, crafted, "--out", out)
    assert code == 2 and stdout == "" and err.count("\n") == 1
    assert str(bad) in err and "id must be 16 hex digits" in err
    assert out.read_bytes() == before and not marker.exists()


@pytest.mark.parametrize("case, message", [
    ("missing", "no such run folder"),
    ("empty", "run folder holds no cell record"),
    ("suffix", "cannot tell the format from the suffix"),
    ("format", "unknown export format 'xlsx'; choose one of parquet, csv"),
    ("folder", "output path is a folder"),
    ("no_parent", "output file's folder does not exist"),
    ("twice", "run folder given twice"),
])
def test_export_errors_are_one_line_and_write_nothing(runs, tmp_path, capsys, case, message):
    (tmp_path / "empty" / "cells").mkdir(parents=True)
    (tmp_path / "out").mkdir()
    args = {"missing": [tmp_path / "nope", "-o", tmp_path / "x.csv"],
            "empty": [runs[0], tmp_path / "empty", "-o", tmp_path / "x.csv"],
            "suffix": [runs[0], "-o", tmp_path / "x.xlsx"],
            "format": [runs[0], "-o", tmp_path / "x.csv", "--format", "xlsx"],
            "folder": [runs[0], "-o", tmp_path / "out"],
            "no_parent": [runs[0], "-o", tmp_path / "no" / "x.csv"],
            "twice": [runs[0], runs[0] / ".." / "run", "-o", tmp_path / "x.csv"]}[case]
    code, stdout, err = _export(capsys, *args)
    assert code == 2 and stdout == ""
    assert err.startswith("densbench: error: ") and err.count("\n") == 1 and message in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "out"]
    assert not any((tmp_path / "out").iterdir())


def test_an_export_that_fails_while_writing_leaves_no_file(runs, tmp_path, monkeypatch):
    from densbench import results

    def half(df, fh):
        fh.write(b"run,commit\n")
        raise OSError("disk full")

    monkeypatch.setitem(results.FORMATS, "csv", results.TableFormat((".csv",), half))
    with pytest.raises(OSError, match="disk full"):
        results.export(runs, tmp_path / "t.csv")
    assert os.listdir(tmp_path) == []
