"""Normalizing flows (MAF, NSF, RealNVP) built with the ``zuko`` library.

A flow is an invertible map ``f`` from the data to a standard normal base variable, so

    log q(x) = log N(f(x); 0, I) + log |det df/dx|

is an exact, normalized log-density. The flows themselves are zuko's (``zuko.flows.MAF``,
``zuko.flows.NSF``, ``zuko.flows.RealNVP``; nothing here re-implements a transform): this
module only holds the glue to densbench's contract. Training, early stopping, the time
budget and the standardization of the data (its log-Jacobian is added back, so scores are
in the units of the data given to ``fit``) are :class:`TorchDensityEstimator`'s.

Each flow is zuko's *unconditional* flow: the module is called without context,
``flow().log_prob(x)`` and ``flow().sample((n,))``. zuko samples from PyTorch's global
generator, which the base class seeds from ``sample``'s ``random_state`` (and restores).

Feature orders (MAF, NSF) and coupling masks (RealNVP) are drawn at random per layer
(zuko's ``randperm`` / ``randmask``, seeded by ``random_state``) when d > 2: on the 64-D
dequantized digits random orders reach a better test likelihood than alternating ones. In 2-D
there are only two orders (masks), and the layers alternate them.

Discrete data (images): a flow declares ``logit_space``, so it sees the dequantized pixels
mapped to the real line by the logit transform of Dinh et al. (2017)
(:func:`densbench.data.transforms.prepare`, which adds the transform's log-Jacobian back:
figures stay bits/dim of the levels). The standardization comes after the logit. On the
dequantized [0, 1) pixels themselves, a pixel that is (nearly) constant in training, as
the border of MNIST digits is, has a tiny standard deviation, and a test digit with ink
there lands hundreds of standard deviations out; in logit space the dequantization noise
of a dark pixel alone spans several units, and such a digit stays within a few.

1-D data are accepted: zuko replaces the autoregressive / coupling layers by element-wise
ones, so MAF and RealNVP become a Gaussian (an affine map of the base) and NSF a
monotone spline of a Gaussian.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import zuko
from torch import nn

from densbench.estimators.base import LikelihoodKind
from densbench.estimators.params import BOOL, Interval, ListOf, ParamConstraints
from densbench.estimators.training import TorchDensityEstimator

__all__ = ["MAF", "NSF", "RealNVP"]



class _ZukoFlow(TorchDensityEstimator):
    """Shared glue of the zuko flows: build, train by maximum likelihood, score, sample.

    A subclass names its zuko class in ``zuko_class``, declares the constraints of its own
    hyperparameters and returns them as zuko keyword arguments from ``_flow_kwargs``.
    """

    likelihood: ClassVar[LikelihoodKind] = LikelihoodKind.EXACT
    can_sample: ClassVar[bool] = True
    discrete_native: ClassVar[bool] = False
    logit_space: ClassVar[bool] = True
    #: The zuko flow class (``features`` is passed positionally, the rest by keyword).
    zuko_class: ClassVar[type[nn.Module]]
    #: zuko's keyword (and ours) for random feature orders / masks between layers.
    order_param: ClassVar[str] = "randperm"

    training_defaults: ClassVar[dict[str, Any]] = (
        TorchDensityEstimator.training_defaults | {"max_epochs": 500})
    _parameter_constraints: ClassVar[ParamConstraints] = {
        "transforms": [Interval(int, 1, None)],
        "hidden": [ListOf(Interval(int, 1, None))],
    }

    # -- hyperparameters ------------------------------------------------------------
    def _flow_kwargs(self, d: int) -> dict[str, Any]:
        """zuko keyword arguments beyond ``transforms`` and ``hidden_features``."""
        # in 2-D there are only two orders (masks): alternating them is the best choice
        return {self.order_param: bool(getattr(self, self.order_param)) and d > 2}

    @classmethod
    def test_params(cls) -> dict[str, Any]:
        return {"transforms": 2, "hidden": (16, 16), "max_epochs": 5, "batch_size": 128}

    # -- TorchDensityEstimator hooks ------------------------------------------------
    def _build(self, X: torch.Tensor) -> nn.Module:
        return self.zuko_class(int(X.shape[1]), transforms=int(self.transforms),
                               hidden_features=tuple(int(v) for v in self.hidden),
                               **self._flow_kwargs(int(X.shape[1])))

    def _log_prob(self, batch: torch.Tensor) -> torch.Tensor:
        return self.module_().log_prob(batch)

    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        if n == 0:  # nothing to draw
            return np.empty((0, self.n_features_in_), dtype=np.float64)
        return super()._sample(n, rng)

    def _sample_standardized(self, n: int, generator: torch.Generator) -> torch.Tensor:
        # zuko draws from the global generator; the base class seeds it around this call
        return self.module_().sample((n,))


class MAF(_ZukoFlow):
    """Masked autoregressive flow (zuko): stacked affine MADE layers, exact likelihood.

    Each of ``transforms`` layers is an affine autoregressive map whose shift and log-scale
    for feature i come from a masked MLP (MADE) of the features before it in that layer's
    order. The density of a row takes one pass; sampling takes ``d`` sequential passes per
    layer (the inverse of an autoregressive map).

    Parameters:
        transforms: number of autoregressive layers.
        hidden: hidden layer sizes of each layer's MADE.
        randperm: a random feature order per layer when d > 2 (else orders alternate
            between ascending and descending, as in the paper).
        max_epochs, batch_size, lr, patience, time_budget_s, device, random_state: the
            shared training loop's (:func:`densbench.estimators.training.train`).

    Attributes:
        module_ (the trained ``zuko.flows.MAF``), shift_, scale_ (standardization),
        log_jacobian_, training_, epochs_, best_epoch_, stopped_.

    References:
        G. Papamakarios, T. Pavlakou and I. Murray, "Masked autoregressive flow for density
        estimation", NeurIPS 2017; M. Germain, K. Gregor, I. Murray and H. Larochelle,
        "MADE: masked autoencoder for distribution estimation", ICML 2015; F. Rozet et al.,
        zuko (https://github.com/probabilists/zuko).

    Example:
        >>> import numpy as np, densbench as db
        >>> X = np.random.default_rng(0).normal(size=(500, 2))
        >>> est = db.estimators.make("maf", transforms=2, hidden=[16], max_epochs=3).fit(X)
        >>> est.score_samples(X[:3]).shape, est.sample(4, random_state=0).shape
        ((3,), (4, 2))
    """

    zuko_class = zuko.flows.MAF
    _parameter_constraints: ClassVar[ParamConstraints] = {"randperm": [BOOL]}

    def __init__(self, *, transforms: int = 5, hidden: Sequence[int] = (128, 128),
                 randperm: bool = True, **training: Any) -> None:
        self.transforms = transforms
        self.hidden = hidden
        self.randperm = randperm
        self._store_training(training)


class NSF(_ZukoFlow):
    """Neural spline flow (zuko): autoregressive rational-quadratic splines, exact likelihood.

    Each of ``transforms`` layers maps feature i by a monotone rational-quadratic spline
    with ``bins`` bins whose widths, heights and knot slopes come from a masked MLP
    (MADE) of the features before it in that layer's order (zuko's fully autoregressive
    NSF; sampling takes ``d`` sequential passes per layer).

    The splines act on the interval [-5, 5] (zuko's bound, in the units each layer sees;
    the data are standardized first, so for the first layer this is 5 standard deviations
    of the training data). Outside it each spline is the identity, continuous with the
    spline at the bound, where the end knots have slope 1: every layer stays a bijection
    of the real line with log-Jacobian 0 in the tails, so the density is normalized
    everywhere. The price: beyond the bound nothing is learned, and the tails are those
    of the Gaussian base in standardized units. Heavy-tailed data pay for it (their test
    points beyond 5 SD are scored by that Gaussian tail), while multimodal data gain from
    the splines.

    Parameters:
        transforms: number of spline layers.
        hidden: hidden layer sizes of each layer's MADE.
        bins: spline bins per feature (>= 2).
        randperm: a random feature order per layer when d > 2 (else orders alternate).
        max_epochs, batch_size, lr, patience, time_budget_s, device, random_state: the
            shared training loop's (:func:`densbench.estimators.training.train`).

    Attributes:
        module_ (the trained ``zuko.flows.NSF``), shift_, scale_ (standardization),
        log_jacobian_, training_, epochs_, best_epoch_, stopped_.

    References:
        C. Durkan, A. Bekasov, I. Murray and G. Papamakarios, "Neural spline flows",
        NeurIPS 2019; F. Rozet et al., zuko (https://github.com/probabilists/zuko).

    Example:
        >>> import numpy as np, densbench as db
        >>> X = np.random.default_rng(0).normal(size=(500, 2))
        >>> est = db.estimators.make("nsf", transforms=2, hidden=[16], max_epochs=3).fit(X)
        >>> est.score_samples(X[:3]).shape, est.sample(4, random_state=0).shape
        ((3,), (4, 2))
    """

    zuko_class = zuko.flows.NSF
    _parameter_constraints: ClassVar[ParamConstraints] = {
        "bins": [Interval(int, 2, None)], "randperm": [BOOL]}

    def __init__(self, *, transforms: int = 3, hidden: Sequence[int] = (128, 128),
                 bins: int = 8, randperm: bool = True, **training: Any) -> None:
        self.transforms = transforms
        self.hidden = hidden
        self.bins = bins
        self.randperm = randperm
        self._store_training(training)

    def _flow_kwargs(self, d: int) -> dict[str, Any]:
        return {**super()._flow_kwargs(d), "bins": int(self.bins)}

    @classmethod
    def test_params(cls) -> dict[str, Any]:
        return {**super().test_params(), "bins": 4}


class RealNVP(_ZukoFlow):
    """RealNVP (zuko): affine coupling layers, exact likelihood, one-pass sampling.

    Each of ``transforms`` layers leaves half of the features unchanged and maps the other
    half by an affine map whose shift and log-scale come from an MLP of the unchanged
    half. Density and sampling both take one pass per layer.

    Coupling needs at least 2 features; in 1-D zuko falls back to element-wise affine
    layers, so the model is a Gaussian (see the module docstring).

    Parameters:
        transforms: number of coupling layers (>= 2 so that every feature is transformed;
            more layers mix the features more).
        hidden: hidden layer sizes of each layer's MLP.
        randmask: a random half of the features per layer when d > 2 (else the even and
            the odd features alternate).
        max_epochs, batch_size, lr, patience, time_budget_s, device, random_state: the
            shared training loop's (:func:`densbench.estimators.training.train`).

    Attributes:
        module_ (the trained ``zuko.flows.RealNVP``), shift_, scale_ (standardization),
        log_jacobian_, training_, epochs_, best_epoch_, stopped_.

    References:
        L. Dinh, J. Sohl-Dickstein and S. Bengio, "Density estimation using Real NVP",
        ICLR 2017; F. Rozet et al., zuko (https://github.com/probabilists/zuko).

    Example:
        >>> import numpy as np, densbench as db
        >>> X = np.random.default_rng(0).normal(size=(500, 2))
        >>> est = db.estimators.make("realnvp", transforms=2, hidden=[16], max_epochs=3)
        >>> est.fit(X).score_samples(X[:3]).shape, est.sample(4, random_state=0).shape
        ((3,), (4, 2))
    """

    zuko_class = zuko.flows.RealNVP
    order_param = "randmask"
    _parameter_constraints: ClassVar[ParamConstraints] = {"randmask": [BOOL]}

    def __init__(self, *, transforms: int = 8, hidden: Sequence[int] = (128, 128),
                 randmask: bool = True, **training: Any) -> None:
        self.transforms = transforms
        self.hidden = hidden
        self.randmask = randmask
        self._store_training(training)
