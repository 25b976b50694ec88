"""Glow: a multi-scale convolutional normalizing flow over images, exact likelihood.

The rows are images (the run passes the dataset's ``image_shape``; pixels channels last)
that the run has dequantized and mapped to logit space (``logit_space``), so the model
sees continuous data in R^d. They are standardized per pixel first (an affine map whose
log-Jacobian the shared base class adds back), then mapped by the flow of
:mod:`densbench.estimators.images.flow_layers` to latents with Gaussian priors:

    log q(y) = sum_i log N(z_i; mu_i, sigma_i) + sum over layers of log |det J|,

an exact, normalized log-density in nats per image. Sampling draws the latents from their
priors and inverts the flow (seeded). Training is the shared loop's (maximum likelihood,
Adam, early stopping on validation, time budget, device).

Architecture (``n_levels`` levels): squeeze 2x2 -> 4 channels, ``n_steps`` steps of
[actnorm, LU-decomposed invertible 1x1 convolution, affine coupling with a
``hidden_channels`` convolutional net], then half the channels leave to a learned
conditional Gaussian prior; after the last level a learned Gaussian. For 28x28 digits
two levels see 4x14x14 and 8x7x7; a third would see 4x7x7 unsqueezed (a level at an odd
size does not squeeze: see the layers module).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from densbench.data.base import channels_first
from densbench.estimators.base import LikelihoodKind
from densbench.estimators.images.flow_layers import MultiScaleFlow, level_shapes
from densbench.estimators.params import Interval, ParamConstraints, Satisfies, is_int
from densbench.estimators.training import TorchDensityEstimator

__all__ = ["Glow"]


def _is_image_shape(value: Any) -> bool:
    return (isinstance(value, tuple | list) and len(value) in (2, 3)
            and all(is_int(v) and v >= 1 for v in value))


class Glow(TorchDensityEstimator):
    """Glow (multi-scale flow with actnorm, invertible 1x1 convolutions and affine
    coupling) over images in logit space; exact likelihood.

    Parameters:
        n_levels: number of scales (each but the last ends by splitting off half its
            channels).
        n_steps: flow steps (actnorm, 1x1 convolution, coupling) per level.
        hidden_channels: channels of each coupling's convolutional net.
        image_shape: (H, W) or (H, W, C) of the rows, given by the run from the dataset.
        max_epochs, batch_size, lr, patience, time_budget_s, device, random_state: the
            shared training loop's (:func:`densbench.estimators.training.train`).

    Attributes:
        module_ (the trained :class:`~densbench.estimators.images.flow_layers.MultiScaleFlow`),
        shape_ ((C, H, W)), shift_, scale_ (per-pixel standardization), log_jacobian_,
        training_, epochs_, best_epoch_, stopped_.

    References:
        D. P. Kingma and P. Dhariwal, "Glow: Generative flow with invertible 1x1
        convolutions", NeurIPS 2018; L. Dinh, J. Sohl-Dickstein and S. Bengio, "Density
        estimation using Real NVP", ICLR 2017.

    Example:
        >>> import numpy as np, densbench as db
        >>> from densbench.estimators.images.glow import Glow
        >>> X = np.random.default_rng(0).normal(size=(64, 16))
        >>> est = Glow(image_shape=(4, 4), n_levels=1, n_steps=2, hidden_channels=8,
        ...            max_epochs=2).fit(X)
        >>> est.score_samples(X[:3]).shape, est.sample(2, random_state=0).shape
        ((3,), (2, 16))
    """

    likelihood: ClassVar[LikelihoodKind] = LikelihoodKind.EXACT
    can_sample: ClassVar[bool] = True
    discrete_native: ClassVar[bool] = False
    image_model: ClassVar[bool] = True
    #: The run maps dequantized pixels to logit space before the model sees them.
    logit_space: ClassVar[bool] = True
    # Convolutional coupling networks at every position of each level.
    epoch_cost: ClassVar[float] = 3.0

    training_defaults: ClassVar[dict[str, Any]] = (
        TorchDensityEstimator.training_defaults | {"batch_size": 64})
    _parameter_constraints: ClassVar[ParamConstraints] = {
        "n_levels": [Interval(int, 1, None)],
        "n_steps": [Interval(int, 1, None)],
        "hidden_channels": [Interval(int, 1, None)],
        "image_shape": [Satisfies(_is_image_shape,
                                  "(H, W) or (H, W, C) of positive ints"), None],
    }

    def __init__(self, *, n_levels: int = 2, n_steps: int = 8, hidden_channels: int = 64,
                 image_shape: tuple[int, ...] | None = None, **training: Any) -> None:
        self.n_levels = n_levels
        self.n_steps = n_steps
        self.hidden_channels = hidden_channels
        self.image_shape = image_shape
        self._store_training(training)

    @classmethod
    def test_params(cls) -> dict[str, Any]:
        return {"image_shape": (4, 4), "n_levels": 1, "n_steps": 2, "hidden_channels": 8,
                "max_epochs": 2, "batch_size": 100}

    # -- TorchDensityEstimator hooks ------------------------------------------------
    def _fit(self, X: np.ndarray, X_val: np.ndarray | None) -> None:
        if self.image_shape is None:
            raise ValueError(f"{self.name}: image_shape is needed (the run gives it for a "
                             f"dataset that declares one; pass (H, W) or (H, W, C))")
        shape = channels_first(tuple(self.image_shape))
        if int(np.prod(shape)) != X.shape[1]:
            raise ValueError(f"{self.name}: image_shape {tuple(self.image_shape)} has "
                             f"{int(np.prod(shape))} pixels but X has {X.shape[1]} features")
        try:
            level_shapes(shape, int(self.n_levels))
        except ValueError as exc:
            raise ValueError(f"{self.name}: image_shape {tuple(self.image_shape)}: "
                             f"{exc}") from None
        self.shape_ = shape
        super()._fit(X, X_val)

    def _build(self, X: torch.Tensor) -> nn.Module:
        return MultiScaleFlow(self.shape_, n_levels=int(self.n_levels),
                              n_steps=int(self.n_steps), hidden=int(self.hidden_channels))

    def _images(self, rows: torch.Tensor) -> torch.Tensor:
        """Rows (n, H*W*C), pixels channels last, as images (n, C, H, W)."""
        c, h, w = self.shape_
        return rows.reshape(rows.shape[0], h, w, c).permute(0, 3, 1, 2)

    def _log_prob(self, batch: torch.Tensor) -> torch.Tensor:
        return self.module_.log_prob(self._images(batch))

    def _sample_standardized(self, n: int, generator: torch.Generator) -> torch.Tensor:
        images = self.module_.sample(n, generator)
        return images.permute(0, 2, 3, 1).reshape(n, self.n_features_in_)

    def _eval_row_bytes(self) -> int:
        # the widest activations: a coupling net's hidden maps at the first level's size
        c, h, w = self.shape_
        return 4 * 3 * int(self.hidden_channels) * max(h * w // 4, 1) + 4 * 8 * c * h * w
