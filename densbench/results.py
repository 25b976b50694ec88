"""Reading stored results: ``db.results.load("results/<run>")`` -> tidy DataFrame.

The store itself (the only writer) lives in :mod:`densbench.runner.store`.
"""

from densbench.runner.store import decode_array, load, load_per_example

__all__ = ["decode_array", "load", "load_per_example"]
