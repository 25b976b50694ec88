"""The tuning protocol of a cell: candidate settings judged on the validation split only.

A suite's ``tune`` table (:class:`~densbench.estimators.selection.SearchSpace`) gives
candidate values for any hyperparameters of an estimator. For each cell (dataset and
seed) every candidate setting is fitted on the training split, with the validation split
for its own early stopping, as the final model would be, and judged on the validation
split by one criterion for every estimator:

- the mean validation log-likelihood (or bound) in the data's own units, where the
  estimator has one (higher is better);
- otherwise (an implicit model, a GAN) the energy distance of as many samples as there
  are validation rows to the validation rows, in the data's own space (lower is better).

:func:`tune` sees the training and validation splits and nothing else: the test split
never reaches it, so selection cannot use it. The winner is then **refitted** on the
training split by the runner, as every untuned cell is fitted, rather than kept: with the
same seed the refit is the same model (same seed, same machine, same numbers; the record
shows both validation figures), the record's ``effective_params`` alone then reproduce the
final model, the fit's time, throughput and peak memory measure the chosen setting alone,
and no candidate is held in memory while the next one trains. The search costs one fit
per candidate; its wall time and number of trials are recorded as costs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from densbench.estimators.selection import SearchSpace, search

__all__ = ["Trial", "found_settings", "tune"]

#: What the final model is, for the record.
FINAL = "refit on the training split with the chosen values (same seed)"


@dataclass
class Trial:
    """One candidate setting and how it did (``score`` None if its fit or scoring failed)."""

    params: dict[str, Any]
    score: float | None = None
    se: float | None = None
    seconds: float = 0.0
    error: str | None = None


def _criterion(est: Any, prep: Any, seed: int) -> tuple[str, str, str, float, float]:
    """(name, unit, direction, value, SE over validation rows) of a fitted candidate."""
    from densbench.estimators.base import LikelihoodKind
    from densbench.metrics import mean_se
    from densbench.metrics.samples import energy_distance

    if est.likelihood is not LikelihoodKind.NONE:
        ll = prep.to_data_units("val", est.score_samples(prep.val))
        if not np.isfinite(ll).all():
            raise FloatingPointError("validation log-likelihoods are not all finite")
        m, se = mean_se(ll)
        return "val_loglik", "nats/example", "higher", m, se
    samples = est.sample(len(prep.val), random_state=seed)
    if not np.isfinite(samples).all():
        raise FloatingPointError("samples contain NaN or inf")
    d = energy_distance(prep.to_data_space(samples), prep.to_data_space(prep.val))
    return "val_energy_distance", "data units", "lower", float(d.value), d.se


def tune(name: str, base: dict[str, Any], space: SearchSpace, prep: Any,
         seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Fit every candidate of ``space`` over the hyperparameters ``base`` and judge it on
    ``prep.val`` (``prep``: the training and validation splits as the estimator sees them;
    its test split is never read). Returns the chosen hyperparameters (``base`` with the
    winner's values) and the record of the search (criterion, every trial's score and
    seconds, the chosen values, total seconds). Raises ``ValueError`` if every candidate
    failed (each one's error in the message)."""
    from densbench import estimators
    from densbench.metrics.timing import Stopwatch

    trials = [Trial(t) for t in space.trials()]
    meta: dict[str, str] = {}
    train, val = prep.train, prep.val

    def evaluate(trial: Trial) -> tuple[float, None]:
        with Stopwatch() as sw:
            try:
                est = estimators.make(name, **{**base, **trial.params})
                est.fit(train, val)
                crit, unit, better, value, se = _criterion(est, prep, seed)
            except Exception as exc:  # a failing candidate is recorded, the others go on
                trial.error = f"{type(exc).__name__}: {exc}"
            else:
                meta.update(criterion=crit, unit=unit, better=better)
                trial.score, trial.se = value, (None if not math.isfinite(se) else se)
        trial.seconds = sw.seconds
        if trial.score is None or not math.isfinite(trial.score):
            return -math.inf, None
        return (trial.score if better == "higher" else -trial.score), None

    with Stopwatch() as total:
        best, _, _ = search(trials, evaluate)
    if best is None:
        errors = "; ".join(f"{t.params}: {t.error}" for t in trials)
        raise ValueError(f"{name}: every tuning candidate failed ({errors})")
    chosen = trials[best].params
    record = {**space.to_dict(), **meta, "final": FINAL, "chosen": chosen,
              "chosen_index": best, "trials": [asdict(t) for t in trials],
              "seconds": total.seconds}
    return {**base, **chosen}, record


def _metric(record: dict[str, Any], name: str) -> dict[str, Any]:
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
