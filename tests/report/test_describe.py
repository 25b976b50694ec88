import dataclasses

import pandas as pd

from densbench.report.describe import footer, intro, run_description
from densbench.runner.execute import _narrowed_from, run_suite
from densbench.runner.plan import Spec, builtin_suite
from densbench.runner.store import RunStore


def _record(i, estimator, dataset, kind, dim, levels=None, status="ok", seed=0):
    return {"id": f"{i:016x}", "estimator": {"name": estimator, "params": {}},
            "dataset": {"name": dataset, "params": {}}, "seed": seed, "status": status,
            "data": {"kind": kind, "dim": dim, "levels": levels}}


def _agg(records, figure):
    return pd.DataFrame([{"dataset": r["dataset"]["name"], "label": r["estimator"]["name"],
                          "metric": "test_loglik", "n_seeds": 1, "likelihood_kind": "exact",
                          "figure": figure} for r in records if r["status"] == "ok"])


def test_the_intro_is_written_from_what_the_run_holds():
    recs = [_record(1, "gaussian", "banana", "continuous", 2),
            _record(2, "/home/x/model.py:Far", "banana", "continuous", 2),
            _record(3, "kde", "banana", "continuous", 2, status="failed")]
    names = {"gaussian": "gaussian", "kde": "kde", "/home/x/model.py:Far": "model.py:Far"}
    manifest = {"suite": {"name": "quick", "source": "densbench/suites/quick.toml"}}
    text = intro(recs, _agg(recs, "log-density (continuous data)"), manifest, paired=False,
                 names=names)
    assert text.startswith("A run of suite quick (quick.toml). It holds 3 estimators "
                           "(gaussian, kde, model.py:Far) on 1 dataset: banana (continuous, "
                           "2-D); seed 0. 2 of 3 cells ok, 1 failed.")
    assert "digits" not in text and "discrete" not in text and "bits/dim" not in text
    assert "'vs best'" not in text and "one seed's" in text
    assert "Likelihood kinds: exact." in text
    assert text.count("/home/x/model.py:Far") == 1  # the full name, once

    digits = [_record(4, "gaussian", "mnist5k", "discrete", 784, levels=256)]
    text = intro(digits, _agg(digits, "dequantized lower bound on discrete log-probability"),
                 {}, paired=True, names={"gaussian": "gaussian"})
    assert "mnist5k (discrete, 256 levels, 784-D)" in text
    assert "on discrete data (mnist5k) also in bits/dim" in text and "'vs best'" in text
    assert "digits)" not in text


def test_a_narrowed_run_says_so_and_an_old_manifest_still_reads(tmp_path):
    quick = builtin_suite("quick")
    assert _narrowed_from(quick) is None and _narrowed_from(quick.restrict()) is None
    narrowed = quick.restrict(estimators=["gaussian"], datasets=["banana"])
    assert _narrowed_from(narrowed.restrict(n_seeds=1)) == _narrowed_from(narrowed) == {
        "estimators": 4, "datasets": 3, "seeds": 1}

    tiny = dataclasses.replace(narrowed, sample_metrics=False, datasets=(
        Spec("banana", {"n_train": 100, "n_val": 50, "n_test": 50}),))
    store = RunStore(tmp_path, create=True)
    run_suite(tiny, store, executor="inprocess", command="densbench run ...")
    manifest = store.read_manifest()
    assert manifest["suite"]["narrowed_from"] == {"estimators": 4, "datasets": 3, "seeds": 1}
    assert footer(manifest)[0] == run_description(manifest) == (
        "suite quick (quick.toml), restricted by the command line (the suite as written: "
        "4 estimators x 3 datasets x 1 seed)")

    del manifest["suite"]["narrowed_from"]  # as a run of an older densbench has it
    assert footer(manifest)[0] == "suite quick (quick.toml)"
    assert footer({}) == ["no manifest.json in this run folder (or one that cannot be read)"]
