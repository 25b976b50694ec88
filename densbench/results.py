"""Reading stored results: ``db.results.load("results/<run>")`` -> tidy DataFrame.

A run folder is data: reading it checks every record against the record schema (one that
fails raises :class:`RecordError` naming its file and field) and never imports, calls or
unpickles anything a record names. The store itself (the only writer) lives in
:mod:`densbench.runner.store`.
"""

from densbench.runner.records import RecordError, decode_array
from densbench.runner.store import load, load_per_example

__all__ = ["RecordError", "decode_array", "load", "load_per_example"]
