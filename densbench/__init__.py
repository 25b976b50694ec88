"""densbench: a density-estimation benchmark suite.

Example:
    >>> import densbench as db
    >>> "kde" in db.estimators.names() and "two_moons" not in db.data.names()
    True
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["__version__", "data", "estimators", "metrics", "report", "results", "runner"]
__version__ = "0.1.0"

_SUBMODULES = {"data", "estimators", "metrics", "report", "results", "runner"}


def __getattr__(name: str) -> Any:
    # Subpackages load on first use: `import densbench` alone imports none of them, so a
    # caller pays only for the parts it uses.
    if name in _SUBMODULES:
        return importlib.import_module(f"densbench.{name}")
    raise AttributeError(f"module 'densbench' has no attribute {name!r}")
