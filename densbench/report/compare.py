"""Run-to-run comparison: the same cells in two runs, each change with its significance.

Log-likelihood changes of the same cell are tested on the paired per-example test values
(the same test points in both runs); other metrics with a standard error use the unpaired
difference with sqrt(se_a^2 + se_b^2); costs are shown without a test. Whether a
significant change is worse or better is the catalogue's direction (a metric with a target
value got worse when it moved away from the target); references, settings and metrics the
catalogue does not know are neither.

A cell whose settings changed between the runs (new defaults, say from a tuning search)
has a new id; it is paired with the old one when the estimator, the dataset (its
parameters and, for a data file, its content) and the seed identify one cell in each run,
so that the same test points are compared; such rows say ``settings_changed``.

A change within floating-point rounding (at most :data:`ROUNDING` times the larger of 1 and
the figures' size) is never significant: another order of floating-point sums (another
thread count, another BLAS) moves a figure by ~1e-14, with a paired SE smaller still.

A cell ok in the first run that is not ok in the second (failed, timed out) or is absent
from it has no figures to compare; :func:`status_changes` lists it, and it is a regression
(:func:`got_worse`). Both runs are read as data: every record is checked first (one that is
not a record raises :class:`~densbench.runner.records.RecordError` naming its file), and a
run with no records at all cannot be compared (:class:`~densbench.runner.store.StoreError`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from densbench.data.transforms import LN2
from densbench.metrics import catalogue as C
from densbench.metrics.paired import paired_difference
from densbench.runner.records import StoreError, decode_array
from densbench.runner.store import RunStore, frame

__all__ = ["ABSENT", "HEADLINE", "ROUNDING", "by_estimator_dataset", "compare_runs",
           "got_worse", "likelihood_got_worse", "read_run", "status_changes"]

#: The status :func:`status_changes` gives a cell that a run does not have.
ABSENT = "absent"

#: Relative size of a change that is rounding, not a change (see the module docstring).
ROUNDING = 1e-9

#: The metrics ``densbench compare`` shows unless asked for all.
HEADLINE = (C.TEST_LOGLIK, C.TEST_BITS_PER_DIM, C.KL_TO_TRUTH)

#: metric -> its change per unit change of the paired test log-likelihood, given the data
#: dimension (KL to the truth moves opposite: the truth's own term is the same in both runs).
_PAIRED = {
    C.TEST_LOGLIK: lambda d: 1.0,
    C.TEST_LOGLIK_PER_DIM: lambda d: 1.0 / d,
    C.TEST_BITS_PER_DIM: lambda d: -1.0 / (d * LN2),
    C.KL_TO_TRUTH: lambda d: -1.0,
}


Run = str | Path | Mapping[str, dict]


def read_run(run: Run) -> dict[str, dict]:
    """A run's checked records by cell id (``run`` a folder, or records already read by
    this function, returned as they are, so that one comparison reads each run once);
    :class:`StoreError` for a run without any."""
    if isinstance(run, Mapping):
        return dict(run)
    recs = RunStore(run).records()
    if not recs:
        raise StoreError(f"no cell records in {run}: nothing to compare")
    return {r["id"]: r for r in recs}


def _slot(rec: dict[str, Any]) -> tuple[str, str, str, str | None, int]:
    """What a cell is apart from its settings: estimator, dataset, its params and (a data
    file) its content, seed."""
    return (rec["estimator"]["name"], rec["dataset"]["name"],
            json.dumps(rec["dataset"].get("params") or {}, sort_keys=True),
            rec["dataset"].get("sha256"), int(rec["seed"]))


def _pairs(recs_a: dict[str, dict], recs_b: dict[str, dict]) -> dict[str, str]:
    """Cell id in run a -> its cell in run b: the same id, else the one cell of the same
    slot (:func:`_slot`) in each run among the cells the other run lacks."""
    pairs = {i: i for i in set(recs_a) & set(recs_b)}
    slots: list[dict[tuple, list[str]]] = []
    for recs in (recs_a, recs_b):
        by_slot: dict[tuple, list[str]] = {}
        for i, rec in recs.items():
            by_slot.setdefault(_slot(rec), []).append(i)
        slots.append(by_slot)
    for slot, ids_a in slots[0].items():
        ids_b = slots[1].get(slot, [])
        if len(ids_a) == 1 and len(ids_b) == 1 and ids_a[0] not in pairs \
                and ids_b[0] not in recs_a:
            pairs[ids_a[0]] = ids_b[0]
    return pairs


def compare_runs(run_a: Run, run_b: Run, level: float = 0.95) -> pd.DataFrame:
    """One row per (cell present and ok in both runs, metric): a, b, change = b - a, its SE,
    ``significant``, ``worse`` and ``better`` (significant and in the bad or good direction
    of the catalogue); ``cell_id`` is run b's, ``settings_changed`` marks a cell paired
    with another id (see the module docstring). Cells not ok in both: :func:`status_changes`."""
    recs_a, recs_b = read_run(run_a), read_run(run_b)
    pairs = {a: b for a, b in _pairs(recs_a, recs_b).items()
             if recs_a[a]["status"] == "ok" and recs_b[b]["status"] == "ok"}
    a_df, b_df = frame(list(recs_a.values())), frame(list(recs_b.values()))
    a_df = a_df[a_df["cell_id"].isin(pairs) & a_df["metric"].notna()]
    a_df = a_df.assign(id_a=a_df["cell_id"], cell_id=a_df["cell_id"].map(pairs))
    b_df = b_df[b_df["cell_id"].isin(set(pairs.values())) & b_df["metric"].notna()]
    keys = ["cell_id", "id_a", "estimator", "params", "dataset", "seed", "metric", "unit"]
    merged = a_df[keys + ["value", "se"]].merge(b_df[["cell_id", "metric", "value", "se"]],
                                                on=["cell_id", "metric"],
                                                suffixes=("_a", "_b"))
    rows = [_changed(r, recs_a[r.id_a], recs_b[r.cell_id], level)
            for r in merged.itertuples(index=False)]
    cols = ["estimator", "params", "dataset", "seed", "metric", "unit", "a", "b", "change",
            "se", "significant", "worse", "better", "paired", "cell_id", "settings_changed"]
    return pd.DataFrame(rows, columns=cols).sort_values(
        ["dataset", "estimator", "seed", "metric"]).reset_index(drop=True)


def _changed(r: Any, rec_a: dict[str, Any], rec_b: dict[str, Any],
             level: float) -> dict[str, Any]:
    """One metric of one cell in both runs (``r``: a row of the merged frames): its
    change, SE (paired over test examples where the metric allows it) and verdict."""
    change = r.value_b - r.value_a
    se, sig, paired = math.nan, False, False
    if r.metric in _PAIRED:
        ea = (rec_a.get("per_example") or {}).get(C.TEST_LOGLIK)
        eb = (rec_b.get("per_example") or {}).get(C.TEST_LOGLIK)
        if ea and eb and ea["n"] == eb["n"]:
            dim = int((rec_a.get("data") or {}).get("dim") or 1)
            pd_ = paired_difference(decode_array(eb), decode_array(ea), level)
            factor = _PAIRED[r.metric](dim)
            se, sig, paired = abs(factor) * pd_.se, pd_.significant, True
    if not paired and np.isfinite(r.se_a) and np.isfinite(r.se_b):
        se = math.hypot(r.se_a, r.se_b)
        z = float(stats.norm.ppf(0.5 + level / 2))
        sig = bool(se > 0 and abs(change) > z * se)
    if abs(change) <= ROUNDING * max(1.0, abs(r.value_a), abs(r.value_b)):
        sig = False  # rounding (see the module docstring)
    info = C.lookup(r.metric)
    worse = bool(sig and info is not None and info.worse(r.value_a, r.value_b))
    better = bool(sig and info is not None and info.worse(r.value_b, r.value_a))
    return {"estimator": r.estimator, "params": r.params, "dataset": r.dataset,
            "seed": r.seed, "metric": r.metric, "unit": r.unit, "a": r.value_a,
            "b": r.value_b, "change": change, "se": se, "significant": sig,
            "worse": worse, "better": better, "paired": paired,
            "cell_id": r.cell_id, "settings_changed": r.id_a != r.cell_id}


def status_changes(run_a: Run, run_b: Run) -> pd.DataFrame:
    """One row per cell whose status differs between the runs (:data:`ABSENT` where a run
    lacks it; cells paired as :func:`compare_runs` pairs them): estimator, params, dataset,
    seed, status_a, status_b, run b's error, ``worse`` (ok in run a, not ok or absent in
    run b: a regression), ``better`` (failed in run a, ok in run b), ``settings_changed``."""
    recs_a, recs_b = read_run(run_a), read_run(run_b)
    pairs = _pairs(recs_a, recs_b)
    rows = [_status_row(rec, recs_b.get(pairs.get(i, ""))) for i, rec in recs_a.items()]
    paired_b = set(pairs.values())
    rows += [_status_row(None, rec) for i, rec in recs_b.items() if i not in paired_b]
    cols = ["estimator", "params", "dataset", "seed", "status_a", "status_b", "error",
            "worse", "better", "settings_changed", "cell_id"]
    table = pd.DataFrame(rows, columns=cols)
    table = table[table["status_a"] != table["status_b"]]
    return table.sort_values(["dataset", "estimator", "seed"]).reset_index(drop=True)


def _status_row(rec_a: dict[str, Any] | None, rec_b: dict[str, Any] | None) -> dict[str, Any]:
    rec = rec_a if rec_a is not None else rec_b
    assert rec is not None
    status_a = rec_a["status"] if rec_a is not None else ABSENT
    status_b = rec_b["status"] if rec_b is not None else ABSENT
    return {"estimator": rec["estimator"]["name"],
            "params": json.dumps(rec["estimator"].get("params") or {}, sort_keys=True),
            "dataset": rec["dataset"]["name"], "seed": rec["seed"],
            "status_a": status_a, "status_b": status_b,
            "error": rec_b.get("error") if rec_b is not None else None,
            "worse": status_a == "ok" and status_b != "ok",
            "better": status_a not in ("ok", ABSENT) and status_b == "ok",
            "settings_changed": None not in (rec_a, rec_b) and rec_a["id"] != rec_b["id"],
            "cell_id": (rec_b or rec)["id"]}


def likelihood_got_worse(table: pd.DataFrame) -> bool:
    """True when any cell's test log-likelihood got significantly worse."""
    sel = table[table["metric"] == C.TEST_LOGLIK]
    return bool(sel["worse"].any())


def got_worse(table: pd.DataFrame, statuses: pd.DataFrame) -> bool:
    """True when run b is worse than run a: a test log-likelihood significantly worse
    (``table``: :func:`compare_runs`) or a cell ok in run a not ok or absent in run b
    (``statuses``: :func:`status_changes`)."""
    return likelihood_got_worse(table) or bool(statuses["worse"].any())


def by_estimator_dataset(table: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """The paired test log-likelihood changes of :func:`compare_runs` pooled per
    estimator entry (its name and run a's settings) and dataset: the mean change over the
    seeds in both runs (nats/example) and its SE, sqrt(sum of the cells' SE^2) / seeds
    (seeds are independent fits on independent splits), ``z``, and ``worse``/``better``
    when significant at ``level``; the question "is each family at least as good as before
    on each dataset?" in one row each. Changes within rounding (:data:`ROUNDING`) count as
    none.

    Example:
        >>> t = pd.DataFrame({"estimator": ["gmm"] * 2, "params": ["{}"] * 2,
        ...                   "dataset": ["banana"] * 2,
        ...                   "metric": ["test_loglik"] * 2, "paired": [True] * 2,
        ...                   "a": [-2.0, -2.1], "b": [-2.03, -2.11],
        ...                   "change": [-0.03, -0.01], "se": [0.006, 0.008]})
        >>> row = by_estimator_dataset(t).iloc[0]
        >>> round(float(row["change"]), 3), round(float(row["se"]), 3), bool(row["worse"])
        (-0.02, 0.005, True)
    """
    sel = table[(table["metric"] == C.TEST_LOGLIK) & table["paired"]]
    z_crit = float(stats.norm.ppf(0.5 + level / 2))
    rows = []
    for (est, params, ds), g in sel.groupby(["estimator", "params", "dataset"], sort=True):
        n = len(g)
        change = float(g["change"].mean())
        se = math.sqrt(float((g["se"] ** 2).sum())) / n
        size = max(1.0, float(g["a"].abs().max()), float(g["b"].abs().max()))
        sig = abs(change) > ROUNDING * size and abs(change) > z_crit * se
        if se > 0:
            z = change / se
        else:  # identical per-example values: no spread, any change is exact
            z = math.copysign(math.inf, change) if change else 0.0
        rows.append({"estimator": est, "params": params, "dataset": ds, "seeds": n,
                     "change": change,
                     "se": se, "z": z, "worse": bool(sig and change < 0),
                     "better": bool(sig and change > 0)})
    return pd.DataFrame(rows, columns=["estimator", "params", "dataset", "seeds", "change",
                                       "se", "z", "worse", "better"])
