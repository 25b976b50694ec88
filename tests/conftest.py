"""Test-session settings: one thread for PyTorch and for every BLAS library.

On a shared 2-core machine, small PyTorch operations (and OpenBLAS calls) on 2 threads
stall intermittently (seen: 10-30x slower fits, 100x slower SVDs, when another process holds
a core); one thread keeps the suite's time stable. Numbers do not depend on it (the tests
compare with tolerances or with themselves at the same setting).
"""

from densbench.metrics.timing import limit_threads

limit_threads(1)


def pytest_collection_modifyitems(config, items):
    """The slow end-to-end tests first (a stable sort: otherwise collection order). Under
    pytest-xdist's work stealing (`-n 2 --dist worksteal`, the README's command) a worker
    that runs out takes tests from the other's tail, so long tests started first balance
    and do not leave one worker finishing them alone."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
