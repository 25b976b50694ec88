"""One generic name -> object registry, shared by estimators, datasets and metrics.

An entry is either an object registered directly or a lazy declaration
(``name -> "module:attr"`` with a one-line description and optional metadata), imported on
first use: listing what exists then costs no import of the heavy modules behind it.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

__all__ = ["Registry", "UnknownNameError"]

T = TypeVar("T")


class UnknownNameError(ValueError):
    """An unknown registry name; the message lists the known ones."""


class Registry(Generic[T]):
    """Maps names to objects (classes or loader functions) with a one-line description.

    Example:
        >>> reg = Registry("widget")
        >>> @reg.register("spoon")
        ... class Spoon:
        ...     '''A spoon.'''
        >>> reg.names()
        ['spoon']
        >>> reg.describe("spoon")
        'A spoon.'
        >>> reg.get("fork")
        Traceback (most recent call last):
        ...
        densbench.registry.UnknownNameError: unknown widget 'fork'; known: spoon
        >>> reg.declare("path", "pathlib:Path", "A filesystem path.")
        >>> reg.describe("path"), "pathlib:Path" in reg.targets().values()
        ('A filesystem path.', True)
        >>> reg.get("path").__name__
        'Path'
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._lazy: dict[str, tuple[str, str, dict[str, Any]]] = {}

    def _check_new(self, name: str) -> None:
        if name in self._items or name in self._lazy:
            raise ValueError(f"{self.kind} {name!r} is registered twice")

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            self._check_new(name)
            self._items[name] = obj
            return obj

        return decorator

    def declare(self, name: str, target: str, description: str, **meta: Any) -> None:
        """Declare ``name`` as ``"module:attr"``, imported on first :meth:`get`."""
        self._check_new(name)
        if ":" not in target:
            raise ValueError(f"{self.kind} {name!r}: target must be 'module:attr'; "
                             f"got {target!r}")
        self._lazy[name] = (target, description, dict(meta))

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except (KeyError, TypeError):
            pass
        if name not in self._lazy:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}")
        module, _, attr = self._lazy[name][0].partition(":")
        obj = getattr(importlib.import_module(module), attr)
        self._items[name] = obj
        return obj

    def names(self) -> list[str]:
        return sorted(set(self._items) | set(self._lazy))

    def targets(self) -> dict[str, str]:
        """Declared names -> ``"module:attr"`` (lazy entries only)."""
        return {name: entry[0] for name, entry in self._lazy.items()}

    def meta(self, name: str) -> dict[str, Any]:
        """The metadata declared with ``name`` (empty for objects registered directly)."""
        if name not in self._lazy:
            self.get(name)  # an unknown name raises with the known ones
            return {}
        return dict(self._lazy[name][2])

    def describe(self, name: str) -> str:
        """The declared one-line description, else the first line of the docstring."""
        if name in self._lazy:
            return self._lazy[name][1]
        doc = inspect.getdoc(self.get(name)) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""

    def __contains__(self, name: object) -> bool:
        return name in self._items or name in self._lazy

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())
