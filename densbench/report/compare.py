"""Run-to-run comparison: the same cells in two runs, each change with its significance.

Log-likelihood changes of the same cell are tested on the paired per-example test values
(the same test points in both runs); other metrics with a standard error use the unpaired
difference with sqrt(se_a^2 + se_b^2); costs are shown without a test.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from densbench.data.transforms import LN2
from densbench.metrics.paired import paired_difference
from densbench.runner.store import RunStore, decode_array, load

__all__ = ["compare_runs", "likelihood_got_worse"]

#: metric -> (how it is derived from the paired test log-likelihood difference, higher is
#: better). The factor takes the data dimension.
_PAIRED = {
    "test_loglik": (lambda d: 1.0, True),
    "test_loglik_per_dim": (lambda d: 1.0 / d, True),
    "test_bits_per_dim": (lambda d: -1.0 / (d * LN2), False),
    "kl_to_truth": (lambda d: -1.0, False),
}
_LOWER_IS_BETTER_UNITS = {"s", "MB", "bits/dim", "nats"}


def _per_example(run: Path) -> dict[str, dict]:
    return {r["id"]: r for r in RunStore(run).records() if r.get("status") == "ok"}


def compare_runs(run_a: str | Path, run_b: str | Path, level: float = 0.95) -> pd.DataFrame:
    """One row per (cell present and ok in both runs, metric): a, b, change = b - a, its SE,
    ``significant`` and ``worse`` (significant and in the bad direction)."""
    a_df, b_df = load(run_a), load(run_b)
    recs_a, recs_b = _per_example(Path(run_a)), _per_example(Path(run_b))
    common = sorted(set(recs_a) & set(recs_b))
    a_df = a_df[a_df["cell_id"].isin(common) & a_df["metric"].notna()]
    b_df = b_df[b_df["cell_id"].isin(common) & b_df["metric"].notna()]
    keys = ["cell_id", "estimator", "params", "dataset", "seed", "metric", "unit"]
    merged = a_df[keys + ["value", "se"]].merge(b_df[["cell_id", "metric", "value", "se"]],
                                                on=["cell_id", "metric"],
                                                suffixes=("_a", "_b"))
    rows = []
    for r in merged.itertuples(index=False):
        change = r.value_b - r.value_a
        se, sig, paired = math.nan, False, False
        if r.metric in _PAIRED:
            ea = recs_a[r.cell_id].get("per_example", {}).get("test_loglik")
            eb = recs_b[r.cell_id].get("per_example", {}).get("test_loglik")
            if ea and eb and ea["n"] == eb["n"]:
                dim = int(recs_a[r.cell_id].get("data", {}).get("dim", 1))
                pd_ = paired_difference(decode_array(eb), decode_array(ea), level)
                factor = _PAIRED[r.metric][0](dim)
                se, sig, paired = abs(factor) * pd_.se, pd_.significant, True
        if not paired and np.isfinite(r.se_a) and np.isfinite(r.se_b):
            se = math.hypot(r.se_a, r.se_b)
            z = float(stats.norm.ppf(0.5 + level / 2))
            sig = bool(se > 0 and abs(change) > z * se)
        higher_better = _PAIRED[r.metric][1] if r.metric in _PAIRED else (
            r.unit not in _LOWER_IS_BETTER_UNITS)
        worse = bool(sig and ((change < 0) if higher_better else (change > 0)))
        rows.append({"estimator": r.estimator, "params": r.params, "dataset": r.dataset,
                     "seed": r.seed, "metric": r.metric, "unit": r.unit, "a": r.value_a,
                     "b": r.value_b, "change": change, "se": se, "significant": sig,
                     "worse": worse, "paired": paired, "cell_id": r.cell_id})
    cols = ["estimator", "params", "dataset", "seed", "metric", "unit", "a", "b", "change",
            "se", "significant", "worse", "paired", "cell_id"]
    return pd.DataFrame(rows, columns=cols).sort_values(
        ["dataset", "estimator", "seed", "metric"]).reset_index(drop=True)


def likelihood_got_worse(table: pd.DataFrame) -> bool:
    """True when any cell's test log-likelihood got significantly worse."""
    sel = table[table["metric"] == "test_loglik"]
    return bool(sel["worse"].any())
