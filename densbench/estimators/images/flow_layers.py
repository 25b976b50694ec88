"""Invertible layers of a multi-scale convolutional flow (Glow), each with its exact
log-determinant.

Every layer maps a batch of images ``x`` (n, C, H, W) to ``(y, logdet)``, where
``logdet`` (n,) is ``log |det dy/dx|`` of the map of one image, and has an ``inverse``.

- :func:`squeeze` / :func:`unsqueeze`: each 2x2 block of pixels becomes 4 channels (a
  permutation of the values: log-determinant 0).
- :class:`ActNorm`: a per-channel affine map ``y = (x + b) exp(s)``, initialised from the
  data so that the first batch leaves it with zero mean and unit variance per channel;
  ``log|det| = H W sum(s)``.
- :class:`InvConv1x1`: an invertible 1x1 convolution, ``W = P L (U + diag(sign exp(log_s)))``
  (LU-decomposed: P a fixed permutation, L unit lower triangular, U strictly upper
  triangular), so ``log|det W| = sum(log_s)``, the sum of the logs of ``|diag U|``, and the
  layer's ``log|det| = H W sum(log_s)``: no determinant is ever computed.
- :class:`AffineCoupling`: half the channels pass unchanged and parametrise a shift and a
  scale of the other half. The log-scale is tanh-bounded, ``B tanh(h / B)`` with
  ``B = 3`` (each coupling scales by a factor in [e^-3, e^3]), not Glow's code's
  ``sigmoid(h + 2)``: the sigmoid bounds the scale above by 1 but not below, so its
  inverse (sampling) can expand without limit, and on logit-space digits a chain of
  inverted couplings then overflows to inf and NaN samples; a bounded log-scale limits
  what any chain of layers can do. With the last convolution initialised to zero, every
  coupling starts as the identity.
- :class:`SplitPrior`: half the channels leave the flow at the end of a level, with a
  Gaussian prior whose mean and log-scale a zero-initialised convolution reads from the
  channels that stay (Glow's ``split2d``; a standard normal at initialisation).
- :class:`TopPrior`: a learned diagonal Gaussian (per position and channel) for what
  remains after the last level.

:class:`MultiScaleFlow` chains them: per level, a squeeze (only while height and width are
both even: a level at an odd size is not squeezed, so no padding ever adds dimensions the
data do not have), ``K`` steps of actnorm, 1x1 convolution and coupling, then a split
(except the last level). Its :meth:`MultiScaleFlow.log_prob` is the exact log-density
``sum log N(z_i; mu_i, sigma_i) + sum log|det J|``.

Why the layers are written here rather than taken from a library: zuko (the project's flow
library) has no convolutional flows, and the PyPI packages that have Glow layers
(normflows 1.7.3, FrEIA 0.2, nflows 0.14) have had no release since 2023, 2022 and 2020
respectively; the layers are short and each is checked against the autograd Jacobian in
tests/estimators/test_glow.py.

References:
    D. P. Kingma and P. Dhariwal, "Glow: Generative flow with invertible 1x1
    convolutions", NeurIPS 2018; L. Dinh, J. Sohl-Dickstein and S. Bengio, "Density
    estimation using Real NVP", ICLR 2017.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ActNorm", "AffineCoupling", "Chain", "FlowStep", "InvConv1x1", "Level",
           "MultiScaleFlow", "SplitPrior", "TopPrior", "level_shapes", "squeeze",
           "unsqueeze"]

_LOG_2PI = math.log(2.0 * math.pi)


def squeeze(x: torch.Tensor) -> torch.Tensor:
    """(n, C, H, W) -> (n, 4C, H/2, W/2): each 2x2 block becomes 4 channels."""
    n, c, h, w = x.shape
    x = x.reshape(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(n, 4 * c, h // 2, w // 2)


def unsqueeze(x: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`squeeze`."""
    n, c, h, w = x.shape
    x = x.reshape(n, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(n, c // 4, 2 * h, 2 * w)


def _gaussian_logpdf(z: torch.Tensor, mean: torch.Tensor, logs: torch.Tensor) -> torch.Tensor:
    """Sum over all but the first axis of log N(z; mean, exp(logs)^2)."""
    e = (z - mean) * torch.exp(-logs)
    return (-0.5 * (e * e + _LOG_2PI) - logs).flatten(1).sum(1)


class ActNorm(nn.Module):
    """Per-channel ``y = (x + bias) exp(logs)``, initialised from the first batch it sees
    in training mode (zero mean, unit variance per channel on that batch)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.logs = nn.Parameter(torch.zeros(1, channels, 1, 1))
        # a buffer, so that a restored state_dict says whether the init has happened
        self.register_buffer("initialized", torch.tensor(False))

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        """Set bias and scale so that ``x`` leaves with zero mean and unit variance per
        channel (a constant channel is only centred)."""
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        std = x.std(dim=(0, 2, 3), keepdim=True, unbiased=False)
        self.bias.copy_(-mean)
        self.logs.copy_(-torch.log(std.clamp_min(1e-6)))
        self.initialized.fill_(True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training and not bool(self.initialized):
            self.initialize(x)
        y = (x + self.bias) * torch.exp(self.logs)
        logdet = self.logs.sum() * (x.shape[2] * x.shape[3])
        return y, logdet.expand(x.shape[0])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * torch.exp(-self.logs) - self.bias


class InvConv1x1(nn.Module):
    """Invertible 1x1 convolution with an LU-decomposed weight (see the module docstring);
    initialised at a random rotation (drawn from PyTorch's global generator)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        q, _ = torch.linalg.qr(torch.randn(channels, channels, dtype=torch.float64))
        p, lower, upper = torch.linalg.lu(q)
        s = torch.diagonal(upper)
        self.register_buffer("p", p.float())
        self.register_buffer("sign_s", torch.sign(s).float())
        self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels), -1))
        self.register_buffer("eye", torch.eye(channels))
        self.lower = nn.Parameter(lower.float())
        self.upper = nn.Parameter(torch.triu(upper, 1).float())
        self.log_s = nn.Parameter(torch.log(torch.abs(s)).float())

    def weight(self) -> torch.Tensor:
        """The (C, C) matrix ``P L (U + diag(sign exp(log_s)))``."""
        lower = self.lower * self.lower_mask + self.eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign_s * torch.exp(self.log_s))
        return self.p @ lower @ upper

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.weight()
        y = F.conv2d(x, w[:, :, None, None])
        logdet = self.log_s.sum() * (x.shape[2] * x.shape[3])
        return y, logdet.expand(x.shape[0])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        w_inv = torch.linalg.inv(self.weight())
        return F.conv2d(y, w_inv[:, :, None, None])


def _zero_conv(c_in: int, c_out: int) -> nn.Conv2d:
    """A 3x3 convolution whose weights and bias start at zero (a flow starts close to the
    identity and a prior at the standard normal)."""
    conv = nn.Conv2d(c_in, c_out, 3, padding=1)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


class AffineCoupling(nn.Module):
    """``y_b = (x_b + t(x_a)) exp(B tanh(h(x_a) / B))``, ``y_a = x_a`` (see the module
    docstring); ``x_a`` is the first ``C // 2`` channels."""

    #: B, the bound of each coupling's log-scale.
    max_log_scale = 3.0

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        if channels < 2:
            raise ValueError(f"a coupling needs at least 2 channels; got {channels}")
        self.c_a = channels // 2
        c_b = channels - self.c_a
        self.net = nn.Sequential(
            nn.Conv2d(self.c_a, hidden, 3, padding=1), nn.ReLU(),
            nn.Conv2d(hidden, hidden, 1), nn.ReLU(),
            _zero_conv(hidden, 2 * c_b))

    def _shift_logscale(self, x_a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.net(x_a)
        bound = self.max_log_scale
        return h[:, 0::2], bound * torch.tanh(h[:, 1::2] / bound)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x_a, x_b = x[:, :self.c_a], x[:, self.c_a:]
        shift, log_scale = self._shift_logscale(x_a)
        y_b = (x_b + shift) * torch.exp(log_scale)
        return torch.cat([x_a, y_b], 1), log_scale.flatten(1).sum(1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        y_a, y_b = y[:, :self.c_a], y[:, self.c_a:]
        shift, log_scale = self._shift_logscale(y_a)
        return torch.cat([y_a, y_b * torch.exp(-log_scale) - shift], 1)


class Chain(nn.Module):
    """Layers applied in order; the log-determinants add up, the inverse runs backwards."""

    def __init__(self, layers: list[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        total = x.new_zeros(x.shape[0])
        for layer in self.layers:
            x, logdet = layer(x)
            total = total + logdet
        return x, total

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        for layer in reversed(self.layers):
            y = layer.inverse(y)
        return y


class FlowStep(Chain):
    """One step of flow: actnorm, invertible 1x1 convolution, affine coupling."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__([ActNorm(channels), InvConv1x1(channels),
                          AffineCoupling(channels, hidden)])


class SplitPrior(nn.Module):
    """The Gaussian prior of the ``C // 2`` channels that leave the flow, conditioned on
    the ``C - C // 2`` that stay (a zero-initialised 3x3 convolution gives the mean and
    log-scale)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.c_keep = channels - channels // 2
        self.conv = _zero_conv(self.c_keep, 2 * (channels // 2))

    def params(self, kept: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.conv(kept)
        return h[:, 0::2], h[:, 1::2]

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(kept, leaving) channels of ``x``."""
        return x[:, :self.c_keep], x[:, self.c_keep:]


class TopPrior(nn.Module):
    """A learned diagonal Gaussian over the (C, H, W) left after the last level."""

    def __init__(self, shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.mean = nn.Parameter(torch.zeros(1, *shape))
        self.logs = nn.Parameter(torch.zeros(1, *shape))


def level_shapes(shape: tuple[int, int, int], n_levels: int) -> list[tuple[bool, int, int, int]]:
    """Per level: whether it squeezes and the (C, H, W) its steps see. A level squeezes
    while H and W are both even; every level but the last then splits off C // 2 channels.
    ``ValueError`` when a level's steps would see fewer than 2 channels (a 1-channel image
    of odd size cannot be coupled)."""
    c, h, w = shape
    out = []
    for level in range(n_levels):
        squeezes = h % 2 == 0 and w % 2 == 0
        if squeezes:
            c, h, w = 4 * c, h // 2, w // 2
        if c < 2:
            raise ValueError(f"level {level + 1} would see a {c}x{h}x{w} image: a coupling "
                             f"needs at least 2 channels, and an odd height or width cannot "
                             f"be squeezed")
        out.append((squeezes, c, h, w))
        if level < n_levels - 1:
            c = c - c // 2
    return out


class Level(nn.Module):
    """One scale: optional squeeze, ``K`` flow steps, and (but for the last) a split."""

    def __init__(self, squeezes: bool, channels: int, n_steps: int, hidden: int,
                 last: bool) -> None:
        super().__init__()
        self.squeezes = squeezes
        self.steps = Chain([FlowStep(channels, hidden) for _ in range(n_steps)])
        self.prior = None if last else SplitPrior(channels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.steps(squeeze(x) if self.squeezes else x)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        y = self.steps.inverse(y)
        return unsqueeze(y) if self.squeezes else y


class MultiScaleFlow(nn.Module):
    """Glow's multi-scale architecture over (C, H, W) images (see the module docstring).

    :meth:`encode` maps images to their latents, one tensor per level (what each split
    sends to its prior, then the top), with the flow's log-determinant; :meth:`decode`
    inverts it; :meth:`log_prob` is the exact log-density; :meth:`sample` draws images.
    """

    def __init__(self, shape: tuple[int, int, int], *, n_levels: int, n_steps: int,
                 hidden: int) -> None:
        super().__init__()
        self.shape = tuple(int(v) for v in shape)
        plan = level_shapes(self.shape, n_levels)
        self.levels = nn.ModuleList([
            Level(sq, c, n_steps, hidden, last=i == n_levels - 1)
            for i, (sq, c, _, _) in enumerate(plan)])
        self.top = TopPrior(plan[-1][1:])
        #: (C, H, W) of each latent: what each split sends to its prior, then the top
        self.latent_shapes = [(c // 2, h, w) for _, c, h, w in plan[:-1]] + [plan[-1][1:]]

    def _walk(self, x: torch.Tensor) -> tuple[list[tuple[torch.Tensor, ...]], torch.Tensor]:
        """Per latent (each split's leaving channels, then the top): (z, prior mean, prior
        log-scale); and the flow's log|det| (n,)."""
        parts: list[tuple[torch.Tensor, ...]] = []
        logdet = x.new_zeros(x.shape[0])
        for level in self.levels:
            x, ld = level(x)
            logdet = logdet + ld
            if level.prior is not None:
                x, z = level.prior.split(x)
                parts.append((z, *level.prior.params(x)))
        parts.append((x, self.top.mean, self.top.logs))
        return parts, logdet

    def encode(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """(latents, log|det| of the flow (n,), log-density of the latents under their
        priors (n,)) of images ``x`` (n, C, H, W)."""
        parts, logdet = self._walk(x)
        logp = sum((_gaussian_logpdf(*part) for part in parts), x.new_zeros(x.shape[0]))
        return [part[0] for part in parts], logdet, logp

    def to_noise(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The standard-normal noise behind images ``x``: each latent standardized by its
        prior (the map whose log|det| plus log N(noise; 0, I) is :meth:`log_prob`)."""
        return [(z - m) * torch.exp(-s) for z, m, s in self._walk(x)[0]]

    def decode(self, latents: list[torch.Tensor]) -> torch.Tensor:
        """The images whose :meth:`encode` latents are ``latents``."""
        return self._unwalk(latents, noise=False)

    def from_noise(self, noise: list[torch.Tensor]) -> torch.Tensor:
        """The inverse of :meth:`to_noise`."""
        return self._unwalk(noise, noise=True)

    def _unwalk(self, values: list[torch.Tensor], *, noise: bool) -> torch.Tensor:
        """Invert the flow from latents (or, with ``noise``, from standardized latents)."""
        top = values[-1]
        x = self.top.mean + torch.exp(self.top.logs) * top if noise else top
        for level, v in zip(reversed(self.levels), [None, *reversed(values[:-1])],
                            strict=True):
            if v is not None:
                m, s = level.prior.params(x)
                x = torch.cat([x, m + torch.exp(s) * v if noise else v], 1)
            x = level.inverse(x)
        return x

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log-density (n,) of images ``x`` (n, C, H, W), in nats."""
        _, logdet, logp = self.encode(x)
        return logp + logdet

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` images drawn with ``generator`` (on the module's device)."""
        ref = self.top.mean
        noise = [torch.randn((n, *shape), generator=generator, device=ref.device,
                             dtype=ref.dtype) for shape in self.latent_shapes]
        return self.from_noise(noise)
