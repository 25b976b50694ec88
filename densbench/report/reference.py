"""Published figures (``results/reference/*.toml``) shown beside densbench's own numbers.

A reference file states one source, the metric and unit, and the PROTOCOL under which the
figures were obtained (dataset, split, preprocessing, binarization, K of importance
sampling...). The report shows a file's figures for a dataset only when every key of that
protocol equals the dataset's own :attr:`~densbench.data.base.Dataset.protocol` (and the
metric and unit are densbench's), and never otherwise: numbers obtained under another
protocol are not comparable.

File format::

    source = "Author (year), Title, Venue, Table N"
    metric = "test_loglik"
    unit = "nats/example"
    error = "2 standard errors"          # what the ± means
    [protocol]
    dataset = "digits"
    ...                                  # any keys of Dataset.protocol
    [[figures]]
    estimator = "MADE MoG"
    value = -1.23
    error = 0.04
"""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from densbench.metrics import catalogue as C

__all__ = ["Reference", "default_reference_dir", "load_references", "matching"]


@dataclass(frozen=True)
class Reference:
    estimator: str
    value: float
    error: float | None
    error_kind: str
    metric: str
    unit: str
    source: str
    protocol: dict[str, Any]
    path: str


def default_reference_dir() -> Path | None:
    """``$DENSBENCH_REFERENCE_DIR``, else the checkout's ``results/reference/``."""
    env = os.environ.get("DENSBENCH_REFERENCE_DIR")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parents[2] / "results" / "reference"
    return here if here.is_dir() else None


def load_references(root: str | Path | None = None) -> list[Reference]:
    """Every figure of every ``*.toml`` in ``root``; a malformed file raises ValueError
    naming it."""
    folder = Path(root) if root is not None else default_reference_dir()
    if folder is None or not folder.is_dir():
        return []
    out: list[Reference] = []
    for path in sorted(folder.glob("*.toml")):
        try:
            raw = tomllib.loads(path.read_text())
            for key in ("source", "metric", "unit", "protocol", "figures"):
                if key not in raw:
                    raise KeyError(key)
            for fig in raw["figures"]:
                out.append(Reference(
                    estimator=str(fig["estimator"]), value=float(fig["value"]),
                    error=float(fig["error"]) if "error" in fig else None,
                    error_kind=str(raw.get("error", "")), metric=str(raw["metric"]),
                    unit=str(raw["unit"]), source=str(raw["source"]),
                    protocol=dict(raw["protocol"]), path=str(path)))
        except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed reference file {path}: {exc!r}") from None
    return out


def _in_unit(ref: Reference, metric: str, unit: str, dim: Any) -> Reference | None:
    """``ref`` in ``metric``/``unit``, converting bits/dim to nats/example exactly with the
    dataset's dimension; ``None`` when it is another quantity."""
    if ref.metric == metric and ref.unit == unit:
        return ref
    if (ref.metric, ref.unit, metric, unit) == (C.TEST_BITS_PER_DIM, "bits/dim",
                                                C.TEST_LOGLIK, "nats/example") and dim:
        per_bit = float(dim) * math.log(2.0)
        return replace(ref, metric=metric, unit=unit, value=-ref.value * per_bit,
                       error=None if ref.error is None else ref.error * per_bit,
                       source=f"{ref.source} (converted from {ref.value:g} bits/dim)")
    return None


def matching(refs: list[Reference], protocol: dict[str, Any],
             metric: str = C.TEST_LOGLIK) -> list[Reference]:
    """The figures whose protocol agrees with ``protocol`` on every key they state, in
    ``metric`` and the catalogue's unit of it (figures in bits/dim are converted to
    nats/example with ``protocol["dim"]``).

    Example:
        >>> r = Reference("X", -1.0, 0.1, "2 SE", "test_loglik", "nats/example", "s",
        ...               {"dataset": "digits", "split": "a"}, "f.toml")
        >>> len(matching([r], {"dataset": "digits", "split": "a", "kind": "discrete"}))
        1
        >>> len(matching([r], {"dataset": "digits", "split": "b"}))
        0
        >>> b = Reference("Y", 1.0, None, "", "test_bits_per_dim", "bits/dim", "s",
        ...               {"dataset": "digits"}, "g.toml")
        >>> round(matching([b], {"dataset": "digits", "dim": 64})[0].value, 4)  # -64 ln 2
        -44.3614
    """
    unit = C.get(metric).unit
    out = []
    for r in refs:
        if all(k in protocol and protocol[k] == v for k, v in r.protocol.items()):
            converted = _in_unit(r, metric, unit, protocol.get("dim"))
            if converted is not None:
                out.append(converted)
    return out
