"""Test-session settings: one PyTorch thread.

On a shared 2-core machine, small PyTorch operations on 2 threads stall intermittently
(seen: 10-30x slower fits when another process holds a core); one thread keeps the suite's
time stable. Numbers do not depend on it (the tests compare with tolerances or with
themselves at the same setting).
"""

import torch

torch.set_num_threads(1)
