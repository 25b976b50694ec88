"""Sample quality: how far a model's samples ``X`` (n, d) lie from held-out data ``Y`` (m, d).

Every metric is a plain function returning a :class:`SampleScore` (value, standard error or
``None``, and a dict of extras); :func:`sample_metrics` computes them all. Their units,
directions and meanings are in :data:`densbench.metrics.catalogue.SAMPLE_METRICS`.

- :func:`mmd2`: unbiased squared maximum mean discrepancy, mean of RBF kernels at multiples
  of the median-heuristic bandwidth, with the U-statistic's standard error;
- :func:`energy_distance`: the (squared) energy distance, unbiased by default;
- :func:`sliced_wasserstein`: POT's Monte-Carlo sliced Wasserstein distance;
- :func:`c2st`: classifier two-sample test accuracy (0.5 is ideal);
- :func:`prdc`: precision, recall, density and coverage from k-NN balls;
- :func:`frechet_distance`: Frechet distance between Gaussians fitted to features;
- :func:`memorization_ratio`: samples' distance to the training set relative to fresh data's.

The modules, by kind: :mod:`.pairwise` (MMD and energy distance, and the blocked pass over
pairwise squared distances whose memory bound it states), :mod:`.classifier` (C2ST),
:mod:`.neighbours` (PRDC, memorization), :mod:`.transport` (sliced Wasserstein, Frechet),
:mod:`.scale` (the common scale), :mod:`.dispatch` (which function computes each catalogue
metric, :func:`sample_metrics`, :func:`to_metrics`) and :mod:`.points` (the score type and
input checks).
All randomness (bandwidth subsample, projections, classifier, bootstrap) comes from ``seed``.

Every number here has a finite-sample floor: a perfect model's samples score what a second
held-out sample from the data distribution scores (validation split vs test split), not the
ideal value (0 for a discrepancy, the catalogue's target for C2ST accuracy, density and the
memorization ratio); read a value beside that floor.
"""

from __future__ import annotations

from densbench.metrics.catalogue import SAMPLE_METRICS
from densbench.metrics.samples.classifier import C2ST_CLASSIFIER as C2ST_CLASSIFIER
from densbench.metrics.samples.classifier import c2st
from densbench.metrics.samples.dispatch import _HOW, failed, sample_metrics, to_metrics
from densbench.metrics.samples.neighbours import memorization_ratio, prdc
from densbench.metrics.samples.pairwise import MMD_BANDWIDTH_MULTIPLES as MMD_BANDWIDTH_MULTIPLES
from densbench.metrics.samples.pairwise import energy_distance, median_heuristic, mmd2
from densbench.metrics.samples.points import SampleScore
from densbench.metrics.samples.scale import common_scale
from densbench.metrics.samples.transport import (
    frechet_distance,
    gaussian_frechet_distance,
    sliced_wasserstein,
)

__all__ = [
    "SampleScore",
    "c2st",
    "common_scale",
    "energy_distance",
    "failed",
    "frechet_distance",
    "gaussian_frechet_distance",
    "median_heuristic",
    "memorization_ratio",
    "mmd2",
    "prdc",
    "sample_metrics",
    "sliced_wasserstein",
    "to_metrics",
]

if set(_HOW) != set(SAMPLE_METRICS):  # a catalogue entry with no function computing it
    raise ImportError("densbench.metrics.samples: no function computes the sample metrics "
                      f"{sorted(set(SAMPLE_METRICS) - set(_HOW))}")
