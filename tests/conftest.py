"""Test-session settings: one thread for PyTorch and for every BLAS library.

On a shared 2-core machine, small PyTorch operations (and OpenBLAS calls) on 2 threads
stall intermittently (seen: 10-30x slower fits, 100x slower SVDs, when another process holds
a core); one thread keeps the suite's time stable. Numbers do not depend on it (the tests
compare with tolerances or with themselves at the same setting).
"""

from densbench.metrics.timing import limit_threads

limit_threads(1)
