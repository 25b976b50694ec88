"""One generic name -> object registry, shared by estimators, datasets and metrics."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

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
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def describe(self, name: str) -> str:
        """First line of the registered object's docstring."""
        doc = inspect.getdoc(self.get(name)) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
