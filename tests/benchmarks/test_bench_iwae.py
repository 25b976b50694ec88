"""IWAE evaluation with K = 5000 samples per row (the VAE's ``score_samples``), group
``iwae-k5000``: the batched evaluation, which packs rows x samples into chunks of
``VAE.eval_decoder_rows`` decoder rows, beside a plain per-example loop (each row's 5000
draws in one decoder call of 5000 rows, then the row's logsumexp), on the model of the
default suite's digits cell (64-D, 17 levels, categorical decoder, hidden 64, latent 8).

The batched entry also measures, right after its timed rounds and on the same threads, the
machine's float32 matrix-product rate (:func:`densbench.metrics.timing.gemm_rate`) and the
decoder's rate (its Linear layers' ``2 x in x out`` flops per row over the time of one
forward pass on a chunk), and records both, their ratio ``decoder_fraction_of_gemm`` (at
the default chunk and at 65,536-row chunks for contrast) and the decoder flops per second
of the whole evaluation (``eval_decoder_flops_per_s``: the likelihood, the encoder and the
logsumexp included).
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

import densbench as db
from densbench.data.transforms import prepare
from densbench.metrics.timing import gemm_rate

K = 5000
#: Rows scored per round (each costs K decoder rows).
N_ROWS = 8


@pytest.fixture(scope="module")
def vae_digits():
    p = prepare(db.data.load("digits", seed=0), discrete_native=True, seed=0)
    # the cost of evaluation does not depend on how well the model is trained
    est = db.estimators.make("vae", levels=17, max_epochs=2, k_eval=K,
                             random_state=0).fit(p.train[:512])
    return est, p.test[:N_ROWS]


def decoder_flops_per_row(est) -> int:
    return 2 * sum(m.in_features * m.out_features for m in est.module_.decoder
                   if isinstance(m, torch.nn.Linear))


def decoder_rate(est, rows: int, repeats: int = 5) -> float:
    """Flops per second of the decoder's forward pass on one chunk of ``rows`` rows."""
    z = torch.randn((rows, int(est.latent_dim)), generator=torch.Generator().manual_seed(0))
    best = math.inf
    with torch.no_grad():
        est.module_.decoder(z)  # warm-up
        for _ in range(repeats):
            t0 = time.perf_counter()
            est.module_.decoder(z)
            best = min(best, time.perf_counter() - t0)
    return decoder_flops_per_row(est) * rows / best


def per_example_loop(est, X: np.ndarray) -> np.ndarray:
    """The plain evaluation: one row at a time, its K draws in one decoder call."""
    Xt = est._to_model_tensor(X)
    gen = torch.Generator().manual_seed(0)
    out = np.empty(len(X))
    with torch.no_grad():
        for i in range(len(X)):
            lw = est.module_.log_weights(Xt[i:i + 1], K, gen).double()
            out[i] = float(torch.logsumexp(lw, -1)[0]) - math.log(K)
    return out + est.log_jacobian_


@pytest.mark.parametrize("impl", ["batched", "loop"])
def test_iwae_k5000(benchmark, impl, vae_digits):
    """The batched evaluation beside the per-example loop, and the decoder's fraction of
    the matrix-product rate measured in this process (figures: docs/speed.md). A warm-up
    round each: the first call of either pays for its fresh activation buffers."""
    est, X = vae_digits
    benchmark.group = "iwae-k5000"
    benchmark.extra_info["rows"] = len(X)
    if impl == "batched":
        got = benchmark.pedantic(est.score_samples, args=(X,), rounds=5, iterations=1,
                                 warmup_rounds=1,
                                 setup=est._diag_cache.clear)  # no remembered draws
    else:
        got = benchmark.pedantic(per_example_loop, args=(est, X), rounds=5, iterations=1,
                                 warmup_rounds=1)
    assert got.shape == (len(X),) and np.isfinite(got).all()
    stats = getattr(benchmark, "stats", None)
    best = None if stats is None else float(stats.stats.min)
    if best is not None:
        benchmark.extra_info["rows_per_s"] = len(X) / best
        benchmark.extra_info["eval_decoder_flops_per_s"] = (
            len(X) * K * decoder_flops_per_row(est) / best)
    if impl == "batched":
        gemm = gemm_rate(torch.float32)
        rate = decoder_rate(est, est.eval_decoder_rows)
        benchmark.extra_info.update({
            "eval_decoder_rows": est.eval_decoder_rows,
            "gemm_float32_flops_per_s": gemm, "decoder_flops_per_s": rate,
            "decoder_fraction_of_gemm": rate / gemm,
            "decoder_fraction_of_gemm_65536_rows": decoder_rate(est, 65536) / gemm})
