"""The order in which a run hands out its cells: the longest first.

With N workers a run ends when its last cell does; handed out in suite order, the long
cells (neural estimators on the 64-D digits) come last and one worker finishes them alone
while the others idle. Handing out the longest first (Graham's LPT rule) bounds the
finish at 4/3 of the best possible order. A cell's expected cost is what the same
estimator and dataset (any seed) took in the run folder's earlier records, where there
are some (a resumed or widened run), else a prior from what drives the cost: the number
of training epochs for the estimators trained by the shared loop, times the estimator's
declared ``epoch_cost`` (an image model's convolutions cost far more per epoch than an
MLP), times the log of the dimension.

References:
    R. L. Graham, "Bounds on multiprocessing timing anomalies", SIAM Journal on Applied
    Mathematics 17(2), 1969.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from densbench.runner.plan import Cell, canonical, runs_user_code

__all__ = ["expected_seconds", "longest_first"]

#: Seconds of the prior per epoch-and-log2-dimension (only the order matters).
_PRIOR_SCALE = 1.0


def _kind(cell: Cell) -> str:
    return canonical([cell.estimator.to_dict(), cell.dataset.to_dict()])


def _wall_seconds(record: dict[str, Any]) -> float | None:
    try:
        start = _dt.datetime.fromisoformat(record["started"])
        end = _dt.datetime.fromisoformat(record["finished"])
    except (KeyError, TypeError, ValueError):
        return None
    return max(0.0, (end - start).total_seconds())


def _epochs(cell: Cell) -> float:
    """The cell's epoch budget (its own or the estimator's default) times the estimator's
    ``epoch_cost``, or 1 for an estimator that is not trained in epochs."""
    from densbench import estimators

    epochs = cell.estimator.params.get("max_epochs")
    cost = 1.0
    # (a user's code runs in its cells only, never here)
    if not runs_user_code(cell.estimator, estimators.REGISTRY):
        try:
            bare = estimators.make(cell.estimator.name)
        except Exception:  # an estimator that cannot be made bare gets the plain prior
            bare = None
        if bare is not None:
            cost = float(getattr(bare, "epoch_cost", 1.0))
            if epochs is None:
                epochs = bare.get_params().get("max_epochs")
    return cost * float(epochs) if isinstance(epochs, int | float) else 1.0


def _dim(cell: Cell, known: dict[str, int]) -> int:
    """The dataset's dimension (looked up once per dataset: the same for every seed)."""
    from densbench import data

    key = canonical(cell.dataset.to_dict())
    if key not in known and runs_user_code(cell.dataset, data.REGISTRY):
        known[key] = 2  # a user's code runs in its cells only, never here
    if key not in known:
        try:
            known[key] = int(data.info(cell.dataset.name, **cell.dataset.params).dim)
        except Exception:  # unknown here: the order falls back on the epochs alone
            known[key] = 2
    return known[key]


def expected_seconds(cells: Iterable[Cell],
                     records: Iterable[dict[str, Any]] = ()) -> dict[str, float]:
    """Expected cost of each cell (by id): the mean wall time of the ok ``records`` of the
    same estimator and dataset, else the prior (epochs x epoch_cost x (1 + log2
    dimension))."""
    seen: dict[str, list[float]] = defaultdict(list)
    for rec in records:
        wall = _wall_seconds(rec) if rec.get("status") == "ok" else None
        if wall is not None:
            seen[canonical([rec["estimator"], {"name": rec["dataset"]["name"],
                                                "params": rec["dataset"]["params"]}])
                 ].append(wall)
    out: dict[str, float] = {}
    dims: dict[str, int] = {}
    for cell in cells:
        past = seen.get(_kind(cell))
        out[cell.id] = (sum(past) / len(past) if past else _PRIOR_SCALE * _epochs(cell)
                        * (1.0 + math.log2(max(2, _dim(cell, dims)))))
    return out


def longest_first(cells: list[Cell], records: Iterable[dict[str, Any]] = ()) -> list[Cell]:
    """``cells`` sorted by expected cost, longest first (ties keep the suite's order)."""
    cost = expected_seconds(cells, records)
    return sorted(cells, key=lambda c: -cost[c.id])
