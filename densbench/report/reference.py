"""Published figures (``results/reference/*.toml``) shown beside densbench's own numbers.

A reference file states one source, the metric and unit, what its ``±`` means, and the
PROTOCOL under which the figures were obtained: the dataset, its split (which rows train,
validate and test), preprocessing, binarization, augmentation of the training rows and
pixel order. The report shows a figure beside a dataset's results only when every
protocol key the figure states equals the run's (:func:`run_protocol`), and when its
``±`` can be stated as densbench's ±1 standard error; otherwise the figure is kept apart
with the keys that differ (:func:`refused`). Numbers obtained under another protocol are
not comparable: a model trained on flipped images saw twice the training rows.

File format (every key checked by :func:`load_references`)::

    source = "Author (year), Title, Venue, pages"
    metric = "test_loglik"               # a catalogue metric, in its catalogue unit
    unit = "nats/example"
    error_kind = "standard error"        # or "standard deviation", "none printed"
    error_multiple = 2                   # the printed ± is 2 of them
    checked = "what was verified, against which copy of the source"
    [protocol]                           # keys of PROTOCOL_KEYS
    dataset = "uci_power"
    augmentation = "none"
    [[figures]]
    estimator = "MADE MoG"
    value = -1.23
    error = 0.04                         # as printed
    citation = "Table 1"
    note = "..."                         # optional
    protocol = { pixel_order = "..." }   # optional: this figure's own protocol keys
    error_kind = "standard deviation"    # optional, with error_multiple: this figure's ±
"""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from densbench.metrics import catalogue as C

__all__ = ["ERROR_KINDS", "PROTOCOL_KEYS", "RUN_PROTOCOL", "Reference",
           "default_reference_dir", "differences", "load_references", "matching", "refused",
           "refused_line", "run_protocol"]

#: What a reference file's ``error_kind`` may say, and whether such an error can be shown
#: as densbench's ±1 standard error (a standard deviation over runs or rows cannot).
ERROR_KINDS = {"standard error": True, "standard deviation": False, "none printed": True}

#: The protocol keys a reference may state, and what each means.
PROTOCOL_KEYS = {
    "dataset": "densbench's name of the dataset",
    "params": "the dataset's parameters",
    "kind": "continuous or discrete",
    "levels": "the number of discrete levels",
    "dim": "the dimension",
    "source": "the files the data come from",
    "split": "which rows train, validate and test",
    "preprocessing": "what is done to the rows before fitting",
    "binarization": "how grey levels become 0/1, and how often the draw is made",
    "augmentation": "what is added to the training rows",
    "pixel_order": "the order of an image's values in a row",
}

#: What densbench does for every dataset and no loader states: it fits the training split
#: as loaded, adding nothing to it (estimators/training.py draws minibatches of the rows
#: themselves). Loaders' own protocol keys take precedence.
RUN_PROTOCOL: dict[str, Any] = {"augmentation": "none"}

_FILE_KEYS = {"source", "metric", "unit", "error_kind", "error_multiple", "checked",
              "protocol", "figures"}
_FIGURE_KEYS = {"estimator", "value", "error", "error_kind", "error_multiple", "citation",
                "note", "protocol"}


@dataclass(frozen=True)
class Reference:
    """One published figure: ``value`` ± ``error`` (as printed: ``error_multiple`` of
    ``error_kind``), from ``citation`` in ``source``, under ``protocol``."""

    estimator: str
    value: float
    error: float | None
    error_kind: str
    error_multiple: float | None
    metric: str
    unit: str
    source: str
    citation: str
    protocol: dict[str, Any]
    path: str
    note: str = ""
    shown_as: str = field(default="", compare=False)

    @property
    def comparable_error(self) -> bool:
        """Whether the ``±`` can be stated as one standard error."""
        return ERROR_KINDS[self.error_kind]


def default_reference_dir() -> Path | None:
    """``$DENSBENCH_REFERENCE_DIR``, else the checkout's ``results/reference/``."""
    env = os.environ.get("DENSBENCH_REFERENCE_DIR")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parents[2] / "results" / "reference"
    return here if here.is_dir() else None


def load_references(root: str | Path | None = None) -> list[Reference]:
    """Every figure of every ``*.toml`` in ``root``; a file that breaks the format raises
    ValueError naming the file and what is wrong."""
    folder = Path(root) if root is not None else default_reference_dir()
    if folder is None or not folder.is_dir():
        return []
    out: list[Reference] = []
    for path in sorted(folder.glob("*.toml")):
        try:
            out += _read_file(path)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"malformed reference file {path}: not TOML ({exc})") from None
        except (KeyError, TypeError, ValueError) as exc:
            why = exc.args[0] if exc.args else repr(exc)
            raise ValueError(f"malformed reference file {path}: {why}") from None
    return out


def _require(ok: bool, why: str) -> None:
    if not ok:
        raise ValueError(why)


def _text(raw: dict, key: str, where: str) -> str:
    value = raw.get(key)
    _require(isinstance(value, str) and bool(value.strip()),
             f"{where}: '{key}' must be a non-empty string (got {value!r})")
    return value


def _number(value: Any, what: str, positive: bool = False) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) \
        and math.isfinite(value) and (value > 0 if positive else True)
    _require(ok, f"{what} must be a finite {'positive ' if positive else ''}number "
                 f"(got {value!r})")
    return float(value)


def _protocol(raw: Any, where: str) -> dict[str, Any]:
    _require(isinstance(raw, dict), f"{where}: 'protocol' must be a table")
    unknown = sorted(set(raw) - set(PROTOCOL_KEYS))
    _require(not unknown, f"{where}: unknown protocol key(s) {unknown}; known: "
                          f"{sorted(PROTOCOL_KEYS)}")
    return dict(raw)


def _error_kind(raw: dict, where: str) -> tuple[str, float | None]:
    """``error_kind`` and ``error_multiple`` of a file or figure, checked: a known kind,
    and a positive multiple exactly when errors are printed."""
    kind = raw.get("error_kind")
    _require(kind in ERROR_KINDS, f"{where}: error_kind must be one of {sorted(ERROR_KINDS)} "
                                  f"(got {kind!r})")
    multiple = raw.get("error_multiple")
    if kind == "none printed":
        _require(multiple is None, f"{where}: error_multiple given for errors 'none printed'")
        return kind, None
    return kind, _number(multiple, f"{where}: error_multiple (how many {kind}s the ± is)",
                         True)


def _header(raw: dict) -> dict[str, Any]:
    """The file's own keys, checked: metric and unit of the catalogue, the error's kind
    and multiple, the protocol."""
    unknown = sorted(set(raw) - _FILE_KEYS)
    _require(not unknown, f"unknown key(s) {unknown}; known: {sorted(_FILE_KEYS)}")
    head = {k: _text(raw, k, "the file") for k in ("source", "metric", "unit", "checked")}
    try:
        unit = C.get(head["metric"]).unit
    except KeyError:
        raise ValueError(f"metric {head['metric']!r} is not in the catalogue") from None
    _require(head["unit"] == unit, f"unit {head['unit']!r} is not the catalogue's unit of "
                                   f"{head['metric']} ({unit!r})")
    kind, multiple = _error_kind(raw, "the file")
    protocol = _protocol(raw.get("protocol"), "the file")
    _require(isinstance(protocol.get("dataset"), str), "protocol must state the dataset")
    figures = raw.get("figures")
    _require(isinstance(figures, list) and bool(figures), "no [[figures]]")
    return {**head, "error_kind": kind, "error_multiple": multiple, "protocol": protocol}


def _read_file(path: Path) -> list[Reference]:
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    head = _header(raw)
    out = []
    for i, fig in enumerate(raw["figures"], start=1):
        where = f"figure {i}"
        _require(isinstance(fig, dict), f"{where} is not a table")
        unknown = sorted(set(fig) - _FIGURE_KEYS)
        _require(not unknown, f"{where}: unknown key(s) {unknown}")
        _require("error_multiple" not in fig or "error_kind" in fig,
                 f"{where}: error_multiple without its error_kind")
        kind, multiple = (_error_kind(fig, where) if "error_kind" in fig
                          else (head["error_kind"], head["error_multiple"]))
        error = fig.get("error")
        if kind == "none printed":
            _require(error is None, f"{where}: an error given, but errors are 'none printed'")
        elif error is not None:
            error = _number(error, f"{where}: error")
            _require(error >= 0, f"{where}: error must be >= 0")
        own = _protocol(fig.get("protocol", {}), where)
        out.append(Reference(
            estimator=_text(fig, "estimator", where),
            value=_number(fig.get("value"), f"{where}: value"), error=error,
            error_kind=kind, error_multiple=multiple,
            metric=head["metric"], unit=head["unit"], source=head["source"],
            citation=_text(fig, "citation", where), protocol={**head["protocol"], **own},
            path=str(path), note=str(fig.get("note", ""))))
    return out


def run_protocol(protocol: dict[str, Any]) -> dict[str, Any]:
    """A dataset's protocol with what densbench does for every dataset
    (:data:`RUN_PROTOCOL`) where the loader states nothing."""
    return {**RUN_PROTOCOL, **protocol}


def differences(ref: Reference, protocol: dict[str, Any]) -> list[str]:
    """What keeps ``ref`` from standing beside a run under ``protocol``: each protocol key
    it states that the run states otherwise (or not at all), and a ``±`` that is not a
    standard error. Empty when the figure is comparable."""
    run = run_protocol(protocol)
    out = [f"{k}: {_short(v)} (this run: {_short(run[k])})" if k in run else
           f"{k}: {_short(v)} (this run states none)"
           for k, v in ref.protocol.items() if k not in run or run[k] != v]
    if not ref.comparable_error:
        m = float(ref.error_multiple or 1.0)
        out.append(f"its ± is {m:g} {ref.error_kind}{'s' if m != 1 else ''}, not a standard "
                   "error")
    return out


def _short(value: Any, limit: int = 48) -> str:
    """``value`` for a sentence, a long text cut to ``limit`` characters."""
    text = str(value)
    return repr(text if len(text) <= limit else text[:limit - 3] + "...")


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


def _one_se(ref: Reference) -> Reference:
    """``ref`` with its error as ONE standard error (densbench's ±) and ``shown_as``
    saying so: a printed ±2 SE of 0.02 becomes 0.01, labelled as converted."""
    if ref.error_kind == "none printed":
        return replace(ref, shown_as="no error printed")
    m = float(ref.error_multiple or 1.0)
    if m == 1.0:
        return replace(ref, shown_as="± 1 standard error, as printed")
    return replace(ref, error=None if ref.error is None else ref.error / m, error_multiple=1.0,
                   shown_as=f"± 1 standard error: the source printed ± {m:g} standard errors, "
                            f"divided by {m:g} here")


def matching(refs: list[Reference], protocol: dict[str, Any],
             metric: str = C.TEST_LOGLIK) -> list[Reference]:
    """The figures comparable with a run under ``protocol`` (no :func:`differences`), in
    ``metric`` and its catalogue unit (bits/dim converted to nats/example with
    ``protocol["dim"]``), each error as one standard error (``shown_as`` says how).

    Example:
        >>> r = Reference("X", -1.0, 0.02, "standard error", 2.0, "test_loglik",
        ...               "nats/example", "s", "Table 1", {"dataset": "digits", "split": "a"},
        ...               "f.toml")
        >>> [(m.error, m.shown_as[:21]) for m in matching([r], {"dataset": "digits",
        ...                                                   "split": "a"})]
        [(0.01, '± 1 standard error: t')]
        >>> matching([r], {"dataset": "digits", "split": "b"})
        []
        >>> b = Reference("Y", 1.0, None, "none printed", None, "test_bits_per_dim",
        ...               "bits/dim", "s", "Table 2", {"dataset": "digits"}, "g.toml")
        >>> round(matching([b], {"dataset": "digits", "dim": 64})[0].value, 4)  # -64 ln 2
        -44.3614
    """
    unit = C.get(metric).unit
    out = []
    for r in refs:
        converted = _in_unit(r, metric, unit, protocol.get("dim"))
        if converted is not None and not differences(r, protocol):
            out.append(_one_se(converted))
    return out


def refused(refs: list[Reference], protocol: dict[str, Any],
            metric: str = C.TEST_LOGLIK) -> list[tuple[Reference, list[str]]]:
    """The figures on the same data as ``protocol`` (dataset, kind and levels; in a unit of
    ``metric``) that :func:`matching` keeps out, each with its :func:`differences`."""
    unit = C.get(metric).unit
    out = []
    for r in refs:
        other_data = any(k in r.protocol and r.protocol[k] != protocol.get(k)
                         for k in ("dataset", "kind", "levels"))
        if other_data or _in_unit(r, metric, unit, protocol.get("dim")) is None:
            continue
        why = differences(r, protocol)
        if why:
            out.append((r, why))
    return out


def refused_line(apart: list[tuple[Reference, list[str]]]) -> str:
    """One sentence for a report: the figures kept apart, grouped by file and by what
    differs, each with its value as printed and its citation."""
    groups: dict[tuple[str, tuple[str, ...]], list[Reference]] = {}
    for r, why in apart:
        groups.setdefault((r.path, tuple(why)), []).append(r)
    parts = []
    for (_, why), rs in groups.items():
        figures = ", ".join(f"{r.estimator} {r.value:g} {r.unit} ({r.citation})" for r in rs)
        parts.append(f"{figures} [{rs[0].source}]: " + "; ".join(why))
    return ("Published under another protocol, so not in the table: " + " | ".join(parts)
            + ".")
