"""The networks of the variational autoencoder (:mod:`densbench.estimators.vae`): the
encoder ``q(z | x)``, the decoder, the decoder's likelihood ``log p(x | z)``, their
importance weights and ELBO, and a module with given linear-Gaussian parameters (a model
whose likelihood is known in closed form, for tests).

A decoder maps ``z`` to ``P`` parameters per data dimension, shape ``(N, d, P)``, whatever
its network (an MLP here, transposed convolutions in
:mod:`densbench.estimators.images.conv_vae`); a :class:`Likelihood` turns those into
``log p(x | z)``:

- :class:`Gaussian` (continuous, standardized data; the variance per dimension or an
  output of the decoder);
- :class:`Bernoulli` (binary data);
- :class:`Categorical` (a softmax over the levels of each dimension);
- :class:`DiscretizedLogistic` (Salimans et al. 2017, PixelCNN++: a logistic density
  integrated over each level's bin, the edge bins stretched to -inf and +inf).

The three discrete ones are probabilities of the levels: they sum to one over all
configurations of x for any z, so the importance-weighted bound estimates a discrete
log-probability in nats.

The standard deviations, variances and scales are kept inside soft bounds
(:func:`soft_clamp`) so that training stays finite; :func:`inverse_soft_clamp` maps a wanted
value back to the unbounded parameter.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from densbench.estimators.images.conv_vae import conv_networks
from densbench.estimators.training import mlp

__all__ = ["INIT_LOG_VAR", "LIKELIHOODS", "LOG_SCALE_MIN", "LOG_STD_BOUNDS",
           "LOG_VAR_BOUNDS", "NETWORKS", "Bernoulli", "Categorical", "DiscretizedLogistic",
           "Gaussian", "Likelihood", "MLPDecoder", "VAEModule", "build_module",
           "inverse_soft_clamp", "linear_gaussian_module", "mlp_networks", "soft_clamp"]

#: Soft bounds of the log standard deviations of the encoder and of the Gaussian decoder's
#: log-variance: they keep training finite (a collapsing variance would make the Gaussian
#: likelihood unbounded) and are far from the values met on standardized data.
LOG_STD_BOUNDS = (-9.0, 4.0)
LOG_VAR_BOUNDS = (-14.0, 6.0)
#: Floor of the discretized logistic's log-scale, in the [-1, 1] units of the levels:
#: PixelCNN++'s (a scale far below one level's bin at 256 levels, 2/255). A hard floor
#: rather than a soft bound: the likelihood is evaluated K = 5000 times per image, and the
#: two softplus passes of a soft bound cost a quarter of it.
LOG_SCALE_MIN = -7.0
#: Initial log-variance of the Gaussian decoder (standardized units). A small initial
#: variance makes the reconstruction term dominate early, so the decoder uses z: started
#: at 0 (the whole data variance) the decoder explained everything as noise and training
#: stopped in the collapsed, Gaussian solution (eight_gaussians, grid_5x5, banana).
INIT_LOG_VAR = -2.0


def soft_clamp(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """``x`` pushed smoothly into (lo, hi) (the identity well inside it)."""
    return hi - F.softplus(hi - (lo + F.softplus(x - lo)))


def inverse_soft_clamp(y: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """The x with ``soft_clamp(x, lo, hi) == y`` for lo < y < hi (float64)."""
    y = np.asarray(y, dtype=np.float64)
    if not ((y > lo) & (y < hi)).all():
        raise ValueError(f"value(s) outside the representable range ({lo}, {hi}): {y}")
    # hi - softplus(hi - u) = y  =>  u = hi - softplus^{-1}(hi - y); softplus^{-1}(a) =
    # a + log(-expm1(-a)); then lo + softplus(x - lo) = u likewise
    def inv_softplus(a: np.ndarray) -> np.ndarray:
        return a + np.log(-np.expm1(-a))

    u = hi - inv_softplus(hi - y)
    return lo + inv_softplus(u - lo)


# -- likelihoods -----------------------------------------------------------------------
class Likelihood(nn.Module):
    """``p(x | params)`` of each dimension from ``n_params`` decoder outputs; the
    dimensions are independent given z. ``x`` holds standardized values (Gaussian) or the
    integer levels ``0 .. levels - 1`` (the discrete ones)."""

    #: Whether x holds levels (the encoder then sees them scaled to [0, 1]).
    discrete: ClassVar[bool] = True

    def __init__(self, d: int, levels: int, variance: str) -> None:
        super().__init__()
        self.d, self.levels = d, levels

    @property
    def n_params(self) -> int:
        """Decoder outputs per dimension."""
        return 1

    def init_bias(self, bias: torch.Tensor) -> None:
        """Set the starting values of the decoder's output bias, a view of shape
        (channels or dimensions, n_params); default: left as the layer made it."""

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """log p(x | z) for x (n, d) and params (n, m, d, n_params): shape (n, m)."""
        raise NotImplementedError

    def sample(self, params: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One draw of x per row of params (n, d, n_params): shape (n, d)."""
        raise NotImplementedError


class Gaussian(Likelihood):
    """``N(x; mean, v)`` per dimension, with the variance ``v`` an output of the decoder
    (``variance='output'``) or a learned vector (``'dimension'``)."""

    discrete = False

    def __init__(self, d: int, levels: int, variance: str) -> None:
        super().__init__(d, levels, variance)
        self.variance = variance
        if variance == "dimension":
            self.log_var = nn.Parameter(torch.full((d,), INIT_LOG_VAR))

    @property
    def n_params(self) -> int:
        return 2 if self.variance == "output" else 1

    def init_bias(self, bias: torch.Tensor) -> None:
        if self.variance == "output":
            bias[:, 1] = INIT_LOG_VAR

    def _mean_log_var(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.variance == "output":
            return params[..., 0], soft_clamp(params[..., 1], *LOG_VAR_BOUNDS)
        return params[..., 0], soft_clamp(self.log_var, *LOG_VAR_BOUNDS).expand_as(
            params[..., 0])

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        mean, log_var = self._mean_log_var(params)
        lp = -0.5 * ((x[:, None, :] - mean).square() * torch.exp(-log_var) + log_var)
        return lp.sum(-1) - 0.5 * self.d * math.log(2 * math.pi)

    def sample(self, params: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        mean, log_var = self._mean_log_var(params)
        eps = torch.randn(mean.shape, generator=generator, device=mean.device)
        return mean + torch.exp(0.5 * log_var) * eps


class Bernoulli(Likelihood):
    """``Bernoulli(x; sigmoid(logit))`` per dimension (binary data)."""

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        logits = params[..., 0]
        return -F.binary_cross_entropy_with_logits(
            logits, x[:, None, :].expand_as(logits), reduction="none").sum(-1)

    def sample(self, params: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        logits = params[..., 0]
        u = torch.rand(logits.shape, generator=generator, device=logits.device)
        return (u < torch.sigmoid(logits)).to(logits.dtype)


class Categorical(Likelihood):
    """A softmax over the ``levels`` of each dimension."""

    @property
    def n_params(self) -> int:
        return self.levels

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        n, m = params.shape[:2]
        idx = x[:, None, :].long().unsqueeze(-1).expand(n, m, self.d, 1)
        # log_softmax is one fused pass; logsumexp over the few levels of the last axis
        # runs as five separate passes (max, subtract, exp, sum, log)
        return torch.gather(F.log_softmax(params, -1), -1, idx).squeeze(-1).sum(-1)

    def sample(self, params: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n = params.shape[0]
        probs = torch.softmax(params.reshape(n * self.d, self.levels), -1)
        draws = torch.multinomial(probs, 1, generator=generator)
        return draws.reshape(n, self.d).to(params.dtype)


class DiscretizedLogistic(Likelihood):
    """The discretized logistic of PixelCNN++ (Salimans et al. 2017): level k sits at
    ``c_k = 2 k / (L - 1) - 1`` in [-1, 1], its bin is ``c_k +- 1 / (L - 1)``, the first
    bin reaching down to -inf and the last up to +inf, and its probability is the mass of
    ``Logistic(mean, exp(log_scale))`` on the bin. The bins tile the real line, so the
    probabilities of the levels sum to one exactly (not by approximation).

    Each interior bin's log-mass is computed as ``log(sigmoid(a) - sigmoid(b)) =
    logsigmoid(a) + logsigmoid(-b) + log(1 - exp(b - a))`` (a, b the standardized bin
    edges): exact and finite in float32 far in the tails, where the difference of two
    sigmoids rounds to zero (PixelCNN++ falls back on the density at the bin's centre there).

    References:
        T. Salimans, A. Karpathy, X. Chen and D. P. Kingma, "PixelCNN++: improving the
        PixelCNN with discretized logistic mixture likelihood and other modifications",
        ICLR 2017.
    """

    @property
    def n_params(self) -> int:
        return 2

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        half = 1.0 / (self.levels - 1)
        upper_edge = (x * (2 * half) - 1 + half)[:, None, :]  # of each level's bin
        inv = torch.exp(-params[..., 1].clamp(min=LOG_SCALE_MIN))
        upper = (upper_edge - params[..., 0]) * inv  # standardized by the logistic
        width = inv * (2 * half)                      # the bin's width, standardized
        below_upper = F.logsigmoid(upper)             # all mass below the upper edge
        above_lower = F.logsigmoid(width - upper)     # all mass above the lower edge
        gap = torch.log(-torch.expm1(-width))
        # the first bin takes only its upper edge, the last only its lower one: the terms
        # are masked and summed over pixels in one pass each (cheaper than selecting per
        # element, which matters at K = 5000 decoder rows per image)
        not_last = (x < self.levels - 1).to(params.dtype)
        not_first = (x > 0).to(params.dtype)
        return (torch.einsum("nmd,nd->nm", below_upper, not_last)
                + torch.einsum("nmd,nd->nm", above_lower, not_first)
                + torch.einsum("nmd,nd->nm", gap, not_last * not_first))

    def sample(self, params: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        mean = params[..., 0]
        scale = torch.exp(params[..., 1].clamp(min=LOG_SCALE_MIN))
        u = torch.rand(mean.shape, generator=generator, device=mean.device)
        y = mean + scale * (torch.log(u) - torch.log1p(-u))  # a logistic draw
        # the level whose bin holds y (bins of width 2 / (L - 1) centred on the levels)
        k = torch.round((y + 1) * (0.5 * (self.levels - 1)))
        return k.clamp(0, self.levels - 1)


#: The decoder likelihoods by name (the VAE's ``decoder`` hyperparameter).
LIKELIHOODS: dict[str, type[Likelihood]] = {
    "gaussian": Gaussian, "bernoulli": Bernoulli, "categorical": Categorical,
    "logistic": DiscretizedLogistic}


# -- networks --------------------------------------------------------------------------
class MLPDecoder(nn.Sequential):
    """``z -> (N, d, n_params)`` by an MLP of ``n_layers`` hidden SiLU layers (the
    layers of :func:`~densbench.estimators.training.mlp`, indexed as a Sequential)."""

    def __init__(self, latent_dim: int, d: int, n_params: int, *, hidden: int,
                 n_layers: int) -> None:
        super().__init__(*mlp(latent_dim, d * n_params, hidden, n_layers))
        self.d, self.n_params = d, n_params
        #: Floats of activations per decoded row (the chunk sizes of the evaluation): the
        #: hidden layers and their activations, the output with its likelihood's arrays.
        self.activation_floats = hidden * n_layers * 2 + 3 * d * n_params

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return super().forward(z).unflatten(-1, (self.d, self.n_params))

    def output_bias(self) -> torch.Tensor:
        """The last layer's bias as (d, n_params)."""
        return self[-1].bias.view(self.d, self.n_params)


def mlp_networks(d: int, chw: tuple[int, int, int] | None, *, latent_dim: int,
                 n_params: int, hidden: int, n_layers: int,
                 channels: int) -> tuple[nn.Module, nn.Module]:
    """The MLP encoder ``x (n, d) -> (n, 2 latent_dim)`` and :class:`MLPDecoder` (the
    image shape and ``channels`` are not used: every pixel is an input like any other)."""
    return (mlp(d, 2 * latent_dim, hidden, n_layers),
            MLPDecoder(latent_dim, d, n_params, hidden=hidden, n_layers=n_layers))


#: The encoder/decoder networks by name (the VAE's ``network`` hyperparameter).
NETWORKS: dict[str, Callable[..., tuple[nn.Module, nn.Module]]] = {
    "mlp": mlp_networks, "conv": conv_networks}


class VAEModule(nn.Module):
    """Encoder, decoder and the decoder likelihood ``log p(x | z)``.

    ``encoder`` maps x (n, d), multiplied by ``input_scale``, to (n, 2 latent_dim): the
    mean and the (unbounded) log standard deviation of q(z | x); ``decoder`` maps z
    (N, latent_dim) to the likelihood's parameters (N, d, n_params) and has an
    ``output_bias()`` view (k, n_params) that the likelihood may initialize.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, likelihood: Likelihood, *,
                 latent_dim: int, input_scale: float = 1.0) -> None:
        super().__init__()
        self.encoder, self.decoder, self.likelihood = encoder, decoder, likelihood
        self.latent_dim, self.input_scale = latent_dim, input_scale
        with torch.no_grad():
            likelihood.init_bias(decoder.output_bias())

    # -- the encoder -------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, log sigma) of q(z | x), each (n, latent_dim)."""
        h = self.encoder(x * self.input_scale)
        mu, log_std = h[..., :self.latent_dim], h[..., self.latent_dim:]
        return mu, soft_clamp(log_std, *LOG_STD_BOUNDS)

    # -- the decoder -------------------------------------------------------------------
    def log_px(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x | z) for x (n, d) and z (n, m, latent): shape (n, m)."""
        n, m = z.shape[0], z.shape[1]
        params = self.decoder(z.reshape(n * m, self.latent_dim))
        return self.likelihood.log_prob(x, params.reshape(n, m, *params.shape[1:]))

    def sample_x(self, z: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One draw of x ~ p(x | z) per row of z (n, latent)."""
        return self.likelihood.sample(self.decoder(z), generator)

    # -- importance weights ------------------------------------------------------------
    def _draw_z(self, x: torch.Tensor, k: int, generator: torch.Generator | None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mu, log sigma, eps, z = mu + sigma eps) for k draws per row."""
        mu, log_std = self.encode(x)
        eps = torch.randn((x.shape[0], k, self.latent_dim), generator=generator,
                          device=x.device, dtype=mu.dtype)
        return mu, log_std, eps, mu[:, None, :] + torch.exp(log_std)[:, None, :] * eps

    def log_weights(self, x: torch.Tensor, k: int,
                    generator: torch.Generator | None) -> torch.Tensor:
        """log p(x, z_j) - log q(z_j | x) for k draws z_j ~ q(z | x): shape (n, k)."""
        _, log_std, eps, z = self._draw_z(x, k, generator)
        # the (2 pi) constants of log p(z) and log q(z | x) cancel
        log_pz = -0.5 * z.square().sum(-1)
        log_qz = -0.5 * eps.square().sum(-1) - log_std.sum(-1, keepdim=True)
        return self.log_px(x, z) + log_pz - log_qz

    def elbo(self, x: torch.Tensor, k: int, generator: torch.Generator | None) -> torch.Tensor:
        """The ELBO with the analytic KL and k reconstruction samples: shape (n,)."""
        mu, log_std, _, z = self._draw_z(x, k, generator)
        kl = 0.5 * (mu.square() + torch.exp(2 * log_std) - 1 - 2 * log_std).sum(-1)
        return self.log_px(x, z).mean(-1) - kl


def build_module(d: int, *, network: str, chw: tuple[int, int, int] | None,
                 latent_dim: int, hidden: int, n_layers: int, channels: int, decoder: str,
                 levels: int, variance: str) -> VAEModule:
    """A :class:`VAEModule` of the named network (:data:`NETWORKS`) and decoder likelihood
    (:data:`LIKELIHOODS`); ``chw`` is the images' (C, H, W) or None. A discrete
    likelihood's encoder sees the levels scaled to [0, 1]."""
    likelihood = LIKELIHOODS[decoder](d, levels, variance)
    encoder, dec = NETWORKS[network](d, chw, latent_dim=latent_dim,
                                     n_params=likelihood.n_params, hidden=hidden,
                                     n_layers=n_layers, channels=channels)
    scale = 1.0 / (levels - 1) if likelihood.discrete else 1.0
    return VAEModule(encoder, dec, likelihood, latent_dim=latent_dim, input_scale=scale)


def linear_gaussian_module(W: np.ndarray, b: np.ndarray, noise_var: np.ndarray,
                           A: np.ndarray, c: np.ndarray, s: np.ndarray) -> VAEModule:
    """A :class:`VAEModule` with a linear Gaussian decoder ``N(x; W z + b, diag
    noise_var)`` and a linear encoder ``N(A x + c, diag s^2)``; ``W`` is (d, q), ``A``
    (q, d), the others vectors of matching length (float64, converted to float32)."""
    d, q = W.shape
    module = build_module(d, network="mlp", chw=None, latent_dim=q, hidden=1, n_layers=0,
                          channels=1, decoder="gaussian", levels=2, variance="dimension")

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.array(a), dtype=torch.float32)

    with torch.no_grad():
        module.decoder[0].weight.copy_(t(W))
        module.decoder[0].bias.copy_(t(b))
        module.likelihood.log_var.copy_(
            t(inverse_soft_clamp(np.log(noise_var), *LOG_VAR_BOUNDS)))
        module.encoder[0].weight.copy_(t(np.vstack([A, np.zeros((q, d))])))
        module.encoder[0].bias.copy_(t(np.concatenate(
            [c, inverse_soft_clamp(np.log(s), *LOG_STD_BOUNDS)])))
    return module
