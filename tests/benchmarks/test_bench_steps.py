"""One training step of each neural estimator at the default suite's settings, against the
arithmetic floor of that step on this machine; eager, and compiled where asked.

Each entry fits the estimator for one epoch on its dataset of the default suite (the
suite's hyperparameters for that dataset), then times one optimizer step on one training
minibatch through the estimator's own training hooks (loss, backward pass, clipping, Adam:
what the shared loop runs per batch), one PyTorch thread. ``extra_info`` holds:

- ``floor_ms``: the floating-point operations of the step's matrix products and
  convolutions, forward and backward (PyTorch's ``FlopCounterMode``), at the 1-thread
  float32 matrix-product rate measured right after (:func:`gemm_rate`); element-wise work
  is not counted, so no step reaches it;
- ``x_floor``: the best round's time over that floor.

``DENSBENCH_BENCH_COMPILE=1`` adds a compiled entry (``compile=True``, timed after its
compilation, which is recorded as ``compile_seconds``) for the estimators that take it:
its first compilation takes tens of seconds to minutes per entry, so it is not run by
default. Results of one such run are in docs/speed.md.
"""

from __future__ import annotations

import os

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import densbench as db
from densbench.data.transforms import prepare
from densbench.metrics.timing import gemm_rate
from densbench.runner.cell import _dataset
from densbench.runner.plan import builtin_suite

THREADS = 1
#: Each neural estimator on the dataset where the default run spends the most of its time
#: (and NSF on a 2-D set too: its step there is the furthest from the floor).
PAIRS = [("nsf", "gmm50"), ("nsf", "hmm_seq"), ("nsf", "eight_gaussians"),
         ("maf", "gmm50"), ("realnvp", "digits"), ("made", "gmm50"), ("rnn_ar", "gmm50"),
         ("diffusion", "digits"), ("vae", "digits")]
MODES = ["eager"] + (["compiled"] if os.environ.get("DENSBENCH_BENCH_COMPILE") == "1"
                     else [])


def _fitted(name: str, dataset: str, compile: bool):
    (cell,) = [c for c in builtin_suite("default").cells()
               if (c.estimator.name, c.dataset.name, c.seed) == (name, dataset, 0)]
    cls = db.estimators.get(name)
    ds = _dataset(cell)
    prep = prepare(ds, discrete_native=cls.discrete_native, logit_space=cls.logit_space,
                   seed=0, redraws_binarization=cls.redraws_binarization)
    params = {**cls.run_params(ds, seed=0, device="cpu"), **cell.estimator.params,
              "max_epochs": 1, "compile": compile}
    est = db.estimators.make(name, **params).fit(prep.train)
    batch = est._to_tensor(prep.train[:int(est.batch_size)])
    return est, batch


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("name", "dataset"), PAIRS, ids=[f"{a}-{b}" for a, b in PAIRS])
def test_training_step(benchmark, name, dataset, mode):
    est, batch = _fitted(name, dataset, compile=mode == "compiled")
    est.module_.train()
    est._noise = est._generator(offset=1)  # the training's own draws (VAE, diffusion)
    hooks = est._training_hooks(None)
    hooks.step(batch, 0)  # compiles, where compiled: not part of the timed rounds
    benchmark.group = "training-step"
    benchmark.pedantic(lambda: hooks.step(batch, 0), rounds=10, iterations=1,
                       warmup_rounds=1)
    with FlopCounterMode(display=False) as flops:
        est._loss(batch).backward()
    floor = flops.get_total_flops() / gemm_rate(torch.float32, n=512, repeats=10)
    info = benchmark.extra_info
    info.update({"rows": int(batch.shape[0]), "floor_ms": floor * 1e3,
                 "compile_seconds": hooks.compile_seconds,
                 "compile_fallback": hooks.compile_fallback})
    stats = getattr(benchmark, "stats", None)
    if stats is not None:
        info["x_floor"] = float(stats.stats.min) / floor
