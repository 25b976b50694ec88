"""Choosing among candidate settings on validation data: one search, two users.

:func:`search` fits candidates in order, keeps the best by a criterion and stops after
``patience`` candidates without improvement (or tries them all). Two things use it:

- an estimator's own size parameter (mixture components, HMM states, in
  :mod:`densbench.estimators.gmm` and :mod:`densbench.estimators.hmm`): an int or a list of
  ints, searched in increasing order by :func:`select_size`, scored by the mean validation
  log-likelihood when validation data are given, else by BIC on the training data;
- the tuning protocol of a suite (:class:`SearchSpace`, run by
  :mod:`densbench.runner.tuning`): candidate values for any hyperparameter of any
  estimator, a grid or a budgeted random search (Bergstra & Bengio 2012, "Random search for
  hyper-parameter optimization", JMLR 13), every candidate fitted on the training split and
  judged on the validation split only.

Candidates are drawn with scikit-learn's ``ParameterGrid`` and ``ParameterSampler`` and
SciPy's distributions (a log-uniform learning rate is ``scipy.stats.loguniform``): the
field's own tools, so a suite's search is the one a scikit-learn user would run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from densbench.estimators.base import DensityEstimator
from densbench.estimators.params import Constraint, Interval, ListOf

__all__ = ["DISTRIBUTIONS", "SIZES", "SearchSpace", "Selection", "search", "select_size",
           "start_seeds"]

T = TypeVar("T")

#: The constraints of a size hyperparameter: one size, or candidates to select from.
SIZES: list[Constraint | None] = [Interval(int, 1, None), ListOf(Interval(int, 1, None))]


class Selection:
    """The outcome of :func:`select_size`: ``size``, the kept ``state``, ``tried`` (list of
    (size, score) in the order tried) and ``criterion`` (``'val_loglik'``, ``'bic'``)."""

    def __init__(self, size: int, state: Any, tried: list[tuple[int, float]],
                 criterion: str) -> None:
        self.size, self.state, self.tried, self.criterion = size, state, tried, criterion


def search(candidates: Sequence[T], evaluate: Callable[[T], tuple[float, Any]],
           patience: int | None = None) -> tuple[int | None, Any, list[float]]:
    """Evaluate ``candidates`` in order; ``evaluate(c)`` returns ``(gain, state)``, higher
    gain better (``-inf`` for a candidate that failed). Stops after ``patience``
    consecutive candidates without improvement (None: tries all). Returns the index of
    the best candidate (None if every gain was ``-inf``), its state, and the gains in the
    order tried (as many as were evaluated)."""
    gains: list[float] = []
    best: tuple[float, int, Any] | None = None
    since_best = 0
    for i, cand in enumerate(candidates):
        gain, state = evaluate(cand)
        gains.append(gain)
        if gain > -math.inf and (best is None or gain > best[0]):
            best, since_best = (gain, i, state), 0
        else:
            since_best += 1
            if patience is not None and since_best >= patience:
                break
    return (None, None, gains) if best is None else (best[1], best[2], gains)


#: The largest seed scikit-learn (and so hmmlearn's k-means) accepts.
_MAX_SEED = 2**32 - 1


def start_seeds(est: DensityEstimator, n_init: int) -> list[int]:
    """Seeds of an estimator's ``n_init`` starts: ``random_state``, ``random_state + 1``,
    ... (the first start is then the library's default fit with that seed). Raises
    ``ValueError`` naming both settings where the last would pass scikit-learn's largest
    seed, before any fit (scikit-learn's own message would blame the data or the engine).

    Example:
        >>> from densbench.estimators.gmm import GMM
        >>> start_seeds(GMM(random_state=7), 3)
        [7, 8, 9]
    """
    first = est._seed()
    if first + n_init - 1 > _MAX_SEED:
        raise ValueError(f"{est.name}: random_state {first} with n_init {n_init} needs seeds "
                         f"up to {first + n_init - 1}, past scikit-learn's largest "
                         f"({_MAX_SEED}); use random_state <= {_MAX_SEED - n_init + 1}")
    return [first + i for i in range(n_init)]


def select_size(est: DensityEstimator, candidates: list[int], fit: Callable[[int], Any],
                X: np.ndarray, X_val: np.ndarray | None, patience: int) -> Selection:
    """Fit ``candidates`` in increasing order and keep the best (see :func:`search`).

    ``fit(k)`` fits size ``k``, leaves ``est`` in that fitted state (so that its
    ``_score_samples`` and ``_n_parameters`` describe it) and returns what restores it.
    Score: mean validation log-likelihood (higher is better) with ``X_val``, else BIC on
    ``X``, ``-2 log L + p log n`` (lower is better). The caller restores the kept state.
    """
    criterion = "val_loglik" if X_val is not None else "bic"
    sizes = sorted(set(candidates))

    def evaluate(k: int) -> tuple[float, Any]:
        state = fit(k)
        if X_val is not None:
            return float(np.mean(est._score_samples(X_val))), state
        bic = (-2.0 * float(np.sum(est._score_samples(X)))
               + est._n_parameters() * math.log(X.shape[0]))
        return -bic, state

    best, state, gains = search(sizes, evaluate, patience)
    if best is None:
        raise ValueError(f"{est.name}: no size candidate to fit")
    sign = 1.0 if X_val is not None else -1.0
    tried = [(k, sign * g) for k, g in zip(sizes, gains, strict=False)]
    return Selection(sizes[best], state, tried, criterion)


#: Distributions a random search may draw a hyperparameter from, as a suite writes them:
#: ``lr = { log_uniform = [1e-4, 1e-2] }`` (both ends included for the integer one).
DISTRIBUTIONS: dict[str, Callable[[float, float], Any]] = {
    "uniform": lambda lo, hi: _stats().uniform(lo, hi - lo),
    "log_uniform": lambda lo, hi: _stats().loguniform(lo, hi),
    "int_uniform": lambda lo, hi: _stats().randint(lo, hi + 1),
}


def _stats() -> Any:
    from scipy import stats

    return stats


@dataclass(frozen=True)
class SearchSpace:
    """Candidate values for hyperparameters, as a suite's ``tune`` table gives them.

    Each value is a list of candidates (``hidden = [[32, 32], [64, 64]]``: a list value is
    one candidate) or a distribution (:data:`DISTRIBUTIONS`). With no ``n_trials`` the
    space must be all lists and every combination is tried (a grid); with ``n_trials``,
    that many settings are drawn with ``seed`` (scikit-learn's ``ParameterSampler``: lists
    without replacement when the space is all lists). The drawn settings depend on the
    space and ``seed`` only, so every dataset and cell seed of a suite judges the same
    candidates: a paired comparison.

    Example:
        >>> s = SearchSpace.parse({"lr": {"log_uniform": [1e-4, 1e-2]}, "hidden": [32, 64]},
        ...                       n_trials=3, seed=0, who="maf")
        >>> [sorted(t) for t in s.trials()]
        [['hidden', 'lr'], ['hidden', 'lr'], ['hidden', 'lr']]
        >>> SearchSpace.parse({"hidden": [32, 64], "lr": [0.01, 0.001]}, who="maf").trials()[0]
        {'hidden': 32, 'lr': 0.01}
    """

    space_json: str
    n_trials: int | None = None
    seed: int = 0

    @classmethod
    def parse(cls, raw: Mapping[str, Any], *, n_trials: int | None = None, seed: int = 0,
              who: str) -> SearchSpace:
        """Check a ``tune`` table; raises ``ValueError`` naming ``who`` and the key."""
        if not raw:
            raise ValueError(f"{who}: tune names no hyperparameter")
        for key, value in raw.items():
            if isinstance(value, dict):
                _distribution(key, value, who)
            elif not isinstance(value, list) or not value:
                raise ValueError(f"{who}: tune.{key} must be a non-empty list of candidates "
                                 f"or a distribution ({', '.join(DISTRIBUTIONS)} = [low, "
                                 f"high]); got {value!r}")
        if n_trials is not None and (isinstance(n_trials, bool) or not isinstance(n_trials, int)
                                     or n_trials < 1):
            raise ValueError(f"{who}: search.n_trials must be an int >= 1; got {n_trials!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"{who}: search.seed must be an int >= 0; got {seed!r}")
        drawn = sorted(k for k, v in raw.items() if isinstance(v, dict))
        if drawn and n_trials is None:
            raise ValueError(f"{who}: tune.{drawn[0]} is a distribution: a random search "
                             "needs search.n_trials (the budget)")
        return cls(json.dumps(dict(raw), sort_keys=True), n_trials, seed)

    @property
    def space(self) -> dict[str, Any]:
        return json.loads(self.space_json)

    @property
    def kind(self) -> str:
        """``'grid'`` (every combination) or ``'random'`` (``n_trials`` draws)."""
        return "grid" if self.n_trials is None else "random"

    def to_dict(self) -> dict[str, Any]:
        """As a record stores it (and as the cell id hashes it)."""
        return {"space": self.space, "search": self.kind, "n_trials": self.n_trials,
                "seed": self.seed}

    def trials(self) -> list[dict[str, Any]]:
        """The candidate settings, in the order they are tried."""
        from sklearn.model_selection import ParameterGrid, ParameterSampler

        space = {k: (_distribution(k, v, "tune") if isinstance(v, dict) else v)
                 for k, v in self.space.items()}
        if self.n_trials is None:
            drawn = list(ParameterGrid(space))
        else:
            n = self.n_trials
            if all(isinstance(v, list) for v in space.values()):
                n = min(n, len(ParameterGrid(space)))  # without replacement: at most all
            drawn = list(ParameterSampler(space, n, random_state=self.seed))
        return [{k: (v.item() if isinstance(v, np.generic) else v) for k, v in t.items()}
                for t in drawn]


def _distribution(key: str, spec: Mapping[str, Any], who: str) -> Any:
    if len(spec) != 1 or next(iter(spec)) not in DISTRIBUTIONS:
        raise ValueError(f"{who}: tune.{key} must be one of {', '.join(DISTRIBUTIONS)} = "
                         f"[low, high]; got {dict(spec)!r}")
    (name, bounds), = spec.items()
    ok = (isinstance(bounds, list) and len(bounds) == 2
          and all(isinstance(b, int | float) and not isinstance(b, bool) for b in bounds)
          and all(math.isfinite(b) for b in bounds) and bounds[0] < bounds[1])
    if ok and name == "log_uniform":
        ok = bounds[0] > 0
    if ok and name == "int_uniform":
        ok = all(isinstance(b, int) for b in bounds)
    if not ok:
        raise ValueError(f"{who}: tune.{key}.{name} must be [low, high] with low < high"
                         f"{' > 0' if name == 'log_uniform' else ''}"
                         f"{' (ints)' if name == 'int_uniform' else ''}; got {bounds!r}")
    return DISTRIBUTIONS[name](*bounds)
