"""The ONE training loop of every neural estimator, and their shared base class.

:func:`train` runs Adam over shuffled minibatches in float32, evaluates the mean validation
log-likelihood after each epoch (accumulated in float64), stops early after ``patience``
epochs without improvement, at ``max_epochs`` or when ``time_budget_s`` is spent, and
restores the best-validation weights. A NaN or inf loss stops training with
:class:`TrainingError` naming the estimator, the epoch and the batch, so a cell records it
rather than a silent NaN figure. Everything is seeded by ``random_state``.

:class:`TorchDensityEstimator` is the base class of the neural estimators: it holds the
common hyperparameters, optional standardization of continuous data (whose log-Jacobian
is added back, so scores are in the units of the data it was given), batched float64
scoring and seeded sampling. A subclass implements ``_build``, ``_loss``, ``_log_prob``
and ``_sample_standardized``.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from densbench.estimators.base import DensityEstimator

__all__ = [
    "TorchDensityEstimator", "TrainingError", "TrainResult", "emit_progress", "mlp",
    "progress_callback", "resolve_device", "torch_seed", "train",
]


class TrainingError(FloatingPointError):
    """Training diverged (NaN or inf loss)."""


#: The progress callback (set by the CLI): called with a dict after every epoch.
_PROGRESS: contextvars.ContextVar[Callable[[dict[str, Any]], None] | None] = \
    contextvars.ContextVar("densbench_training_progress", default=None)


@contextlib.contextmanager
def progress_callback(fn: Callable[[dict[str, Any]], None] | None) -> Iterator[None]:
    """Within the block, :func:`train` calls ``fn(event)`` after each epoch, where event
    has ``who, epoch, max_epochs, train_loss, val_loglik, seconds``."""
    token = _PROGRESS.set(fn)
    try:
        yield
    finally:
        _PROGRESS.reset(token)


def emit_progress(event: dict[str, Any]) -> None:
    """Pass ``event`` to the progress callback, if one is set (see
    :func:`progress_callback`); for training loops other than :func:`train` (a GAN's)."""
    hook = _PROGRESS.get()
    if hook is not None:
        hook(event)


@contextlib.contextmanager
def torch_seed(seed: int) -> Iterator[None]:
    """Seed PyTorch's global generator inside the block and restore it afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


def resolve_device(device: str) -> torch.device:
    """``'cpu'``, ``'cuda'`` (or ``'cuda:N'``) or ``'auto'`` (CUDA when available)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    return dev


def mlp(d_in: int, d_out: int, hidden: int, n_layers: int) -> nn.Sequential:
    """``n_layers`` hidden layers of ``hidden`` SiLU units (0: a linear map)."""
    layers: list[nn.Module] = []
    width = d_in
    for _ in range(n_layers):
        layers += [nn.Linear(width, hidden), nn.SiLU()]
        width = hidden
    layers.append(nn.Linear(width, d_out))
    return nn.Sequential(*layers)


@dataclass
class TrainResult:
    """What happened during training (kept on the estimator as ``training_``)."""

    epochs: int = 0
    best_epoch: int = 0
    best_val_loglik: float = -math.inf
    stopped: str = "max_epochs"
    seconds: float = 0.0
    examples_seen: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


def _batched_mean(fn: Callable[[torch.Tensor], torch.Tensor], X: torch.Tensor,
                  batch_size: int) -> float:
    total = 0.0
    for i in range(0, X.shape[0], batch_size):
        total += float(fn(X[i:i + batch_size]).double().sum())
    return total / max(X.shape[0], 1)


def train(model: nn.Module, loss_fn: Callable[[torch.Tensor], torch.Tensor],
          X_train: torch.Tensor, X_val: torch.Tensor | None,
          val_loglik_fn: Callable[[torch.Tensor], torch.Tensor], *, who: str,
          max_epochs: int, batch_size: int, lr: float, patience: int,
          time_budget_s: float | None, seed: int, weight_decay: float = 0.0,
          grad_clip: float | None = 10.0, eval_batch_size: int = 4096) -> TrainResult:
    """Train ``model`` by minimizing ``loss_fn(batch)`` (a scalar, e.g. the mean negative
    log-likelihood); select the epoch by ``val_loglik_fn(batch)`` (per-example values).

    Without validation data the training loss selects the epoch instead.
    """
    result = TrainResult()
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    n = X_train.shape[0]
    best_state = copy.deepcopy(model.state_dict())
    best_score, since_best = -math.inf, 0
    t0 = time.perf_counter()
    out_of_time = False
    for epoch in range(1, max_epochs + 1):
        model.train()
        perm = torch.randperm(n, generator=gen).to(X_train.device)
        loss_sum, seen = 0.0, 0
        for b, start in enumerate(range(0, n, batch_size)):
            batch = X_train[perm[start:start + batch_size]]
            loss = loss_fn(batch)
            if not torch.isfinite(loss):
                raise TrainingError(f"{who}: training loss became {float(loss.detach())} at epoch "
                                    f"{epoch}, batch {b}; lower lr or check the data")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            opt.step()
            loss_sum += float(loss.detach()) * batch.shape[0]
            seen += batch.shape[0]
            if time_budget_s is not None and time.perf_counter() - t0 > time_budget_s:
                out_of_time = True
                break
        result.examples_seen += seen
        train_loss = loss_sum / max(seen, 1)
        model.eval()
        with torch.no_grad():
            score = (_batched_mean(val_loglik_fn, X_val, eval_batch_size)
                     if X_val is not None else -train_loss)
        if not math.isfinite(score):
            raise TrainingError(f"{who}: validation log-likelihood became {score} at epoch "
                                f"{epoch}")
        elapsed = time.perf_counter() - t0
        result.history.append({"epoch": epoch, "train_loss": train_loss,
                               "val_loglik": score if X_val is not None else math.nan,
                               "seconds": elapsed})
        result.epochs = epoch
        if score > best_score:
            best_score, since_best, result.best_epoch = score, 0, epoch
            best_state = copy.deepcopy(model.state_dict())
        else:
            since_best += 1
        emit_progress({"who": who, "epoch": epoch, "max_epochs": max_epochs,
                       "train_loss": train_loss, "val_loglik": score, "seconds": elapsed})
        if out_of_time:
            result.stopped = "time_budget"
            break
        if since_best >= patience:
            result.stopped = "early_stopping"
            break
    model.load_state_dict(best_state)
    model.eval()
    result.best_val_loglik = best_score
    result.seconds = time.perf_counter() - t0
    return result


class TorchDensityEstimator(DensityEstimator):
    """Base of the neural estimators: common hyperparameters, standardization, batching.

    Common hyperparameters (subclasses list them in their own keyword-only ``__init__``):
    ``max_epochs``, ``batch_size``, ``lr``, ``patience``, ``time_budget_s`` (seconds of
    training, None for no limit), ``device`` ('cpu', 'cuda', 'auto'), ``random_state``.

    Subclasses implement:

    - ``_build(X) -> nn.Module`` (X: the standardized float32 training tensor);
    - ``_loss(batch) -> scalar tensor`` to minimize (mean over the batch);
    - ``_log_prob(batch) -> (n,) tensor``: the log-density (or bound) of standardized rows;
    - ``_sample_standardized(n, generator) -> (n, d) tensor``;
    - optionally ``_val_loglik(batch)``, the per-example early-stopping score.

    ``_standardize()`` says whether continuous data are standardized first (default True;
    discrete models that see raw levels return False).
    """

    eval_batch_size: ClassVar[int] = 4096
    score_batch_rows: ClassVar[int] = 1 << 16

    @classmethod
    def run_params(cls, dataset: Any, *, seed: int, device: str) -> dict[str, Any]:
        """Also the run's device: a setting of the run, kept out of the cell id."""
        return {**super().run_params(dataset, seed=seed, device=device), "device": device}

    def _validate_common(self) -> None:
        for name in ("max_epochs", "batch_size", "patience"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
                raise self._bad_param(name, "an int >= 1", v)
        lr = self.lr
        if isinstance(lr, bool) or not isinstance(lr, int | float) or not 0 < lr < math.inf:
            raise self._bad_param("lr", "a finite float > 0", lr)
        tb = self.time_budget_s
        if tb is not None and (isinstance(tb, bool) or not isinstance(tb, int | float)
                               or not tb > 0):
            raise self._bad_param("time_budget_s", "a number > 0 or None", tb)
        if not isinstance(self.device, str):
            raise self._bad_param("device", "'cpu', 'cuda' or 'auto'", self.device)
        try:
            resolve_device(self.device)
        except (RuntimeError, ValueError) as exc:
            raise ValueError(f"{self.name}: {exc}") from None

    def _standardize(self) -> bool:
        return True

    # -- the fit ---------------------------------------------------------------------
    def _fit(self, X: np.ndarray, X_val: np.ndarray | None) -> None:
        self._set_standardization(X)
        Xt = self._to_tensor(X)
        Vt = self._to_tensor(X_val) if X_val is not None else None
        seed = self._seed()
        with torch_seed(seed):
            self.module_ = self._build(Xt).to(self.device_)
        self.training_ = train(
            self.module_, self._loss, Xt, Vt, self._val_loglik, who=self.name,
            max_epochs=int(self.max_epochs), batch_size=int(self.batch_size),
            lr=float(self.lr), patience=int(self.patience),
            time_budget_s=self.time_budget_s, seed=seed,
            eval_batch_size=self.eval_batch_size)
        self.epochs_ = self.training_.epochs
        self.best_epoch_ = self.training_.best_epoch
        self.stopped_ = self.training_.stopped

    def _set_standardization(self, X: np.ndarray) -> None:
        """Set ``device_``, ``shift_``, ``scale_`` and ``log_jacobian_`` from ``X``."""
        self.device_ = resolve_device(self.device)
        if self._standardize():
            self.shift_ = X.mean(axis=0)
            self.scale_ = np.maximum(X.std(axis=0), 1e-8 * max(float(X.std()), 1e-300))
        else:
            self.shift_ = np.zeros(X.shape[1])
            self.scale_ = np.ones(X.shape[1])
        # log |d z / d x| of the standardization, added to every log-density
        self.log_jacobian_ = float(-np.log(self.scale_).sum())

    def _to_tensor(self, X: np.ndarray) -> torch.Tensor:
        Z = (X - self.shift_) / self.scale_
        return torch.as_tensor(Z, dtype=torch.float32, device=self.device_)

    # -- scoring and sampling --------------------------------------------------------
    def _score_samples(self, X: np.ndarray) -> np.ndarray:
        Xt = self._to_tensor(X)
        out = np.empty(X.shape[0], dtype=np.float64)
        with torch.no_grad():
            for i in range(0, X.shape[0], self.eval_batch_size):
                lp = self._log_prob(Xt[i:i + self.eval_batch_size])
                out[i:i + lp.shape[0]] = lp.double().cpu().numpy()
        return out + self.log_jacobian_

    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        seed = int(rng.integers(2**63 - 1))
        gen = torch.Generator(device="cpu").manual_seed(seed)
        # also seed the global generator, for libraries that sample from it (zuko)
        with torch.no_grad(), torch_seed(seed):
            Z = self._sample_standardized(n, gen)
        Z = Z.double().cpu().numpy().reshape(n, self.n_features_in_)
        return Z * self.scale_ + self.shift_

    def _n_parameters(self) -> int:
        return int(sum(p.numel() for p in self.module_.parameters()))

    # -- for subclasses --------------------------------------------------------------
    def _build(self, X: torch.Tensor) -> nn.Module:
        raise NotImplementedError

    def _loss(self, batch: torch.Tensor) -> torch.Tensor:
        return -self._log_prob(batch).mean()

    def _log_prob(self, batch: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _val_loglik(self, batch: torch.Tensor) -> torch.Tensor:
        """Per-example validation score for early stopping (default: ``_log_prob``; a
        model whose ``_log_prob`` is costly, such as IWAE with K = 5000, uses a cheaper
        bound here)."""
        return self._log_prob(batch)

    def _sample_standardized(self, n: int, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError
