"""Autoregressive density estimators: p(x) = prod_i p(x_i | x_<i), exact.

Two networks produce the conditionals' parameters, and one set of conditional families
(:class:`_Head`) turns them into log-probabilities and samples:

- ``made``: a masked autoencoder, all conditionals in one pass (Germain et al. 2015);
- ``rnn_ar``: a GRU reading the dimensions in order, its state at step i giving the
  conditional of x_i.

Conditionals: a mixture of Gaussians per dimension for continuous data (as MADE MoG of
Papamakarios et al. 2017), Bernoulli for binary data, categorical for data with a few
discrete levels. With ``levels`` set, the model sees the raw integer levels and its
``score_samples`` is the EXACT discrete log-probability (no dequantization).

References:
    M. Germain, K. Gregor, I. Murray and H. Larochelle, "MADE: Masked Autoencoder for
    Distribution Estimation", ICML 2015.
    G. Papamakarios, T. Pavlakou and I. Murray, "Masked Autoregressive Flow for Density
    Estimation", NeurIPS 2017.
    B. Uria, I. Murray and H. Larochelle, "RNADE: The real-valued neural autoregressive
    density-estimator", NeurIPS 2013.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from densbench.estimators.training import TorchDensityEstimator

__all__ = ["MADE", "RNNAutoregressive"]

_CONDITIONALS = ("auto", "gaussian_mixture", "bernoulli", "categorical")
_LOG_SCALE_RANGE = (-7.0, 5.0)


class _Head:
    """One conditional family: parameters per dimension, log-probabilities, sampling."""

    def __init__(self, kind: str, levels: int | None, n_mixture: int) -> None:
        self.kind, self.levels, self.k = kind, levels, n_mixture
        self.size = {"gaussian_mixture": 3 * n_mixture, "bernoulli": 1,
                     "categorical": levels or 0}[kind]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Network input for observed values (levels scaled to [-1, 1])."""
        if self.kind == "gaussian_mixture":
            return x
        return 2.0 * x / max(self.levels - 1, 1) - 1.0

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """params (n, d, size), x (n, d) -> (n, d) log-probabilities."""
        if self.kind == "gaussian_mixture":
            logits, mu, log_s = params.split(self.k, dim=-1)
            log_s = log_s.clamp(*_LOG_SCALE_RANGE)
            z = (x.unsqueeze(-1) - mu) * torch.exp(-log_s)
            comp = -0.5 * z * z - log_s - 0.5 * math.log(2 * math.pi)
            return torch.logsumexp(F.log_softmax(logits, dim=-1) + comp, dim=-1)
        if self.kind == "bernoulli":
            return -F.binary_cross_entropy_with_logits(params[..., 0], x, reduction="none")
        return torch.gather(F.log_softmax(params, dim=-1), -1,
                            x.long().unsqueeze(-1)).squeeze(-1)

    def sample(self, params: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """params (n, size) for one dimension -> (n,) draws."""
        if self.kind == "gaussian_mixture":
            logits, mu, log_s = params.split(self.k, dim=-1)
            j = torch.multinomial(F.softmax(logits, -1), 1, generator=gen).squeeze(-1)
            rows = torch.arange(len(j))
            eps = torch.randn(len(j), generator=gen).to(mu.device)
            return mu[rows, j] + torch.exp(log_s.clamp(*_LOG_SCALE_RANGE)[rows, j]) * eps
        if self.kind == "bernoulli":
            return (torch.rand(len(params), generator=gen)
                    < torch.sigmoid(params[:, 0])).float()
        return torch.multinomial(F.softmax(params, -1), 1, generator=gen).squeeze(-1).float()


class _MaskedLinear(nn.Linear):
    def __init__(self, n_in: int, n_out: int, mask: torch.Tensor) -> None:
        super().__init__(n_in, n_out)
        self.register_buffer("mask", mask.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class _MADENet(nn.Module):
    """Masked MLP: output block i (size P) depends only on inputs 0..i-1 (natural order)."""

    def __init__(self, d: int, hidden: int, n_layers: int, size: int) -> None:
        super().__init__()
        self.d, self.size = d, size
        deg_in = torch.arange(1, d + 1)
        # hidden degrees cycle over 1..d-1 (0 = connected to no input when d == 1)
        degs = [deg_in] + [torch.arange(hidden) % max(d - 1, 1) + (1 if d > 1 else 0)
                           for _ in range(n_layers)]
        layers: list[nn.Module] = []
        for a, b in zip(degs[:-1], degs[1:], strict=True):
            layers += [_MaskedLinear(len(a), len(b), b.unsqueeze(1) >= a.unsqueeze(0)),
                       nn.ReLU()]
        deg_out = deg_in.repeat_interleave(size)
        layers.append(_MaskedLinear(len(degs[-1]), d * size,
                                    deg_out.unsqueeze(1) > degs[-1].unsqueeze(0)))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).view(x.shape[0], self.d, self.size)


class _RNNNet(nn.Module):
    """GRU over dimensions: the state after reading x_0..x_{i-1} gives x_i's parameters."""

    def __init__(self, d: int, hidden: int, n_layers: int, size: int) -> None:
        super().__init__()
        self.d, self.size = d, size
        self.gru = nn.GRU(2, hidden, num_layers=n_layers, batch_first=True)
        self.out = nn.Linear(hidden, size)
        self.h0 = nn.Parameter(torch.zeros(n_layers, 1, hidden))

    def _inputs(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        prev = torch.cat([x.new_zeros(n, 1), x[:, :-1]], dim=1)     # x_{i-1}; 0 at i = 0
        start = x.new_zeros(n, self.d)
        start[:, 0] = 1.0                                           # the start flag
        return torch.stack([prev, start], dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h0 = self.h0.expand(-1, x.shape[0], -1).contiguous()
        y, _ = self.gru(self._inputs(x), h0)
        return self.out(y)


class _Autoregressive(TorchDensityEstimator):
    """Shared: conditionals, validation of discrete levels, scoring and sampling."""

    discrete_native: ClassVar[bool] = True
    net_class: ClassVar[type[nn.Module]]

    def _validate_params(self) -> None:
        self._validate_common()
        for name in ("hidden", "n_layers", "n_mixture"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
                raise self._bad_param(name, "an int >= 1", v)
        if self.conditional not in _CONDITIONALS:
            raise self._bad_param("conditional", f"one of {', '.join(_CONDITIONALS)}",
                                  self.conditional)
        lv = self.levels
        if lv is not None and (isinstance(lv, bool) or not isinstance(lv, int | np.integer)
                               or lv < 2):
            raise self._bad_param("levels", "None or an int >= 2", lv)
        if self.conditional in ("bernoulli", "categorical") and lv is None:
            raise self._bad_param("levels", f"given for {self.conditional} conditionals", lv)
        if self.conditional == "bernoulli" and lv != 2:
            raise self._bad_param("levels", "2 for bernoulli conditionals", lv)

    def _kind(self) -> str:
        if self.conditional != "auto":
            return self.conditional
        if self.levels is None:
            return "gaussian_mixture"
        return "bernoulli" if self.levels == 2 else "categorical"

    def _standardize(self) -> bool:
        return self._kind() == "gaussian_mixture"

    def _check_levels(self, X: np.ndarray, what: str) -> None:
        if self._kind() == "gaussian_mixture":
            return
        bad = (X != np.round(X)) | (X < 0) | (X > self.levels - 1)
        if bad.any():
            row = int(np.argwhere(bad)[0, 0])
            raise ValueError(f"{self.name}: {what} must hold integer levels 0..{self.levels - 1}"
                             f" for {self._kind()} conditionals; row {row} does not")

    def _fit(self, X: np.ndarray, X_val: np.ndarray | None) -> None:
        self._check_levels(X, "X")
        if X_val is not None:
            self._check_levels(X_val, "X_val")
        self.head_ = _Head(self._kind(), self.levels, int(self.n_mixture))
        super()._fit(X, X_val)

    def _build(self, X: torch.Tensor) -> nn.Module:
        return self.net_class(X.shape[1], int(self.hidden), int(self.n_layers),
                              self.head_.size)

    def _log_prob(self, batch: torch.Tensor) -> torch.Tensor:
        params = self.module_(self.head_.encode(batch))
        return self.head_.log_prob(params, batch).sum(dim=1)

    def _score_samples(self, X: np.ndarray) -> np.ndarray:
        self._check_levels(X, "X")
        return super()._score_samples(X)

    def _sample_standardized(self, n: int, generator: torch.Generator) -> torch.Tensor:
        # sequential over dimensions, batched over samples: d network passes
        d = self.n_features_in_
        x = torch.zeros(n, d, device=self.device_)
        for i in range(d):
            params = self.module_(self.head_.encode(x))[:, i]
            x[:, i] = self.head_.sample(params, generator)
        return x

    @classmethod
    def test_params(cls) -> dict[str, Any]:
        return {"hidden": 32, "n_mixture": 3, "max_epochs": 5, "batch_size": 128}


class MADE(_Autoregressive):
    """Masked autoencoder (MADE): autoregressive conditionals in one masked-MLP pass, exact.

    Parameters:
        hidden: units per hidden layer; n_layers: hidden layers.
        conditional: ``'auto'`` (categorical when ``levels`` > 2, Bernoulli when 2, else a
            mixture of ``n_mixture`` Gaussians), or one of those by name.
        levels: number of discrete levels of the data (set by the runner for discrete
            data), or None for continuous data.
        max_epochs, batch_size, lr, patience, time_budget_s, device, random_state: the
            shared training loop's settings.

    Example:
        >>> import numpy as np, densbench as db
        >>> X = np.random.default_rng(0).integers(0, 2, size=(200, 4)).astype(float)
        >>> est = db.estimators.make("made", levels=2, hidden=16, max_epochs=2).fit(X)
        >>> grid = np.array([[a, b, c, e] for a in (0, 1) for b in (0, 1)
        ...                  for c in (0, 1) for e in (0, 1)], dtype=float)
        >>> round(float(np.exp(est.score_samples(grid)).sum()), 6)
        1.0
    """

    net_class = _MADENet

    def __init__(self, *, hidden: int = 256, n_layers: int = 2, conditional: str = "auto",
                 n_mixture: int = 5, levels: int | None = None, max_epochs: int = 200,
                 batch_size: int = 256, lr: float = 1e-3, patience: int = 15,
                 time_budget_s: float | None = None, device: str = "cpu",
                 random_state: int = 0) -> None:
        self.hidden = hidden
        self.n_layers = n_layers
        self.conditional = conditional
        self.n_mixture = n_mixture
        self.levels = levels
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.patience = patience
        self.time_budget_s = time_budget_s
        self.device = device
        self.random_state = random_state


class RNNAutoregressive(_Autoregressive):
    """GRU autoregressive model reading the dimensions in order, exact.

    Same conditionals and parameters as ``made``; ``hidden`` is the GRU state size and
    ``n_layers`` the number of stacked GRU layers.

    Example:
        >>> import numpy as np, densbench as db
        >>> X = np.random.default_rng(0).normal(size=(200, 2))
        >>> est = db.estimators.make("rnn_ar", hidden=16, max_epochs=2).fit(X)
        >>> est.score_samples(X[:3]).shape
        (3,)
    """

    net_class = _RNNNet

    def __init__(self, *, hidden: int = 128, n_layers: int = 1, conditional: str = "auto",
                 n_mixture: int = 5, levels: int | None = None, max_epochs: int = 200,
                 batch_size: int = 256, lr: float = 1e-3, patience: int = 15,
                 time_budget_s: float | None = None, device: str = "cpu",
                 random_state: int = 0) -> None:
        self.hidden = hidden
        self.n_layers = n_layers
        self.conditional = conditional
        self.n_mixture = n_mixture
        self.levels = levels
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.patience = patience
        self.time_budget_s = time_budget_s
        self.device = device
        self.random_state = random_state
