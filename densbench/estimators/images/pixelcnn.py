"""Gated PixelCNN: an autoregressive image model with an exact discrete likelihood.

p(x) = prod over pixels in raster order (row by row, left to right) and, within a pixel,
over its channels in order (R before G before B) of p(x_{i,c} | everything before it),
each conditional a ``levels``-way softmax (256 for 8-bit images; for binary images the
2-way softmax, which is a Bernoulli) or, with ``output='logistic_mixture'``, the
discretized logistic mixture of PixelCNN++ (Salimans et al. 2017; one mixture per colour
channel, each conditioned on the channels before it by the masks). ``score_samples`` is
log p(x) in nats per image, EXACT: the probabilities of all images of a size sum to 1.

The network (van den Oord et al. 2016, "Conditional Image Generation with PixelCNN
Decoders") keeps two stacks of convolutions so that its receptive field has no blind spot:

- the vertical stack sees the rows at and above a pixel, all columns of the kernel's
  width (a (k//2 + 1) x k kernel with padding on top only). Its features, shifted down one
  row, reach the horizontal stack, which therefore sees everything in the rows above;
- the horizontal stack sees the pixel itself and those to its left in its row (a
  1 x (k//2 + 1) kernel with padding on the left only). At the pixel itself a channel
  mask applies: the first layer is of type A (the hidden units of channel group c read
  the input channels < c: for a grey image, nothing of the pixel itself), the later
  layers of type B (group c reads the hidden groups <= c), as in the masked convolutions
  of van den Oord, Kalchbrenner and Kavukcuoglu (2016, "Pixel Recurrent Neural
  Networks"). Hidden channels are split into C contiguous groups, one per colour channel.
- each layer is gated, tanh(a) * sigmoid(b), and the horizontal stack is residual after
  the first layer. An output head (ReLU, masked 1x1 convolution, ReLU, masked 1x1
  convolution) gives the parameters of every sub-pixel's conditional.

The network reads the levels scaled to [-1, 1] and one constant channel of ones (so the
zero padding at the border is told apart from a mid-grey pixel; it carries no data, so
every position may read it). The last layer's biases start at the training data's level
frequencies of each channel (a mixture's means at its quantiles).

Why the masked convolutions are written here rather than taken from a library: zuko has
no convolutions, and the package index's only masked-convolution package
(``masked-convolution``, last released 2021) wraps a single masked kernel with neither the
two stacks nor the channel groups. The two stacks are two plain ``Conv2d`` with
one-sided padding, and the only mask is the channel mask at the pixel itself, a few
lines each.

Sampling is ancestral: one pass per sub-pixel, batched over the samples, drawn on the
estimator's device from the generator the base class seeds from ``sample``'s
``random_state``. It runs the network a row at a time: each row through the vertical
stack once, when it is drawn (keeping the few rows above that its kernels read), and for
each sub-pixel only the horizontal stack and the head over the columns of its row that
reach it (nothing else does): the same logits as a whole pass of the network per
sub-pixel, for a small part of its work.

References:
    A. van den Oord, N. Kalchbrenner, L. Espeholt, K. Kavukcuoglu, O. Vinyals and
    A. Graves, "Conditional Image Generation with PixelCNN Decoders", NeurIPS 2016.
    A. van den Oord, N. Kalchbrenner and K. Kavukcuoglu, "Pixel Recurrent Neural
    Networks", ICML 2016.
    T. Salimans, A. Karpathy, X. Chen and D. P. Kingma, "PixelCNN++: Improving the
    PixelCNN with Discretized Logistic Mixture Likelihood and Other Modifications",
    ICLR 2017 (the mixture output).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from densbench.data.base import channels_first
from densbench.estimators.base import LikelihoodKind
from densbench.estimators.params import (
    Interval,
    ListOf,
    Options,
    ParamConstraints,
    Satisfies,
    is_int,
)
from densbench.estimators.training import TorchDensityEstimator, TrainingHooks

__all__ = ["PixelCNN"]

_ODD_KERNEL = Satisfies(lambda v: is_int(v) and v >= 3 and v % 2 == 1, "an odd int >= 3")


def _groups(n: int, n_channels: int) -> torch.Tensor:
    """The colour channel (group) of each of ``n`` hidden channels: C contiguous groups."""
    return torch.arange(n) * n_channels // n


def _centre_mask(out_groups: torch.Tensor, in_groups: torch.Tensor,
                 strict: bool) -> torch.Tensor:
    """(out, in) mask of the kernel's tap on the pixel itself: an output of group c reads
    inputs of group < c (``strict``, type A) or <= c (type B)."""
    o, i = out_groups[:, None], in_groups[None, :]
    return (i < o if strict else i <= o).float()


def _down(x: torch.Tensor) -> torch.Tensor:
    """Shift feature maps one row down: row i holds what row i - 1 held (row 0 zeros)."""
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1, :]


def _with_ones(u: torch.Tensor) -> torch.Tensor:
    """The encoded images and one constant channel of ones."""
    return torch.cat([u, torch.ones_like(u[:, :1])], dim=1)


def _gate(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class _RowConv(nn.Conv2d):
    """Horizontal-stack convolution: a 1 x (k//2 + 1) kernel over the pixel and the k//2
    to its left, channel-masked at the pixel itself (k = 1: a masked 1x1 convolution)."""

    def __init__(self, n_in: int, n_out: int, k: int, in_groups: torch.Tensor,
                 out_groups: torch.Tensor, *, strict: bool) -> None:
        super().__init__(n_in, n_out, (1, k // 2 + 1))
        mask = torch.ones(n_out, n_in, 1, k // 2 + 1)
        mask[:, :, 0, -1] = _centre_mask(out_groups, in_groups, strict)
        self.register_buffer("mask", mask)
        self.left = k // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (self.left, 0, 0, 0)), self.weight * self.mask, self.bias)


class _ColumnConv(nn.Conv2d):
    """Vertical-stack convolution: a (k//2 + 1) x k kernel over the pixel's row and the
    k//2 rows above it."""

    def __init__(self, n_in: int, n_out: int, k: int) -> None:
        super().__init__(n_in, n_out, (k // 2 + 1, k))
        self.half = k // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, (self.half, self.half, self.half, 0)))

    def last_row(self, rows: torch.Tensor) -> torch.Tensor:
        """The output's last row from the input's last k//2 + 1 rows (fewer at the top of
        the image: zeros above, as :meth:`forward` pads)."""
        above = self.half + 1 - rows.shape[2]
        return super().forward(F.pad(rows, (self.half, self.half, above, 0)))


class _GatedLayer(nn.Module):
    """One gated layer of both stacks (the first: mask A and no residual)."""

    def __init__(self, n_in: int, in_groups: torch.Tensor, hidden: int,
                 groups: torch.Tensor, k: int, *, first: bool) -> None:
        super().__init__()
        both = torch.cat([groups, groups])  # the gate's two halves, a and b
        self.vertical = _ColumnConv(n_in, 2 * hidden, k)
        # the vertical features come from the rows above only: every group may read them
        self.vertical_to_horizontal = nn.Conv2d(2 * hidden, 2 * hidden, 1)
        self.horizontal = _RowConv(n_in, 2 * hidden, k, in_groups, both, strict=first)
        self.horizontal_out = _RowConv(hidden, hidden, 1, groups, groups, strict=False)
        self.residual = not first

    def forward(self, v: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v_next, from_above = self.vertical_step(v)
        return v_next, self.horizontal_step(h, from_above)

    def vertical_step(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The vertical stack's next features, and what it gives the horizontal stack
        (row i: what the rows above i hold)."""
        vf = self.vertical(v)
        return _gate(vf), self.vertical_to_horizontal(_down(vf))

    def horizontal_step(self, h: torch.Tensor, from_above: torch.Tensor) -> torch.Tensor:
        out = self.horizontal_out(_gate(self.horizontal(h) + from_above))
        return h + out if self.residual else out


class _GatedPixelCNN(nn.Module):
    """Encoded images (n, C, H, W) -> output parameters (n, size, C, H, W); those of
    sub-pixel (c, i, j) read the pixels before (i, j) in raster order and channels < c of
    (i, j)."""

    def __init__(self, n_channels: int, size: int, hidden: int, n_layers: int,
                 kernel: int, first_kernel: int, out_bias: torch.Tensor) -> None:
        super().__init__()
        self.size = size
        # the data channels, then the constant channel (group -1: read by every group)
        in_groups = torch.cat([torch.arange(n_channels), torch.tensor([-1])])
        groups = _groups(hidden, n_channels)
        layers = [_GatedLayer(n_channels + 1, in_groups, hidden, groups, first_kernel,
                              first=True)]
        layers += [_GatedLayer(hidden, groups, hidden, groups, kernel, first=False)
                   for _ in range(n_layers - 1)]
        self.layers = nn.ModuleList(layers)
        # output channel p * C + c: parameter p of colour channel c
        out_groups = torch.arange(n_channels).repeat(size)
        last = _RowConv(hidden, size * n_channels, 1, groups, out_groups, strict=False)
        with torch.no_grad():
            last.bias.copy_(out_bias.reshape(-1))
        self.head = nn.Sequential(nn.ReLU(), _RowConv(hidden, hidden, 1, groups, groups,
                                                      strict=False), nn.ReLU(), last)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        v = h = _with_ones(u)
        for layer in self.layers:
            v, h = layer(v, h)
        return self._logits(h)

    def _logits(self, h: torch.Tensor) -> torch.Tensor:
        out = self.head(h)
        n, _, height, width = out.shape
        return out.view(n, self.size, -1, height, width)

    # The network one row at a time (sampling). Row i's logits are the horizontal stack
    # over row i's own pixels, given what the vertical stack brings from the rows above
    # (its context); the vertical stack takes each row once, keeping the few rows above
    # that its kernels read (its history), so a row costs one row of the vertical stack.
    def first_context(self, n: int, width: int) -> tuple[list[torch.Tensor], list[Any]]:
        """Row 0's context (nothing above it: zeros, as the shift down pads) and an empty
        history for :meth:`next_context`."""
        zeros = [torch.zeros(n, layer.vertical_to_horizontal.in_channels, 1, width,
                             device=layer.vertical.weight.device) for layer in self.layers]
        return ([layer.vertical_to_horizontal(z) for layer, z in zip(self.layers, zeros,
                                                                      strict=True)],
                [None] * len(self.layers))

    def next_context(self, history: list[Any], u_row: torch.Tensor) -> list[torch.Tensor]:
        """Row i's pixels (n, C, 1, W), once all drawn -> row i + 1's context: one
        (n, 2 hidden, 1, W) tensor a layer. ``history`` (from :meth:`first_context`)
        keeps each layer's last input rows, updated in place."""
        v, context = _with_ones(u_row), []
        for index, layer in enumerate(self.layers):
            rows = v if history[index] is None else torch.cat([history[index], v], dim=2)
            history[index] = rows[:, :, -(layer.vertical.half + 1):]
            vf = layer.vertical.last_row(history[index])
            context.append(layer.vertical_to_horizontal(vf))
            v = _gate(vf)
        return context

    def row_logits(self, u_row: torch.Tensor, context: list[torch.Tensor],
                   start: int = 0) -> torch.Tensor:
        """Columns ``start`` .. ``start + W' - 1`` of row i (n, C, 1, W') and the row's
        context -> their logits (n, L, C, 1, W'). Exact for the last column when the
        window holds all the columns before it or at least :attr:`reach` of them."""
        h = _with_ones(u_row)
        for layer, from_above in zip(self.layers, context, strict=True):
            h = layer.horizontal_step(h, from_above[..., start:start + h.shape[-1]])
        return self._logits(h)

    @property
    def reach(self) -> int:
        """How many columns to its left a pixel's logits read in its own row."""
        return sum(layer.horizontal.left for layer in self.layers)


def _draw(logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(n, m) logits -> (n,) indices drawn from their softmax with ``generator``."""
    probs = F.softmax(logits.float(), dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1).float()


# -- the conditional of a sub-pixel given its parameters -----------------------------------
#    Each takes the parameters (n, size, C, H, W) of every sub-pixel and its levels.

class _Categorical:
    """A ``levels``-way softmax: ``levels`` logits a sub-pixel."""

    def __init__(self, levels: int, n_mixture: int) -> None:
        self.levels = self.size = levels

    def initial_bias(self, x: torch.Tensor) -> torch.Tensor:
        """(size, C) from training images x (n, C, H, W): each channel's level
        frequencies, smoothed by half a count per level."""
        counts = torch.stack([torch.bincount(ch.long().flatten(), minlength=self.levels)
                              for ch in x.transpose(0, 1)]).double() + 0.5
        return torch.log(counts / counts.sum(1, keepdim=True)).float().T

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return -F.cross_entropy(params, x.long(), reduction="none")

    def draw(self, params: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return _draw(params, generator)


class _LogisticMixture:
    """PixelCNN++'s discretized logistic mixture (Salimans et al. 2017): K weights, means
    and log-scales a sub-pixel, in the [-1, 1] units the network reads. Level x gets the
    mixture's mass on its bin, [x - 1/2, x + 1/2] in level units, the lowest and highest
    levels' bins open to -inf and +inf: the levels' probabilities sum to 1. (Each colour
    channel has its own mixture; the masks already condition it on the channels before.)
    """

    def __init__(self, levels: int, n_mixture: int) -> None:
        self.levels, self.k, self.size = levels, n_mixture, 3 * n_mixture

    def _split(self, params: torch.Tensor, dim: int) -> tuple[torch.Tensor, ...]:
        logits, mu, log_s = params.split(self.k, dim=dim)
        return logits, mu, log_s.clamp(min=-7.0)

    def initial_bias(self, x: torch.Tensor) -> torch.Tensor:
        """(size, C): equal weights, means at each channel's quantiles (j + 1/2) / K,
        scales a K-th of the range."""
        u = x.transpose(0, 1).flatten(1).double() * (2.0 / (self.levels - 1)) - 1.0
        q = (torch.arange(self.k, dtype=torch.float64) + 0.5) / self.k
        mu = torch.quantile(u, q.to(u.device), dim=1)                       # (K, C)
        return torch.cat([torch.zeros_like(mu), mu,
                          torch.full_like(mu, -float(np.log(self.k)))]).float()

    def _bin(self, x: torch.Tensor, mu: torch.Tensor,
             log_s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The upper and lower edges of level x's bin (x: (n, C, H, W)) in each
        component's standard units (n, K, C, H, W); +inf above the highest level, -inf
        below the lowest."""
        half = 1.0 / (self.levels - 1)
        centre = (x * (2.0 / (self.levels - 1)) - 1.0).unsqueeze(1)
        inv_s = torch.exp(-log_s)
        level = x.unsqueeze(1).expand_as(mu)
        upper = ((centre + half - mu) * inv_s).masked_fill(level == self.levels - 1,
                                                            float("inf"))
        lower = ((centre - half - mu) * inv_s).masked_fill(level == 0, -float("inf"))
        return upper, lower

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        logits, mu, log_s = self._split(params, 1)
        upper, lower = self._bin(x, mu, log_s)
        # log(sigmoid(a) - sigmoid(b)) = log sigmoid(a) + log sigmoid(-b) + log(1 - e^(b-a)),
        # accurate in both tails
        log_mass = (F.logsigmoid(upper) + F.logsigmoid(-lower)
                    + torch.log(-torch.expm1(lower - upper)))
        return torch.logsumexp(F.log_softmax(logits, dim=1) + log_mass, dim=1)

    def draw(self, params: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """A component, then a logistic draw from it, binned to its level."""
        logits, mu, log_s = self._split(params.float(), -1)
        j = _draw(logits, generator).long().unsqueeze(-1)
        u = torch.rand(j.shape, generator=generator, device=params.device)
        y = mu.gather(-1, j) + torch.exp(log_s.gather(-1, j)) * (torch.log(u)
                                                                   - torch.log1p(-u))
        level = torch.round((y + 1.0) * (0.5 * (self.levels - 1)))
        return level.clamp(0, self.levels - 1).squeeze(-1)


#: The ``output`` hyperparameter's families.
_OUTPUTS = {"categorical": _Categorical, "logistic_mixture": _LogisticMixture}


class PixelCNN(TorchDensityEstimator):
    """Gated PixelCNN: masked convolutions, exact discrete likelihood of images.

    Vertical and horizontal stacks of gated convolutions (no blind spot), mask A in the
    first layer and B after, channels ordered within a pixel (R, G, B), residual
    connections in the horizontal stack, a ``levels``-way softmax (or a discretized
    logistic mixture) for every sub-pixel (see the module docstring).

    Parameters:
        n_layers: gated layers (the first with mask A).
        channels: hidden channels of each stack (at least C, split into C groups).
        kernel_size: the gated layers' kernel width k (odd): the vertical stack reads
            k//2 rows above, the horizontal stack k//2 pixels to the left.
        first_kernel_size: the first layer's (odd), wider to see far from the start.
        levels: pixel levels 0..levels-1 (the run sets it from the dataset).
        output: ``'categorical'`` (a ``levels``-way softmax a sub-pixel) or
            ``'logistic_mixture'`` (PixelCNN++'s discretized logistic mixture of
            ``n_mixture`` components: 3 x n_mixture numbers a sub-pixel instead of
            ``levels``).
        n_mixture: components of the logistic mixture.
        lr_schedule: ``'constant'`` (Adam at ``lr`` throughout) or ``'cosine'`` (``lr``
            decayed to 0 along a cosine over ``max_epochs`` epochs of updates).
        image_shape: (H, W) or (H, W, C), rows holding the pixels channels last (the run
            sets it from the dataset); H * W * C must be the number of columns.
        max_epochs, batch_size, lr, patience, time_budget_s, device, random_state: the
            shared training loop's settings (Adam, early stopping on validation).

    Attributes:
        module_ (the network), output_ (the sub-pixels' conditional), image_shape_
        ((C, H, W)), training_, epochs_, best_epoch_, stopped_.

    References:
        A. van den Oord, N. Kalchbrenner, L. Espeholt, K. Kavukcuoglu, O. Vinyals and
        A. Graves, "Conditional Image Generation with PixelCNN Decoders", NeurIPS 2016;
        A. van den Oord, N. Kalchbrenner and K. Kavukcuoglu, "Pixel Recurrent Neural
        Networks", ICML 2016; T. Salimans, A. Karpathy, X. Chen and D. P. Kingma,
        "PixelCNN++", ICLR 2017.

    Example:
        >>> import itertools, numpy as np
        >>> from densbench.estimators.images.pixelcnn import PixelCNN
        >>> X = np.random.default_rng(0).integers(0, 2, size=(64, 4)).astype(float)
        >>> est = PixelCNN(levels=2, image_shape=(2, 2), n_layers=2, channels=4,
        ...                max_epochs=1).fit(X)
        >>> every = np.array(list(itertools.product((0, 1), repeat=4)), dtype=float)
        >>> round(float(np.exp(est.score_samples(every)).sum()), 5)
        1.0
        >>> est.sample(3, random_state=0).shape
        (3, 4)
    """

    likelihood: ClassVar[LikelihoodKind] = LikelihoodKind.EXACT
    can_sample: ClassVar[bool] = True
    discrete_native: ClassVar[bool] = True
    image_model: ClassVar[bool] = True
    # Convolutions over every pixel, each layer as wide as the image: an epoch costs about
    # two orders of magnitude more than an MLP flow's at 784-D.
    epoch_cost: ClassVar[float] = 100.0
    training_defaults: ClassVar[dict[str, Any]] = (
        TorchDensityEstimator.training_defaults
        | {"max_epochs": 30, "batch_size": 64, "patience": 5})
    _parameter_constraints: ClassVar[ParamConstraints] = {
        "n_layers": [Interval(int, 1, None)],
        "channels": [Interval(int, 1, None)],
        "kernel_size": [_ODD_KERNEL],
        "first_kernel_size": [_ODD_KERNEL],
        "levels": [Interval(int, 2, None)],
        "output": [Options(*_OUTPUTS)],
        "n_mixture": [Interval(int, 1, None)],
        "lr_schedule": [Options("constant", "cosine")],
        "image_shape": [ListOf(Interval(int, 1, None), min_len=2, max_len=3,
                               phrase="(H, W) or (H, W, C), positive ints"), None],
    }

    def __init__(self, *, n_layers: int = 6, channels: int = 64, kernel_size: int = 3,
                 first_kernel_size: int = 7, levels: int = 256, output: str = "categorical",
                 n_mixture: int = 10, lr_schedule: str = "constant",
                 image_shape: tuple[int, ...] | None = None, **training: Any) -> None:
        self.n_layers = n_layers
        self.channels = channels
        self.kernel_size = kernel_size
        self.first_kernel_size = first_kernel_size
        self.levels = levels
        self.output = output
        self.n_mixture = n_mixture
        self.lr_schedule = lr_schedule
        self.image_shape = image_shape
        self._store_training(training)

    @classmethod
    def test_params(cls) -> dict[str, Any]:
        return {"n_layers": 2, "channels": 8, "max_epochs": 2, "batch_size": 64,
                "levels": 4, "image_shape": (4, 4)}

    # -- checks ------------------------------------------------------------------------
    def _shape(self, d: int) -> tuple[int, int, int]:
        """(C, H, W) of the declared image shape, checked against the data."""
        if self.image_shape is None:
            raise ValueError(f"{self.name}: image_shape must be given, (H, W) or (H, W, C) "
                             f"with H * W * C = {d} (the number of columns)")
        c, h, w = channels_first(tuple(self.image_shape))
        if c * h * w != d:
            raise ValueError(f"{self.name}: image_shape {tuple(self.image_shape)} holds "
                             f"{c * h * w} values but the data have {d} columns")
        if int(self.channels) < c:
            raise ValueError(f"{self.name}: channels must be at least the image's {c} "
                             f"colour channels (one group each); got {self.channels}")
        return c, h, w

    def _check_levels(self, X: np.ndarray, what: str) -> None:
        top = int(self.levels) - 1
        bad = np.argwhere((X != np.round(X)) | (X < 0) | (X > top))
        if len(bad):
            row, col = (int(v) for v in bad[0])
            raise ValueError(f"{self.name}: {what} must hold integer pixel levels 0..{top}; "
                             f"got {float(X[row, col])!r} in row {row}, column {col}")

    # -- the fit -----------------------------------------------------------------------
    def _standardize(self) -> bool:
        return False

    def _fit(self, X: np.ndarray, X_val: np.ndarray | None) -> None:
        self.image_shape_ = self._shape(X.shape[1])
        self.output_ = _OUTPUTS[self.output](int(self.levels), int(self.n_mixture))
        self._check_levels(X, "X")
        if X_val is not None:
            self._check_levels(X_val, "X_val")
        super()._fit(X, X_val)

    def _build(self, X: torch.Tensor) -> nn.Module:
        self._updates_per_epoch = -(-X.shape[0] // int(self.batch_size))
        return _GatedPixelCNN(self.image_shape_[0], self.output_.size, int(self.channels),
                              int(self.n_layers), int(self.kernel_size),
                              int(self.first_kernel_size),
                              self.output_.initial_bias(self._images(X)).contiguous())

    def _training_hooks(self, X_val: torch.Tensor | None) -> TrainingHooks:
        hooks = super()._training_hooks(X_val)
        if self.lr_schedule == "cosine":
            hooks.cosine_steps = int(self.max_epochs) * self._updates_per_epoch
        return hooks

    # -- the likelihood ----------------------------------------------------------------
    def _images(self, rows: torch.Tensor) -> torch.Tensor:
        """Rows (n, H*W*C), channels last -> images (n, C, H, W)."""
        c, h, w = self.image_shape_
        return rows.reshape(rows.shape[0], h, w, c).permute(0, 3, 1, 2)

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        return x * (2.0 / (int(self.levels) - 1)) - 1.0

    def _log_prob(self, batch: torch.Tensor) -> torch.Tensor:
        x = self._images(batch)
        log_p = self.output_.log_prob(self.module_(self._encode(x)), x)   # (n, C, H, W)
        return log_p.flatten(1).sum(dim=1)

    def _eval_row_bytes(self) -> int:
        # float32 output parameters and a few temporaries of their size (K of them for a
        # mixture), plus a few layers' features
        c, h, w = self.image_shape_
        return 4 * h * w * (4 * self.output_.size * c + 8 * int(self.channels))

    def _score_samples(self, X: np.ndarray) -> np.ndarray:
        self._check_levels(X, "X")
        return super()._score_samples(X)

    # -- sampling ----------------------------------------------------------------------
    def _sample_standardized(self, n: int, generator: torch.Generator) -> torch.Tensor:
        c, h, w = self.image_shape_
        rows = self._eval_rows()
        x = torch.zeros(n, c, h, w, device=self.device_)
        for start in range(0, n, rows):
            part = x[start:start + rows]
            context, history = self.module_.first_context(part.shape[0], w)
            for i in range(h):
                self._sample_row(part, i, context, generator)
                context = self.module_.next_context(history, self._encode(part[:, :, i:i + 1]))
        return x.permute(0, 2, 3, 1).reshape(n, c * h * w)

    def _sample_row(self, x: torch.Tensor, i: int, context: list[torch.Tensor],
                    generator: torch.Generator) -> None:
        """Draw row ``i`` of the images ``x`` (n, C, H, W) in place, pixel by pixel and
        channel by channel: for each sub-pixel the horizontal stack over the columns of
        the row that reach it, given the row's context."""
        for j in range(x.shape[3]):
            start = max(0, j - self.module_.reach)
            for k in range(x.shape[1]):
                params = self.module_.row_logits(
                    self._encode(x[:, :, i:i + 1, start:j + 1]), context, start)
                x[:, k, i, j] = self.output_.draw(params[:, :, k, 0, -1], generator)
