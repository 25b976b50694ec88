"""What a report says of its run in words: the opening paragraph and the provenance,
written from what the run holds (its checked records and manifest), never from what a
suite usually holds."""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

import pandas as pd

from densbench.metrics import catalogue as C
from densbench.report.tables import KIND_LABELS
from densbench.runner.store import dataset_labels

__all__ = ["footer", "intro", "run_description"]

_KIND_MEANINGS = {"exact": "exact", "lower_bound": "bound (a lower bound)",
                  "stochastic_bound": "stoch. bound (a Monte-Carlo estimate of a lower bound)",
                  "none": "none (implicit model: no likelihood)"}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _dataset_phrase(rec: dict[str, Any], label: str) -> str:
    """A dataset as the opening names it: label (kind, levels, dimensions)."""
    data = rec.get("data") or {}
    kind = data.get("kind") or "kind unknown"
    levels = f", {data['levels']} levels" if data.get("levels") else ""
    dim = f", {data['dim']}-D" if data.get("dim") else ""
    return f"{label} ({kind}{levels}{dim})"


def _holds(records: list[dict[str, Any]], names: dict[str, str]) -> str:
    """Estimators x datasets x seeds that the records hold, each named."""
    labels = dataset_labels(records)
    datasets: dict[str, str] = {}
    for rec in records:
        datasets.setdefault(labels[rec["id"]], _dataset_phrase(rec, labels[rec["id"]]))
    ests = sorted({names.get(r["estimator"]["name"], r["estimator"]["name"])
                   for r in records})
    seeds = sorted({int(r["seed"]) for r in records})
    return (f"{_plural(len(ests), 'estimator')} ({', '.join(ests)}) on "
            f"{_plural(len(datasets), 'dataset')}: "
            f"{'; '.join(datasets[k] for k in sorted(datasets))}; "
            f"{'seed' if len(seeds) == 1 else 'seeds'} {', '.join(map(str, seeds))}")


def run_description(manifest: dict[str, Any]) -> str:
    """What the run is: its suite (and file), and whether the command line narrowed it
    (runs whose manifest records ``narrowed_from``).

    Example:
        >>> run_description({"suite": {
        ...     "name": "default", "source": "densbench/suites/default.toml",
        ...     "narrowed_from": {"estimators": 9, "datasets": 7, "seeds": 3}}})[:43]
        'suite default (default.toml), restricted by'
    """
    suite = manifest.get("suite") or {}
    text = f"suite {suite.get('name', 'unknown')}"
    if suite.get("source"):
        text += f" ({PurePath(str(suite['source'])).name})"
    narrowed = suite.get("narrowed_from")
    if isinstance(narrowed, dict):
        text += (", restricted by the command line (the suite as written: "
                 + " x ".join(_plural(int(narrowed.get(k, 0)), k[:-1])
                              for k in ("estimators", "datasets", "seeds")) + ")")
    return text


def _units(records: list[dict[str, Any]], agg: pd.DataFrame) -> str:
    """What the log-likelihoods are, for the kinds of data the run holds."""
    labels = dataset_labels(records)
    discrete = sorted({labels[r["id"]] for r in records
                       if (r.get("data") or {}).get("kind") == "discrete"})
    text = ("Log-likelihoods are in nats per example (and per dimension), in the units of "
            "the original data")
    if not discrete:
        return text + "."
    figures = sorted(set(agg.loc[agg["dataset"].isin(discrete), "figure"].dropna()))
    return (text + f"; on discrete data ({', '.join(discrete)}) also in bits/dim, as "
            f"{'; '.join(figures) or 'discrete log-probability'} (a continuous "
            "estimator's figure there is the uniform-dequantization lower bound on the "
            "discrete log-probability).")


def _best(records: list[dict[str, Any]], agg: pd.DataFrame) -> str:
    """How the best figure of a column is marked, for the columns the run has."""
    best = ["highest log-likelihood"]
    if any((r.get("data") or {}).get("kind") == "discrete" for r in records):
        best.append("lowest bits/dim")
    if C.KL_TO_TRUTH in set(agg.get("metric", [])):
        best.append("lowest KL to the truth")
    return f"Best per column in **bold** ({', '.join(best)})."


def intro(records: list[dict[str, Any]], agg: pd.DataFrame, manifest: dict[str, Any], *,
          paired: bool, names: dict[str, str], skipped: int = 0) -> str:
    """The opening paragraph: the run, how many cells are ok, what the figures are (seeds,
    units, kinds of likelihood), the names shortened."""
    ok = len({r["id"] for r in records if r.get("status") == "ok"})
    n_cells = len({r["id"] for r in records})
    out = [f"A run of {run_description(manifest)}." if manifest else ""]
    if records:
        out.append(f"It holds {_holds(records, names)}.")
    out.append(f"{ok} of {_plural(n_cells, 'cell')} ok"
               + (f", {n_cells - ok} failed" if n_cells > ok else "") + ".")
    if skipped:
        out.append(f"{skipped} record(s) skipped (invalid).")
    seeds = agg.groupby("dataset")["n_seeds"].max() if len(agg) else pd.Series(dtype=int)
    if (seeds >= 2).all() and len(seeds):
        out.append("Figures are means over seeds ± standard error across seeds.")
    elif (seeds >= 2).any():
        out.append("Figures are means over seeds ± standard error across seeds (± SE over "
                   "test examples where a dataset has one seed).")
    elif len(seeds):
        out.append("Figures are one seed's ± standard error over test examples.")
    out.append(_units(records, agg))
    out.append(_best(records, agg))
    if paired:
        across = ", across seeds" if (seeds >= 2).any() else ""
        out.append("'vs best' is the paired difference of per-example test log-likelihoods "
                   f"to the best estimator on the same test points (mean ± SE{across}); "
                   "*tied* means its 95% interval contains 0.")
    kinds = [k for k in KIND_LABELS if k in set(agg.get("likelihood_kind", []))]
    if kinds:
        out.append("Likelihood kinds: " + "; ".join(_KIND_MEANINGS[k] for k in kinds) + ".")
    long = {full: short for full, short in names.items() if full != short}
    if long:
        out.append("Estimators from files are named by file: " + "; ".join(
            f"{short} is `{full}`" for full, short in sorted(long.items())) + ".")
    return " ".join(t for t in out if t)


def footer(manifest: dict[str, Any]) -> list[str]:
    """Provenance lines of a manifest (checked by
    :meth:`~densbench.runner.store.RunStore.read_manifest`)."""
    if not manifest:
        return ["no manifest.json in this run folder (or one that cannot be read)"]
    versions = manifest.get("versions", {})
    machine = manifest.get("machine", {})
    lines = [run_description(manifest),
             f"densbench {versions.get('densbench', '?')}, git "
             f"{manifest.get('git_commit') or 'unknown'}",
             ", ".join(f"{k} {v}" for k, v in versions.items() if k != "densbench"),
             f"machine: {machine.get('platform', '?')}, {machine.get('cpus', '?')} CPUs, "
             f"Python {machine.get('python', '?')}"]
    for inv in manifest.get("invocations", [])[-3:]:
        lines.append(f"`{inv.get('command')}` ({inv.get('started')} to "
                     f"{inv.get('finished') or 'unfinished'})")
    return lines
