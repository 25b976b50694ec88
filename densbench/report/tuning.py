"""The settings a run's tuning searches chose, as the report's ``tuning.toml``.

It is read from a run's records (:mod:`densbench.runner.records`, as every report figure
is): the search itself is :mod:`densbench.runner.tuning`, which writes nothing but records.
"""

from __future__ import annotations

from typing import Any

__all__ = ["found_settings"]


def _metric(record: dict[str, Any], name: str) -> dict[str, Any]:
    """The record's row of metric ``name`` (empty if it has none)."""
    return next((m for m in record.get("metrics") or [] if m["metric"] == name), {})


def found_settings(records: list[dict[str, Any]], manifest: dict[str, Any]) -> str | None:
    """The settings a run's tuning searches chose, as TOML (None if no cell was tuned):
    one ``[[found]]`` table per tuned cell with the estimator, dataset, seed, search (kind,
    seed, number of trials), the chosen values, the final model's hyperparameters as a
    suite gives them, its validation score and its test log-likelihood (both ± SE over
    examples), the tuning seconds and the cell id; the header names the suite, command,
    git commit and machine, so the file says how it was made."""
    import tomli_w

    found = []
    for r in sorted(records, key=lambda r: (r["estimator"]["name"], r["dataset"]["name"],
                                            int(r["seed"]))):
        t = r.get("tuning")
        if r.get("status") != "ok" or not t:
            continue
        best = t["trials"][t["chosen_index"]]
        test = _metric(r, "test_loglik")
        entry = {"estimator": r["estimator"]["name"], "dataset": r["dataset"]["name"],
                 "dataset_params": r["dataset"].get("params", {}), "seed": int(r["seed"]),
                 "search": t["search"], "search_seed": t["seed"],
                 "n_trials": len(t["trials"]), "criterion": t["criterion"],
                 "unit": t["unit"], "val_score": best["score"], "val_se": best["se"],
                 "test_loglik": test.get("value"), "test_se": test.get("se"),
                 "tuning_seconds": round(float(t["seconds"]), 1), "cell": r["id"],
                 "chosen": t["chosen"],
                 "params": {**r["estimator"].get("params", {}), **t["chosen"]}}
        found.append({k: v for k, v in entry.items() if v is not None and v != {}})
    if not found:
        return None
    machine = manifest.get("machine", {})
    header = [
        "# Settings chosen by densbench's tuning protocol (densbench/runner/tuning.py): every",
        "# candidate fitted on the training split and judged on the validation split only; the",
        "# test figure is the refitted winner's, shown for the record, never used to choose.",
        f"# suite: {manifest.get('suite', {}).get('name', '?')}; git commit: "
        f"{manifest.get('git_commit') or 'unknown'}; machine: "
        f"{machine.get('platform', '?')}, {machine.get('cpus', '?')} CPUs",
    ]
    header += [f"# command: {inv.get('command')} ({inv.get('started')} to "
               f"{inv.get('finished') or 'unfinished'})"
               for inv in manifest.get("invocations", [])]
    return "\n".join(header) + "\n\n" + tomli_w.dumps({"found": found})
