"""Thread discipline of EVERY registered estimator: no BLAS, LAPACK, OpenMP or PyTorch
pool runs above the process's thread limit during ``fit`` or ``score_samples``.

The test session sets the limit as the runner's worker processes do
(:func:`densbench.metrics.timing.limit_threads`, ``tests/conftest.py``: one thread, the
limit of each of ``--workers 2`` on 2 cores). A library that sets a pool again inside fit
or score (``torch.set_num_threads``, ``threadpool_limits`` with a higher count, a BLAS
library loaded late with its own default) would oversubscribe the cores that the runner
shares out; :class:`~densbench.metrics.timing.ThreadAudit` watches every pool from inside
the calls.
"""

from __future__ import annotations

import pytest

import densbench as db
from densbench.metrics.timing import ThreadAudit, process_thread_limit
from densbench.testing import check_data


@pytest.mark.parametrize("name", db.estimators.names())
def test_fit_and_score_stay_within_the_thread_limit(name):
    limit = process_thread_limit()  # tests/conftest.py's
    assert limit is not None
    cls = db.estimators.get(name)
    X, X_val, X_test = check_data(cls)
    est = db.estimators.make(name, **cls.test_params())
    with ThreadAudit() as audit:
        est.fit(X, X_val)
        if est.likelihood is not db.estimators.LikelihoodKind.NONE:
            est.score_samples(X_test)
    assert audit.most["torch"] >= 1  # the audit read the pools
    assert audit.over(limit) == {}, f"{name}: pools above {limit} thread(s): {audit.over(limit)}"
