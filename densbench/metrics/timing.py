"""Cost measurement: wall-clock stopwatch, peak resident memory, threads, and the
machine's arithmetic rates (matrix product, exp) that throughput figures are compared with.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import math
import os
import resource
import sys
import threading
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any

__all__ = ["PeakMemory", "Stopwatch", "ThreadAudit", "blas_thread_count", "cuda_devices_in_use",
           "cuda_in_use", "cuda_synchronize", "current_rss_bytes", "exp_rate", "gemm_rate",
           "limit_threads", "process_thread_limit", "release_free_memory",
           "steady_allocator", "thread_count", "thread_limit"]

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def current_rss_bytes() -> int:
    """Resident set size of this process now (Linux /proc; else the peak so far)."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def cuda_in_use() -> bool:
    """Whether this process has started CUDA (PyTorch loaded, a GPU present and used)."""
    torch = sys.modules.get("torch")
    return bool(torch is not None and torch.cuda.is_available()
                and torch.cuda.is_initialized())


def cuda_devices_in_use() -> list[int]:
    """The CUDA devices this process has used: the current one and every one where
    PyTorch's allocator holds memory (empty without CUDA in use). Only these are
    synchronized and read: touching any other device would create a CUDA context on it
    (hundreds of MB of device memory, and seconds)."""
    if not cuda_in_use():
        return []
    import torch

    current = int(torch.cuda.current_device())
    return [i for i in range(torch.cuda.device_count())
            if i == current or int(torch.cuda.memory_reserved(i)) > 0]


def cuda_synchronize() -> None:
    """Wait until every CUDA device in use (:func:`cuda_devices_in_use`) has finished the
    work queued on it (nothing to do without CUDA in use). CUDA kernels run
    asynchronously: a clock read or a memory peak taken without this misses the work
    still queued."""
    devices = cuda_devices_in_use()
    if devices:
        import torch

        for i in devices:
            torch.cuda.synchronize(i)


class Stopwatch:
    """``with Stopwatch() as sw: ...`` then ``sw.seconds`` (perf_counter). With CUDA in use
    the clock starts and stops after :func:`cuda_synchronize`, so queued GPU work is
    counted where it was asked for."""

    def __enter__(self) -> Stopwatch:
        cuda_synchronize()
        self._t0 = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        cuda_synchronize()
        self.seconds = time.perf_counter() - self._t0


class PeakMemory:
    """Peak resident memory while the block runs, sampled every ``interval_s`` by a thread.

    ``peak_bytes`` is the highest RSS seen (the process's, so it includes the data already
    loaded, and heap memory freed earlier but still held: see :func:`release_free_memory`);
    ``delta_bytes`` is the rise above the RSS at entry. ``device_peak_bytes`` is the peak
    of PyTorch's CUDA allocations during the block (the largest over the devices in use,
    :func:`cuda_devices_in_use`: counters reset on entry, read after
    :func:`cuda_synchronize` on exit), or None where CUDA was not used by the end of the
    block or no device allocated anything during it.

    Example:
        >>> import mmap, numpy as np
        >>> with PeakMemory() as pm:  # 160 MB of fresh pages (not reused heap memory)
        ...     pages = np.frombuffer(mmap.mmap(-1, 160_000_000), dtype=np.uint8)
        ...     pages[:] = 1
        >>> pm.delta_bytes > 100e6
        True
    """

    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval_s = interval_s

    def __enter__(self) -> PeakMemory:
        self.device_peak_bytes: int | None = None
        devices = cuda_devices_in_use()
        if devices:
            import torch

            cuda_synchronize()
            # and every device with a peak from earlier (used before, its memory since
            # released): a device first used inside the block then starts from 0, and one
            # used again does not report an old peak. Reading and resetting the
            # allocator's counters creates no CUDA context.
            for i in range(torch.cuda.device_count()):
                if i in devices or int(torch.cuda.max_memory_allocated(i)) > 0:
                    torch.cuda.reset_peak_memory_stats(i)
        self.start_bytes = current_rss_bytes()
        self.peak_bytes = self.start_bytes
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak_bytes = max(self.peak_bytes, current_rss_bytes())

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self.peak_bytes, current_rss_bytes())
        devices = cuda_devices_in_use()
        if devices:
            import torch

            cuda_synchronize()
            peak = max(int(torch.cuda.max_memory_allocated(i)) for i in devices)
            # 0: CUDA was started earlier in the process, but this block used no device
            self.device_peak_bytes = peak or None

    @property
    def delta_bytes(self) -> int:
        return self.peak_bytes - self.start_bytes


def thread_count() -> int:
    """Intra-op threads PyTorch uses in this process."""
    import torch

    return int(torch.get_num_threads())


_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def limit_threads(n: int) -> None:
    """Use ``n`` threads in PyTorch and in every BLAS / OpenMP pool of this process.

    NumPy and SciPy each ship their own OpenBLAS, and threadpoolctl can limit only the
    libraries already loaded, so both are imported first (and the environment variables set
    for any loaded later). Without this, SciPy's OpenBLAS keeps its default of one thread
    per core inside workers meant to use one: N such workers oversubscribe the cores, and
    every BLAS call (an SVD per EM step of scikit-learn's factor analysis) waits at its
    barrier for threads the OS has put aside for another worker.
    """
    import numpy  # noqa: F401
    import scipy.linalg  # noqa: F401
    import torch
    from threadpoolctl import threadpool_limits

    global _PROCESS_LIMIT
    for var in _THREAD_VARS:
        os.environ[var] = str(n)
    torch.set_num_threads(n)
    threadpool_limits(n)
    _PROCESS_LIMIT = n


#: the count :func:`limit_threads` last set for this process (None: never called)
_PROCESS_LIMIT: int | None = None


def process_thread_limit() -> int | None:
    """The thread limit set on this process by :func:`limit_threads` (a worker's cores /
    N, the test session's 1), or None where none was set: a ceiling that cells run in
    this process keep to."""
    return _PROCESS_LIMIT


@contextlib.contextmanager
def thread_limit(n: int) -> Iterator[None]:
    """:func:`limit_threads` for the block only: PyTorch's count, every pool's and the
    environment variables are put back after it (for a process that runs cells itself and
    lives on: the in-process executor; a worker process keeps its limit)."""
    import torch
    from threadpoolctl import threadpool_limits

    env = {var: os.environ.get(var) for var in _THREAD_VARS}
    torch_before = torch.get_num_threads()
    import numpy  # noqa: F401  (loaded before the pools are read, as in limit_threads)
    import scipy.linalg  # noqa: F401

    global _PROCESS_LIMIT
    limit_before = _PROCESS_LIMIT
    with threadpool_limits(n):  # puts back what it changed
        try:
            limit_threads(n)
            yield
        finally:
            _PROCESS_LIMIT = limit_before
            torch.set_num_threads(torch_before)
            for var, value in env.items():
                if value is None:
                    os.environ.pop(var, None)
                else:
                    os.environ[var] = value


class ThreadAudit:
    """The most threads each thread pool was set to use while the block ran, seen from
    inside it: ``with ThreadAudit() as audit: est.fit(X)``, then ``audit.most`` maps each
    pool (``"torch"``, and threadpoolctl's ``internal_api:file`` for every BLAS and OpenMP
    library loaded) to the largest count observed, and ``audit.where`` to the calls (the
    innermost last) running when that count was first observed.

    Why from inside: a limit set on a process (:func:`limit_threads`) holds only until a
    library sets a pool again (``torch.set_num_threads``, threadpoolctl's
    ``threadpool_limits`` inside scikit-learn or densbench, an OpenBLAS or OpenMP library
    loaded after the limit was set), and counts read before and after a call miss a pool
    raised and restored within it. The audit runs a profiler hook (``sys.setprofile``, and
    ``threading.setprofile`` for threads started during the block) that reads every pool
    at entry, after every call that can set one (``*set_num_threads`` functions, anything in
    threadpoolctl), whenever a module was imported since the last reading, and at the
    first call in each new thread (OpenMP counts are per thread; they are read in the
    thread concerned). Counts set by a library's own C code without any of these would
    go unseen. The hook roughly doubles the time of Python-heavy code: for tests, never
    in timed code.

    Example:
        >>> import torch
        >>> with ThreadAudit() as audit:
        ...     torch.set_num_threads(torch.get_num_threads())
        >>> audit.most["torch"] == torch.get_num_threads()
        True
    """

    def __enter__(self) -> ThreadAudit:
        import torch

        self.most: dict[str, int] = {}
        self.where: dict[str, list[str]] = {}
        self._torch_threads = torch.get_num_threads
        self._libs: list[tuple[str, Any]] = []
        self._n_modules = -1
        self._dirty = False
        self._lock = threading.Lock()
        self._observe(sys._getframe())
        sys.setprofile(self._hook)
        threading.setprofile(self._first_in_thread)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]
        self._observe(sys._getframe())

    def _observe(self, frame: Any) -> None:
        from threadpoolctl import ThreadpoolController

        with self._lock:
            self._dirty = False
            if len(sys.modules) != self._n_modules:
                # only an extension module brings a shared library (and the search for
                # them is slow): most imports are of Python files
                new = itertools.islice(sys.modules.values(), max(0, self._n_modules), None)
                if self._n_modules < 0 or any(
                        str(getattr(m, "__file__", "")).endswith((".so", ".pyd"))
                        for m in new):
                    self._libs = [(f"{lib.internal_api}:{os.path.basename(lib.filepath)}",
                                   lib) for lib in ThreadpoolController().lib_controllers]
                self._n_modules = len(sys.modules)
            counts = [("torch", int(self._torch_threads()))]
            counts += [(key, int(lib.num_threads)) for key, lib in self._libs]
            for key, n in counts:
                if n > self.most.get(key, 0):
                    self.most[key] = n
                    self.where[key] = _calls(frame)

    def _hook(self, frame: Any, event: str, arg: Any) -> None:
        in_ctl = frame.f_globals.get("__name__", "").startswith("threadpoolctl")
        if not in_ctl and (self._dirty or len(sys.modules) != self._n_modules):
            self._observe(frame)
        if in_ctl or (event in ("c_call", "c_return")
                      and _is_thread_setter(getattr(arg, "__name__", ""))):
            self._dirty = True

    def _first_in_thread(self, frame: Any, event: str, arg: Any) -> None:
        self._observe(frame)
        sys.setprofile(self._hook)
        self._hook(frame, event, arg)

    def over(self, limit: int) -> dict[str, tuple[int, list[str]]]:
        """The pools seen above ``limit`` threads: key -> (most threads, where)."""
        return {k: (n, self.where[k]) for k, n in self.most.items() if n > limit}


def _is_thread_setter(name: str) -> bool:
    """``set_num_threads``, ``_set_num_threads``, ``omp_set_num_threads``..."""
    return "set_num_threads" in name


def _calls(frame: Any, depth: int = 6) -> list[str]:
    """``module.function`` of ``frame`` and its callers, outermost first."""
    out = []
    while frame is not None and len(out) < depth:
        out.append(f"{frame.f_globals.get('__name__')}.{frame.f_code.co_qualname}")
        frame = frame.f_back
    return out[::-1]


#: glibc's mallopt parameter numbers (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def steady_allocator(threshold_bytes: int = 1 << 30) -> bool:
    """Let glibc's malloc keep freed blocks of up to ``threshold_bytes`` for reuse instead
    of handing them back to the system; returns whether the setting was applied (False
    off glibc).

    By default glibc maps every block above a moving threshold (128 KiB, raised to the
    size of the last freed mapped block, at most 32 MiB) afresh and unmaps it on free, so
    a PyTorch CPU tensor of a few MiB made and dropped on every call costs a page fault
    per 4 KiB on every call, and whether it does depends on what ran before: a timing
    would measure the allocator's history rather than the code (figures:
    docs/speed.md).
    PyTorch's CPU performance guide recommends replacing the allocator (jemalloc,
    tcmalloc) for the same reason. The cost: freed memory stays with the process and
    would count in the next measurement of peak resident memory, so
    :func:`release_free_memory` hands it back before each one. ``densbench run`` calls
    this in every process that runs cells, and the benchmarks in theirs.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    # blocks below the mmap threshold come from the heap, and top-of-heap memory below
    # the trim threshold is kept: the trim threshold follows only where the first took
    # (alone it would just keep heap memory without saving any fresh mapping). Older
    # glibc caps the mmap threshold at 32 MiB: that is tried next.
    for size in (min(int(threshold_bytes), 2**31 - 1), 32 << 20):
        value = ctypes.c_int(size)
        if mallopt(_M_MMAP_THRESHOLD, value):
            return bool(mallopt(_M_TRIM_THRESHOLD, value))
    return False


def release_free_memory() -> bool:
    """Hand the heap memory that malloc holds free back to the system (glibc's
    ``malloc_trim(0)``, every arena); returns whether it was called (False off glibc).

    Under :func:`steady_allocator` freed blocks stay resident; without this, a cell's
    peak resident memory would include what earlier cells in the same process freed.
    ``densbench run`` calls it before measuring each cell.

    Example:
        >>> isinstance(release_free_memory(), bool)
        True
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return False
    # (no gc.collect() first: a full collection walks every object of a process that has
    # imported PyTorch, a cost per cell that frees nothing malloc_trim needs: what
    # Python has freed is already free to malloc)
    trim(ctypes.c_size_t(0))
    return True


def blas_thread_count() -> int:
    """Threads of the BLAS libraries loaded in this process (the largest, as
    threadpoolctl reports it; 0 when none is loaded)."""
    from threadpoolctl import threadpool_info

    return max((int(i["num_threads"]) for i in threadpool_info() if i["user_api"] == "blas"),
               default=0)


def _best_seconds(fn: Any, repeats: int) -> float:
    fn()  # warm-up: first-touch page faults, thread start-up
    best = math.inf
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _rate(make_op: Any, work: float, repeats: int, workers: int | None) -> float:
    """``work`` units per second of the operation that ``make_op()`` returns: on
    PyTorch's own threads (``workers`` None), or ``workers`` copies at once, one per
    worker thread of :func:`densbench.parallel.run_workers` (each single-threaded)."""
    if workers is None:
        return work / _best_seconds(make_op(), repeats)
    from densbench.parallel import run_workers

    ops = [make_op() for _ in range(workers)]
    free = iter(range(0))
    lock = threading.Lock()

    def one() -> None:
        with lock:
            i = next(free)
        ops[i]()

    def all_at_once() -> None:
        nonlocal free
        free = iter(range(workers))
        run_workers(one, workers, together=True)

    return workers * work / _best_seconds(all_at_once, repeats)


def gemm_rate(dtype: Any = None, n: int = 1024, repeats: int = 5,
              workers: int | None = None) -> float:
    """Floating-point operations per second (``2 n^3`` per product) of an ``n x n`` PyTorch
    matrix product into a preallocated output, best of ``repeats``: on the threads PyTorch
    uses now (``workers`` None), or ``workers`` products at once, each on one worker thread
    (the way :func:`densbench.estimators.kde.log_kernel_sums` runs). ``dtype`` defaults to
    ``torch.float64``.

    Example:
        >>> import torch
        >>> gemm_rate(torch.float32, n=64, repeats=1) > 0 < gemm_rate(n=64, workers=2)
        True
    """
    import torch

    dtype = torch.float64 if dtype is None else dtype

    def make_op() -> Any:
        gen = torch.Generator().manual_seed(0)
        a = torch.randn((n, n), generator=gen, dtype=dtype)
        b = torch.randn((n, n), generator=gen, dtype=dtype)
        out = torch.empty((n, n), dtype=dtype)
        return lambda: torch.mm(a, b, out=out)

    return _rate(make_op, 2.0 * n ** 3, repeats, workers)


def exp_rate(dtype: Any = None, n: int = 1 << 19, low: float = -700.0,
             repeats: int = 5, workers: int | None = None) -> float:
    """Exponentials per second of PyTorch's ``exp`` on ``n`` arguments spread over
    ``[low, 0]``, into a preallocated output (4 MiB in float64 by default: cache-resident,
    like a block of :func:`densbench.estimators.kde.log_kernel_sums`), best of
    ``repeats``; threads as in :func:`gemm_rate`. Arguments below about -708 (float64)
    or -87 (float32) would measure the slow subnormal path instead.

    Example:
        >>> exp_rate(n=1024, repeats=1) > 0 < exp_rate(n=1024, workers=2)
        True
    """
    import torch

    dtype = torch.float64 if dtype is None else dtype

    def make_op() -> Any:
        x = torch.linspace(low, 0.0, n, dtype=dtype)
        out = torch.empty_like(x)
        return lambda: torch.exp(x, out=out)

    return _rate(make_op, float(n), repeats, workers)
