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

Why this module has its own loop instead of :func:`densbench.estimators.training.train`:
that loop minimizes ONE loss with ONE optimizer and selects the epoch by a validation
log-likelihood; a GAN needs two optimizers in alternation (a min-max game, not a
minimization) and has no likelihood to select by. The loop below keeps the shared loop's
conventions: shuffled minibatches from a seeded generator, ``max_epochs``,
``time_budget_s``, ``patience``, a :class:`~densbench.estimators.training.TrainingError`
on a NaN or inf loss, the progress callback, the best epoch's weights restored, and the
standardization (with its log-Jacobian, for uniformity) of
:class:`~densbench.estimators.training.TorchDensityEstimator`.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from densbench.estimators.base import LikelihoodKind
from densbench.estimators.params import Interval, ParamConstraints
from densbench.estimators.training import (
    TorchDensityEstimator,
    TrainingError,
    TrainResult,
    emit_progress,
    mlp,
    torch_seed,
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
    #: The R1 penalty is applied every ``r1_every``-th discriminator step, scaled by
    #: ``r1_every`` ("lazy regularization", Karras et al. 2020): its double backward pass
    #: made each step about 4x slower.
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
                 r1_gamma: float = 1.0, n_eval: int = 1000, max_epochs: int = 100,
                 batch_size: int = 256, lr: float = 1e-3, patience: int = 20,
                 time_budget_s: float | None = None, device: str = "cpu",
                 random_state: int = 0) -> None:
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.n_layers = n_layers
        self.r1_gamma = r1_gamma
        self.n_eval = n_eval
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.patience = patience
        self.time_budget_s = time_budget_s
        self.device = device
        self.random_state = random_state

    @classmethod
    def test_params(cls) -> dict[str, Any]:
        return {"latent_dim": 2, "hidden": 16, "max_epochs": 5, "n_eval": 100}

    # -- fitting -----------------------------------------------------------------------
    def _fit(self, X: np.ndarray, X_val: np.ndarray | None) -> None:
        self._set_standardization(X)
        Xt = self._to_tensor(X)
        Vt = self._to_tensor(X_val) if X_val is not None else None
        with torch_seed(self._seed()):
            self.module_ = _GANModule(X.shape[1], latent_dim=int(self.latent_dim),
                                      hidden=int(self.hidden),
                                      n_layers=int(self.n_layers)).to(self.device_)
        self.training_ = self._train(Xt, Vt)
        self.epochs_ = self.training_.epochs
        self.best_epoch_ = self.training_.best_epoch
        self.stopped_ = self.training_.stopped

    def _val_distance(self, Vt: torch.Tensor, z_gen: torch.Generator) -> float:
        from densbench.metrics.samples import energy_distance

        n = min(int(self.n_eval), Vt.shape[0])
        with torch.no_grad():
            fake = self.module_.generate(int(self.n_eval), z_gen, self.device_)
        return energy_distance(fake.double().cpu().numpy(),
                               Vt[:n].double().cpu().numpy()).value

    def _train(self, Xt: torch.Tensor, Vt: torch.Tensor | None) -> GANTrainResult:
        seed, dev = self._seed(), self.device_
        gen_g, gen_d = self.module_.generator, self.module_.discriminator
        perm_gen = torch.Generator(device="cpu").manual_seed(seed)
        noise = torch.Generator(device=dev).manual_seed(seed + 1)
        opt_g = torch.optim.Adam(gen_g.parameters(), lr=float(self.lr), betas=(0.5, 0.9))
        opt_d = torch.optim.Adam(gen_d.parameters(), lr=float(self.lr), betas=(0.5, 0.9))
        gamma, bs, n = float(self.r1_gamma), int(self.batch_size), Xt.shape[0]
        budget, max_epochs = self.time_budget_s, int(self.max_epochs)
        result = GANTrainResult()
        best_state = copy.deepcopy(gen_g.state_dict())
        best, since_best = math.inf, 0
        t0 = time.perf_counter()
        out_of_time = False
        for epoch in range(1, max_epochs + 1):
            perm = torch.randperm(n, generator=perm_gen).to(dev)
            sums, seen = np.zeros(2), 0
            for b, start in enumerate(range(0, n, bs)):
                lazy = gamma > 0 and b % self.r1_every == 0
                real = Xt[perm[start:start + bs]].requires_grad_(lazy)
                m = real.shape[0]
                # discriminator step (R1 on the real rows, every r1_every-th step)
                fake = self.module_.generate(m, noise, dev).detach()
                d_real = gen_d(real)
                loss_d = F.softplus(-d_real).mean() + F.softplus(gen_d(fake)).mean()
                if lazy:
                    (grad,) = torch.autograd.grad(d_real.sum(), real, create_graph=True)
                    r1 = 0.5 * gamma * self.r1_every * grad.square().sum(-1).mean()
                    loss_d = loss_d + r1
                opt_d.zero_grad(set_to_none=True)
                loss_d.backward()
                opt_d.step()
                # generator step (non-saturating)
                loss_g = F.softplus(-gen_d(self.module_.generate(m, noise, dev))).mean()
                opt_g.zero_grad(set_to_none=True)
                loss_g.backward()
                opt_g.step()
                losses = (float(loss_d.detach()), float(loss_g.detach()))
                if not all(math.isfinite(v) for v in losses):
                    raise TrainingError(f"{self.name}: training loss became {losses} (D, G) "
                                        f"at epoch {epoch}, batch {b}; lower lr")
                sums += np.array(losses) * m
                seen += m
                if budget is not None and time.perf_counter() - t0 > budget:
                    out_of_time = True
                    break
            result.examples_seen += seen
            d_loss, g_loss = (float(v) for v in sums / max(seen, 1))
            dist = (self._val_distance(Vt, torch.Generator(device=dev).manual_seed(seed + 2))
                    if Vt is not None else None)
            elapsed = time.perf_counter() - t0
            result.history.append({"epoch": epoch, "d_loss": d_loss, "g_loss": g_loss,
                                   "val_energy_distance": dist, "seconds": elapsed})
            result.epochs = epoch
            if dist is None or dist < best:
                best, since_best, result.best_epoch = (math.inf if dist is None else dist,
                                                       0, epoch)
                best_state = copy.deepcopy(gen_g.state_dict())
                result.best_val_energy_distance = dist
            else:
                since_best += 1
            emit_progress({"who": self.name, "epoch": epoch, "max_epochs": max_epochs,
                           "train_loss": g_loss, "val_loglik": math.nan, "seconds": elapsed})
            if out_of_time:
                result.stopped = "time_budget"
                break
            if since_best >= int(self.patience):
                result.stopped = "early_stopping"
                break
        gen_g.load_state_dict(best_state)
        self.module_.eval()
        result.seconds = time.perf_counter() - t0
        return result

    # -- sampling ----------------------------------------------------------------------
    def _sample_standardized(self, n: int, generator: torch.Generator) -> torch.Tensor:
        dev = self.device_
        gen = generator if dev.type == "cpu" else torch.Generator(device=dev).manual_seed(
            int(torch.randint(2**62, (1,), generator=generator)))
        chunks = [self.module_.generate(min(self.sample_rows, n - i), gen, dev)
                  for i in range(0, n, self.sample_rows)]
        return torch.cat(chunks) if chunks else torch.empty((0, self.n_features_in_))

    def _n_parameters(self) -> int:
        return int(sum(p.numel() for p in self.module_.generator.parameters()))
