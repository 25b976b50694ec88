"""Units and dequantization: the ONE place where data are rescaled for the estimators.

Continuous estimators never see discrete data as it is: integer levels ``x in {0..L-1}^d``
are dequantized with uniform noise and scaled to the unit cube, ``y = (x + u) / L`` with
``u ~ U[0, 1)^d``. By Jensen's inequality

    log P(x) = log E_u[ q_v(x + u) ] >= E_u[ log q_y((x + u) / L) ] - d log L,

so ``score_samples(y) + log_jacobian`` (with ``log_jacobian = -d log L``) is an unbiased
one-sample estimate of a lower bound on the discrete log-probability of ``x``, in the units
of the original data. Estimators that model discrete data natively receive the levels
unchanged and report the discrete log-probability itself.

References:
    Theis, van den Oord & Bethge (2016), A note on the evaluation of generative models, ICLR.
    Uria, Murray & Larochelle (2013), RNADE, NeurIPS (uniform dequantization).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from densbench.data.base import Dataset

__all__ = [
    "FIGURE_CONTINUOUS", "FIGURE_DEQUANTIZED", "FIGURE_DISCRETE", "LN2",
    "Prepared", "bits_per_dim", "prepare",
]

LN2 = math.log(2.0)

#: What a reported log-likelihood figure is; a table never mixes these without saying so.
FIGURE_CONTINUOUS = "log-density (continuous data)"
FIGURE_DEQUANTIZED = "dequantized lower bound on discrete log-probability"
FIGURE_DISCRETE = "discrete log-probability"


@dataclass(frozen=True, eq=False)
class Prepared:
    """The splits as an estimator sees them, and how to map its scores back.

    ``log_jacobian[split]`` (one value per row) is added to the estimator's
    ``score_samples`` to give the figure in the units of the original data.
    """

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    log_jacobian: dict[str, np.ndarray]
    figure: str
    transform: str

    levels: int | None = None

    def to_data_units(self, split: str, scores: np.ndarray) -> np.ndarray:
        return scores + self.log_jacobian[split]

    def to_data_space(self, samples: np.ndarray) -> np.ndarray:
        """Map an estimator's samples back to the space of the original data.

        For dequantized discrete data, ``floor(y * L)`` (clipped to the levels) draws
        exactly from the discrete distribution that the dequantized density implies,
        ``P(x) = integral of q over the cell of x``; so samples of every estimator are
        compared with the data on the same footing. Otherwise the identity.

        Example:
            >>> p = Prepared(np.zeros((1, 1)), np.zeros((1, 1)), np.zeros((1, 1)), {}, "",
            ...              "uniform dequantization", levels=17)
            >>> p.to_data_space(np.array([[0.0, 0.999, 1.2, -0.1]])).tolist()
            [[0.0, 16.0, 16.0, 0.0]]
        """
        if self.transform == "identity" or self.levels is None:
            return samples
        return np.clip(np.floor(samples * self.levels), 0, self.levels - 1)


def prepare(dataset: Dataset, *, discrete_native: bool, seed: int = 0) -> Prepared:
    """The estimator's view of ``dataset``.

    Example:
        >>> import densbench as db
        >>> ds = db.data.load("digits", seed=0)
        >>> p = prepare(ds, discrete_native=False, seed=0)
        >>> bool(p.train.min() >= 0.0 and p.train.max() < 1.0)
        True
        >>> round(float(p.log_jacobian["test"][0]), 3)   # -64 log 17
        -181.326
    """
    if dataset.kind != "discrete" or discrete_native:
        splits = {s: dataset.split(s) for s in ("train", "val", "test")}
        zeros = {s: np.zeros(len(a)) for s, a in splits.items()}
        figure = FIGURE_DISCRETE if dataset.kind == "discrete" else FIGURE_CONTINUOUS
        return Prepared(**splits, log_jacobian=zeros, figure=figure, transform="identity")
    levels = int(dataset.levels)
    out, ldj = {}, {}
    for i, name in enumerate(("train", "val", "test")):
        X = dataset.native(name)  # uint8 images become float64 only here, once per split
        # One fixed noise stream per (seed, split): the same seed gives the same figures.
        rng = np.random.default_rng([int(seed), 0xDE0, i])
        out[name] = (X + rng.random(X.shape)) / levels
        ldj[name] = np.full(len(X), -X.shape[1] * math.log(levels))
    return Prepared(**out, log_jacobian=ldj, figure=FIGURE_DEQUANTIZED,
                    transform=f"uniform dequantization, (x + u) / {levels}", levels=levels)


def bits_per_dim(nats_per_example: float, dim: int) -> float:
    """Negative log-likelihood in bits per dimension from a log-likelihood in nats/example.

    Example:
        >>> round(bits_per_dim(-64 * math.log(2.0), 64), 12)
        1.0
    """
    return -nats_per_example / (dim * LN2)
