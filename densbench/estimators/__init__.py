"""The estimator registry: ``make(name, **params)`` and ``names()``.

Adding an estimator = one module + one line below + a ``test_params()`` classmethod.
"""

from __future__ import annotations

from typing import Any

from densbench.estimators.base import DensityEstimator, LikelihoodKind
from densbench.registry import Registry

__all__ = ["REGISTRY", "DensityEstimator", "LikelihoodKind", "get", "make", "names"]

REGISTRY: Registry[type[DensityEstimator]] = Registry("estimator")


def _register(name: str, cls: type[DensityEstimator]) -> None:
    cls.name = name
    REGISTRY.register(name)(cls)


def get(name: str) -> type[DensityEstimator]:
    """The estimator class registered under ``name``."""
    return REGISTRY.get(name)


def make(name: str, **params: Any) -> DensityEstimator:
    """An estimator by registry name with keyword hyperparameters.

    Example:
        >>> import densbench as db
        >>> est = db.estimators.make("gaussian")
        >>> est.likelihood.value
        'exact'
    """
    cls = REGISTRY.get(name)
    cls.check_param_names(params)
    return cls(**params)


def names() -> list[str]:
    """All registered estimator names."""
    return REGISTRY.names()


# The registry: one line per estimator.
from densbench.estimators.gaussian import DiagGaussian, Gaussian  # noqa: E402
from densbench.estimators.gmm import GMM  # noqa: E402
from densbench.estimators.hmm import HMM  # noqa: E402
from densbench.estimators.kde import KDE  # noqa: E402
from densbench.estimators.linear import PPCA, FactorAnalysis  # noqa: E402

_register("gaussian", Gaussian)
_register("diag_gaussian", DiagGaussian)
_register("ppca", PPCA)
_register("factor_analysis", FactorAnalysis)
_register("kde", KDE)
_register("gmm", GMM)
_register("hmm", HMM)
from densbench.estimators.flows import MAF, NSF, RealNVP  # noqa: E402

_register("maf", MAF)
_register("nsf", NSF)
_register("realnvp", RealNVP)
from densbench.estimators.vae import VAE  # noqa: E402

_register("vae", VAE)
from densbench.estimators.autoregressive import MADE, RNNAutoregressive  # noqa: E402

_register("made", MADE)
_register("rnn_ar", RNNAutoregressive)
from densbench.estimators.diffusion import Diffusion  # noqa: E402

_register("diffusion", Diffusion)
from densbench.estimators.gan import GAN  # noqa: E402

_register("gan", GAN)
