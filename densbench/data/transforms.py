"""Units and dequantization: the ONE place where data are rescaled for the estimators.

Continuous estimators never see discrete data as it is: integer levels ``x in {0..L-1}^d``
are dequantized with uniform noise and scaled to the unit cube, ``y = (x + u) / L`` with
``u ~ U[0, 1)^d``. By Jensen's inequality

    log P(x) = log E_u[ q_v(x + u) ] >= E_u[ log q_y((x + u) / L) ] - d log L,

so ``score_samples(y) + log_jacobian`` (with ``log_jacobian = -d log L``) is an unbiased
one-sample estimate of a lower bound on the discrete log-probability of ``x``, in the units
of the original data. Estimators that model discrete data natively receive the levels
unchanged and report the discrete log-probability itself.

Logit space: an estimator class with ``logit_space = True`` (the image flows) receives the
dequantized pixels ``y`` mapped to the real line, ``z = logit(s)`` with
``s = lambda + (1 - 2 lambda) y``, so that a flow's Gaussian base need not squeeze mass
against the edges of the unit cube. The map is a bijection of [0, 1)^d into R^d with

    log |dz/dy| = sum_j [log(1 - 2 lambda) - log s_j - log(1 - s_j)],

so ``log q_y(y) = log q_z(z) + log |dz/dy|`` and each row's ``log_jacobian`` is that sum
minus ``d log L``: the figure is still the dequantized bound on the discrete log-probability
of the 8-bit (or L-level) data. ``lambda`` keeps ``s`` off 0 and 1; the dataset declares it
(``Dataset.logit_lambda``: 1e-6 for MNIST-like images and 0.05 for CIFAR-10, the values
of the MAF code, github.com/gpapamak/maf, datasets/mnist.py and cifar10.py, in this same
symmetric form; Dinh et al. 2017 §4.1 map ``alpha + (1 - alpha) y`` with alpha = 0.05),
else :data:`DEFAULT_LOGIT_LAMBDA`.

References:
    Theis, van den Oord & Bethge (2016), A note on the evaluation of generative models, ICLR.
    Uria, Murray & Larochelle (2013), RNADE, NeurIPS (uniform dequantization).
    Dinh, Sohl-Dickstein & Bengio (2017), Density estimation using Real NVP, ICLR, §4.1.
    Papamakarios, Pavlakou & Murray (2017), Masked autoregressive flow for density
    estimation, NeurIPS (the logit transform in this form, lambda 1e-6 for MNIST and 0.05
    for CIFAR-10 in the authors' code).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from densbench.data.base import Dataset

__all__ = [
    "DEFAULT_LOGIT_LAMBDA", "FIGURE_CONTINUOUS", "FIGURE_DEQUANTIZED", "FIGURE_DISCRETE",
    "LN2", "Prepared", "bits_per_dim", "logit_transform", "prepare",
]

LN2 = math.log(2.0)
#: The logit transform's lambda for discrete data whose dataset declares none (the MNIST
#: value of Papamakarios et al. 2017).
DEFAULT_LOGIT_LAMBDA = 1e-6

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
    #: lambda of the logit transform the estimator's data went through (None: no logit).
    logit_lambda: float | None = None
    #: Pixel means of dynamically binarized training images (``Dataset.train_means``) for
    #: an estimator that draws them afresh each epoch; None otherwise.
    train_means: np.ndarray | None = None

    def fit_keywords(self) -> dict[str, np.ndarray]:
        """The keywords of the estimator's ``fit`` beside the splits: ``binarize_from``
        under dynamic binarization, else none."""
        return {} if self.train_means is None else {"binarize_from": self.train_means}

    def to_data_units(self, split: str, scores: np.ndarray) -> np.ndarray:
        return scores + self.log_jacobian[split]

    def to_data_space(self, samples: np.ndarray) -> np.ndarray:
        """Map an estimator's samples back to the space of the original data.

        For dequantized discrete data, ``floor(y * L)`` (clipped to the levels; in logit
        space after the inverse of the logit transform) draws
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
        if self.logit_lambda is not None:
            lam = self.logit_lambda
            samples = (_sigmoid(samples) - lam) / (1.0 - 2.0 * lam)
        return np.clip(np.floor(samples * self.levels), 0, self.levels - 1)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    # exp of a negative number only: no overflow warning at either end of the real line
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def logit_transform(y: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """``z = logit(lam + (1 - 2 lam) y)`` of data ``y`` in [0, 1]^d (rows) and its
    log-Jacobian per row, ``log |det dz/dy|`` (see the module docstring).

    Example:
        >>> z, ldj = logit_transform(np.array([[0.5, 0.5]]), 0.05)
        >>> z.tolist(), round(float(ldj[0]), 6) == round(2 * (math.log(0.9) + math.log(4)), 6)
        ([[0.0, 0.0]], True)
    """
    if not 0.0 < lam < 0.5:
        raise ValueError(f"the logit transform's lambda must be in (0, 0.5); got {lam!r}")
    s = lam + (1.0 - 2.0 * lam) * y
    log_s, log_1ms = np.log(s), np.log1p(-s)
    ldj = (y.shape[1] * math.log1p(-2.0 * lam) - log_s.sum(1) - log_1ms.sum(1))
    return log_s - log_1ms, ldj


def prepare(dataset: Dataset, *, discrete_native: bool, logit_space: bool = False,
            seed: int = 0, redraws_binarization: bool = False) -> Prepared:
    """The estimator's view of ``dataset``: the data as they are (continuous data, or the
    levels for a ``discrete_native`` estimator), else dequantized, and in logit space for a
    ``logit_space`` estimator (with the dataset's ``logit_lambda``). A dynamically
    binarized dataset also gives a ``discrete_native`` estimator that
    ``redraws_binarization`` its training images' pixel means (``train_means``); other
    estimators fit its one draw, ``train``.

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
        means = dataset.train_means if discrete_native and redraws_binarization else None
        return Prepared(**splits, log_jacobian=zeros, figure=figure, transform="identity",
                        train_means=means)
    levels = int(dataset.levels)
    lam = (dataset.logit_lambda or DEFAULT_LOGIT_LAMBDA) if logit_space else None
    out, ldj = {}, {}
    for i, name in enumerate(("train", "val", "test")):
        X = dataset.native(name)  # uint8 images become float64 only here, once per split
        # One fixed noise stream per (seed, split): the same seed gives the same figures.
        rng = np.random.default_rng([int(seed), 0xDE0, i])
        out[name] = (X + rng.random(X.shape)) / levels
        ldj[name] = np.full(len(X), -X.shape[1] * math.log(levels))
        if lam is not None:
            out[name], logit_ldj = logit_transform(out[name], lam)
            ldj[name] += logit_ldj
    transform = f"uniform dequantization, (x + u) / {levels}"
    if lam is not None:
        transform += f"; logit transform, logit({lam:g} + (1 - 2 * {lam:g}) y)"
    return Prepared(**out, log_jacobian=ldj, figure=FIGURE_DEQUANTIZED, transform=transform,
                    levels=levels, logit_lambda=lam)


def bits_per_dim(nats_per_example: float, dim: int) -> float:
    """Negative log-likelihood in bits per dimension from a log-likelihood in nats/example.

    Example:
        >>> round(bits_per_dim(-64 * math.log(2.0), 64), 12)
        1.0
    """
    return -nats_per_example / (dim * LN2)
