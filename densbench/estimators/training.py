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

from densbench.devices import DEFAULT_DEVICE, check_device
from densbench.estimators.base import DensityEstimator
from densbench.estimators.params import BOOL, Interval, ParamConstraints, Satisfies

__all__ = [
    "Evaluation", "TorchDensityEstimator", "TrainResult", "TrainingError", "TrainingHooks",
    "checked_means", "emit_progress", "mlp", "on_device", "progress_callback", "resolve_device",
    "torch_seed", "train",
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


def on_device(generator: torch.Generator, device: torch.device) -> torch.Generator:
    """``generator`` itself when it lives on ``device``, else a generator there seeded from
    it (PyTorch draws on a device only from a generator on that device)."""
    if generator.device.type == device.type:
        return generator
    seed = int(torch.randint(2**62, (1,), generator=generator))
    return torch.Generator(device=device).manual_seed(seed)


def _usable_device(device: Any) -> bool:
    try:
        resolve_device(check_device(device, auto=True))
    except (RuntimeError, ValueError):
        return False
    return True


def mlp(d_in: int, d_out: int, hidden: int, n_layers: int) -> nn.Sequential:
    """``n_layers`` hidden layers of ``hidden`` SiLU units (0: a linear map)."""
    layers: list[nn.Module] = []
    width = d_in
    for _ in range(n_layers):
        layers += [nn.Linear(width, hidden), nn.SiLU()]
        width = hidden
    layers.append(nn.Linear(width, d_out))
    return nn.Sequential(*layers)


def checked_means(means: Any, X: Any, who: str) -> np.ndarray:
    """``means`` as float64 (n, d) Bernoulli means of which binary ``X`` is one draw; a
    ValueError naming ``who`` and what is wrong otherwise (a shape, a value outside
    [0, 1], a non-binary ``X``, a pixel drawn 1 where its mean is 0 or 0 where it is 1).

    Example:
        >>> checked_means([[0.2, 1.0]], [[0.0, 1.0]], "vae").tolist()
        [[0.2, 1.0]]
    """
    P = np.asarray(means, dtype=np.float64)
    Xa = np.asarray(X, dtype=np.float64)
    if P.shape != Xa.shape:
        raise ValueError(f"{who}: binarize_from must have the shape of X {Xa.shape}; "
                         f"got {P.shape}")
    if not np.all((P >= 0.0) & (P <= 1.0)):  # NaN fails this too
        raise ValueError(f"{who}: binarize_from must hold means in [0, 1]")
    if not np.all((Xa == 0.0) | (Xa == 1.0)):
        raise ValueError(f"{who}: binarize_from needs binary X (levels 0 and 1)")
    if np.any((Xa == 1.0) & (P == 0.0)) or np.any((Xa == 0.0) & (P == 1.0)):
        raise ValueError(f"{who}: X is not a draw of binarize_from (a pixel drawn 1 where "
                         "its mean is 0, or 0 where it is 1)")
    return P


@dataclass
class TrainResult:
    """What happened during training (kept on the estimator as ``training_``)."""

    epochs: int = 0
    best_epoch: int = 0
    best_val_loglik: float | None = -math.inf
    stopped: str = "max_epochs"
    #: seconds of training, compilation excluded
    seconds: float = 0.0
    examples_seen: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    #: seconds of the steps during which PyTorch compiled (compiled training only)
    compile_seconds: float = 0.0
    #: why compiled training fell back to eager PyTorch (None: it did not)
    compile_fallback: str | None = None


@dataclass
class Evaluation:
    """The end of an epoch as the hooks judge it: ``select`` orders the epochs (higher is
    better; None: no selection, the latest epoch is kept) and ``report`` is what the
    history row and the progress event show."""

    select: float | None
    report: dict[str, Any]


class TrainingHooks:
    """What differs between neural estimators' training: the update on one minibatch
    (:meth:`step`), the end-of-epoch criterion (:meth:`evaluate`) and the module whose best
    weights are kept (``keep``). The epochs, shuffling, time budget, patience, divergence
    check, progress events and restoring of the best weights are :func:`train`'s.

    This default trains by maximum likelihood: Adam on ``loss_fn`` with the gradient norm
    clipped at ``grad_clip``, and the epoch chosen by the mean validation log-likelihood,
    ``val_loglik_fn`` per example (by the training loss without validation data). With
    ``compile``, ``loss_fn`` runs compiled (:class:`~densbench.estimators.compiled.CompiledStep`;
    its cost is :attr:`compile_seconds`).
    """

    #: Names of the losses :meth:`step` returns (the history's columns).
    loss_names: tuple[str, ...] = ("train_loss",)
    #: The compiled loss (None: eager); hooks with a step of their own leave it None.
    compiled: Any = None

    def __init__(self, model: nn.Module, loss_fn: Callable[[torch.Tensor], torch.Tensor],
                 val_loglik_fn: Callable[[torch.Tensor], torch.Tensor],
                 X_val: torch.Tensor | None, *, lr: float, weight_decay: float = 0.0,
                 grad_clip: float | None = 10.0, eval_batch_size: int = 4096,
                 cosine_steps: int | None = None, compile: bool = False,
                 compile_key: Any = None) -> None:
        from densbench.estimators.compiled import CompiledStep

        self.keep: nn.Module = model
        self.model, self.loss_fn, self.val_loglik_fn = model, loss_fn, val_loglik_fn
        self.compiled = CompiledStep(loss_fn, key=compile_key) if compile else None
        self.X_val, self.grad_clip, self.eval_batch_size = X_val, grad_clip, eval_batch_size
        self.opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
        self.lr, self.cosine_steps, self.steps = lr, cosine_steps, 0

    def step_lr(self) -> float:
        """The learning rate of the next update: ``lr``, or with ``cosine_steps`` = T the
        cosine decay lr * (1 + cos(pi * t / T)) / 2 of update t = 0, 1, ... (Loshchilov &
        Hutter 2017, without restarts), 0 from update T on. A training bounded by
        ``max_epochs`` (T its updates) then ends at a small step, where the last epochs
        gain most. Written as this closed form rather than with PyTorch's
        ``CosineAnnealingLR``, whose rate rises again past T (a time budget or a changed
        epoch count must never raise it), and which the tests take as the reference."""
        if self.cosine_steps is None:
            return self.lr
        t = min(self.steps, self.cosine_steps)
        return self.lr * 0.5 * (1.0 + math.cos(math.pi * t / self.cosine_steps))

    @property
    def compile_seconds(self) -> float:
        """Seconds of the steps during which PyTorch compiled (0 without ``compile``)."""
        return 0.0 if self.compiled is None else self.compiled.seconds

    @property
    def compile_fallback(self) -> str | None:
        return None if self.compiled is None else self.compiled.fallback

    def step(self, batch: torch.Tensor, index: int) -> tuple[float, ...]:
        """Update on one minibatch; return its losses (checked finite by the loop)."""

        def gradients(loss_fn: Callable[[torch.Tensor], torch.Tensor]) -> float:
            self.opt.zero_grad(set_to_none=True)
            loss = loss_fn(batch)
            value = float(loss.detach())
            if math.isfinite(value):  # no update from a diverged loss
                loss.backward()
            return value

        value = gradients(self.loss_fn) if self.compiled is None else self.compiled.run(
            gradients, lambda: [p.grad for p in self.model.parameters()])
        if not math.isfinite(value):
            return (value,)
        if self.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        if self.cosine_steps is not None:
            for group in self.opt.param_groups:
                group["lr"] = self.step_lr()
        self.opt.step()
        self.steps += 1
        return (value,)

    def evaluate(self, mean_losses: tuple[float, ...]) -> Evaluation:
        """Judge the epoch (the module is in eval mode, gradients off)."""
        if self.X_val is None:
            return Evaluation(-mean_losses[0], {"val_loglik": math.nan})
        total = 0.0
        for i in range(0, self.X_val.shape[0], self.eval_batch_size):
            total += float(self.val_loglik_fn(self.X_val[i:i + self.eval_batch_size])
                           .double().sum())
        score = total / max(self.X_val.shape[0], 1)
        return Evaluation(score, {"val_loglik": score})

    def new_result(self) -> TrainResult:
        return TrainResult()

    def finish(self, result: TrainResult, best: Evaluation) -> None:
        """Fill in what the kept epoch achieved."""
        result.best_val_loglik = -math.inf if best.select is None else best.select


def _train_epoch(model: nn.Module, hooks: TrainingHooks, X_train: torch.Tensor,
                 gen: torch.Generator, *, who: str, epoch: int, batch_size: int,
                 deadline: Callable[[], float | None], means: torch.Tensor | None = None
                 ) -> tuple[tuple[float, ...], int, bool]:
    """One pass over shuffled minibatches: the mean of each loss per example, the examples
    seen and whether ``deadline()`` (a ``perf_counter`` time, or None) passed, which ends
    the pass.
    With ``means`` (on the CPU, like ``gen``) each minibatch is a fresh Bernoulli draw of
    its rows' means instead of its rows of ``X_train``."""
    model.train()
    n = X_train.shape[0]
    perm = torch.randperm(n, generator=gen)
    perm_on = perm.to(X_train.device)
    sums, seen = [0.0] * len(hooks.loss_names), 0
    out_of_time = False
    for b, start in enumerate(range(0, n, batch_size)):
        if means is None:
            batch = X_train[perm_on[start:start + batch_size]]
        else:
            batch = torch.bernoulli(means[perm[start:start + batch_size]],
                                    generator=gen).to(X_train.device, X_train.dtype)
        losses = hooks.step(batch, b)
        if not all(math.isfinite(v) for v in losses):
            shown = losses[0] if len(losses) == 1 else losses
            raise TrainingError(f"{who}: training loss became {shown} at epoch {epoch}, "
                                f"batch {b}; lower lr or check the data")
        sums = [t + v * batch.shape[0] for t, v in zip(sums, losses, strict=True)]
        seen += batch.shape[0]
        end = deadline()
        if end is not None and time.perf_counter() > end:
            out_of_time = True
            break
    return tuple(t / max(seen, 1) for t in sums), seen, out_of_time


def train(model: nn.Module, hooks: TrainingHooks, X_train: torch.Tensor, *, who: str,
          max_epochs: int, batch_size: int, patience: int, time_budget_s: float | None,
          seed: int, means: torch.Tensor | None = None) -> TrainResult:
    """Train ``model`` with ``hooks`` over shuffled minibatches of ``X_train``, or with
    ``means`` (dynamic binarization: Bernoulli means of the rows of ``X_train``, on the
    CPU) over minibatches drawn afresh from them at every epoch.

    The epoch with the best ``hooks.evaluate`` is kept (its ``hooks.keep`` weights are
    restored); training stops after ``patience`` epochs without improvement, at
    ``max_epochs`` or once ``time_budget_s`` is spent; a NaN or inf loss or criterion raises
    :class:`TrainingError` naming ``who``, the epoch and the batch.
    """
    result = hooks.new_result()
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    best_state = copy.deepcopy(hooks.keep.state_dict())
    best: Evaluation | None = None
    since_best, t0 = 0, time.perf_counter()
    # compilation is not training: the budget leaves it out
    deadline = (lambda: None) if time_budget_s is None \
        else (lambda: t0 + time_budget_s + hooks.compile_seconds)

    for epoch in range(1, max_epochs + 1):
        losses, seen, out_of_time = _train_epoch(model, hooks, X_train, gen, who=who,
                                                 epoch=epoch, batch_size=batch_size,
                                                 deadline=deadline, means=means)
        result.examples_seen += seen
        model.eval()
        with torch.no_grad():
            ev = hooks.evaluate(losses)
        if ev.select is not None and not math.isfinite(ev.select):
            raise TrainingError(f"{who}: the validation criterion became {ev.select} at "
                                f"epoch {epoch}")
        elapsed = time.perf_counter() - t0 - hooks.compile_seconds
        result.history.append({"epoch": epoch, **dict(zip(hooks.loss_names, losses,
                                                          strict=True)),
                               **ev.report, "seconds": elapsed})
        result.epochs = epoch
        if best is None or ev.select is None or best.select is None \
                or ev.select > best.select:
            best, since_best, result.best_epoch = ev, 0, epoch
            best_state = copy.deepcopy(hooks.keep.state_dict())
        else:
            since_best += 1
        emit_progress({"who": who, "epoch": epoch, "max_epochs": max_epochs,
                       "train_loss": losses[-1], "val_loglik": ev.report.get("val_loglik",
                                                                            math.nan),
                       "seconds": elapsed})
        if out_of_time:
            result.stopped = "time_budget"
            break
        if since_best >= patience:
            result.stopped = "early_stopping"
            break
    hooks.keep.load_state_dict(best_state)
    model.eval()
    if best is not None:
        hooks.finish(result, best)
    result.compile_seconds, result.compile_fallback = hooks.compile_seconds, hooks.compile_fallback
    result.seconds = time.perf_counter() - t0 - result.compile_seconds
    return result


class TorchDensityEstimator(DensityEstimator):
    """Base of the neural estimators: shared hyperparameters, standardization, batching.

    The training hyperparameters every neural estimator takes are declared here once, with
    their constraints: ``max_epochs``, ``batch_size``, ``lr``, ``patience``,
    ``time_budget_s`` (seconds of training, None for no limit; compilation is not
    counted), ``device`` ('cpu', 'cuda', 'cuda:N', 'auto'), ``compile`` (train through
    ``torch.compile``, :mod:`densbench.estimators.compiled`; the figures change only by
    floating-point order) and ``random_state``. A subclass's ``__init__`` takes its own
    hyperparameters by name and these as ``**training``, passed to
    :meth:`_store_training`; it changes a default in ``training_defaults``. They are
    hyperparameters like any other for ``get_params``, ``clone`` and ``make``.

    Subclasses implement:

    - ``_build(X) -> nn.Module`` (X: the standardized float32 training tensor);
    - ``_loss(batch) -> scalar tensor`` to minimize (mean over the batch);
    - ``_log_prob(batch) -> (n,) tensor``: the log-density (or bound) of standardized rows;
    - ``_sample_standardized(n, generator) -> (n, d) tensor`` (``generator`` lives on
      ``device_``);
    - optionally ``_val_loglik(batch)``, the per-example early-stopping score, or
      ``_training_hooks`` for a training that is not maximum likelihood (the GAN's).

    ``_standardize()`` says whether continuous data are standardized first (default True;
    discrete models that see raw levels return False).
    """

    redraws_binarization: ClassVar[bool] = True
    #: The shared maximum-likelihood step on ``_loss`` can be compiled (an estimator with
    #: training hooks of its own says False).
    compilable: ClassVar[bool] = True
    #: Rows per evaluation batch (validation after each epoch, scoring), at most: fewer
    #: where a row's activations are large (:meth:`_eval_rows`).
    eval_batch_size: ClassVar[int] = 4096
    #: Bytes of activations an evaluation batch may hold (see :meth:`_eval_row_bytes`).
    eval_batch_bytes: ClassVar[int] = 1 << 28
    score_batch_rows: ClassVar[int | None] = 1 << 16
    #: The shared training hyperparameters and their defaults.
    training_defaults: ClassVar[dict[str, Any]] = {
        "max_epochs": 100, "batch_size": 256, "lr": 1e-3, "patience": 20,
        "time_budget_s": None, "device": DEFAULT_DEVICE, "compile": False, "random_state": 0}
    _parameter_constraints: ClassVar[ParamConstraints] = {
        "max_epochs": [Interval(int, 1, None)],
        "batch_size": [Interval(int, 1, None)],
        "lr": [Interval(float, 0, None, "neither")],
        "patience": [Interval(int, 1, None)],
        "time_budget_s": [Interval(float, 0, None, "neither"), None],
        "device": [Satisfies(_usable_device, "'cpu', 'cuda', 'cuda:N' or 'auto' (a device "
                                             "this machine has)")],
        "compile": [BOOL],
    }

    @classmethod
    def _get_param_names(cls) -> list[str]:
        return sorted({*super()._get_param_names(), *cls.training_defaults})

    def _store_training(self, training: dict[str, Any]) -> None:
        """Store the shared training hyperparameters given to ``__init__`` (the class's
        defaults for those not given)."""
        unknown = sorted(set(training) - set(self.training_defaults))
        if unknown:
            raise TypeError(f"{type(self).__name__}() got unexpected keyword argument(s) "
                            f"{', '.join(unknown)}")
        for key, default in self.training_defaults.items():
            setattr(self, key, training.get(key, default))

    def fit(self, X: Any, X_val: Any = None, *,
            binarize_from: Any = None) -> TorchDensityEstimator:
        """Fit to ``X`` (n, d); ``X_val`` is used only for early stopping.

        ``binarize_from``: dynamic binarization (Burda et al. 2016). For binary ``X``, the
        (n, d) pixel means in [0, 1] of which ``X`` is one Bernoulli draw: each epoch then
        trains on a fresh draw of every image, seeded by ``random_state``; ``X`` still
        sets what the data decide before training (checks of the levels, initial biases).
        Only for an estimator that models the binary levels natively (``levels = 2``).
        """
        self._binarize_from = (None if binarize_from is None
                               else checked_means(binarize_from, X, self.name))
        try:
            return super().fit(X, X_val)  # type: ignore[return-value]
        finally:
            del self._binarize_from

    @classmethod
    def run_params(cls, dataset: Any, *, seed: int, device: str) -> dict[str, Any]:
        """Also the run's device: a setting of the run, kept out of the cell id."""
        return {**super().run_params(dataset, seed=seed, device=device), "device": device}

    def _standardize(self) -> bool:
        return True

    # -- the fit ---------------------------------------------------------------------
    def _fit(self, X: np.ndarray, X_val: np.ndarray | None) -> None:
        if self.compile and not self.compilable:
            raise ValueError(f"{self.name}: compile=True is not supported (its training "
                             "is not the shared maximum-likelihood step)")
        self._set_standardization(X)
        Xt = self._to_tensor(X)
        Vt = self._to_tensor(X_val) if X_val is not None else None
        means = getattr(self, "_binarize_from", None)
        if means is not None:
            levels = getattr(self, "levels_", None) or getattr(self, "levels", None)
            if self._standardize() or levels != 2:
                raise ValueError(f"{self.name}: binarize_from needs a model of the binary "
                                 "levels themselves (levels = 2, no standardization)")
            means = torch.as_tensor(means, dtype=torch.float32)
        seed = self._seed()
        with torch_seed(seed):
            self.module_ = self._build(Xt).to(self.device_)
        # the training's own noise (a VAE's or diffusion model's draws, a GAN's latents)
        self._noise = self._generator(offset=1)
        try:
            self.training_ = train(
                self.module_, self._training_hooks(Vt), Xt, who=self.name,
                max_epochs=int(self.max_epochs), batch_size=int(self.batch_size),
                patience=int(self.patience), time_budget_s=self.time_budget_s, seed=seed,
                means=means)
        finally:
            del self._noise
        self.compile_seconds_ = self.training_.compile_seconds
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
    def _eval_rows(self) -> int:
        """Rows per evaluation batch: ``eval_batch_size``, fewer where that many rows'
        activations (:meth:`_eval_row_bytes`) would pass ``eval_batch_bytes``. (A 256-way
        conditional per pixel of a 784-pixel image takes about 2.4 MB a row: 4,096 rows
        would hold ~10 GB.) The rows of a batch are scored independently, so the batch
        size changes memory, not the figures."""
        per_row = self._eval_row_bytes()
        if per_row <= 0:
            return int(self.eval_batch_size)
        return max(1, min(int(self.eval_batch_size), int(self.eval_batch_bytes) // per_row))

    def _eval_row_bytes(self) -> int:
        """Bytes of activations one row takes in an evaluation pass (0: small; the batch
        is ``eval_batch_size``). Called during and after ``fit``, once the subclass knows
        its data's shape."""
        return 0

    def _score_samples(self, X: np.ndarray) -> np.ndarray:
        Xt = self._to_tensor(X)
        out = np.empty(X.shape[0], dtype=np.float64)
        rows = self._eval_rows()
        with torch.no_grad():
            for i in range(0, X.shape[0], rows):
                lp = self._log_prob(Xt[i:i + rows])
                out[i:i + lp.shape[0]] = lp.double().cpu().numpy()
        return out + self.log_jacobian_

    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        seed = int(rng.integers(2**63 - 1))
        gen = on_device(torch.Generator(device="cpu").manual_seed(seed), self.device_)
        # also seed the global generator, for libraries that sample from it (zuko)
        with torch.no_grad(), torch_seed(seed):
            Z = self._sample_standardized(n, gen)
        Z = Z.double().cpu().numpy().reshape(n, self.n_features_in_)
        return Z * self.scale_ + self.shift_

    def _n_parameters(self) -> int:
        return int(sum(p.numel() for p in self.module_.parameters()))

    def _generator(self, offset: int = 0) -> torch.Generator:
        """A generator on ``device_`` seeded by ``random_state + offset``."""
        return torch.Generator(device=self.device_).manual_seed(self._seed() + offset)

    # -- for subclasses --------------------------------------------------------------
    def _training_hooks(self, X_val: torch.Tensor | None) -> TrainingHooks:
        """How the module is trained (default: maximum likelihood, see
        :class:`TrainingHooks`)."""
        return TrainingHooks(self.module_, self._loss, self._val_loglik, X_val,
                             lr=float(self.lr), eval_batch_size=self._eval_rows(),
                             compile=bool(self.compile), compile_key=self._compile_key())

    def _compile_key(self) -> tuple[Any, ...]:
        """What a compiled training step depends on: the class, the hyperparameters but
        the seed, and the data's width (see :mod:`densbench.estimators.compiled`)."""
        params = {k: v for k, v in self.get_params().items() if k != "random_state"}
        return type(self).__qualname__, repr(sorted(params.items())), self.n_features_in_

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
