"""The networks of the variational autoencoder (:mod:`densbench.estimators.vae`): the
encoder ``q(z | x)``, the decoder likelihood ``log p(x | z)`` (Gaussian, Bernoulli or
categorical), their importance weights and ELBO, and a module with given linear-Gaussian
parameters (a model whose likelihood is known in closed form, for tests).

The standard deviations and variances are kept inside soft bounds (:func:`soft_clamp`)
so that training stays finite; :func:`inverse_soft_clamp` maps a wanted value back to
the unbounded parameter.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from densbench.estimators.training import mlp

__all__ = ["INIT_LOG_VAR", "LOG_STD_BOUNDS", "LOG_VAR_BOUNDS", "VAEModule",
           "inverse_soft_clamp", "linear_gaussian_module", "soft_clamp"]

#: Soft bounds of the log standard deviations of the encoder and of the Gaussian decoder's
#: log-variance: they keep training finite (a collapsing variance would make the Gaussian
#: likelihood unbounded) and are far from the values met on standardized data.
LOG_STD_BOUNDS = (-9.0, 4.0)
LOG_VAR_BOUNDS = (-14.0, 6.0)
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


class VAEModule(nn.Module):
    """Encoder, decoder and the decoder likelihood ``log p(x | z)``."""

    def __init__(self, d: int, *, latent_dim: int, hidden: int, n_layers: int,
                 decoder: str, levels: int, variance: str) -> None:
        super().__init__()
        self.d, self.latent_dim, self.kind = d, latent_dim, decoder
        self.levels, self.variance = levels, variance
        self.encoder = mlp(d, 2 * latent_dim, hidden, n_layers)
        if decoder == "gaussian":
            out = 2 * d if variance == "output" else d
            if variance == "dimension":
                self.log_var = nn.Parameter(torch.full((d,), INIT_LOG_VAR))
        elif decoder == "bernoulli":
            out = d
        else:
            out = d * levels
        self.decoder = mlp(latent_dim, out, hidden, n_layers)
        if decoder == "gaussian" and variance == "output":
            with torch.no_grad():
                self.decoder[-1].bias[d:] = INIT_LOG_VAR

    # -- the encoder -------------------------------------------------------------------
    def encoder_input(self, x: torch.Tensor) -> torch.Tensor:
        """What the encoder sees: standardized data, or levels scaled to [0, 1]."""
        if self.kind == "categorical":
            return x / (self.levels - 1)
        return x

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, log sigma) of q(z | x), each (n, latent_dim)."""
        h = self.encoder(self.encoder_input(x))
        mu, log_std = h[..., :self.latent_dim], h[..., self.latent_dim:]
        return mu, soft_clamp(log_std, *LOG_STD_BOUNDS)

    # -- the decoder -------------------------------------------------------------------
    def log_px(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x | z) for x (n, d) and z (n, m, latent): shape (n, m)."""
        n, m = z.shape[0], z.shape[1]
        h = self.decoder(z.reshape(n * m, self.latent_dim))
        xb = x[:, None, :]
        if self.kind == "gaussian":
            if self.variance == "output":
                mean = h[:, :self.d].reshape(n, m, self.d)
                log_var = soft_clamp(h[:, self.d:], *LOG_VAR_BOUNDS).reshape(n, m, self.d)
                lp = -0.5 * ((xb - mean).square() * torch.exp(-log_var) + log_var)
                return lp.sum(-1) - 0.5 * self.d * math.log(2 * math.pi)
            mean = h.reshape(n, m, self.d)
            log_var = soft_clamp(self.log_var, *LOG_VAR_BOUNDS)
            lp = -0.5 * (xb - mean).square() * torch.exp(-log_var)
            return lp.sum(-1) - 0.5 * (log_var.sum() + self.d * math.log(2 * math.pi))
        if self.kind == "bernoulli":
            logits = h.reshape(n, m, self.d)
            return -F.binary_cross_entropy_with_logits(
                logits, xb.expand(n, m, self.d), reduction="none").sum(-1)
        logits = h.reshape(n, m, self.d, self.levels)
        idx = xb.long().unsqueeze(-1).expand(n, m, self.d, 1)
        # log_softmax is one fused pass; logsumexp over the few levels of the last axis
        # runs as five separate passes (max, subtract, exp, sum, log)
        return torch.gather(F.log_softmax(logits, -1), -1, idx).squeeze(-1).sum(-1)

    def sample_x(self, z: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One draw of x ~ p(x | z) per row of z (n, latent)."""
        n = z.shape[0]
        h = self.decoder(z)
        if self.kind == "gaussian":
            if self.variance == "output":
                mean, log_var = h[:, :self.d], soft_clamp(h[:, self.d:], *LOG_VAR_BOUNDS)
            else:
                mean, log_var = h, soft_clamp(self.log_var, *LOG_VAR_BOUNDS).expand(n, -1)
            eps = torch.randn(mean.shape, generator=generator, device=z.device)
            return mean + torch.exp(0.5 * log_var) * eps
        if self.kind == "bernoulli":
            u = torch.rand(h.shape, generator=generator, device=z.device)
            return (u < torch.sigmoid(h)).to(z.dtype)
        probs = torch.softmax(h.reshape(n * self.d, self.levels), -1)
        draws = torch.multinomial(probs, 1, generator=generator)
        return draws.reshape(n, self.d).to(z.dtype)

    # -- importance weights ------------------------------------------------------------
    def log_weights(self, x: torch.Tensor, k: int,
                    generator: torch.Generator | None) -> torch.Tensor:
        """log p(x, z_j) - log q(z_j | x) for k draws z_j ~ q(z | x): shape (n, k)."""
        mu, log_std = self.encode(x)
        eps = torch.randn((x.shape[0], k, self.latent_dim), generator=generator,
                          device=x.device, dtype=mu.dtype)
        z = mu[:, None, :] + torch.exp(log_std)[:, None, :] * eps
        # the (2 pi) constants of log p(z) and log q(z | x) cancel
        log_pz = -0.5 * z.square().sum(-1)
        log_qz = -0.5 * eps.square().sum(-1) - log_std.sum(-1, keepdim=True)
        return self.log_px(x, z) + log_pz - log_qz

    def elbo(self, x: torch.Tensor, k: int, generator: torch.Generator | None) -> torch.Tensor:
        """The ELBO with the analytic KL and k reconstruction samples: shape (n,)."""
        mu, log_std = self.encode(x)
        eps = torch.randn((x.shape[0], k, self.latent_dim), generator=generator,
                          device=x.device, dtype=mu.dtype)
        z = mu[:, None, :] + torch.exp(log_std)[:, None, :] * eps
        kl = 0.5 * (mu.square() + torch.exp(2 * log_std) - 1 - 2 * log_std).sum(-1)
        return self.log_px(x, z).mean(-1) - kl


def linear_gaussian_module(W: np.ndarray, b: np.ndarray, noise_var: np.ndarray,
                           A: np.ndarray, c: np.ndarray, s: np.ndarray) -> VAEModule:
    """A :class:`VAEModule` with a linear Gaussian decoder ``N(x; W z + b, diag
    noise_var)`` and a linear encoder ``N(A x + c, diag s^2)``; ``W`` is (d, q), ``A``
    (q, d), the others vectors of matching length (float64, converted to float32)."""
    d, q = W.shape
    module = VAEModule(d, latent_dim=q, hidden=1, n_layers=0, decoder="gaussian",
                       levels=2, variance="dimension")

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.array(a), dtype=torch.float32)

    with torch.no_grad():
        module.decoder[0].weight.copy_(t(W))
        module.decoder[0].bias.copy_(t(b))
        module.log_var.copy_(t(inverse_soft_clamp(np.log(noise_var), *LOG_VAR_BOUNDS)))
        module.encoder[0].weight.copy_(t(np.vstack([A, np.zeros((q, d))])))
        module.encoder[0].bias.copy_(t(np.concatenate(
            [c, inverse_soft_clamp(np.log(s), *LOG_STD_BOUNDS)])))
    return module
