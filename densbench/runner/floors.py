"""The floors of a run, computed once per dataset, seed and sample size, in the driver.

A floor is every sample metric of a second true sample (validation rows) against the test
split: what a perfect sampler scores at that sample size, the figure a model's sample
metric is read beside. It depends on the data alone, so the driver computes it the first
time a cell of that dataset, seed and sample size finishes with sample metrics, stores it
(``<run>/floors/<key>.json``, with the seconds it took) and adds its ``floor_<m>`` rows to
that cell's record and to every later one that shares it. A resumed run reads the stored
floors instead of computing them again. The cost is counted where a run's costs are: each
floor file's ``seconds``, the record's ``floor`` entry (the floor's key and seconds), and
the manifest invocation's ``floor_seconds`` (the floors that invocation computed). The
driver computes them on the thread that writes records
(:class:`~densbench.runner.execute._Recorder`), beside the loop that watches the cells'
limits, never in it.

Why not in the workers, beside the cell: each worker process would compute each floor
again, and again after every replaced worker, and the time would show in no record.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from typing import Any

from densbench.runner.cell import floor_metrics, now
from densbench.runner.plan import Cell, canonical
from densbench.runner.store import RunStore

__all__ = ["Floors", "floor_key", "warm_up"]

#: What computing a floor imports (PyTorch's optimizers, used by the C2ST metric, bring
#: torch._dynamo and SymPy on their first step: seconds of CPU time).
_FLOOR_MODULES = ("torch", "torch._dynamo", "densbench.metrics.samples",
                  "densbench.metrics.features")


def warm_up() -> None:
    """Import what computing a floor needs, so that the first floor of a run costs what
    the floor does (called before its clock starts)."""
    import importlib

    for module in _FLOOR_MODULES:
        importlib.import_module(module)


def floor_key(cell: Cell) -> str:
    """Stable hash of what a floor depends on: the dataset (with a file's content), the
    seed and the number of samples drawn."""
    key = {"dataset": cell.dataset.to_dict(), "sha256": cell.content, "seed": cell.seed,
           "n_samples": cell.n_samples}
    return hashlib.sha256(canonical(key).encode()).hexdigest()[:16]


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    """PyTorch and BLAS on ``n`` threads for the block (the driver shares the cores with
    its workers), restored after."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(n):
            yield
    finally:
        torch.set_num_threads(before)


def _has_sample_metrics(record: dict[str, Any]) -> bool:
    from densbench.metrics.catalogue import SAMPLE_METRICS, samples

    names = {samples(m) for m in SAMPLE_METRICS}
    return any(m["metric"] in names for m in record.get("metrics") or [])


class Floors:
    """The floors of one run folder; :meth:`attach` adds a cell's floor to its record."""

    def __init__(self, store: RunStore, *, threads: int = 1) -> None:
        self.store, self.threads = store, threads
        #: seconds spent computing floors in this process (those read back cost nothing)
        self.seconds = 0.0
        self._known: dict[str, dict[str, Any]] = {}

    def get(self, cell: Cell, *, compute: bool = True) -> dict[str, Any] | None:
        """The floor of ``cell``'s dataset, seed and sample size: known, stored or computed
        now (and stored); None where it is neither known nor stored and not ``compute``."""
        from densbench.metrics.timing import Stopwatch

        key = floor_key(cell)
        floor = self._known.get(key) or self.store.read_floor(key)
        if floor is None and not compute:
            return None
        if floor is None:
            warm_up()  # the imports are not the floor's cost
            with _threads(self.threads), Stopwatch() as sw:
                metrics = floor_metrics(cell)
            floor = {"key": key, "dataset": cell.dataset.to_dict(), "seed": cell.seed,
                     "n_samples": cell.n_samples, "computed": now(), "seconds": sw.seconds,
                     "metrics": [m.to_dict() for m in metrics]}
            self.store.write_floor(floor)
            self.seconds += sw.seconds
        self._known[key] = floor
        return floor

    def attach(self, cell: Cell, record: dict[str, Any], *, compute: bool = True) -> None:
        """Add the floor rows to an ok record that holds sample metrics; a floor that
        cannot be computed (or, without ``compute``, is not known yet) is noted in the
        record (``floor_error``), which stays ok."""
        if record.get("status") != "ok" or not _has_sample_metrics(record):
            return
        try:
            floor = self.get(cell, compute=compute)
        except Exception as exc:  # the cell's own figures stand without their floor
            record["floor_error"] = f"{type(exc).__name__}: {exc}"
            return
        if floor is None:
            record["floor_error"] = "not computed: the run was interrupted first"
            return
        record["metrics"] = list(record["metrics"]) + floor["metrics"]
        record["floor"] = {"key": floor["key"], "seconds": floor["seconds"]}
