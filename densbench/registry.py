"""One generic name -> object registry, shared by estimators, datasets and metrics.

An entry is either an object registered directly or a lazy declaration
(``name -> "module:attr"`` with a one-line description and optional metadata), imported on
first use: listing what exists then costs no import of the heavy modules behind it.

Objects from outside the package are first-class: a name that is no entry is looked up as an
installed plugin (the registry's entry-point group), then as a spec, ``package.module:attr``
or ``path/to/file.py:attr``, and handed to the registry's ``resolve`` hook (which checks it
or adapts it: a scikit-learn-style class, a data file). A spec travels as a string, so every
process that receives it (a pool worker, a Dask worker) imports it itself. A file is
imported with its folder on ``sys.path`` (as Python runs a script), so it imports the
modules beside it (``from mymodel import Net``) in every process alike.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Generic, TypeVar

__all__ = ["PluginError", "Registry", "UnknownNameError", "absolute_spec", "import_spec",
           "is_spec", "shared"]

T = TypeVar("T")


class UnknownNameError(ValueError):
    """An unknown registry name; the message lists the known ones."""


class PluginError(ValueError):
    """A spec or plugin that cannot be imported, or an object that does not fit."""


def is_spec(name: str) -> bool:
    """Whether ``name`` reads as ``module:attr`` or ``path/to/file.py:attr``.

    Example:
        >>> is_spec("sklearn.neighbors:KernelDensity"), is_spec("kde"), is_spec("m.py:A")
        (True, False, True)
    """
    target, sep, attr = name.rpartition(":")
    return bool(sep and target and attr.isidentifier())


def absolute_spec(name: str, suffixes: tuple[str, ...] = ()) -> str:
    """``path/to/file.py:attr``, or a path ending in one of ``suffixes``, with the path made
    absolute (so a worker in another working directory finds the file); any other name
    unchanged."""
    target, sep, attr = name.rpartition(":")
    if sep and target.endswith(".py") and is_spec(name):
        return f"{Path(target).expanduser().resolve()}:{attr}"
    if suffixes and name.lower().endswith(suffixes):
        return str(Path(name).expanduser().resolve())
    return name


def _import_file(path: Path) -> Any:
    """The module at ``path``, imported once per process under a name derived from its
    absolute path (the same name in every process, so objects from it pickle), with its
    folder first on ``sys.path``, where it stays: the file's own imports of the modules
    beside it, at import or later inside a function, find them as when it runs as a
    script."""
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
    modname = f"densbench_plugin_{path.stem}_{digest}"
    if modname in sys.modules:
        return sys.modules[modname]
    spec = importlib.util.spec_from_file_location(modname, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"not a Python file: {path}")
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[modname]
        raise
    return module


def import_spec(spec: str, kind: str = "object") -> Any:
    """The object a ``module:attr`` or ``path/to/file.py:attr`` spec names; a
    :class:`PluginError` saying what failed otherwise.

    Example:
        >>> import_spec("pathlib:Path").__name__
        'Path'
        >>> import_spec("pathlib:Nope", "estimator")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        densbench.registry.PluginError: estimator 'pathlib:Nope': module 'pathlib' has no ...
    """
    target, _, attr = spec.rpartition(":")
    try:
        if target.endswith(".py"):
            path = Path(target).expanduser()
            if not path.is_file():
                raise PluginError(f"{kind} {spec!r}: no such file {target}")
            module = _import_file(path.resolve())
        else:
            module = importlib.import_module(target)
    except PluginError:
        raise
    except (Exception, SystemExit) as exc:  # the user's module failed to import: say how
        raise PluginError(f"{kind} {spec!r}: cannot import {target} "
                          f"({type(exc).__name__}: {exc})") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise PluginError(f"{kind} {spec!r}: module {target!r} has no attribute "
                          f"{attr!r}") from None


#: The package's own registries by kind (those made with ``share=True``): a module of the
#: registry's package (an estimator's base class asking its name) reaches its registry
#: here rather than importing the package that imports it.
_SHARED: dict[str, Registry[Any]] = {}


def shared(kind: str) -> Registry[Any]:
    """The package's registry of ``kind`` (``"estimator"``, ``"dataset"``)."""
    return _SHARED[kind]


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
        >>> reg.get("fork")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        densbench.registry.UnknownNameError: unknown widget 'fork'; known: spoon (or ...
        >>> reg.declare("path", "pathlib:Path", "A filesystem path.")
        >>> reg.describe("path"), "pathlib:Path" in reg.targets().values()
        ('A filesystem path.', True)
        >>> reg.get("path").__name__
        'Path'
    """

    def __init__(self, kind: str, *, group: str | None = None,
                 resolve: Callable[[str, Any], T] | None = None,
                 accepts: Callable[[str], bool] = is_spec, share: bool = False) -> None:
        self.kind = kind
        if share:
            _SHARED[kind] = self
        #: entry-point group of installed plugins (``None``: none)
        self.group = group
        #: checks or adapts an object found outside the registry: ``resolve(name, obj)``;
        #: ``obj`` is ``None`` for a name that ``accepts`` but that is not an import spec
        #: (e.g. a data file's path)
        self._resolve = resolve
        self._accepts = accepts
        self._items: dict[str, T] = {}
        self._lazy: dict[str, tuple[str, str, dict[str, Any]]] = {}
        self._external: dict[str, T] = {}

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
            return self._get_external(name)
        module, _, attr = self._lazy[name][0].partition(":")
        obj = getattr(importlib.import_module(module), attr)
        self._items[name] = obj
        return obj

    def _get_external(self, name: str) -> T:
        """An installed plugin or a spec, checked by the ``resolve`` hook, once per process."""
        if not isinstance(name, str):
            raise UnknownNameError(f"{self.kind} name must be a string; got {name!r}")
        if name in self._external:
            return self._external[name]
        plugin = self._entry_points().get(name)
        if plugin is not None:
            try:
                obj = plugin.load()
            except Exception as exc:
                raise PluginError(f"{self.kind} {name!r} (entry point {plugin.value} in "
                                  f"group {self.group}): cannot load it ({type(exc).__name__}"
                                  f": {exc})") from exc
        elif self._accepts(name):
            obj = import_spec(name, self.kind) if is_spec(name) else None
        else:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; known: {', '.join(self.names())} (or "
                f"'package.module:{'Class' if self.kind == 'estimator' else 'function'}', "
                f"'path/to/file.py:...')")
        out = obj if self._resolve is None else self._resolve(name, obj)
        self._external[name] = out
        return out

    def _entry_points(self) -> dict[str, Any]:
        if self.group is None:
            return {}
        return {ep.name: ep for ep in entry_points(group=self.group)
                if ep.name not in self._items and ep.name not in self._lazy}

    def add(self, name: str, obj: T) -> T:
        """Register ``obj`` under ``name`` (a name already taken is an error)."""
        return self.register(name)(obj)

    def name_of(self, obj: Any) -> str | None:
        """The name under which ``obj`` is known here (declared, registered, or looked up
        as a plugin or spec in this process); ``None`` if none."""
        target = f"{getattr(obj, '__module__', '')}:{getattr(obj, '__qualname__', '')}"
        for name, entry in self._lazy.items():
            if entry[0] == target:
                return name
        for table in (self._items, self._external):
            for name, item in table.items():
                if item is obj:
                    return name
        return None

    def names(self) -> list[str]:
        """Declared and registered names and installed plugins (specs are not listed)."""
        return sorted(set(self._items) | set(self._lazy) | set(self._entry_points()))

    def targets(self) -> dict[str, str]:
        """Declared names -> ``"module:attr"`` (lazy entries only)."""
        return {name: entry[0] for name, entry in self._lazy.items()}

    def meta(self, name: str) -> dict[str, Any]:
        """The metadata declared with ``name`` (empty for objects registered directly and
        for installed plugins, which are not loaded for it)."""
        if name in self._lazy:
            return dict(self._lazy[name][2])
        if name not in self._items and name not in self._entry_points():
            self.get(name)  # an unknown name raises with the known ones
        return {}

    def is_builtin(self, name: Any) -> bool:
        """Whether ``name`` is declared or registered here: using it runs no code from
        outside (an installed plugin or a spec runs its module's)."""
        return isinstance(name, str) and (name in self._items or name in self._lazy)

    def describe(self, name: str) -> str:
        """The declared one-line description, else the first line of the docstring."""
        if name in self._lazy:
            return self._lazy[name][1]
        plugin = self._entry_points().get(name)
        if plugin is not None and name not in self._external:
            return f"plugin ({plugin.value})"
        doc = inspect.getdoc(self.get(name)) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""

    def __contains__(self, name: object) -> bool:
        return name in self._items or name in self._lazy or name in self._entry_points()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())
