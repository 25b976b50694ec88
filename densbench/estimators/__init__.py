"""The estimator registry: ``make(name, **params)`` and ``names()``.

Adding an estimator = one module + one line below + a ``test_params()`` classmethod.

Estimators from outside the package work wherever a name does: ``package.module:Class``,
``path/to/file.py:Class``, an installed plugin (entry-point group ``densbench.estimators``),
or a class given to :func:`register`. A class that subclasses
:class:`~densbench.estimators.base.DensityEstimator` is used as it is; any other
scikit-learn-style density estimator (``fit`` + ``score_samples``) runs through
:func:`densbench.estimators.adapter.adapt`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from densbench.registry import Registry

if TYPE_CHECKING:
    from densbench.estimators.base import DensityEstimator, LikelihoodKind

__all__ = ["REGISTRY", "DensityEstimator", "LikelihoodKind", "get", "make", "names",
           "register", "registered_name"]

#: The entry-point group of installed estimator plugins (name -> ``module:Class``).
ENTRY_POINT_GROUP = "densbench.estimators"


def _resolve(name: str, obj: Any) -> type[DensityEstimator]:
    """A class found outside the registry (a spec, a plugin, :func:`register`) as a
    densbench estimator: as it is, or through the scikit-learn adapter."""
    from densbench.estimators.adapter import adapt
    from densbench.estimators.base import DensityEstimator

    if isinstance(obj, type) and issubclass(obj, DensityEstimator):
        return obj
    return adapt(name, obj)


REGISTRY: Registry[type[DensityEstimator]] = Registry(
    "estimator", group=ENTRY_POINT_GROUP, resolve=_resolve, share=True)


def __getattr__(name: str) -> Any:
    # The contract's classes load on first use, so listing the registry imports no
    # estimator module (nor scikit-learn or PyTorch).
    if name in ("DensityEstimator", "LikelihoodKind"):
        from densbench.estimators import base

        return getattr(base, name)
    raise AttributeError(f"module 'densbench.estimators' has no attribute {name!r}")


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
    """All registered estimator names (with installed plugins)."""
    return REGISTRY.names()


def register(name: str, cls: type) -> type[DensityEstimator]:
    """Register ``cls`` under ``name`` for this process (interactive use; a run with worker
    processes needs a spec or an entry point, which every worker imports itself). Returns
    the class the registry uses.

    Example:
        >>> import densbench as db
        >>> from densbench.estimators.gaussian import Gaussian
        >>> class MyGaussian(Gaussian):
        ...     "A Gaussian of my own."
        >>> _ = db.estimators.register("my_gaussian_doc", MyGaussian)
        >>> MyGaussian.name, "my_gaussian_doc" in db.estimators.names()
        ('my_gaussian_doc', True)
    """
    return REGISTRY.add(name, _resolve(name, cls))


# The registry: one line per estimator, imported on first use (``densbench list`` imports
# none of these modules).
_E = "densbench.estimators"
for _name, _target, _description in (
    ("gaussian", f"{_E}.gaussian:Gaussian",
     "Multivariate Gaussian with full covariance (maximum likelihood plus a small ridge)"),
    ("diag_gaussian", f"{_E}.gaussian:DiagGaussian",
     "Gaussian with diagonal covariance: independent dimensions (naive Bayes)"),
    ("ppca", f"{_E}.linear:PPCA",
     "Probabilistic PCA: a q-dimensional linear-Gaussian model with isotropic noise"),
    ("factor_analysis", f"{_E}.linear:FactorAnalysis",
     "Factor analysis: a q-dimensional linear-Gaussian model with diagonal noise"),
    ("kde", f"{_E}.kde.estimator:KDE",
     "Gaussian kernel density estimate, isotropic bandwidth (exact, blocked, float64)"),
    ("gmm", f"{_E}.gmm:GMM",
     "Gaussian mixture (full or diagonal covariances), EM fit, components selected"),
    ("hmm", f"{_E}.hmm:HMM",
     "Hidden Markov model with Gaussian emissions (hmmlearn's EM), states selected"),
    ("maf", f"{_E}.flows:MAF", "Masked autoregressive flow (zuko): stacked affine MADE layers"),
    ("nsf", f"{_E}.flows:NSF",
     "Neural spline flow (zuko): autoregressive rational-quadratic splines"),
    ("realnvp", f"{_E}.flows:RealNVP", "RealNVP (zuko): affine coupling layers"),
    ("vae", f"{_E}.vae:VAE",
     "Variational autoencoder (MLP encoder/decoder), IWAE-K bound as score (stochastic)"),
    ("made", f"{_E}.autoregressive:MADE",
     "Masked autoencoder (MADE): all autoregressive conditionals in one masked-MLP pass"),
    ("made_mog", f"{_E}.autoregressive:MADEMoG",
     "MADE with Gaussian-mixture conditionals; images dequantized, in logit space"),
    ("rnn_ar", f"{_E}.autoregressive:RNNAutoregressive",
     "GRU autoregressive model reading the dimensions in order"),
    ("diffusion", f"{_E}.diffusion:Diffusion",
     "Denoising diffusion model (DDPM, MLP noise predictor), variational bound as score"),
    ("gan", f"{_E}.gan:GAN",
     "Generative adversarial network (MLPs, non-saturating loss, R1 penalty): implicit"),
    ("glow", f"{_E}.images.glow:Glow",
     "Glow: multi-scale flow (actnorm, 1x1 convolutions, coupling) on logit-space images"),
    ("pixelcnn", f"{_E}.images.pixelcnn:PixelCNN",
     "Gated PixelCNN: masked convolutions, a softmax over the levels of every sub-pixel"),
):
    REGISTRY.declare(_name, _target, _description)


def registered_name(cls: type) -> str | None:
    """The name ``cls`` is known by: declared, registered, or the spec or plugin name it was
    looked up by (``None`` if none)."""
    return REGISTRY.name_of(cls)
