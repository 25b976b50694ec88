"""The classifier two-sample test, :func:`c2st`: folds of small MLPs trained at once."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.model_selection import StratifiedKFold, train_test_split

from densbench.metrics.base import mean_se
from densbench.metrics.samples.dispatch import _computes
from densbench.metrics.samples.points import SampleScore, _pair

__all__ = ["C2ST_CLASSIFIER", "c2st"]

#: The classifier of :func:`c2st`: one network per fold, all folds trained at once.
C2ST_CLASSIFIER = ("MLP 64-64 ReLU per fold (PyTorch float32, Glorot init, Adam lr 2e-3, "
                   "batches of 512 or a quarter of the fold, early stopping on the loss of "
                   "10% of the fold after 20 epochs, patience 5, at most 200 epochs), "
                   "features standardized on the training fold")
_C2ST_HIDDEN = 64
_C2ST_BATCH = 512
_C2ST_LR = 2e-3
_C2ST_MAX_EPOCHS = 200
_C2ST_PATIENCE = 5
_C2ST_MIN_STEPS = 4
_C2ST_MIN_EPOCHS = 20
_C2ST_VAL_FRACTION = 0.1


def _padded(index_lists: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Ragged per-fold row indices as a (K, L) tensor (padded with each list's first index)
    and a (K, L) mask of the real entries."""
    width = max(len(ix) for ix in index_lists)
    idx = torch.zeros((len(index_lists), width), dtype=torch.long)
    mask = torch.zeros((len(index_lists), width), dtype=torch.bool)
    for k, ix in enumerate(index_lists):
        idx[k, :len(ix)] = torch.from_numpy(np.asarray(ix, dtype=np.int64))
        idx[k, len(ix):] = int(ix[0])
        mask[k, :len(ix)] = True
    return idx, mask


class _FoldMLPs:
    """K two-hidden-layer ReLU classifiers, one per cross-validation fold, held as stacked
    weights so that one batched product trains all K at once (each network sees only its
    own fold's rows: its loss, gradients and Adam moments are its own)."""

    def __init__(self, k: int, d: int, gen: torch.Generator) -> None:
        sizes = [(d, _C2ST_HIDDEN), (_C2ST_HIDDEN, _C2ST_HIDDEN), (_C2ST_HIDDEN, 1)]
        self.params: list[torch.Tensor] = []
        for fan_in, fan_out in sizes:  # Glorot uniform, as scikit-learn's MLP for ReLU
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            for shape in ((k, fan_in, fan_out), (k, 1, fan_out)):
                p = (torch.rand(shape, generator=gen) * 2.0 - 1.0) * bound
                self.params.append(p.requires_grad_())

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(K, B, d) rows -> (K, B) logits, network k on rows k."""
        w1, b1, w2, b2, w3, b3 = self.params
        h = torch.relu(torch.baddbmm(b1, x, w1))
        h = torch.relu(torch.baddbmm(b2, h, w2))
        # the output layer (one unit) as a product and a sum, not a batched product: a
        # (B, 64) x (64, 1) product takes PyTorch's slow path, nearly as long as the
        # 64 x 64 layer forward and backward
        return (h * w3.transpose(1, 2)).sum(dim=-1) + b3.squeeze(-1)

    def snapshot(self) -> list[torch.Tensor]:
        return [p.detach().clone() for p in self.params]


def _fold_losses(net: _FoldMLPs, z: torch.Tensor, y: torch.Tensor, idx: torch.Tensor,
                 mask: torch.Tensor) -> torch.Tensor:
    """Mean logistic loss of each network on its own rows ``idx[k]`` (masked), shape (K,)."""
    logits = net.logits(z[torch.arange(idx.shape[0])[:, None], idx])
    loss = F.binary_cross_entropy_with_logits(logits, y[idx], reduction="none")
    return (loss * mask).sum(dim=1) / mask.sum(dim=1)


def _train_fold_mlps(z: torch.Tensor, y: torch.Tensor, fit: list[np.ndarray],
                     val: list[np.ndarray], gen: torch.Generator) -> _FoldMLPs:
    """Adam on minibatches drawn from each fold's ``fit`` rows; each network keeps the
    weights of its best validation loss and stops after ``_C2ST_PATIENCE`` epochs without
    a better one (the scheme of scikit-learn's ``early_stopping``, on the loss)."""
    k = z.shape[0]
    net = _FoldMLPs(k, z.shape[2], gen)
    opt = torch.optim.Adam(net.params, lr=_C2ST_LR, fused=True)  # one kernel per step
    fit_idx, fit_mask = _padded(fit)
    val_idx, val_mask = _padded(val)
    n_fit = fit_mask.sum(dim=1, keepdim=True).double()
    # at least _C2ST_MIN_STEPS updates an epoch, so that small samples are not stopped
    # after a handful of updates
    batch = max(1, min(_C2ST_BATCH, int(n_fit.min()) // _C2ST_MIN_STEPS))
    steps = math.ceil(int(n_fit.max()) / batch)
    rows = torch.arange(k)[:, None]
    best, best_loss = net.snapshot(), torch.full((k,), math.inf)
    active, waited = torch.ones(k, dtype=torch.bool), torch.zeros(k, dtype=torch.long)
    for epoch in range(_C2ST_MAX_EPOCHS):
        for _ in range(steps):
            pick = (torch.rand((k, batch), generator=gen, dtype=torch.float64) * n_fit).long()
            idx = fit_idx[rows, pick]
            # the sum of the networks' mean losses: each network's gradient is its own
            loss = F.binary_cross_entropy_with_logits(net.logits(z[rows, idx]), y[idx],
                                                      reduction="sum") / batch
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():
            vloss = _fold_losses(net, z, y, val_idx, val_mask)
            better = active & (vloss < best_loss - 1e-4)
            best_loss = torch.where(better, vloss, best_loss)
            for b, p in zip(best, net.params, strict=True):
                b[better] = p.detach()[better]
            waited = torch.where(better, 0, waited + 1)
            active &= (waited < _C2ST_PATIENCE) | (epoch + 1 < _C2ST_MIN_EPOCHS)
        if not active.any():
            break
    with torch.no_grad():
        for p, b in zip(net.params, best, strict=True):
            p.copy_(b)
    return net


@_computes("c2st_accuracy", seeded=True)
def c2st(X: np.ndarray, Y: np.ndarray, *, seed: int = 0, folds: int = 5) -> SampleScore:
    """Classifier two-sample test: cross-validated accuracy of telling ``X`` from ``Y``.

    The larger sample is subsampled (without replacement, ``np.random.default_rng(seed)``)
    to the size of the smaller, so chance is exactly 0.5. Rows are split by
    ``StratifiedKFold(folds, shuffle=True, random_state=seed)``; for each fold a classifier
    (:data:`C2ST_CLASSIFIER`: two hidden layers of 64 ReLU units, logistic loss, Adam,
    early stopping on a stratified 10% of the training fold, features standardized by the
    training fold) is trained and scored on the held-out fold. The value is the mean
    held-out accuracy: 0.5 when the classifier cannot tell the samples apart (it may fall a
    little below), up to 1 when it always can. The SE is the spread of the ``folds``
    accuracies over sqrt(folds) (it ignores the folds' dependence through shared training
    data; the binomial ``sqrt(a (1 - a) / (2 n))`` is in ``extra``).

    Why not scikit-learn's ``MLPClassifier`` (the same network, fitted fold by fold,
    with batches of 200 and a patience of 10 epochs on the validation accuracy): it
    would be most of the cost of all sample metrics. Here the ``folds`` networks are stacked
    and trained by one batched product per step, in float32 on the calling thread's PyTorch,
    with larger batches and early stopping on the smoother validation loss (never before
    20 epochs: a radial difference, a change of scale or of tails, is learnt only after
    a plateau at chance), so it stops sooner; ``tests/metrics/test_samples.py`` holds it
    to that classifier's power on close pairs of distributions. Minibatches are drawn
    with replacement from each fold's rows by a ``torch.Generator`` seeded with ``seed``.

    ``extra``: ``fold_accuracies``, ``n_per_class``, ``binomial_se``, ``classifier``.

    References:
        D. Lopez-Paz, M. Oquab, "Revisiting classifier two-sample tests", ICLR 2017;
        X. Glorot, Y. Bengio, "Understanding the difficulty of training deep feedforward
        neural networks", AISTATS 2010; D. P. Kingma, J. Ba, "Adam", ICLR 2015.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> far = c2st(rng.normal(size=(200, 2)) + [4.0, 0.0], rng.normal(size=(300, 2)))
        >>> far.value > 0.9, far.extra["n_per_class"]
        (True, 200)
    """
    x, y = _pair(X, Y)
    folds = int(folds)
    if folds < 2:
        raise ValueError(f"c2st: folds must be >= 2; got {folds}")
    x, y = _balanced(x, y, folds, seed)
    n = x.shape[0]
    z = np.concatenate([x, y])
    labels = np.concatenate([np.zeros(n, dtype=np.int64), np.ones(n, dtype=np.int64)])
    fit, val, test, scaled = _fold_splits(z, labels, folds, seed)
    zt = torch.from_numpy(np.stack(scaled).astype(np.float32))
    yt = torch.from_numpy(labels.astype(np.float32))
    gen = torch.Generator().manual_seed(seed)
    net = _train_fold_mlps(zt, yt, fit, val, gen)
    accuracies = _held_out_accuracies(net, zt, yt, test)
    value, se = mean_se(np.asarray(accuracies))
    binomial = math.sqrt(max(value * (1.0 - value), 0.0) / (2 * n))
    return SampleScore(value, se, {"fold_accuracies": accuracies, "n_per_class": n,
                                   "binomial_se": binomial, "classifier": C2ST_CLASSIFIER})


def _balanced(x: np.ndarray, y: np.ndarray, folds: int, seed: int
              ) -> tuple[np.ndarray, np.ndarray]:
    """``x`` and ``y`` with the larger subsampled (without replacement, ``x`` first, from
    ``np.random.default_rng(seed)``) to the size of the smaller, which must have at least
    ``folds`` rows."""
    n = min(x.shape[0], y.shape[0])
    if n < folds:
        raise ValueError(f"c2st: needs at least folds={folds} rows in each sample; got {n}")
    rng = np.random.default_rng(seed)
    if x.shape[0] > n:
        x = x[np.sort(rng.choice(x.shape[0], n, replace=False))]
    if y.shape[0] > n:
        y = y[np.sort(rng.choice(y.shape[0], n, replace=False))]
    return x, y


def _fold_splits(z: np.ndarray, labels: np.ndarray, folds: int, seed: int
                 ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray],
                            list[np.ndarray]]:
    """Per stratified fold: the rows to fit on, the rows of early stopping (a stratified
    ``_C2ST_VAL_FRACTION`` of the training fold), the held-out rows, and all of ``z``
    standardized by the training fold."""
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    fit, val, test, scaled = [], [], [], []
    for train_idx, test_idx in splitter.split(z, labels):
        n_val = max(2, round(_C2ST_VAL_FRACTION * len(train_idx)))  # one row per class
        f, v = train_test_split(train_idx, test_size=n_val, random_state=seed,
                                stratify=labels[train_idx])
        fit.append(f)
        val.append(v)
        test.append(test_idx)
        centre, scale = z[train_idx].mean(axis=0), z[train_idx].std(axis=0)
        scaled.append((z - centre) / np.where(scale > 0.0, scale, 1.0))
    return fit, val, test, scaled


def _held_out_accuracies(net: _FoldMLPs, zt: torch.Tensor, yt: torch.Tensor,
                         test: list[np.ndarray]) -> list[float]:
    """Each fold's network's accuracy on its own held-out rows ``test[k]``."""
    test_idx, test_mask = _padded(test)
    with torch.no_grad():
        logits = net.logits(zt[torch.arange(len(test))[:, None], test_idx])
        right = ((logits > 0).float() == yt[test_idx]) & test_mask
    return (right.sum(dim=1) / test_mask.sum(dim=1)).tolist()
