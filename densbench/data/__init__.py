"""The dataset registry: ``load(name, seed=0, **params)`` and ``names()``.

Each registered object is a loader function ``loader(seed, **params) -> Dataset``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from densbench.data.base import Dataset, Truth
from densbench.registry import Registry, UnknownNameError

__all__ = ["REGISTRY", "Dataset", "Truth", "describe", "load", "metadata", "names",
           "register"]

REGISTRY: Registry[Callable[..., Dataset]] = Registry("dataset")
register = REGISTRY.register


def load(name: str, seed: int = 0, **params: Any) -> Dataset:
    """Load dataset ``name`` with the split for ``seed``.

    Example:
        >>> import densbench as db
        >>> ds = db.data.load("eight_gaussians", seed=0, n_train=100, n_val=10, n_test=10)
        >>> ds.train.shape, ds.kind
        ((100, 2), 'continuous')
    """
    loader = REGISTRY.get(name)
    sig = inspect.signature(loader)
    known = [p for p in sig.parameters if p != "seed"]
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise UnknownNameError(f"dataset {name}: unknown parameter(s) {', '.join(unknown)}; "
                               f"known: {', '.join(known) or '(none)'}")
    return loader(seed=int(seed), **params)


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


# Registration happens on import of each family module.
from densbench.data import images, sequences, synthetic  # noqa: E402, F401
