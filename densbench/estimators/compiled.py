"""Compiled training steps: an estimator's loss through ``torch.compile``, with a cache on
disk, its cost measured apart and a fallback to eager PyTorch.

A neural estimator fitted with ``compile=True`` trains through :class:`CompiledStep`: the
forward pass of its loss is compiled by TorchInductor (the backward pass with it, by
AOTAutograd), which fuses the many small element-wise kernels of a flow's layers into
a few loops. Three costs decide where that pays:

- **compilation**: tens of seconds per network architecture and batch shape on a CPU
  core (the last, smaller minibatch of an epoch makes the shapes dynamic: a second
  compilation, then none); within one process, a new model of the same architecture
  reuses the compiled code (the parameters are inputs of the graph, not constants);
- **the cache on disk** (:func:`cache_dir`): a later process, a run's other workers and
  later runs load what was compiled in seconds instead;
- **the gain**: a step takes what its fused loops take; where matrix products dominate
  (large hidden layers) little changes.

The seconds spent compiling (or loading from the cache) are counted in
``compile_seconds``, apart from the training's own: the steps during which PyTorch
compiled something, which :class:`CompiledStep` tells from PyTorch's compilation
counters. A step that raises on the compiled path is run again eagerly and the rest of
the fit stays eager (``fallback`` says why): a machine without a C++ compiler still fits,
only slower. Compiled and eager steps give the same model up to floating-point order.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Hashable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import torch

__all__ = ["BACKEND_ENV", "CACHE_ENV", "RTOL", "CompiledStep", "cache_dir", "compile_cache"]

#: The environment variable naming the compile cache folder (see :func:`cache_dir`).
CACHE_ENV = "DENSBENCH_COMPILE_CACHE"
#: TorchInductor's own setting of its cache folder, read each time it looks there.
_INDUCTOR_ENV = "TORCHINDUCTOR_CACHE_DIR"
#: The ``torch.compile`` backend: ``$DENSBENCH_COMPILE_BACKEND``, else TorchInductor.
#: Another backend of ``torch.compile`` (``eager``: tracing only, ``aot_eager``) helps
#: tell a compiler's problem from a model's.
BACKEND_ENV = "DENSBENCH_COMPILE_BACKEND"

T = TypeVar("T")

#: Largest relative difference between a compiled step's gradients and the eager step's
#: that floating-point order explains (float32 steps differ by about 1e-6).
RTOL = 1e-3

#: The key of the latest :class:`CompiledStep` of this process (see :func:`_own_code`).
_LATEST: list[Hashable] = []


def cache_dir() -> Path:
    """The folder of compiled code shared by every densbench process of this user:
    ``$DENSBENCH_COMPILE_CACHE``, else ``$XDG_CACHE_HOME/densbench/torch-compile``, else
    ``~/.cache/densbench/torch-compile``. Kept across runs and reboots (PyTorch's own
    default lives in the temporary folder); deleting it only costs the next fits their
    compilation again.

    Example:
        >>> from unittest import mock
        >>> with mock.patch.dict(os.environ, {"DENSBENCH_COMPILE_CACHE": "/tmp/x"}):
        ...     str(cache_dir())
        '/tmp/x'
    """
    own = os.environ.get(CACHE_ENV)
    if own:
        return Path(own)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "densbench" / "torch-compile"


def _cache_folder() -> Path:
    """The folder TorchInductor is to cache in: the user's ``TORCHINDUCTOR_CACHE_DIR``,
    else :func:`cache_dir` (created)."""
    own = _users_inductor_dir()
    folder = Path(own) if own else cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextlib.contextmanager
def compile_cache(folder: Path | None = None) -> Iterator[Path]:
    """Within the block TorchInductor caches in ``folder`` (default: :func:`cache_dir`,
    unless the user named a folder of their own in ``TORCHINDUCTOR_CACHE_DIR``, kept)."""
    before = os.environ.get(_INDUCTOR_ENV)
    folder = _cache_folder() if folder is None else folder
    os.environ[_INDUCTOR_ENV] = str(folder)
    try:
        yield folder
    finally:
        if before is None:
            os.environ.pop(_INDUCTOR_ENV, None)
        else:
            os.environ[_INDUCTOR_ENV] = before


def _users_inductor_dir() -> str | None:
    """``TORCHINDUCTOR_CACHE_DIR`` where the user set it; None where it is unset or holds
    PyTorch's own default (importing ``torch._dynamo`` writes that default there)."""
    value = os.environ.get(_INDUCTOR_ENV)
    if not value:
        return None
    try:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir
    except ImportError:  # a PyTorch without that helper: take the setting as the user's
        return value
    return None if os.path.abspath(value) == os.path.abspath(default_cache_dir()) else value


def _backend() -> Any:
    return os.environ.get(BACKEND_ENV) or "inductor"


def _why(exc: BaseException) -> str:
    """One line: the error and, where PyTorch wrapped it, the error at its root."""
    root, seen = exc, {id(exc)}
    # PyTorch keeps the compiler's own error in inner_exception (or as the cause)
    while (inner := getattr(root, "inner_exception", None) or root.__cause__) is not None \
            and id(inner) not in seen:
        root = inner
        seen.add(id(inner))
    lines = [f"{type(e).__name__}: {str(e).strip()}".strip().rstrip(":").splitlines()[0]
             for e in dict.fromkeys((exc, root))]
    return " <- ".join(lines)[:400]


def _relative_gap(got: list[torch.Tensor | None], expected: list[torch.Tensor | None]
                  ) -> float:
    """|got - expected| / |expected| over all tensors at once (None: no gradient, zero)."""
    diff = size = 0.0
    for a, b in zip(got, expected, strict=True):
        if a is None and b is None:
            continue
        a = torch.zeros_like(b) if a is None else a
        b = torch.zeros_like(a) if b is None else b
        diff += float(((a.double() - b.double()) ** 2).sum())
        size += float((b.double() ** 2).sum())
    return math.sqrt(diff) / max(math.sqrt(size), 1e-30)


def _own_code(key: Hashable) -> None:
    """Forget what this process compiled for models of another ``key``. TorchDynamo
    compiles one function for at most ``recompile_limit`` (8) sets of guards and then
    runs it eagerly without a word; a worker process fits model after model through the
    same loss function, so it would stop compiling after a few architectures. Models of
    one key (the seeds of one setting) reuse this process's code; the others load theirs
    from the cache on disk, in seconds."""
    if _LATEST != [key]:
        torch._dynamo.reset()
        _LATEST[:] = [key]


def _compilations() -> int:
    """How many graphs PyTorch has compiled (or loaded from its caches) in this process:
    forward graphs traced by TorchDynamo and joint graphs (forward and backward) built by
    AOTAutograd. These are PyTorch's internal counters, the only record of *when* it
    compiles; read them as an ever-growing total."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"]) + int(counters["aot_autograd"]["total"])


class CompiledStep:
    """``fn`` compiled by ``torch.compile``: call :meth:`run` with the work of a step that
    calls :attr:`fn` (the forward pass) and then backpropagates. ``key`` names the model
    (its class, its architecture and the shape of its data): what this process compiled
    for another key is forgotten first (:func:`_own_code`).

    Attributes:
        seconds: wall seconds of the steps during which PyTorch compiled (or loaded
            compiled code); the rest of the training's time is the steps' own.
        graphs: graphs compiled or loaded during those steps.
        fallback: why the steps run eagerly (None while compiled).

    Example:
        >>> import torch
        >>> w = torch.ones(3, requires_grad=True)
        >>> step = CompiledStep(lambda x: (w * x).sum(), backend="eager")  # tracing only
        >>> def work(loss): loss(torch.arange(3.0)).backward(); return float(w.grad.sum())
        >>> step.run(work), step.fallback is None, step.seconds > 0
        (3.0, True, True)
    """

    def __init__(self, fn: Callable[..., Any], *, backend: Any = None,
                 key: Hashable = None) -> None:
        backend = _backend() if backend is None else backend
        _own_code((repr(backend), key))
        self.eager = fn
        self.fn: Callable[..., Any] = torch.compile(fn, backend=backend)
        self.cache = _cache_folder()  # resolved once: run() is on every training step
        self.seconds = 0.0
        self.graphs = 0
        self.fallback: str | None = None

    def run(self, work: Callable[[Callable[..., Any]], T],
            gradients: Callable[[], list[torch.Tensor | None]] | None = None) -> T:
        """``work(fn)``, timed as compilation where PyTorch compiled during it; where the
        compiled path raises, ``work(eager fn)`` instead, and every later step too.

        Where PyTorch compiled and ``gradients`` gives the parameters' gradients that
        ``work`` left, the step is checked: ``work`` runs again eagerly, and its result
        and gradients must agree with the compiled ones to ``RTOL`` (relative, in
        Euclidean norm). A compiler that gets them wrong (it happens: see docs/speed.md)
        is not used again for this model; the eager step's gradients stand."""
        if self.fallback is not None:
            return work(self.eager)
        before, t0 = _compilations(), time.perf_counter()
        try:
            with compile_cache(self.cache):
                out = work(self.fn)
        except Exception as exc:  # noqa: BLE001 - any failure of the compiler falls back
            self.fallback = _why(exc)
            self.seconds += time.perf_counter() - t0
            return work(self.eager)
        compiled = _compilations() - before
        if compiled:
            self.graphs += compiled
            if gradients is not None:
                out = self._checked(work, out, gradients)
            self.seconds += time.perf_counter() - t0
        return out

    def _checked(self, work: Callable[[Callable[..., Any]], T], out: T,
                 gradients: Callable[[], list[torch.Tensor | None]]) -> T:
        got = [None if g is None else g.detach().clone() for g in gradients()]
        expected = work(self.eager)
        gap = max(_relative_gap(got, gradients()),
                  _relative_gap([torch.as_tensor(out)], [torch.as_tensor(expected)]))
        if not gap <= RTOL:  # NaN too
            self.fallback = (f"the compiled step's gradients differ from eager PyTorch's by "
                             f"{gap:.1e} (relative; tolerance {RTOL:g})")
        return expected
