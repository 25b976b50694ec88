"""Denoising diffusion probabilistic model (DDPM) for vector data, scored by its
variational bound.

The forward process adds Gaussian noise in ``T`` steps, ``q(x_t | x_{t-1}) =
N(sqrt(1 - beta_t) x_{t-1}, beta_t I)``, so that ``q(x_t | x_0) = N(sqrt(abar_t) x_0,
(1 - abar_t) I)`` with ``abar_t = prod_{s <= t} (1 - beta_s)``. The reverse model is
``p(x_T) = N(0, I)`` and ``p(x_{t-1} | x_t) = N(mu(x_t, t), sigma_t^2 I)`` with the mean
given by a noise predictor ``eps_hat(x_t, t)`` (an MLP with a sinusoidal time embedding),

    mu(x_t, t) = (x_t - beta_t / sqrt(1 - abar_t) eps_hat(x_t, t)) / sqrt(1 - beta_t),

and fixed variances ``sigma_t^2 = beta_t`` (or the posterior variance ``beta~_t`` for
t >= 2, ``reverse_variance='posterior'``; the decoder at t = 1 always has ``beta_1``).

``score_samples`` is the variational lower bound (Sohl-Dickstein et al. 2015, Ho et al.
2020, eq. 5) on the log-density of the model's x_0 marginal,

    L(x_0) = log p(x_0 | x_1) - sum_{t=2..T} KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t))
             - KL(q(x_T | x_0) || N(0, I)),

every term in closed form (Gaussians), with ONE sampled x_t per example and step (the
terms are expectations over x_t ~ q(x_t | x_0)). Writing ``x_t = sqrt(abar_t) x_0 +
sqrt(1 - abar_t) eps``, the mean of ``q(x_{t-1} | x_t, x_0)`` minus ``mu(x_t, t)`` is
``beta_t / (sqrt(1 - beta_t) sqrt(1 - abar_t)) (eps_hat - eps)``, so each step contributes

    k_t + c_t ||eps_hat(x_t, t) - eps||^2,   c_t = beta_t^2 / (2 sigma_t^2 (1 - beta_t)
    (1 - abar_t)),

with ``k_t = d/2 (log(sigma_t^2 / beta~_t) + beta~_t / sigma_t^2 - 1)`` (the KL's variance
part) for t >= 2 and ``k_1 = d/2 log(2 pi sigma_1^2)`` (the decoder's normalizer). The
bound is therefore a Monte-Carlo estimate over the sampled noise
(``LikelihoodKind.LOWER_BOUND``: its expectation is a lower bound): the noise comes from
a ``torch.Generator`` seeded by ``random_state`` at each call, so the same call gives the
same numbers. A Gaussian decoder makes it a bound on a continuous density; discrete data
reach this estimator dequantized by the runner, which adds back the log-Jacobians.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from densbench.estimators.base import LikelihoodKind
from densbench.estimators.params import Interval, Options, ParamConstraints, check_value
from densbench.estimators.training import TorchDensityEstimator, mlp, resolve_device

__all__ = ["Diffusion", "variance_schedule"]

_SCHEDULES = ("cosine", "linear")
_REVERSE_VARIANCES = ("beta", "posterior")
_LOSSES = ("simple", "bound")
#: Offset ``s`` of the cosine schedule (Nichol & Dhariwal 2021).
COSINE_OFFSET = 0.008
#: Largest beta of either schedule. Nichol & Dhariwal clip at 0.999 for T = 4000; with
#: T ~ 100 the cosine schedule's last betas are then 0.999, 0.75, 0.56, whose weights
#: c_t (up to 500) made the bound's Monte-Carlo error explode and whose 1 / sqrt(1 -
#: beta_t) (up to 32) amplified the predictor's errors in sampling (samples diverged). At
#: 0.5, abar_T stays small at T = 100 (about 3e-4: a prior term of that order in nats on
#: standardized 2-D data).
MAX_BETA = 0.5

#: A noise predictor: (x_t (n, d), t (n,) integer steps 1..T) -> eps_hat (n, d).
NoisePredictor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def variance_schedule(T: int, kind: str = "cosine") -> np.ndarray:
    """The betas ``beta_1 .. beta_T`` (float64, shape (T,)).

    - ``'cosine'`` (Nichol & Dhariwal 2021): ``abar(t) = f(t) / f(0)`` with ``f(t) =
      cos^2(pi / 2 (t / T + s) / (1 + s))``, s = 0.008, betas clipped at ``MAX_BETA``
      (0.5, see there); adapts to any T, abar_T is about 3e-4 at T = 100;
    - ``'linear'`` (Ho et al. 2020): from ``1e-4 * 1000 / T`` to ``0.02 * 1000 / T``
      (their T = 1000 schedule rescaled to T steps), capped at ``MAX_BETA``.

    Example:
        >>> b = variance_schedule(100)
        >>> b.shape, bool(b[0] < 1e-3), bool(np.prod(1 - b) < 1e-3)
        ((100,), True, True)
    """
    if kind == "cosine":
        u = np.arange(T + 1) / T
        f = np.cos(0.5 * math.pi * (u + COSINE_OFFSET) / (1 + COSINE_OFFSET)) ** 2
        abar = f / f[0]
        return np.minimum(1.0 - abar[1:] / abar[:-1], MAX_BETA)
    if kind == "linear":
        scale = 1000.0 / T
        return np.minimum(np.linspace(1e-4 * scale, 0.02 * scale, T), MAX_BETA)
    raise ValueError(f"unknown schedule {kind!r}; known: {', '.join(_SCHEDULES)}")


class _TimeEmbedding(nn.Module):
    """Sinusoidal features of t / T at frequencies from pi to pi T (geometric)."""

    def __init__(self, T: int, dim: int) -> None:
        super().__init__()
        half = max(dim // 2, 1)
        freqs = math.pi * np.power(float(T), np.arange(half) / max(half - 1, 1))
        self.T = T
        self.register_buffer("freqs", torch.as_tensor(freqs, dtype=torch.float32))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        a = (t.to(self.freqs.dtype) / self.T)[:, None] * self.freqs
        return torch.cat([torch.sin(a), torch.cos(a)], -1)


class _NoiseNet(nn.Module):
    """eps_hat(x_t, t): an MLP on [x_t, time embedding] (SiLU)."""

    def __init__(self, d: int, T: int, *, hidden: int, n_layers: int, embed: int) -> None:
        super().__init__()
        self.embed = _TimeEmbedding(T, embed)
        self.mlp = mlp(d + 2 * max(embed // 2, 1), d, hidden, n_layers)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.cat([x, self.embed(t)], -1))


class _CallableNet(nn.Module):
    """A given noise predictor (for tests and known answers): no parameters."""

    def __init__(self, fn: NoisePredictor) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.fn(x, t)


class _DiffusionModule(nn.Module):
    """The noise predictor and the schedule's per-step constants (buffers, index t - 1)."""

    def __init__(self, net: nn.Module, betas: np.ndarray, d: int,
                 reverse_variance: str) -> None:
        super().__init__()
        self.net, self.d, self.T = net, d, len(betas)
        alphas = 1.0 - betas
        abar = np.cumprod(alphas)
        abar_prev = np.concatenate([[1.0], abar[:-1]])
        post_var = betas * (1.0 - abar_prev) / (1.0 - abar)      # beta~_t (0 at t = 1)
        sigma2 = betas.copy()
        if reverse_variance == "posterior":
            sigma2[1:] = post_var[1:]
        c = betas ** 2 / (2.0 * sigma2 * alphas * (1.0 - abar))
        k = np.empty_like(betas)
        k[0] = 0.5 * d * math.log(2 * math.pi * sigma2[0])
        ratio = post_var[1:] / sigma2[1:]
        k[1:] = 0.5 * d * (ratio - 1.0 - np.log(ratio))
        prior_var = 1.0 - abar[-1]

        def buf(name: str, v: Any) -> None:
            self.register_buffer(name, torch.as_tensor(np.asarray(v), dtype=torch.float32))

        buf("sqrt_abar", np.sqrt(abar))
        buf("sqrt_1m_abar", np.sqrt(1.0 - abar))
        buf("eps_coef", betas / np.sqrt(1.0 - abar))             # beta_t / sqrt(1 - abar_t)
        buf("inv_sqrt_alpha", 1.0 / np.sqrt(alphas))
        buf("sigma", np.sqrt(sigma2))
        buf("c", c)
        buf("k", k)
        self.abar_T = float(abar[-1])
        # KL(N(sqrt(abar_T) x0, prior_var) || N(0, 1)) per dimension: 0.5 (abar_T x0^2 + v
        # - 1 - log v); the x0-free part:
        self.prior_const = 0.5 * d * (prior_var - 1.0 - math.log(prior_var))

    def prior_kl(self, x0: torch.Tensor) -> torch.Tensor:
        """KL(q(x_T | x_0) || N(0, I)) per row (n,)."""
        return 0.5 * self.abar_T * x0.square().sum(-1) + self.prior_const

    def step_terms(self, x0: torch.Tensor, t: torch.Tensor,
                   generator: torch.Generator | None) -> torch.Tensor:
        """``k_t + c_t ||eps_hat - eps||^2`` for x0 (n, d) and steps t (n, m) in 1..T, one
        fresh eps per (row, step): shape (n, m). The network sees all n m rows at once."""
        n, m = t.shape
        i = t - 1
        eps = torch.randn((n, m, self.d), generator=generator, device=x0.device,
                          dtype=x0.dtype)
        xt = self.sqrt_abar[i][..., None] * x0[:, None, :] + self.sqrt_1m_abar[i][..., None] * eps
        eps_hat = self.net(xt.reshape(n * m, self.d), t.reshape(n * m)).reshape(n, m, self.d)
        return self.k[i] + self.c[i] * (eps_hat - eps).square().sum(-1)

    def simple_loss(self, x0: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Ho et al.'s L_simple: mean ||eps_hat - eps||^2 / d at a uniform step per row."""
        n = x0.shape[0]
        t = torch.randint(1, self.T + 1, (n,), generator=generator, device=x0.device)
        eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        xt = self.sqrt_abar[t - 1, None] * x0 + self.sqrt_1m_abar[t - 1, None] * eps
        return (self.net(xt, t) - eps).square().mean()

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
        """Ancestral sampling x_T ~ N(0, I), x_{t-1} ~ p(x_{t-1} | x_t), down to x_0 (the
        decoder's noise included: these are draws from the density that is scored)."""
        x = torch.randn((n, self.d), generator=generator, device=device)
        for t in range(self.T, 0, -1):
            i = t - 1
            tt = torch.full((n,), t, dtype=torch.long, device=device)
            mean = (x - self.eps_coef[i] * self.net(x, tt)) * self.inv_sqrt_alpha[i]
            x = mean + self.sigma[i] * torch.randn((n, self.d), generator=generator,
                                                   device=device)
        return x



class Diffusion(TorchDensityEstimator):
    """Denoising diffusion model (DDPM, MLP noise predictor), variational bound as score.

    ``T`` noising steps with a ``schedule`` of variances (``'cosine'``, Nichol & Dhariwal
    2021, default; or ``'linear'``, Ho et al. 2020 rescaled to T steps: see
    :func:`variance_schedule`). The noise predictor ``eps_hat(x_t, t)`` is an MLP
    (``n_layers`` hidden layers of ``hidden`` SiLU units) on ``[x_t, sinusoidal embedding
    of t / T]``; the data are standardized first (the log-Jacobian is added back).
    Training runs on the shared loop (:func:`densbench.estimators.training.train`) and
    minimizes Ho et al.'s L_simple (``loss='simple'``: the unweighted noise-prediction
    error at a uniform step) or a one-step Monte-Carlo estimate of the negative bound
    (``loss='bound'``: the same error weighted by ``c_t``, times T). Early stopping uses
    a cheap, fixed-noise estimate of the bound on the validation rows: ``val_steps`` steps
    per row, one drawn uniformly in each of ``val_steps`` equal strata of 1..T, each term
    weighted by its stratum's size (an unbiased estimate of the sum over the T steps).

    ``score_samples`` returns the bound of the module docstring with ONE noise draw per
    example and step, all T steps of a chunk of rows in one network call (at most
    ``eval_rows`` network rows, rows of X times T, per call: memory stays bounded). Cost:
    T network evaluations per example; ``diagnostics`` costs ``mc_repeats`` times that.
    ``diagnostics`` repeats the evaluation ``mc_repeats`` times with independent noise
    (the first is ``score_samples``'s own draw) and reports per example:

    - ``bound_mc_se`` (nats): the Monte-Carlo standard error of ``score_samples``'s value,
      the standard deviation over the repeats;
    - ``bound_mean`` (log-likelihood): the mean over the repeats, a lower-variance estimate
      of the same bound;
    - ``prior_kl`` and ``diffusion_kl`` (nats): the prior term and the sum of the KL terms
      t = 2..T (mean over the repeats); the rest of the bound is the decoder term.

    ``sample`` runs the T ancestral steps for all rows at once (chunks of ``eval_rows``),
    from a generator seeded by ``random_state``.

    Parameters:
        T: number of diffusion steps.
        schedule: ``'cosine'`` or ``'linear'``.
        reverse_variance: ``'beta'`` (sigma_t^2 = beta_t, the default: tight at small t
            for continuous data) or ``'posterior'`` (beta~_t for t >= 2).
        hidden, n_layers: the noise predictor's MLP.
        time_embed: size of the sinusoidal time embedding.
        loss: ``'simple'`` or ``'bound'``.
        val_steps: steps per validation row in the early-stopping estimate.
        max_epochs, batch_size, lr, patience, time_budget_s, device, random_state: the
            shared training loop's; ``random_state`` also seeds the evaluation noise.

    Attributes:
        module_ (noise predictor and schedule), betas_ (the schedule, float64), shift_,
        scale_, log_jacobian_, training_, epochs_, best_epoch_, stopped_.

    References:
        J. Sohl-Dickstein, E. Weiss, N. Maheswaranathan and S. Ganguli, "Deep unsupervised
        learning using nonequilibrium thermodynamics", ICML 2015; J. Ho, A. Jain and
        P. Abbeel, "Denoising diffusion probabilistic models", NeurIPS 2020; A. Nichol and
        P. Dhariwal, "Improved denoising diffusion probabilistic models", ICML 2021 (the
        cosine schedule).

    Example:
        >>> import numpy as np, densbench as db
        >>> X = np.random.default_rng(0).normal(size=(300, 2))
        >>> est = db.estimators.make("diffusion", T=20, hidden=16, max_epochs=2).fit(X)
        >>> s = est.score_samples(X[:3])
        >>> s.shape, bool(np.array_equal(s, est.score_samples(X[:3])))
        ((3,), True)
        >>> est.sample(4, random_state=0).shape
        (4, 2)
    """

    likelihood: ClassVar[LikelihoodKind] = LikelihoodKind.LOWER_BOUND
    can_sample: ClassVar[bool] = True
    discrete_native: ClassVar[bool] = False
    #: Network rows (rows of X times steps) per evaluation call: bounds the memory.
    eval_rows: ClassVar[int] = 1 << 16
    #: Independent evaluations behind ``diagnostics``.
    mc_repeats: ClassVar[int] = 3
    # one scoring call covers all rows (chunked inside), so the draws follow one stream
    score_batch_rows: ClassVar[int | None] = None

    training_defaults: ClassVar[dict[str, Any]] = (
        TorchDensityEstimator.training_defaults | {"max_epochs": 200, "lr": 3e-3})

    def __init__(self, *, T: int = 100, schedule: str = "cosine",
                 reverse_variance: str = "beta", hidden: int = 64, n_layers: int = 2,
                 time_embed: int = 16, loss: str = "simple", val_steps: int = 10,
                 **training: Any) -> None:
        self.T = T
        self.schedule = schedule
        self.reverse_variance = reverse_variance
        self.hidden = hidden
        self.n_layers = n_layers
        self.time_embed = time_embed
        self.loss = loss
        self.val_steps = val_steps
        self._store_training(training)

    @classmethod
    def test_params(cls) -> dict[str, Any]:
        return {"T": 20, "hidden": 16, "max_epochs": 5, "val_steps": 4}

    _parameter_constraints: ClassVar[ParamConstraints] = {
        "T": [Interval(int, 1, None)],
        "schedule": [Options(*_SCHEDULES)],
        "reverse_variance": [Options(*_REVERSE_VARIANCES)],
        "hidden": [Interval(int, 1, None)],
        "n_layers": [Interval(int, 0, None)],
        "time_embed": [Interval(int, 1, None)],
        "loss": [Options(*_LOSSES)],
        "val_steps": [Interval(int, 1, None)],
    }

    # -- fitting -----------------------------------------------------------------------
    def _fit(self, X: np.ndarray, X_val: np.ndarray | None) -> None:
        self.betas_ = variance_schedule(int(self.T), self.schedule)
        super()._fit(X, X_val)

    def _build(self, X: torch.Tensor) -> nn.Module:
        d, T = int(X.shape[1]), int(self.T)
        net = _NoiseNet(d, T, hidden=int(self.hidden), n_layers=int(self.n_layers),
                        embed=int(self.time_embed))
        return _DiffusionModule(net, self.betas_, d, self.reverse_variance)

    def _loss(self, batch: torch.Tensor) -> torch.Tensor:
        if self.loss == "simple":
            return self.module_.simple_loss(batch, self._noise)
        T = self.module_.T
        t = torch.randint(1, T + 1, (batch.shape[0], 1), generator=self._noise,
                          device=batch.device)
        terms = self.module_.step_terms(batch, t, self._noise)[:, 0]
        return (T * terms + self.module_.prior_kl(batch)).mean()

    def _val_loglik(self, batch: torch.Tensor) -> torch.Tensor:
        # stratified steps with fixed noise (the same draws at every epoch)
        gen = self._generator(offset=2)
        T, m = self.module_.T, min(int(self.val_steps), self.module_.T)
        edges = torch.linspace(0, T, m + 1).round().long()          # strata (lo, hi]
        lo, size = edges[:-1], (edges[1:] - edges[:-1])
        u = torch.rand((batch.shape[0], m), generator=gen)
        t = (lo + 1 + (u * size).long().clamp(max=size - 1)).to(batch.device)
        terms = self.module_.step_terms(batch, t, gen)
        return -(terms * size.to(terms)).sum(-1) - self.module_.prior_kl(batch)

    # -- evaluation --------------------------------------------------------------------
    def _bound_parts(self, Z: torch.Tensor, gen: torch.Generator) -> dict[str, np.ndarray]:
        """One evaluation on standardized rows Z: the bound, the prior term and the sum of
        the KL terms t >= 2 per row (float64)."""
        T = self.module_.T
        n = Z.shape[0]
        out = {key: np.empty(n) for key in ("bound", "prior_kl", "diffusion_kl")}
        rows = max(1, int(self.eval_rows) // T)
        steps = torch.arange(1, T + 1, device=Z.device)
        with torch.no_grad():
            for i in range(0, n, rows):
                x0 = Z[i:i + rows]
                terms = self.module_.step_terms(x0, steps.expand(x0.shape[0], T), gen)
                terms = terms.double()
                prior = self.module_.prior_kl(x0).double()
                sl = slice(i, i + x0.shape[0])
                out["bound"][sl] = (-terms.sum(-1) - prior).cpu().numpy()
                out["prior_kl"][sl] = prior.cpu().numpy()
                out["diffusion_kl"][sl] = terms[:, 1:].sum(-1).cpu().numpy()
        return out

    def _score_samples(self, X: np.ndarray) -> np.ndarray:
        return self._bound_parts(self._to_tensor(X), self._generator())["bound"] \
            + self.log_jacobian_

    def _diagnostics(self, X: np.ndarray) -> dict[str, tuple[np.ndarray, str]]:
        """Per-example Monte-Carlo figures from ``mc_repeats`` independent evaluations
        (see the class docstring): ``bound_mc_se``, ``bound_mean``, ``prior_kl``,
        ``diffusion_kl``. Seeded: the same call gives the same numbers."""
        Z = self._to_tensor(X)
        gen = self._generator()  # the first repeat is score_samples's draw
        reps = [self._bound_parts(Z, gen if r == 0 else self._generator(offset=10 + r))
                for r in range(int(self.mc_repeats))]
        bounds = np.stack([r["bound"] for r in reps])
        return {
            "bound_mc_se": (bounds.std(axis=0, ddof=1), "nats"),
            "bound_mean": (bounds.mean(axis=0) + self.log_jacobian_, "loglik"),
            "prior_kl": (np.mean([r["prior_kl"] for r in reps], axis=0), "nats"),
            "diffusion_kl": (np.mean([r["diffusion_kl"] for r in reps], axis=0), "nats"),
        }

    # -- sampling ----------------------------------------------------------------------
    def _sample_standardized(self, n: int, generator: torch.Generator) -> torch.Tensor:
        chunks = [self.module_.sample(min(self.eval_rows, n - i), generator, self.device_)
                  for i in range(0, n, self.eval_rows)]
        return torch.cat(chunks) if chunks else torch.empty((0, self.n_features_in_))

    # -- a model with a given noise predictor (for tests) ------------------------------
    @classmethod
    def from_noise_predictor(cls, predictor: NoisePredictor, dim: int,
                             **params: Any) -> Diffusion:
        """A fitted model with a given noise predictor, no training, in the units of the
        data (no standardization). ``predictor(x_t, t)`` takes float32 ``x_t`` (n, dim)
        and integer steps ``t`` (n,) in 1..T and returns eps_hat (n, dim); ``params``
        are further hyperparameters (``T``, ``schedule``, ``reverse_variance``,
        ``random_state``, ``device``)."""
        est = cls(**params)
        cls.check_params(est.get_params(deep=False))
        check_value(cls.name, "dim", dim, [Interval(int, 1, None)])
        est.n_features_in_, est.data_scale_ = int(dim), 1.0
        est.device_ = resolve_device(est.device)
        est.shift_, est.scale_ = np.zeros(dim), np.ones(dim)
        est.log_jacobian_ = 0.0
        est.betas_ = variance_schedule(int(est.T), est.schedule)
        est.module_ = _DiffusionModule(_CallableNet(predictor), est.betas_, int(dim),
                                       est.reverse_variance).to(est.device_).eval()
        return est
