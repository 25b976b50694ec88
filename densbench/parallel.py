"""Worker threads that each run single-threaded PyTorch.

With PyTorch's own (OpenMP) threads every operation ends at a barrier where all threads
wait for the slowest; on a machine shared with other processes a thread held back by the
OS stalls every operation, so many small operations (block-wise KDE scoring) can run
slower on several threads than on one. :func:`run_workers` instead gives each of N
threads whole pieces of work, each thread running PyTorch on one thread, so a thread held
back delays only its own piece.

Example:
    >>> run_workers(lambda: 6 * 7, 2)
    [42, 42]
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import TypeVar

import torch

__all__ = ["WORKER_MEMORY_MB", "available_memory_mb", "default_workers", "run_workers",
           "usable_cores"]

T = TypeVar("T")

_POOL: tuple[int, ThreadPoolExecutor] | None = None
_POOL_LOCK = threading.Lock()


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity where the OS reports one
    (``taskset``, a cgroup cpuset, a batch scheduler's allocation), else ``os.cpu_count()``.
    Thread counts derived from all of the machine's cores would oversubscribe the ones a
    job was given.

    Example:
        >>> 1 <= usable_cores() <= (os.cpu_count() or 1)
        True
    """
    affinity = getattr(os, "sched_getaffinity", None)
    if affinity is not None:
        try:
            return max(1, len(affinity(0)))
        except OSError:
            pass
    return max(1, os.cpu_count() or 1)


#: Memory to keep free per worker process when the worker count is chosen from the machine:
#: above the peak resident memory of the built-in suites' cells (under 1.6 GB for the
#: images suite's largest, PixelCNN and MAF at 784-D), with room for the run's driver.
WORKER_MEMORY_MB = 2048


def available_memory_mb() -> float | None:
    """Memory the OS can give new processes without swapping (Linux's ``MemAvailable``),
    in MB; None where the OS does not say."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def default_workers(memory_mb: float | None = None) -> int:
    """How many single-threaded cell workers a run starts when it is not told: one per
    usable core, fewer where the available memory (``memory_mb``, by default the OS's
    figure) cannot give each :data:`WORKER_MEMORY_MB`, and at least one.

    One worker per core at one thread each beats fewer workers with more threads: most
    cells' work (small networks, C2ST classifiers on a few thousand rows, EM on small
    sets) is made of small kernels that gain little from a second thread and lose to
    its synchronisation, while a second cell on that core is a second cell done.

    Example:
        >>> default_workers(memory_mb=3 * WORKER_MEMORY_MB) == min(usable_cores(), 3)
        True
        >>> default_workers(memory_mb=100.0)
        1
    """
    cores = usable_cores()
    memory = available_memory_mb() if memory_mb is None else memory_mb
    if memory is None:
        return cores
    return max(1, min(cores, int(memory // WORKER_MEMORY_MB)))


def _single_thread() -> None:
    # Per thread with PyTorch's OpenMP build: the OpenMP and MKL thread counts of THIS
    # thread. It also sets the process-wide default, which run_workers puts back. A thread's
    # first PyTorch call copies that default into it (lazily), so get_num_threads() first:
    # a 1 set before that copy would be overwritten by the caller's count.
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


def _pool(workers: int) -> ThreadPoolExecutor:
    """The worker threads, kept between calls (with what they keep in thread-local
    storage, such as block buffers); made anew when the count changes."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL[0] != workers:
            if _POOL is not None:
                _POOL[1].shutdown(wait=False)
            _POOL = (workers, ThreadPoolExecutor(max_workers=workers,
                                                 thread_name_prefix="densbench-worker"))
        return _POOL[1]


def _forget_pool() -> None:
    global _POOL
    _POOL = None  # a forked child has none of the parent's threads


os.register_at_fork(after_in_child=_forget_pool)


def run_workers(fn: Callable[[], T], workers: int, *, together: bool = False) -> list[T]:
    """Call ``fn()`` ``workers`` times, once in the calling thread and once on each of
    ``workers - 1`` worker threads, each running PyTorch single-threaded, and return the
    results (the calling thread's first; the calling thread's exception is raised, else
    the first worker's, after every call has ended). ``fn`` shares
    out the work itself (for example by taking pieces from a shared iterator under a
    lock); a call that finds no work left returns at once, and a thread that is free
    early may run two calls. With ``together`` every call runs on its own thread and none
    starts before all have (a barrier: for measuring rates); without it no thread waits
    for another. ``workers`` <= 1 calls ``fn`` in the calling thread, on one PyTorch
    thread. The calling thread's PyTorch thread count is left as it was."""
    before = torch.get_num_threads()
    try:
        if workers <= 1:
            torch.set_num_threads(1)
            return [fn()]
        barrier = threading.Barrier(workers) if together else None

        def task() -> T:
            _single_thread()  # cheap when already so
            if barrier is not None:
                barrier.wait()
            return fn()

        # the calling thread does one share itself: one thread fewer to wake and wait for
        futures = [_pool(workers - 1).submit(task) for _ in range(workers - 1)]
        try:
            mine = task()
        finally:
            wait(futures)  # no call outlives this one; the caller's own error goes first
        return [mine, *(f.result() for f in futures)]
    finally:
        torch.set_num_threads(before)
