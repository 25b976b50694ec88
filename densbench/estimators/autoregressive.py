"""Autoregressive density estimators: p(x) = prod_i p(x_i | x_<i), exact.

Two networks produce the parameters of the conditionals, and one set of conditional
families (:class:`_Head`) turns those into log-probabilities and samples:

- ``made``: a masked autoencoder, all d conditionals in one pass (Germain et al. 2015);
- ``rnn_ar``: a GRU reading the dimensions in order (Graves 2013), its state at step i
  giving the conditional of x_i.

Both use the natural order x_1, ..., x_d. Conditionals: a mixture of Gaussians per
dimension for continuous data (as MADE MoG of Papamakarios et al. 2017, after RNADE of
Uria et al. 2013), Bernoulli for binary data, categorical for data with a few discrete
levels. With ``levels`` set the model sees the raw integer levels (no standardization,
no dequantization), and ``score_samples`` is the EXACT discrete log-probability: the
probabilities of all level vectors sum to 1.

Sampling is ancestral: sequential over the dimensions, batched over the samples, drawn
from the ``torch.Generator`` that the base class seeds from ``sample``'s ``random_state``.

References:
    M. Germain, K. Gregor, I. Murray and H. Larochelle, "MADE: Masked Autoencoder for
    Distribution Estimation", ICML 2015.
    G. Papamakarios, T. Pavlakou and I. Murray, "Masked Autoregressive Flow for Density
    Estimation", NeurIPS 2017.
    B. Uria, I. Murray and H. Larochelle, "RNADE: The real-valued neural autoregressive
    density-estimator", NeurIPS 2013.
    K. Cho et al., "Learning Phrase Representations using RNN Encoder-Decoder for
    Statistical Machine Translation", EMNLP 2014 (the GRU); A. Graves, "Generating
    Sequences With Recurrent Neural Networks", arXiv:1308.0850, 2013.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from densbench.estimators.base import LikelihoodKind
from densbench.estimators.params import Interval, Options, ParamConstraints, When
from densbench.estimators.training import TorchDensityEstimator

__all__ = ["MADE", "MADEMoG", "RNNAutoregressive"]

_CONDITIONALS = ("auto", "gaussian_mixture", "bernoulli", "categorical")
#: Bounds on the log standard deviations of the Gaussian components (standardized units):
#: keeps a component from collapsing onto one training point.
_LOG_SCALE_RANGE = (-7.0, 5.0)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)



class _Head:
    """One conditional family, shared by both networks.

    Per dimension the network emits ``size`` numbers: for ``'gaussian_mixture'`` the
    k mixture logits, k means and k log standard deviations; for ``'bernoulli'`` one logit
    of P(x = 1); for ``'categorical'`` one logit per level. The networks read observed
    values through :meth:`encode`, one number per dimension.
    """

    def __init__(self, kind: str, levels: int | None, n_mixture: int) -> None:
        self.kind, self.levels, self.k = kind, levels, n_mixture
        if kind == "gaussian_mixture":
            self.size = 3 * n_mixture
        elif kind == "bernoulli":
            self.size = 1
        else:
            assert levels is not None
            self.size = levels

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Observed values (n, d) -> network input (n, d): continuous values as they are
        (standardized), discrete levels 0..L-1 scaled to [-1, 1].

        (On the 17-level digits the scaled level beat a one-hot input by about 0.15
        bits/dim for both networks: fewer weights, less overfitting of 1257 images.)
        """
        if self.kind == "gaussian_mixture":
            return x
        return x * (2.0 / (self.levels - 1)) - 1.0

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """params (n, d, size) and values (n, d) -> log p(x_i | x_<i), (n, d)."""
        if self.kind == "gaussian_mixture":
            logits, mu, log_s = params.split(self.k, dim=-1)
            log_s = log_s.clamp(*_LOG_SCALE_RANGE)
            z = (x.unsqueeze(-1) - mu) * torch.exp(-log_s)
            comp = -0.5 * z * z - log_s - _HALF_LOG_2PI
            return torch.logsumexp(F.log_softmax(logits, dim=-1) + comp, dim=-1)
        if self.kind == "bernoulli":
            return -F.binary_cross_entropy_with_logits(params[..., 0], x, reduction="none")
        return torch.gather(F.log_softmax(params, dim=-1), -1,
                            x.long().unsqueeze(-1)).squeeze(-1)

    def initial_bias(self, X: torch.Tensor) -> torch.Tensor:
        """Output biases (d, size) from the training data X (n, d): the model starts near
        the independent model of the marginals.

        Categorical / Bernoulli: the log frequencies (logit of the mean) of each dimension,
        smoothed by half a count per level. Mixture: equal weights, means at the
        quantiles (j + 1/2) / k of each dimension, scales 1 / sqrt(k) (the data are
        standardized). Starting all components at the same place would sit on a saddle
        point (the standard normal fits a standardized marginal's mean and variance, and
        the gradients of identical components cancel): with k = 10 on grid_5x5 training
        stayed there.
        """
        Z = X.detach().double().cpu().numpy()
        d = Z.shape[1]
        if self.kind == "gaussian_mixture":
            mu = np.quantile(Z, (np.arange(self.k) + 0.5) / self.k, axis=0).T   # (d, k)
            log_s = np.full((d, self.k), -0.5 * math.log(self.k))
            bias = np.hstack([np.zeros((d, self.k)), mu, log_s])
        else:
            levels = int(self.levels)  # type: ignore[arg-type]
            counts = np.stack([np.bincount(Z[:, j].astype(np.int64), minlength=levels)
                               for j in range(d)]) + 0.5
            bias = (np.log(counts[:, 1:] / counts[:, :1]) if self.kind == "bernoulli"
                    else np.log(counts / counts.sum(1, keepdims=True)))
        return torch.as_tensor(bias, dtype=torch.float32)

    def sample(self, params: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """params (n, size) of one dimension -> (n,) draws, from ``gen`` (a CPU generator:
        drawn on the CPU, returned on the parameters' device)."""
        p = params.detach().float().cpu()
        n = p.shape[0]
        if self.kind == "gaussian_mixture":
            logits, mu, log_s = p.split(self.k, dim=-1)
            j = torch.multinomial(F.softmax(logits, -1), 1, generator=gen).squeeze(-1)
            rows = torch.arange(n)
            eps = torch.randn(n, generator=gen)
            out = mu[rows, j] + torch.exp(log_s.clamp(*_LOG_SCALE_RANGE)[rows, j]) * eps
        elif self.kind == "bernoulli":
            out = (torch.rand(n, generator=gen) < torch.sigmoid(p[:, 0])).float()
        else:
            out = torch.multinomial(F.softmax(p, -1), 1, generator=gen).squeeze(-1).float()
        return out.to(params.device)


# -- the networks: encoded inputs (n, d) -> conditional parameters (n, d, size) ------------
#    Output i may depend on the inputs of dimensions 0..i-1 only.

class _MaskedLinear(nn.Linear):
    def __init__(self, n_in: int, n_out: int, mask: torch.Tensor) -> None:
        super().__init__(n_in, n_out)
        self.register_buffer("mask", mask.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class _MADENet(nn.Module):
    """Masked MLP (natural order): output block i depends only on inputs 0..i-1.

    Degrees (Germain et al. 2015): input dimension i has degree i (1-based); hidden units
    get degrees cycling over 1..d-1; a hidden unit connects to the units below it of
    degree <= its own, and output block i to the last hidden units of degree < i. With
    d = 1 the hidden units have degree 0 (connected to no input): a learned marginal.
    """

    def __init__(self, d: int, hidden: int, n_layers: int, out_bias: torch.Tensor) -> None:
        super().__init__()
        self.d, self.size = d, size = out_bias.shape
        deg_in = torch.arange(1, d + 1)
        deg_hidden = (torch.arange(hidden) % (d - 1) + 1 if d > 1
                      else torch.zeros(hidden, dtype=torch.long))
        degs = [deg_in] + [deg_hidden] * n_layers
        layers: list[nn.Module] = []
        for a, b in zip(degs[:-1], degs[1:], strict=True):
            layers += [_MaskedLinear(len(a), len(b), b.unsqueeze(1) >= a.unsqueeze(0)),
                       nn.ReLU()]
        deg_out = torch.arange(1, d + 1).repeat_interleave(size)
        layers.append(_MaskedLinear(len(degs[-1]), d * size,
                                    deg_out.unsqueeze(1) > degs[-1].unsqueeze(0)))
        self.net = nn.Sequential(*layers)
        with torch.no_grad():
            layers[-1].bias.copy_(out_bias.reshape(-1))

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.net(u).view(u.shape[0], self.d, self.size)

    def sample(self, n: int, encode: Callable[[torch.Tensor], torch.Tensor],
               draw: Callable[[torch.Tensor], torch.Tensor],
               device: torch.device) -> torch.Tensor:
        # d passes, pass i fixing x_i (the later inputs are placeholders it ignores)
        x = torch.zeros(n, self.d, device=device)
        for i in range(self.d):
            x[:, i] = draw(self(encode(x))[:, i])
        return x

    def n_parameters(self) -> int:
        """Weights that the masks leave free, and the biases."""
        return int(sum(int(m.mask.sum()) + m.bias.numel()
                       for m in self.modules() if isinstance(m, _MaskedLinear)))


class _RNNNet(nn.Module):
    """GRU over the dimensions: step i reads x_{i-1} and its state gives the parameters of
    x_i's conditional.

    Step 0 reads a learned start token; step i >= 1 reads a linear embedding of the encoded
    x_{i-1} plus a learned embedding of the position i. The output layer is shared over
    positions, plus a learned bias per position. (The position terms spare the GRU from
    counting where it is: on the digits they gained about 0.3 bits/dim.)
    """

    def __init__(self, d: int, hidden: int, n_layers: int, out_bias: torch.Tensor) -> None:
        super().__init__()
        self.d, self.size = d, size = out_bias.shape
        self.start = nn.Parameter(torch.zeros(1, 1, hidden))
        self.embed = nn.Linear(1, hidden)
        self.pos = nn.Parameter(torch.zeros(d - 1, hidden))
        self.gru = nn.GRU(hidden, hidden, num_layers=n_layers, batch_first=True)
        self.out = nn.Linear(hidden, size)
        self.out_bias = nn.Parameter(out_bias.clone())
        nn.init.zeros_(self.out.bias)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        n = u.shape[0]
        tokens = self.embed(u[:, :-1, None]) + self.pos                  # steps 1..d-1
        y, _ = self.gru(torch.cat([self.start.expand(n, 1, -1), tokens], dim=1))
        return self.out(y) + self.out_bias

    def sample(self, n: int, encode: Callable[[torch.Tensor], torch.Tensor],
               draw: Callable[[torch.Tensor], torch.Tensor],
               device: torch.device) -> torch.Tensor:
        # one GRU step per dimension, carrying the state
        x = torch.zeros(n, self.d, device=device)
        token, h = self.start.expand(n, 1, -1), None
        for i in range(self.d):
            y, h = self.gru(token, h)
            x[:, i] = draw(self.out(y[:, 0]) + self.out_bias[i])
            if i + 1 < self.d:
                token = self.embed(encode(x[:, i:i + 1]).unsqueeze(-1)) + self.pos[i]
        return x

    def n_parameters(self) -> int:
        return int(sum(p.numel() for p in self.parameters()))


class _Autoregressive(TorchDensityEstimator):
    """Shared by ``made`` and ``rnn_ar``: validation, conditionals, scoring, sampling."""

    likelihood: ClassVar[LikelihoodKind] = LikelihoodKind.EXACT
    can_sample: ClassVar[bool] = True
    discrete_native: ClassVar[bool] = True
    #: The network class: (d, hidden, n_layers, initial output biases (d, size)) -> module.
    net_class: ClassVar[type[nn.Module]]

    _parameter_constraints: ClassVar[ParamConstraints] = {
        "hidden": [Interval(int, 1, None)],
        "n_layers": [Interval(int, 1, None)],
        "n_mixture": [Interval(int, 1, None)],
        "conditional": [Options(*_CONDITIONALS)],
        "levels": [None, Interval(int, 2, None)],
    }

    _joint_constraints: ClassVar[tuple[When, ...]] = (
        When("conditional", Options("gaussian_mixture"), "levels", [None],
             "None for gaussian_mixture conditionals (continuous data)"),
        When("conditional", Options("categorical"), "levels", [Interval(int, 2, None)],
             "an int >= 2 for categorical conditionals"),
        When("conditional", Options("bernoulli"), "levels", [Interval(int, 2, 2)],
             "2 for bernoulli conditionals"),
    )

    # -- hyperparameters ------------------------------------------------------------

    def _store(self, *, hidden: int, n_layers: int, conditional: str, n_mixture: int,
               levels: int | None, training: dict[str, Any]) -> None:
        """Store the hyperparameters both models' ``__init__`` take (each with its own
        defaults, which ``get_params`` reads from its signature)."""
        self.hidden = hidden
        self.n_layers = n_layers
        self.conditional = conditional
        self.n_mixture = n_mixture
        self.levels = levels
        self._store_training(training)

    def _kind(self) -> str:
        if self.conditional != "auto":
            return str(self.conditional)
        if self.levels is None:
            return "gaussian_mixture"
        return "bernoulli" if int(self.levels) == 2 else "categorical"

    def _standardize(self) -> bool:
        return self._kind() == "gaussian_mixture"

    def _check_levels(self, X: np.ndarray, what: str) -> None:
        if self._kind() == "gaussian_mixture":
            return
        top = int(self.levels) - 1
        bad = (X != np.round(X)) | (X < 0) | (X > top)
        if bad.any():
            row, col = (int(v) for v in np.argwhere(bad)[0])
            raise ValueError(f"{self.name}: {what} must hold integer levels 0..{top} for "
                             f"{self._kind()} conditionals; got {float(X[row, col])!r} in row "
                             f"{row}, column {col}")

    @classmethod
    def test_params(cls) -> dict[str, Any]:
        return {"hidden": 32, "n_mixture": 3, "max_epochs": 5, "batch_size": 128}

    # -- fit, score, sample ---------------------------------------------------------
    def _fit(self, X: np.ndarray, X_val: np.ndarray | None) -> None:
        self._check_levels(X, "X")
        if X_val is not None:
            self._check_levels(X_val, "X_val")
        self.conditional_ = self._kind()
        self.head_ = _Head(self.conditional_, None if self.levels is None
                           else int(self.levels), int(self.n_mixture))
        super()._fit(X, X_val)

    def _build(self, X: torch.Tensor) -> nn.Module:
        return self.net_class(X.shape[1], int(self.hidden), int(self.n_layers),
                              self.head_.initial_bias(X))

    def _log_prob(self, batch: torch.Tensor) -> torch.Tensor:
        params = self.module_(self.head_.encode(batch))
        return self.head_.log_prob(params, batch).sum(dim=1)

    def _eval_row_bytes(self) -> int:
        # float32 network outputs (d x the head's size a row), their log-softmax and one
        # temporary of the same size
        return 3 * 4 * self.n_features_in_ * self.head_.size

    def _score_samples(self, X: np.ndarray) -> np.ndarray:
        self._check_levels(X, "X")
        return super()._score_samples(X)

    def _sample_standardized(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return self.module_.sample(n, self.head_.encode,
                                   lambda params: self.head_.sample(params, generator),
                                   self.device_)

    def _n_parameters(self) -> int:
        return self.module_.n_parameters()


class MADE(_Autoregressive):
    """Masked autoencoder (MADE): all autoregressive conditionals in one masked-MLP pass.

    A fully connected network of ``n_layers`` hidden layers of ``hidden`` ReLU units whose
    weight masks make output block i depend on x_1..x_{i-1} only (natural order), so one
    pass gives every conditional p(x_i | x_<i) and the exact log-likelihood, their sum.

    Parameters:
        hidden: units per hidden layer.
        n_layers: hidden layers.
        conditional: ``'auto'`` (categorical when ``levels`` > 2, Bernoulli when
            ``levels`` == 2, else a mixture of ``n_mixture`` Gaussians per dimension), or
            ``'gaussian_mixture'``, ``'bernoulli'``, ``'categorical'``.
        n_mixture: Gaussian components per conditional (continuous data).
        levels: the number of discrete levels 0..levels-1 of the data (the runner sets it
            for discrete data), or None for continuous data. With levels, the inputs must
            be those integers and the score is the exact discrete log-probability; the
            network reads the levels one-hot (categorical) or as +-1 (Bernoulli).
        max_epochs, batch_size, lr, patience, time_budget_s, device, random_state: the
            shared training loop's settings (continuous data are standardized first and
            the log-Jacobian added back).

    Attributes:
        module_ (the network), head_ (the conditional family), conditional_ (its name),
        shift_, scale_, log_jacobian_, training_, epochs_, best_epoch_, stopped_.

    References:
        M. Germain, K. Gregor, I. Murray and H. Larochelle, "MADE: Masked Autoencoder for
        Distribution Estimation", ICML 2015; G. Papamakarios, T. Pavlakou and I. Murray,
        "Masked Autoregressive Flow for Density Estimation", NeurIPS 2017 (MADE MoG).

    Example:
        >>> import itertools, numpy as np, densbench as db
        >>> X = np.random.default_rng(0).integers(0, 3, size=(200, 4)).astype(float)
        >>> est = db.estimators.make("made", levels=3, hidden=16, max_epochs=2).fit(X)
        >>> est.conditional_
        'categorical'
        >>> every = np.array(list(itertools.product(range(3), repeat=4)), dtype=float)
        >>> round(float(np.exp(est.score_samples(every)).sum()), 6)
        1.0
    """

    net_class = _MADENet

    training_defaults: ClassVar[dict[str, Any]] = (
        TorchDensityEstimator.training_defaults | {"lr": 3e-3})

    def __init__(self, *, hidden: int = 256, n_layers: int = 2, conditional: str = "auto",
                 n_mixture: int = 10, levels: int | None = None, **training: Any) -> None:
        self._store(hidden=hidden, n_layers=n_layers, conditional=conditional,
                    n_mixture=n_mixture, levels=levels, training=training)


class MADEMoG(MADE):
    """MADE MoG on logit pixels: a Gaussian-mixture MADE of dequantized data, exact density.

    :class:`MADE` with a mixture of ``n_mixture`` Gaussians per conditional, for discrete
    data too: rather than the levels it sees the dequantized pixels in logit space
    (``logit_space``; :func:`densbench.data.transforms.prepare` adds the log-Jacobians
    back, so the figure is the dequantized bound in bits/dim of the levels). This is the
    MADE MoG of Papamakarios et al. (2017)'s MNIST experiments, and at 784-D its outputs
    are 784 x 3 ``n_mixture`` numbers where the categorical MADE's are 784 x 256. On
    continuous data it is ``made`` with mixture conditionals.

    Parameters: as :class:`MADE`'s (``conditional`` ``'auto'`` or ``'gaussian_mixture'``).

    References:
        G. Papamakarios, T. Pavlakou and I. Murray, "Masked Autoregressive Flow for Density
        Estimation", NeurIPS 2017; M. Germain et al., "MADE", ICML 2015.

    Example:
        >>> import numpy as np, densbench as db
        >>> X = np.random.default_rng(0).normal(size=(300, 3))
        >>> est = db.estimators.make("made_mog", hidden=16, n_mixture=2, max_epochs=2).fit(X)
        >>> est.conditional_, db.estimators.get("made_mog").discrete_native
        ('gaussian_mixture', False)
    """

    discrete_native: ClassVar[bool] = False
    logit_space: ClassVar[bool] = True
    _parameter_constraints: ClassVar[ParamConstraints] = {
        "conditional": [Options("auto", "gaussian_mixture")],
        "levels": [None],
    }


class RNNAutoregressive(_Autoregressive):
    """GRU autoregressive model reading the dimensions in order; exact log-likelihood.

    Step i of a GRU reads x_{i-1} (a learned start token at step 0) plus a learned
    position embedding; its state gives the parameters of p(x_i | x_<i) through a linear
    layer shared over positions with a per-position bias. Conditionals as ``made``'s.

    Parameters:
        hidden: the GRU state size (also the size of the input embeddings).
        n_layers: stacked GRU layers.
        conditional, n_mixture, levels: as for ``made``.
        max_epochs, batch_size, lr, patience, time_budget_s, device, random_state: the
            shared training loop's settings.

    Attributes:
        module_, head_, conditional_, shift_, scale_, log_jacobian_, training_, epochs_,
        best_epoch_, stopped_.

    References:
        K. Cho et al., "Learning Phrase Representations using RNN Encoder-Decoder for
        Statistical Machine Translation", EMNLP 2014; A. Graves, "Generating Sequences
        With Recurrent Neural Networks", arXiv:1308.0850, 2013.

    Example:
        >>> import numpy as np, densbench as db
        >>> X = np.random.default_rng(0).integers(0, 2, size=(200, 3)).astype(float)
        >>> est = db.estimators.make("rnn_ar", levels=2, hidden=8, max_epochs=2).fit(X)
        >>> every = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)],
        ...                  dtype=float)
        >>> est.conditional_, round(float(np.exp(est.score_samples(every)).sum()), 6)
        ('bernoulli', 1.0)
    """

    net_class = _RNNNet

    training_defaults: ClassVar[dict[str, Any]] = (
        TorchDensityEstimator.training_defaults
        | {"max_epochs": 40, "batch_size": 128, "lr": 3e-3})

    def __init__(self, *, hidden: int = 64, n_layers: int = 1, conditional: str = "auto",
                 n_mixture: int = 10, levels: int | None = None, **training: Any) -> None:
        self._store(hidden=hidden, n_layers=n_layers, conditional=conditional,
                    n_mixture=n_mixture, levels=levels, training=training)
