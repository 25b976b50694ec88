"""Cost measurement: wall-clock stopwatch, peak resident memory, threads."""

from __future__ import annotations

import os
import resource
import threading
import time
from types import TracebackType

__all__ = ["PeakMemory", "Stopwatch", "current_rss_bytes", "limit_threads", "thread_count"]

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def current_rss_bytes() -> int:
    """Resident set size of this process now (Linux /proc; else the peak so far)."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class Stopwatch:
    """``with Stopwatch() as sw: ...`` then ``sw.seconds`` (perf_counter)."""

    def __enter__(self) -> Stopwatch:
        self._t0 = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._t0


class PeakMemory:
    """Peak resident memory while the block runs, sampled every ``interval_s`` by a thread.

    ``peak_bytes`` is the highest RSS seen (the process's, so it includes the data already
    loaded); ``delta_bytes`` is the rise above the RSS at entry.

    Example:
        >>> import numpy as np
        >>> with PeakMemory() as pm:
        ...     a = np.ones(20_000_000)   # 160 MB
        >>> pm.delta_bytes > 100e6
        True
    """

    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval_s = interval_s

    def __enter__(self) -> PeakMemory:
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
    for any loaded later). Without this, SciPy's OpenBLAS kept its default of one thread per
    core inside workers meant to use one: on this 2-core machine, with a second process
    busy, scikit-learn's factor analysis (an SVD of 1257 x 64 per EM step) ran 100x slower
    (0.3 s per SVD instead of 3 ms).
    """
    import numpy  # noqa: F401
    import scipy.linalg  # noqa: F401
    import torch
    from threadpoolctl import threadpool_limits

    for var in _THREAD_VARS:
        os.environ[var] = str(n)
    torch.set_num_threads(n)
    threadpool_limits(n)
