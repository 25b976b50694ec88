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

__all__ = ["Trial", "tune"]

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


def _judged(name: str, value: float, se: float | None
            ) -> tuple[str, str, str, float, float | None]:
    """A criterion's row with the unit and direction its catalogue entry gives."""
    from densbench.metrics.catalogue import validation

    info = validation(name)
    if info is None:
        raise LookupError(f"tuning criterion {name!r} has no catalogue entry")
    return name, info.unit, info.direction.value, value, se


def _criterion(est: Any, prep: Any, seed: int
               ) -> tuple[str, str, str, float, float | None]:
    """(name, unit, direction, value, SE over validation rows) of a fitted candidate."""
    from densbench.estimators.base import LikelihoodKind
    from densbench.metrics import mean_se
    from densbench.metrics.catalogue import loglik
    from densbench.metrics.samples import energy_distance

    if est.likelihood is not LikelihoodKind.NONE:
        ll = prep.to_data_units("val", est.score_samples(prep.val))
        if not np.isfinite(ll).all():
            raise FloatingPointError("validation log-likelihoods are not all finite")
        m, se = mean_se(ll)
        return _judged(loglik("val"), m, se)
    samples = est.sample(len(prep.val), random_state=seed)
    if not np.isfinite(samples).all():
        raise FloatingPointError("samples contain NaN or inf")
    d = energy_distance(prep.to_data_space(samples), prep.to_data_space(prep.val))
    return _judged("val_energy_distance", float(d.value), d.se)


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
                est.fit(train, val, **prep.fit_keywords())
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
