"""Generative adversarial network (GAN) for vector data: an implicit model.

A generator ``x = G(z)``, ``z ~ N(0, I_latent_dim)``, and a discriminator ``D(x)`` (a
logit), both MLPs, trained by alternating Adam steps on the non-saturating losses
(Goodfellow et al. 2014)

    L_D = E softplus(-D(x_real)) + E softplus(D(G(z))) + gamma / 2 E ||grad_x D(x_real)||^2,
    L_G = E softplus(-D(G(z))),

with the R1 gradient penalty on real data (Mescheder et al. 2018), applied lazily (every
``GAN.r1_every``-th step, scaled accordingly; Karras et al. 2020). The model defines no
density (``LikelihoodKind.NONE``): ``score_samples`` raises
:class:`~densbench.estimators.base.NoLikelihoodError`, and the runner scores its samples.

The model trains in the shared loop (:func:`densbench.estimators.training.train`) through
its hooks: a min-max game needs two optimizers in alternation and has no likelihood to
select the epoch by, so the step makes both updates and the criterion is a sample metric.
Shuffling, ``max_epochs``, ``time_budget_s``, ``patience``, the divergence check, progress
events, restoring the best epoch and the standardization are those of every neural
estimator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from densbench.estimators.base import LikelihoodKind
from densbench.estimators.params import Interval, ParamConstraints
from densbench.estimators.training import (
    Evaluation,
    TorchDensityEstimator,
    TrainingHooks,
    TrainResult,
    mlp,
)

__all__ = ["GAN", "GANTrainResult"]


@dataclass
class GANTrainResult(TrainResult):
    """:class:`TrainResult` of a GAN: no likelihood; the epoch is selected by the energy
    distance of generated samples to the validation rows (None without validation data).
    ``history`` rows hold ``epoch, d_loss, g_loss, val_energy_distance, seconds``."""

    best_val_loglik: float | None = None
    best_val_energy_distance: float | None = None


class _GANModule(nn.Module):
    def __init__(self, d: int, *, latent_dim: int, hidden: int, n_layers: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.generator = mlp(latent_dim, d, hidden, n_layers)
        self.discriminator = mlp(d, 1, hidden, n_layers)

    def generate(self, n: int, generator: torch.Generator | None,
                 device: torch.device) -> torch.Tensor:
        z = torch.randn((n, self.latent_dim), generator=generator, device=device)
        return self.generator(z)



class _GANHooks(TrainingHooks):
    """The GAN's training in the shared loop: per minibatch one discriminator step (R1 on
    the real rows, every ``r1_every``-th step) then one non-saturating generator step,
    each with its own Adam; each epoch judged by the energy distance of generated samples
    to the validation rows (lower is better), and the generator of the best epoch kept."""

    loss_names = ("d_loss", "g_loss")

    def __init__(self, est: GAN, X_val: torch.Tensor | None) -> None:
        self.est, self.X_val = est, X_val
        module = est.module_
        self.keep = module.generator
        lr = float(est.lr)
        self.opt_g = torch.optim.Adam(module.generator.parameters(), lr=lr, betas=(0.5, 0.9))
        self.opt_d = torch.optim.Adam(module.discriminator.parameters(), lr=lr,
                                      betas=(0.5, 0.9))

    def step(self, batch: torch.Tensor, index: int) -> tuple[float, ...]:
        est, module = self.est, self.est.module_
        disc, dev, noise = module.discriminator, est.device_, est._noise
        gamma = float(est.r1_gamma)
        lazy = gamma > 0 and index % est.r1_every == 0
        real = batch.requires_grad_(lazy)
        m = real.shape[0]
        fake = module.generate(m, noise, dev).detach()
        d_real = disc(real)
        loss_d = F.softplus(-d_real).mean() + F.softplus(disc(fake)).mean()
        if lazy:
            (grad,) = torch.autograd.grad(d_real.sum(), real, create_graph=True)
            loss_d = loss_d + 0.5 * gamma * est.r1_every * grad.square().sum(-1).mean()
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()
        loss_g = F.softplus(-disc(module.generate(m, noise, dev))).mean()
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        return float(loss_d.detach()), float(loss_g.detach())

    def evaluate(self, mean_losses: tuple[float, ...]) -> Evaluation:
        from densbench.metrics.samples import energy_distance

        if self.X_val is None:
            return Evaluation(None, {"val_energy_distance": None})
        est = self.est
        n_eval = int(est.n_eval)
        # the same latent draws at every epoch, so that epochs differ only by the generator
        fake = est.module_.generate(n_eval, est._generator(offset=2), est.device_)
        n = min(n_eval, self.X_val.shape[0])
        dist = energy_distance(fake.double().cpu().numpy(),
                               self.X_val[:n].double().cpu().numpy()).value
        return Evaluation(-dist, {"val_energy_distance": dist})

    def new_result(self) -> GANTrainResult:
        return GANTrainResult()

    def finish(self, result: TrainResult, best: Evaluation) -> None:
        assert isinstance(result, GANTrainResult)
        result.best_val_energy_distance = best.report["val_energy_distance"]


class GAN(TorchDensityEstimator):
    """Generative adversarial network (MLPs, non-saturating loss, R1 penalty): implicit.

    Generator and discriminator are MLPs of ``n_layers`` hidden layers of ``hidden`` SiLU
    units; the data are standardized first. One discriminator step then one generator
    step per minibatch, Adam with ``lr`` and betas (0.5, 0.9) for both.

    Model selection: after each epoch, ``n_eval`` samples from FIXED latent draws are
    compared with (at most ``n_eval``) validation rows by the energy distance
    (:func:`densbench.metrics.samples.energy_distance`, standardized units), a cheap sample
    metric that needs no likelihood; the generator of the best epoch is kept and training
    stops after ``patience`` epochs without improvement. Without validation data it runs
    ``max_epochs`` epochs (or until ``time_budget_s``) and keeps the last generator.

    ``score_samples`` raises :class:`~densbench.estimators.base.NoLikelihoodError`;
    ``sample(n, random_state)`` draws ``G(z)`` from a seeded generator (one network pass,
    batched). ``n_parameters`` counts the generator's parameters (the model); the
    discriminator is only a training device.

    Parameters:
        latent_dim: dimension of z.
        hidden, n_layers: both MLPs.
        r1_gamma: weight gamma of the R1 penalty (0: none).
        n_eval: samples (and at most as many validation rows) of the selection metric.
        max_epochs, batch_size, lr, patience, time_budget_s, device, random_state: as in
            the shared training loop.

    Attributes:
        module_ (generator and discriminator), shift_, scale_, log_jacobian_, training_
        (:class:`GANTrainResult`), epochs_, best_epoch_, stopped_.

    References:
        I. Goodfellow et al., "Generative adversarial nets", NeurIPS 2014 (the
        non-saturating loss); L. Mescheder, A. Geiger and S. Nowozin, "Which training
        methods for GANs do actually converge?", ICML 2018 (the R1 penalty); T. Karras
        et al., "Analyzing and improving the image quality of StyleGAN", CVPR 2020 (lazy
        regularization).

    Example:
        >>> import numpy as np, densbench as db
        >>> X = np.random.default_rng(0).normal(size=(300, 2))
        >>> est = db.estimators.make("gan", hidden=16, max_epochs=2).fit(X)
        >>> est.sample(3, random_state=0).shape
        (3, 2)
        >>> est.score_samples(X)
        Traceback (most recent call last):
        ...
        densbench.estimators.base.NoLikelihoodError: gan: an implicit model has no likelihood ...
    """

    likelihood: ClassVar[LikelihoodKind] = LikelihoodKind.NONE
    can_sample: ClassVar[bool] = True
    discrete_native: ClassVar[bool] = False
    compilable: ClassVar[bool] = False
    #: The R1 penalty is applied every ``r1_every``-th discriminator step, scaled by
    #: ``r1_every`` ("lazy regularization", Karras et al. 2020): its double backward pass
    #: costs several plain steps.
    r1_every: ClassVar[int] = 4
    #: Generator rows per sampling pass (bounds the memory).
    sample_rows: ClassVar[int] = 1 << 16

    _parameter_constraints: ClassVar[ParamConstraints] = {
        "latent_dim": [Interval(int, 1, None)],
        "hidden": [Interval(int, 1, None)],
        "n_layers": [Interval(int, 0, None)],
        "r1_gamma": [Interval(float, 0, None, "left")],
        "n_eval": [Interval(int, 1, None)],
    }

    def __init__(self, *, latent_dim: int = 8, hidden: int = 64, n_layers: int = 2,
                 r1_gamma: float = 1.0, n_eval: int = 1000, **training: Any) -> None:
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.n_layers = n_layers
        self.r1_gamma = r1_gamma
        self.n_eval = n_eval
        self._store_training(training)

    @classmethod
    def test_params(cls) -> dict[str, Any]:
        return {"latent_dim": 2, "hidden": 16, "max_epochs": 5, "n_eval": 100}

    # -- fitting -----------------------------------------------------------------------
    def _build(self, X: torch.Tensor) -> nn.Module:
        return _GANModule(int(X.shape[1]), latent_dim=int(self.latent_dim),
                          hidden=int(self.hidden), n_layers=int(self.n_layers))

    def _training_hooks(self, X_val: torch.Tensor | None) -> _GANHooks:
        return _GANHooks(self, X_val)

    # -- sampling ----------------------------------------------------------------------
    def _sample_standardized(self, n: int, generator: torch.Generator) -> torch.Tensor:
        chunks = [self.module_.generate(min(self.sample_rows, n - i), generator, self.device_)
                  for i in range(0, n, self.sample_rows)]
        return torch.cat(chunks) if chunks else torch.empty((0, self.n_features_in_))

    def _n_parameters(self) -> int:
        return int(sum(p.numel() for p in self.module_.generator.parameters()))
