"""The convolutional encoder and decoder of the VAE (:mod:`densbench.estimators.vae`) for
images: strided convolutions down to a small map, then dense layers to the latent code;
the decoder mirrors it with transposed convolutions.

Rows hold the pixels channels last, ``(H, W, C)`` flattened (the datasets' order); the
networks reshape them to ``(C, H, W)`` and the decoder's output back to one row of
``n_params`` per pixel and channel, ``(N, H * W * C, n_params)``, the layout of
:class:`~densbench.estimators.vae_networks.MLPDecoder`, so every likelihood works with
either network.
"""

from __future__ import annotations

import torch
from torch import nn

from densbench.estimators.training import mlp

__all__ = ["MAX_DOWNSAMPLES", "ConvDecoder", "ConvEncoder", "conv_networks", "downsamples"]

#: Strided (factor-2) convolutions at most: 28x28 -> 14x14 -> 7x7, 8x8 -> 4x4 -> 2x2,
#: 32x32 -> 8x8, the sizes of the convolutional VAEs of the literature before the dense
#: layers.
MAX_DOWNSAMPLES = 2


def downsamples(height: int, width: int) -> int:
    """How many factor-2 downsamplings an image of this size takes: at most
    :data:`MAX_DOWNSAMPLES`, each of even sides that stay at least 2 pixels.

    Example:
        >>> downsamples(28, 28), downsamples(8, 8), downsamples(2, 2), downsamples(6, 5)
        (2, 2, 0, 0)
    """
    s = 0
    while s < MAX_DOWNSAMPLES and height % 2 == 0 and width % 2 == 0 \
            and height >= 4 and width >= 4:
        height, width, s = height // 2, width // 2, s + 1
    return s


class ConvEncoder(nn.Module):
    """``x (n, H * W * C) -> (n, out)``: a 3x3 convolution of ``channels`` maps, then
    :func:`downsamples` stride-2 4x4 convolutions of ``2 * channels`` maps, flattened into
    an MLP of ``n_layers`` hidden layers of ``hidden`` units (SiLU throughout)."""

    def __init__(self, chw: tuple[int, int, int], out: int, *, channels: int, hidden: int,
                 n_layers: int) -> None:
        super().__init__()
        c, h, w = chw
        self.chw = chw
        s = downsamples(h, w)
        layers: list[nn.Module] = [nn.Conv2d(c, channels, 3, padding=1), nn.SiLU()]
        width = channels
        for _ in range(s):
            layers += [nn.Conv2d(width, 2 * channels, 4, stride=2, padding=1), nn.SiLU()]
            width = 2 * channels
        layers.append(nn.Flatten())
        self.convs = nn.Sequential(*layers)
        self.head = mlp(width * (h >> s) * (w >> s), out, hidden, n_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, h, w = self.chw
        images = x.reshape(x.shape[0], h, w, c).permute(0, 3, 1, 2)
        return self.head(self.convs(images))


class ConvDecoder(nn.Module):
    """``z (N, latent) -> (N, H * W * C, n_params)``: an MLP of ``n_layers`` hidden layers
    to the encoder's smallest map, :func:`downsamples` stride-2 4x4 transposed convolutions
    (the last to ``channels`` maps) and a 3x3 convolution to ``C * n_params`` maps."""

    def __init__(self, latent_dim: int, chw: tuple[int, int, int], n_params: int, *,
                 channels: int, hidden: int, n_layers: int) -> None:
        super().__init__()
        c, h, w = chw
        self.chw, self.n_params = chw, n_params
        s = downsamples(h, w)
        width = 2 * channels if s else channels
        self.head = mlp(latent_dim, width * (h >> s) * (w >> s), hidden, n_layers)
        layers: list[nn.Module] = [nn.SiLU(), nn.Unflatten(1, (width, h >> s, w >> s))]
        floats = width * (h >> s) * (w >> s)
        for i in range(s):
            out = channels if i == s - 1 else 2 * channels
            layers += [nn.ConvTranspose2d(width, out, 4, stride=2, padding=1), nn.SiLU()]
            width = out
            floats += out * (h >> (s - 1 - i)) * (w >> (s - 1 - i))
        layers.append(nn.Conv2d(width, c * n_params, 3, padding=1))
        self.convs = nn.Sequential(*layers)
        #: Floats of activations per decoded row (the chunk sizes of the evaluation):
        #: each map and its activation, and the output with its likelihood's work arrays.
        self.activation_floats = 2 * floats + 3 * c * h * w * n_params + hidden * n_layers

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        c, h, w = self.chw
        maps = self.convs(self.head(z))                    # (N, C * P, H, W)
        per_pixel = maps.unflatten(1, (c, self.n_params)).permute(0, 3, 4, 1, 2)
        return per_pixel.reshape(z.shape[0], h * w * c, self.n_params)

    def output_bias(self) -> torch.Tensor:
        """The last convolution's bias as (C, n_params)."""
        return self.convs[-1].bias.view(self.chw[0], self.n_params)


def conv_networks(d: int, chw: tuple[int, int, int] | None, *, latent_dim: int,
                  n_params: int, hidden: int, n_layers: int,
                  channels: int) -> tuple[nn.Module, nn.Module]:
    """The :class:`ConvEncoder` (to ``2 * latent_dim``: mean and log standard deviation)
    and :class:`ConvDecoder` of images of shape ``chw`` = (C, H, W), with C * H * W = d.

    Example:
        >>> enc, dec = conv_networks(64, (1, 8, 8), latent_dim=4, n_params=2, hidden=16,
        ...                          n_layers=1, channels=8)
        >>> enc(torch.zeros(3, 64)).shape, dec(torch.zeros(5, 4)).shape
        (torch.Size([3, 8]), torch.Size([5, 64, 2]))
    """
    if chw is None or chw[0] * chw[1] * chw[2] != d:
        raise ValueError(f"convolutional networks need images of {d} values; got shape "
                         f"{chw}")
    return (ConvEncoder(chw, 2 * latent_dim, channels=channels, hidden=hidden,
                        n_layers=n_layers),
            ConvDecoder(latent_dim, chw, n_params, channels=channels, hidden=hidden,
                        n_layers=n_layers))
