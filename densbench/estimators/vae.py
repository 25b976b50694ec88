"""Variational autoencoder (VAE) with importance-weighted (IWAE) evaluation.

The model is ``p(x) = integral of p(x | z) N(z; 0, I) dz`` with a decoder ``p(x | z)`` and
an encoder ``q(z | x) = N(mu(x), diag sigma^2(x))``, MLPs or, for images, convolutional
networks (:mod:`densbench.estimators.vae_networks`). It is trained by
the ELBO (Kingma & Welling) or the IWAE bound with ``k_train`` samples (Burda et al.) on
the shared training loop (:class:`~densbench.estimators.training.TorchDensityEstimator`).

``score_samples`` returns the importance-weighted estimate

    log (1/K) sum_k p(x, z_k) / q(z_k | x),   z_k ~ q(z | x),   K = k_eval,

a Monte-Carlo estimate whose expectation is a lower bound of log p(x) that tightens as K
grows (``LikelihoodKind.STOCHASTIC_BOUND``). The K samples are drawn in chunks of at most
``eval_decoder_rows`` decoder rows (rows of X times samples; fewer where a decoded row's
activations are large), so memory stays bounded for any K; the log-weights are computed
in float32 and combined by logsumexp in float64 (a row keeps its K log-weights, K
float64 values, for the standard error and the diagnostics). The noise comes from a
``torch.Generator`` seeded from ``random_state`` at each call, so the same call gives the
same numbers; every row of a call gets its own independent draws (a row's value therefore
depends on its position in X, not only on the row).

Discrete data: with ``levels`` set, the data are raw integer levels ``0 .. levels - 1``
(no standardization) and the decoder is a distribution over the levels (categorical, the
discretized logistic of PixelCNN++, or Bernoulli for two levels): the figure is then a
bound on the EXACT discrete log-probability, in nats per row. Continuous data
are standardized and modelled by a Gaussian decoder (the standardization's log-Jacobian is
added back, so scores are in the units of the data given to ``fit``).
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from densbench.data.base import channels_first
from densbench.estimators.base import LikelihoodKind
from densbench.estimators.params import Interval, Options, ParamConstraints, Satisfies, When
from densbench.estimators.training import TorchDensityEstimator, resolve_device
from densbench.estimators.vae_networks import (
    LIKELIHOODS,
    NETWORKS,
    build_module,
    linear_gaussian_module,
)

__all__ = ["MC_SE_BLOCKS", "VAE", "log_mean_exp_jackknife_se"]

_DECODERS = ("auto", *LIKELIHOODS)
_DISCRETE_DECODERS = tuple(name for name, lik in LIKELIHOODS.items() if lik.discrete)
_VARIANCES = ("dimension", "output")
_OBJECTIVES = ("elbo", "iwae")
#: Blocks of draws behind the jackknife standard error of the IWAE estimate (every draw
#: its own block when K is smaller): 50 blocks keep the SE in line with the spread over
#: independent evaluations of the digits VAE from K in the thousands down to a handful of
#: effective draws, where far fewer blocks (10) leave it off at large K.
MC_SE_BLOCKS = 50
#: The K values reported by ``diagnostics`` (those above ``k_eval`` are left out).
DIAGNOSTIC_KS = (1, 10, 100, 1000, 5000)


def _is_image_shape(value: Any) -> bool:
    return isinstance(value, tuple | list) and len(value) in (2, 3) and all(
        isinstance(v, int | np.integer) and not isinstance(v, bool) and v >= 1
        for v in value)


def log_mean_exp_jackknife_se(log_weights: torch.Tensor,
                              blocks: int = MC_SE_BLOCKS) -> torch.Tensor:
    """Delete-a-block jackknife standard error of ``log mean exp(log_weights)`` over the
    last axis (the K draws of one row), shape (rows,); NaN with fewer than two draws.

    The draws are cut into consecutive blocks of ``ceil(K / min(blocks, K))`` draws (the
    last may be shorter);
    the estimate without block j is ``log((S - S_j) / (K - m_j))`` from the block sums
    S_j, and the jackknife variance is ``(B - 1) / B * sum_j (L_-j - mean)^2``.

    Why not the delta method, ``sd(w) / (sqrt(K) mean(w))``: it linearizes the logarithm
    around a mean of weights whose distribution is heavy-tailed. When the largest weights
    carry much of the sum, leaving them out lowers the log-mean far more than the linear
    term says (the estimate is skewed: an unlucky set of draws misses the tail and lands
    well below), and the sample variance of such weights is itself small in most draws.
    So the delta method falls below the spread over independent evaluations, the further
    the smaller the effective sample size of the weights, where the jackknife over 50
    blocks stays close to that spread at small and large K alike. The jackknife
    variance errs on the large side (Efron and Stein 1981), which offsets what the draws
    at hand cannot show of the tail. Cost: one log-sum-exp per block, nothing beside the
    K decoder passes.

    References:
        B. Efron and C. Stein, "The jackknife estimate of variance", Annals of Statistics
        9(3), 1981; S. Nowozin, "Debiasing evidence approximations: on
        importance-weighted autoencoders and jackknife variational inference", ICLR 2018.

    Example:
        >>> lw = torch.log(torch.tensor([[1.0, 1.0, 1.0, 1.0], [4.0, 0.0, 0.0, 0.0]]))
        >>> log_mean_exp_jackknife_se(lw, blocks=4)   # equal weights: no spread
        tensor([0., inf])
    """
    k = log_weights.shape[-1]
    if min(int(blocks), k) < 2:
        return torch.full(log_weights.shape[:-1], math.nan, dtype=log_weights.dtype,
                          device=log_weights.device)
    m = -(-k // min(int(blocks), k))  # draws per block
    b = -(-k // m)                    # blocks; the last one is filled up with zero weights
    padded = F.pad(log_weights, (0, b * m - k), value=-math.inf)
    block_sums = torch.logsumexp(padded.unflatten(-1, (b, m)), -1)
    sizes = torch.full((b,), m, dtype=log_weights.dtype, device=log_weights.device)
    sizes[-1] = k - m * (b - 1)
    total = torch.logsumexp(block_sums, -1, keepdim=True)
    # log of the mean without block j; -inf where block j holds all of the sum (to
    # rounding): then nothing is known of the spread and the SE is infinite
    without = total + torch.log(-torch.expm1(block_sums - total)) - torch.log(k - sizes)
    spread = (without - without.mean(-1, keepdim=True)).square().sum(-1)
    se = torch.sqrt((b - 1) / b * spread)
    return torch.where(torch.isinf(without).any(-1), math.inf, se)


class VAE(TorchDensityEstimator):
    """Variational autoencoder (MLP or convolutional), IWAE-K bound as score (stochastic).

    Generative model ``z ~ N(0, I_latent_dim)``, ``x ~ p(x | z)`` and an encoder
    ``q(z | x) = N(mu(x), diag sigma^2(x))``. Networks (``network``):

    - ``'mlp'``: MLPs of ``n_layers`` hidden layers of ``hidden`` SiLU units
      (``n_layers=0``: linear maps), every pixel an input like any other (Burda et al.'s
      MNIST models);
    - ``'conv'`` (images only: ``image_shape`` from the run, H * W * C = d): a 3x3
      convolution of ``channels`` maps and up to two stride-2 convolutions of
      ``2 * channels`` (28x28 -> 7x7, 8x8 -> 2x2), then ``n_layers`` dense layers to z; the
      decoder mirrors it with transposed convolutions
      (:mod:`densbench.estimators.images.conv_vae`).

    Decoder likelihoods (``decoder``):

    - ``'gaussian'`` (continuous data, standardized first): ``N(x; m(z), diag v)`` with
      the variance ``v`` per dimension (``decoder_variance='dimension'``, a learned
      vector) or an output of the decoder (``'output'``, per example and dimension);
    - ``'bernoulli'``: binary data (``levels`` 2 or None with 0/1 data);
    - ``'categorical'``: a softmax over the ``levels`` for each dimension;
    - ``'logistic'``: the discretized logistic of PixelCNN++ (Salimans et al. 2017) over
      the ``levels`` of each dimension, two outputs per dimension where the categorical
      has ``levels`` (8-bit images);
    - ``'auto'``: categorical when ``levels`` > 2, Bernoulli when ``levels`` == 2,
      otherwise Gaussian.

    Training minimizes the negative ELBO (``objective='elbo'``: ``k_train`` reconstruction
    samples and the analytic KL) or the negative IWAE bound with ``k_train`` samples
    (``'iwae'``). Early stopping uses a cheap validation score: the IWAE estimate with
    ``k_val`` (10) samples under a fixed seed (the same draws at every epoch).

    ``score_samples`` returns the IWAE estimate with ``k_eval`` samples per row (see the
    module docstring): evaluation costs ``k_eval`` decoder passes per row (5000 by
    default), in chunks of ``eval_decoder_rows`` decoder rows, thousands of times the
    cost of one ELBO pass (the runner scores only the test split with it).
    ``diagnostics`` reports,
    from ONE set of ``k_eval`` draws per row (the same draws as ``score_samples``): the
    ELBO estimate (the mean log-weight), the IWAE estimates at K = 1, 10, 100, 1000, 5000
    from nested prefixes of the draws (those with K > ``k_eval`` left out), the effective
    sample size of the normalized weights and the Monte-Carlo standard error of the
    ``k_eval``-sample estimate (a jackknife over blocks of the draws,
    :func:`log_mean_exp_jackknife_se`).

    The Gaussian decoder starts with a small variance (``vae_networks.INIT_LOG_VAR``,
    standardized units) so that it uses z from the start; started at the data variance, training
    settles in the collapsed solution (a Gaussian, z ignored) on eight_gaussians,
    grid_5x5 and banana. The defaults are tuned for banana, eight_gaussians, funnel,
    checkerboard, grid_5x5, gmm10 and digits (17 levels, categorical).

    Parameters:
        latent_dim: dimension of z.
        hidden: width of the hidden (dense) layers of the encoder and the decoder.
        n_layers: hidden dense layers of each network (0: linear maps).
        network: ``'mlp'`` or ``'conv'`` (images).
        channels: feature maps of the first convolution (``network='conv'``).
        image_shape: the rows' image shape (H, W) or (H, W, C), given by the run for an
            image dataset (None: not images).
        decoder: ``'auto'``, ``'gaussian'``, ``'bernoulli'``, ``'categorical'`` or
            ``'logistic'``.
        decoder_variance: Gaussian decoder variance, ``'dimension'`` or ``'output'``.
        levels: number of levels of discrete data (None: continuous data). With levels the
            data are raw integer levels and the score bounds the discrete log-probability.
        objective: ``'elbo'`` or ``'iwae'``.
        k_train: samples per example in the training objective.
        k_eval: samples per example of the IWAE estimate returned by ``score_samples``.
        max_epochs, batch_size, lr, patience, time_budget_s, device, random_state: the
            shared training loop's (:func:`densbench.estimators.training.train`);
            ``random_state`` also seeds the evaluation draws.

    Attributes:
        module_ (encoder, decoder and likelihood), decoder_ (the resolved likelihood),
        image_chw_ (the images' (C, H, W), None when not given),
        levels_ (levels of a discrete decoder, else None), shift_, scale_
        (standardization; identity for discrete data), log_jacobian_, training_, epochs_,
        best_epoch_, stopped_.

    References:
        D. P. Kingma and M. Welling, "Auto-encoding variational Bayes", ICLR 2014;
        Y. Burda, R. Grosse and R. Salakhutdinov, "Importance weighted autoencoders",
        ICLR 2016; T. Salimans, A. Karpathy, X. Chen and D. P. Kingma, "PixelCNN++",
        ICLR 2017 (the discretized logistic); M. E. Tipping and C. M. Bishop,
        "Probabilistic principal component analysis", JRSS B 61(3), 1999 (the
        linear-Gaussian case, used in the tests).

    Example:
        >>> import numpy as np, densbench as db
        >>> X = np.random.default_rng(0).normal(size=(500, 2))
        >>> est = db.estimators.make("vae", latent_dim=2, hidden=16, max_epochs=3,
        ...                          k_eval=100).fit(X)
        >>> s = est.score_samples(X[:3])
        >>> s.shape, bool(np.array_equal(s, est.score_samples(X[:3])))
        ((3,), True)
        >>> sorted(est.diagnostics(X[:3]))[:3]
        ['elbo', 'ess', 'iwae_k1']
        >>> images = np.random.default_rng(0).integers(0, 256, size=(64, 16)).astype(float)
        >>> conv = db.estimators.make("vae", network="conv", image_shape=(4, 4),
        ...                           levels=256, decoder="logistic", channels=4, hidden=8,
        ...                           max_epochs=1, k_eval=10).fit(images)
        >>> conv.score_samples(images[:2]).shape
        (2,)
    """

    likelihood: ClassVar[LikelihoodKind] = LikelihoodKind.STOCHASTIC_BOUND
    can_sample: ClassVar[bool] = True
    discrete_native: ClassVar[bool] = True
    image_model: ClassVar[bool] = True
    #: Decoder rows (rows of X times samples) per evaluation chunk: bounds the memory for
    #: any K and any number of rows, and sets the speed: a chunk whose activations stay in
    #: cache keeps the decoder near the matrix-product rate, where much larger chunks
    #: wait on memory (figures: benchmark group iwae-k5000, docs/speed.md).
    eval_decoder_rows: ClassVar[int] = 1024
    #: Samples of the early-stopping IWAE estimate.
    k_val: ClassVar[int] = 10
    # one scoring call covers all rows (chunked inside), so the draws follow one stream
    score_batch_rows: ClassVar[int | None] = None
    #: ``score_samples`` keeps the diagnostics of its draws for this many recent inputs
    #: (of at most ``diag_cache_rows`` rows), so that ``diagnostics`` on a scored input
    #: (the runner scores the test split, then asks for its diagnostics) costs nothing.
    diag_cache_size: ClassVar[int] = 4
    diag_cache_rows: ClassVar[int] = 100_000

    training_defaults: ClassVar[dict[str, Any]] = (
        TorchDensityEstimator.training_defaults
        | {"max_epochs": 500, "batch_size": 128, "lr": 3e-3})

    def __init__(self, *, latent_dim: int = 8, hidden: int = 64, n_layers: int = 2,
                 network: str = "mlp", channels: int = 32,
                 image_shape: tuple[int, ...] | None = None, decoder: str = "auto",
                 decoder_variance: str = "output", levels: int | None = None,
                 objective: str = "iwae", k_train: int = 5, k_eval: int = 5000,
                 **training: Any) -> None:
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.n_layers = n_layers
        self.network = network
        self.channels = channels
        self.image_shape = image_shape
        self.decoder = decoder
        self.decoder_variance = decoder_variance
        self.levels = levels
        self.objective = objective
        self.k_train = k_train
        self.k_eval = k_eval
        self._store_training(training)

    @classmethod
    def test_params(cls) -> dict[str, Any]:
        return {"latent_dim": 2, "hidden": 16, "max_epochs": 5, "k_train": 2,
                "k_eval": 64, "network": "conv", "channels": 4, "image_shape": (4, 4),
                "levels": 4}

    _parameter_constraints: ClassVar[ParamConstraints] = {
        "latent_dim": [Interval(int, 1, None)],
        "hidden": [Interval(int, 1, None)],
        "n_layers": [Interval(int, 0, None)],
        "network": [Options(*NETWORKS)],
        "channels": [Interval(int, 1, None)],
        "image_shape": [Satisfies(_is_image_shape, "(H, W) or (H, W, C) of ints >= 1"),
                        None],
        "decoder": [Options(*_DECODERS)],
        "decoder_variance": [Options(*_VARIANCES)],
        "levels": [Interval(int, 2, None), None],
        "objective": [Options(*_OBJECTIVES)],
        "k_train": [Interval(int, 1, None)],
        "k_eval": [Interval(int, 1, None)],
    }

    _joint_constraints: ClassVar[tuple[When, ...]] = (
        When("levels", Interval(int, 2, None), "decoder",
             [Options("auto", *_DISCRETE_DECODERS)],
             f"one of 'auto', {', '.join(map(repr, _DISCRETE_DECODERS))} when levels is "
             "set (discrete data)"),
        When("decoder", Options("categorical", "logistic"), "levels",
             [Interval(int, 2, None)], "an int >= 2 for decoder='categorical' or 'logistic'"),
        When("network", Options("conv"), "image_shape",
             [Satisfies(_is_image_shape, "")],
             "the images' (H, W) or (H, W, C) for network='conv': it reads rows as images "
             "(an image dataset gives it; network='mlp' reads any rows)"),
        When("decoder", Options("bernoulli"), "levels", [Interval(int, 2, 2), None],
             "2 or None for decoder='bernoulli'"),
    )

    # -- hyperparameters ---------------------------------------------------------------

    def _resolve_decoder(self) -> tuple[str, int | None]:
        lv = None if self.levels is None else int(self.levels)
        if self.decoder != "auto":
            kind = self.decoder
        elif lv is None:
            kind = "gaussian"
        else:
            kind = "bernoulli" if lv == 2 else "categorical"
        if kind == "bernoulli":
            lv = 2
        return kind, lv if kind != "gaussian" else None

    def _standardize(self) -> bool:
        return self.decoder_ == "gaussian"

    def _check_levels(self, X: np.ndarray, what: str = "X") -> None:
        if self.levels_ is None:
            return
        L = self.levels_
        bad = (X != np.round(X)) | (X < 0) | (X > L - 1)
        if bad.any():
            i, j = (int(v) for v in np.argwhere(bad)[0])
            raise ValueError(f"{self.name}: {what} must hold integer levels 0..{L - 1} for "
                             f"the {self.decoder_} decoder; got {X[i, j]!r} at row {i}, "
                             f"column {j}")

    # -- fitting -----------------------------------------------------------------------
    def _image_chw(self, d: int) -> tuple[int, int, int] | None:
        """(C, H, W) of ``image_shape``, checked against the data's width ``d``."""
        if self.image_shape is None:  # network='mlp' (a joint constraint refuses conv)
            return None
        chw = channels_first(tuple(self.image_shape))
        if chw[0] * chw[1] * chw[2] != d:
            raise ValueError(f"{self.name}: image_shape {tuple(self.image_shape)} holds "
                             f"H*W*C = {chw[0] * chw[1] * chw[2]} values but X has {d} "
                             "columns")
        return chw

    def _fit(self, X: np.ndarray, X_val: np.ndarray | None) -> None:
        self._diag_cache: OrderedDict[str, dict[str, np.ndarray]] = OrderedDict()
        self.image_chw_ = self._image_chw(X.shape[1])
        self.decoder_, self.levels_ = self._resolve_decoder()
        self._check_levels(X)
        if X_val is not None:
            self._check_levels(X_val, "X_val")
        super()._fit(X, X_val)

    def _build(self, X: torch.Tensor) -> nn.Module:
        return build_module(int(X.shape[1]), network=self.network, chw=self.image_chw_,
                            latent_dim=int(self.latent_dim), hidden=int(self.hidden),
                            n_layers=int(self.n_layers), channels=int(self.channels),
                            decoder=self.decoder_, levels=int(self.levels_ or 2),
                            variance=self.decoder_variance)

    def _decoder_rows(self) -> int:
        """Decoder rows per evaluation chunk: ``eval_decoder_rows``, fewer where that many
        decoded rows' activations would pass ``eval_batch_bytes`` (a 256-way categorical
        of a 784-pixel image holds about 2.4 MB a row)."""
        per_row = 4 * int(self.module_.decoder.activation_floats)
        return max(1, min(int(self.eval_decoder_rows), int(self.eval_batch_bytes) // per_row))

    def _loss(self, batch: torch.Tensor) -> torch.Tensor:
        k = int(self.k_train)
        if self.objective == "elbo":
            return -self.module_.elbo(batch, k, self._noise).mean()
        lw = self.module_.log_weights(batch, k, self._noise)
        return -(torch.logsumexp(lw, -1) - math.log(k)).mean()

    def _val_loglik(self, batch: torch.Tensor) -> torch.Tensor:
        # a cheap, fixed-noise IWAE estimate: the same draws at every epoch
        gen = self._generator(offset=2)
        return torch.as_tensor(self._iwae_stats(batch, self.k_val, gen, stats=False)[0])

    # -- evaluation --------------------------------------------------------------------
    def _log_weight_chunks(self, Xt: torch.Tensor, k: int, gen: torch.Generator):
        """Yield (row slice, log-weights (rows, k) float64) over chunks of rows."""
        chunk = self._decoder_rows()
        rows = max(1, chunk // k)
        step = min(k, chunk)
        with torch.no_grad():
            for i in range(0, Xt.shape[0], rows):
                x = Xt[i:i + rows]
                lw = torch.empty((x.shape[0], k), dtype=torch.float64, device=Xt.device)
                for j in range(0, k, step):
                    m = min(step, k - j)
                    lw[:, j:j + m] = self.module_.log_weights(x, m, gen).double()
                yield slice(i, i + x.shape[0]), lw

    def _iwae_stats(self, Xt: torch.Tensor, k: int, gen: torch.Generator, *,
                    stats: bool) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The k-sample IWAE estimate per row (float64) and, with ``stats``, the
        diagnostics from the same draws."""
        n = Xt.shape[0]
        est = np.empty(n, dtype=np.float64)
        ks = [kk for kk in DIAGNOSTIC_KS if kk <= k]
        out = ({f"iwae_k{kk}": np.empty(n) for kk in ks}
               | {name: np.empty(n) for name in ("elbo", "ess", "iwae_mc_se")}) if stats else {}
        for sl, lw in self._log_weight_chunks(Xt, k, gen):
            lse = torch.logsumexp(lw, -1)
            est[sl] = (lse - math.log(k)).cpu().numpy()
            if not stats:
                continue
            for kk in ks:
                out[f"iwae_k{kk}"][sl] = (torch.logsumexp(lw[:, :kk], -1)
                                          - math.log(kk)).cpu().numpy()
            out["elbo"][sl] = lw.mean(-1).cpu().numpy()
            w = torch.exp(lw - lse[:, None])             # normalized weights
            ess = 1.0 / w.square().sum(-1)
            out["ess"][sl] = ess.cpu().numpy()
            out["iwae_mc_se"][sl] = log_mean_exp_jackknife_se(lw).cpu().numpy()
        return est, out

    def _to_model_tensor(self, X: np.ndarray) -> torch.Tensor:
        self._check_levels(X)
        return self._to_tensor(X)

    def _cache_key(self, X: np.ndarray) -> str:
        """A fingerprint of (X, the weights, the evaluation settings)."""
        h = hashlib.blake2b(digest_size=20)
        h.update(repr((X.shape, int(self.k_eval), self._seed(),
                       self._decoder_rows())).encode())
        h.update(np.ascontiguousarray(X, dtype=np.float64).tobytes())
        for t in self.module_.state_dict().values():
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    def _stats(self, X: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The estimate and the diagnostics of ``k_eval`` draws per row (remembered)."""
        cache = getattr(self, "_diag_cache", None)
        if cache is None:
            cache = self._diag_cache = OrderedDict()
        key = self._cache_key(X)
        if key in cache:
            cache.move_to_end(key)
            stats = cache[key]
            return stats[f"iwae_k{int(self.k_eval)}"], stats
        est, stats = self._iwae_stats(self._to_model_tensor(X), int(self.k_eval),
                                      self._generator(), stats=True)
        stats[f"iwae_k{int(self.k_eval)}"] = est  # the same draws, the same numbers
        if X.shape[0] <= self.diag_cache_rows:
            cache[key] = stats
            while len(cache) > self.diag_cache_size:
                cache.popitem(last=False)
        return est, stats

    def _score_samples(self, X: np.ndarray) -> np.ndarray:
        if X.shape[0] > self.diag_cache_rows:  # too large to remember: no diagnostics
            est, _ = self._iwae_stats(self._to_model_tensor(X), int(self.k_eval),
                                      self._generator(), stats=False)
        else:
            est, _ = self._stats(X)
        return est + self.log_jacobian_

    def _log_prob(self, batch: torch.Tensor) -> torch.Tensor:
        est, _ = self._iwae_stats(batch, int(self.k_eval), self._generator(), stats=False)
        return torch.as_tensor(est)

    def _diagnostics(self, X: np.ndarray) -> dict[str, tuple[np.ndarray, str]]:
        """Per-example figures from ONE set of ``k_eval`` draws per row, the draws of
        ``score_samples`` (remembered for recently scored inputs, else drawn again):

        - ``elbo``: the mean log-weight (a Monte-Carlo estimate of the ELBO);
        - ``iwae_k1`` .. ``iwae_k5000``: the IWAE estimates from nested prefixes of the
          draws (K above ``k_eval`` left out), and ``iwae_k<k_eval>`` (= ``score_samples``);
        - ``ess``: the effective sample size 1 / sum w_k^2 of the normalized weights;
        - ``iwae_mc_se``: the Monte-Carlo standard error (nats) of the ``k_eval``-sample
          estimate, a delete-a-block jackknife over ``MC_SE_BLOCKS`` blocks of the draws
          (:func:`log_mean_exp_jackknife_se`; NaN for ``k_eval`` = 1).
        """
        _, stats = self._stats(X)
        units = {"ess": "samples", "iwae_mc_se": "nats"}
        out: dict[str, tuple[np.ndarray, str]] = {}
        for key, values in stats.items():
            if key in units:
                out[key] = (values.copy(), units[key])
            else:  # log-likelihoods: in the units of the data given to fit
                out[key] = (values + self.log_jacobian_, "loglik")
        return out

    # -- sampling ----------------------------------------------------------------------
    def _sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        if n == 0:  # the base class's reshape(n, -1) cannot infer the width of 0 rows
            return np.empty((0, self.n_features_in_), dtype=np.float64)
        return super()._sample(n, rng)

    def _sample_standardized(self, n: int, generator: torch.Generator) -> torch.Tensor:
        out = []
        step = self._decoder_rows()
        for i in range(0, n, step):
            m = min(step, n - i)
            z = torch.randn((m, int(self.latent_dim)), generator=generator,
                            device=self.device_)
            out.append(self.module_.sample_x(z, generator))
        return torch.cat(out)

    # -- a VAE with known parameters (for tests) ---------------------------------------
    @classmethod
    def from_linear_gaussian(cls, W: Any, b: Any, noise_var: Any, enc_weight: Any,
                             enc_bias: Any, enc_std: Any, **params: Any) -> VAE:
        """A fitted VAE with given parameters, no training: a linear Gaussian decoder
        ``p(x | z) = N(x; W z + b, diag noise_var)`` (probabilistic PCA when ``noise_var``
        is a scalar: ``p(x) = N(x; b, W W^T + noise_var I)``) and a linear encoder
        ``q(z | x) = N(enc_weight x + enc_bias, diag enc_std^2)`` (a constant standard
        deviation). Works in the units of the data (no standardization).

        ``W`` is (d, q), ``b`` (d,), ``noise_var`` a scalar or (d,), ``enc_weight``
        (q, d), ``enc_bias`` (q,), ``enc_std`` a scalar or (q,); ``params`` are further
        hyperparameters (``k_eval``, ``random_state``, ``device``).
        """
        W = np.atleast_2d(np.asarray(W, dtype=np.float64))
        d, q = W.shape
        b = np.broadcast_to(np.asarray(b, dtype=np.float64), (d,))
        noise_var = np.broadcast_to(np.asarray(noise_var, dtype=np.float64), (d,))
        A = np.asarray(enc_weight, dtype=np.float64).reshape(q, d)
        c = np.broadcast_to(np.asarray(enc_bias, dtype=np.float64), (q,))
        s = np.broadcast_to(np.asarray(enc_std, dtype=np.float64), (q,))
        if not (noise_var > 0).all() or not (s > 0).all():
            raise ValueError(f"{cls.name}: noise_var and enc_std must be > 0")
        est = cls(**{**params, "latent_dim": q, "n_layers": 0, "decoder": "gaussian",
                     "decoder_variance": "dimension", "levels": None})
        cls.check_params(est.get_params(deep=False))
        est.n_features_in_, est.data_scale_ = d, 1.0
        est.device_ = resolve_device(est.device)
        est.decoder_, est.levels_ = "gaussian", None
        est.shift_, est.scale_ = np.zeros(d), np.ones(d)
        est.log_jacobian_ = 0.0
        est.module_ = linear_gaussian_module(W, b, noise_var, A, c, s).to(est.device_).eval()
        return est
