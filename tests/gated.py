"""A test estimator that waits at a gate, so that a test stops a run at a known point.

Tests name it as a user's model (``/path/to/tests/gated.py:Gated``, see :data:`SPEC`), so it
runs wherever a cell runs: in the driver, in a supervised worker, under Dask. Its ``fit``
leaves ``started-<seed>`` in the folder given as ``gate`` and then waits, sleeping, until
``open`` or ``open-<seed>`` exists there. A fault test thus kills or interrupts a run while
chosen cells are in flight, instead of waiting for a real suite to be part done, and a cell
in flight costs no CPU. Once open it is a diagonal Gaussian, fitted by maximum likelihood.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from scipy.stats import norm

from densbench.estimators.base import DensityEstimator

__all__ = ["SPEC", "Gated", "open_gate", "started"]

#: The estimator spec a suite names it by.
SPEC = f"{Path(__file__).resolve()}:Gated"
#: How often a waiting fit looks at its gate (seconds).
POLL_S = 0.01


def open_gate(folder: Path, seed: int | None = None) -> None:
    """Let the cell of ``seed`` (every cell when None) finish its fit."""
    (Path(folder) / ("open" if seed is None else f"open-{seed}")).touch()


def started(folder: Path) -> set[int]:
    """The seeds whose fit has begun."""
    return {int(p.name.removeprefix("started-")) for p in Path(folder).glob("started-*")}


class Gated(DensityEstimator):
    """A diagonal Gaussian whose fit waits until a test opens its gate."""

    def __init__(self, *, gate: str = ".", random_state: int | None = None) -> None:
        self.gate = gate
        self.random_state = random_state

    def _fit(self, X: np.ndarray, X_val: np.ndarray | None) -> None:
        folder, seed = Path(self.gate), self._seed()
        (folder / f"started-{seed}").touch()
        while not ((folder / "open").exists() or (folder / f"open-{seed}").exists()):
            time.sleep(POLL_S)
        self.mean_, self.scale_ = X.mean(axis=0), X.std(axis=0)

    def _score_samples(self, X: np.ndarray) -> np.ndarray:
        return norm.logpdf(X, self.mean_, self.scale_).sum(axis=1)

    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.mean_ + self.scale_ * rng.standard_normal((n, self.mean_.size))

    def _n_parameters(self) -> int:
        return 2 * self.mean_.size
