"""Render a run folder to ``report.md`` and a self-contained ``report.html``.

Both show the same content: per-dataset leaderboards (mean ± SE over seeds, likelihood
kind, units in the headers, best in bold, paired ties), a rank heatmap, quality-vs-cost
plots with Pareto fronts, 2-D densities beside the truth, sample galleries, IWAE curves,
the tuning searches (one table per tuned estimator x dataset) and a provenance footer.
Figures are PNG files under ``<out>/figures/`` (``<out>``: the run folder unless another
is given); the HTML embeds them as data URIs so it can be opened anywhere with no network.

A run folder is data, possibly someone else's: the report uses only what its records
store, each record checked first (:func:`~densbench.runner.records.check_record`; one that
fails is left out, named in the report and in an :class:`InvalidRecordWarning`), it never
loads, imports or calls anything a record names, and it writes under ``<out>`` only.
"""

from __future__ import annotations

import base64
import html
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from densbench.metrics import catalogue as C
from densbench.report import figures as F
from densbench.report.datasets import MISSING, confined, dataset_info, file_stem
from densbench.report.reference import load_references, matching, refused, refused_line
from densbench.report.tables import (
    NOTE_MARK,
    aggregate_seeds,
    leaderboards,
    sample_quality_tables,
    tuning_tables,
)
from densbench.report.tuning import found_settings
from densbench.runner.store import RunStore, StoreError, dataset_labels, frame, per_example

__all__ = ["FIGURES", "FORMATS", "InvalidRecordWarning", "write_report"]

#: The folder of the report's figures, inside the report's folder.
FIGURES = "figures"

FORMATS = ("md", "html")

INTRO = ("Figures are means over seeds ± standard error across seeds (± SE over test "
         "examples where a dataset has one seed). Log-likelihoods are in the units of the "
         "original data; for discrete data (digits) continuous estimators report the "
         "uniform-dequantization lower bound on the discrete log-probability, and "
         "discrete-native estimators the discrete log-probability (or its bound). Best per "
         "column in **bold** (highest log-likelihood, lowest bits/dim and KL). 'vs best' "
         "is the paired difference of per-example test log-likelihoods to the best "
         "estimator on the same test points (mean ± SE, across seeds); *tied* means its "
         "95% interval contains 0. Likelihood kinds: exact; bound (a lower bound); stoch. "
         "bound (a Monte-Carlo estimate of a lower bound); none (implicit model: no "
         "likelihood).")


SAMPLE_QUALITY = (
    "Samples against the TEST split, in the data's own space; the first row is the floor, "
    "the same metric between the validation and test splits (what a perfect sampler scores "
    "at that sample size); diag_gaussian, where present, is the simple reference model. "
    "↑ higher is better, ↓ lower, →x closest to x.")


@dataclass
class _Section:
    title: str
    text: list[str] = field(default_factory=list)
    table: pd.DataFrame | None = None
    images: list[tuple[str, Path]] = field(default_factory=list)


@dataclass
class _Report:
    title: str
    summary: str
    sections: list[_Section]
    footer: list[str]


class InvalidRecordWarning(UserWarning):
    """A record left out of a report: its file and what is wrong with it."""


@dataclass
class _Run:
    """What a report reads of a run: its checked records, those that failed the check
    (file, what is wrong) and its manifest; and where the report's files go."""

    name: str
    records: list[dict[str, Any]]
    skipped: list[tuple[Path, str]]
    manifest: dict[str, Any]
    out: Path

    def figure(self, name: str) -> Path:
        return confined(self.out, FIGURES, name)


def _build(run: _Run, reference_dir: str | Path | None = None) -> _Report:
    df = frame(run.records)
    agg = aggregate_seeds(df)
    agg = agg if "label" in agg else agg.assign(label=[])
    galleries = F.render_sample_figures(run.records, run.out, FIGURES)
    n_cells = df["cell_id"].nunique()
    n_ok = df.loc[df["status"] == "ok", "cell_id"].nunique()
    sections: list[_Section] = []
    overview = _Section("Overview")
    for name, fn in (("ranks", F.rank_heatmap), ("quality_vs_cost", F.quality_vs_cost),
                     ("iwae_curves", F.iwae_curves)):
        what = name.replace("_", " ")
        path = _drawn(overview.text, what, fn, agg, run.figure(f"{name}.png")) \
            if not agg.empty else None
        if path:
            overview.images.append((what, path))
    if overview.images or overview.text:
        sections.append(overview)
    sections += _dataset_sections(run, df, agg, galleries, load_references(reference_dir))
    sections += [_Section(title, [text], table)
                 for title, text, table in tuning_tables(run.records)]
    failed = df[df["status"] != "ok"].drop_duplicates("cell_id")
    if len(failed):
        sections.append(_Section("Failed cells", [
            f"{r['estimator']} / {r['dataset']} / seed {r['seed']}: {r['status']}: "
            f"{r['error']}" for _, r in failed.iterrows()]))
    if run.skipped:
        sections.append(_Section("Skipped records", [
            f"{path.name}: {why}" for path, why in run.skipped]))
    skipped = f" {len(run.skipped)} record(s) skipped (invalid)." if run.skipped else ""
    return _Report(f"densbench report: {run.name}",
                   f"{n_ok} of {n_cells} cells ok.{skipped} {INTRO}", sections,
                   _footer(run.manifest))


def _dataset_sections(run: _Run, df: pd.DataFrame, agg: pd.DataFrame, galleries: F.Galleries,
                      references: list) -> list[_Section]:
    """Per dataset: the leaderboard (with published figures of the same protocol), the
    sample-quality table and figures, the densities and the sample galleries."""
    sections = []
    sample_tables = sample_quality_tables(df)
    labels = dataset_labels(run.records)  # the tables' name of each record's dataset
    for dataset, table in leaderboards(df, per_example(run.records)).items():
        g = agg[agg["dataset"] == dataset]
        recs = [r for r in run.records if labels[r["id"]] == dataset
                and r.get("status") == "ok"]
        missing = {galleries.missing[r["id"]] for r in recs if r["id"] in galleries.missing}
        sec = _Section(dataset, _dataset_text(g), table)
        info = dataset_info(recs[0]) if recs else None
        if recs and info is None:
            missing.add("info")
        published = matching(references, info.protocol) if info is not None else []
        if published:
            sec.table = _with_published(table, published)
            sec.text.append("Published figures (same protocol): " + "; ".join(
                sorted({f"{r.source} ({r.shown_as})" for r in published})) + ".")
        apart = refused(references, info.protocol) if info is not None else []
        if apart:
            sec.text.append(refused_line(apart))
        quality = sample_tables.get(dataset)
        if quality is not None:
            sections.append(sec)
            sec = _Section(f"{dataset}: sample quality", [SAMPLE_QUALITY], quality)
            path = _drawn(sec.text, "sample metrics figure", F.sample_metrics_vs_floor, agg,
                          dataset, run.figure(f"samples_{file_stem(dataset)}.png"))
            if path:
                sec.images.append((f"sample metrics vs floor on {dataset}", path))
        path, with_truth = _drawn(sec.text, "density figure", F.density_panels, recs,
                                  run.figure(f"density_{file_stem(dataset)}.png")) or (None, False)
        if path:
            sec.images.append((f"densities on {dataset}", path))
            if not with_truth and any((r.get("data") or {}).get("has_truth") for r in recs):
                missing.add("truth_grid")
        sec.images += _gallery_images(recs, galleries, dataset)
        sec.text += [f"Gallery not drawn: {galleries.failed[r['id']]}." for r in recs
                     if r["id"] in galleries.failed]
        if missing:
            sec.text.append("Not shown: " + "; ".join(MISSING[k] for k in sorted(missing)) + ".")
        sections.append(sec)
    return sections


def _drawn(notes: list[str], what: str, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``; None, with a line in ``notes``, where matplotlib cannot draw what
    the records hold (figures near the end of the float range, say)."""
    try:
        return fn(*args)
    except (ValueError, OverflowError, FloatingPointError) as exc:
        notes.append(f"The {what} could not be drawn: {exc}.")
        return None


def _dataset_text(g: pd.DataFrame) -> list[str]:
    """A dataset section's opening lines: figure kinds, seeds, the truth, notes."""
    kinds = sorted(set(g["figure"].dropna()))
    seeds = int(g["n_seeds"].max()) if len(g) else 0
    text = [f"Figure: {'; '.join(kinds) or 'n/a'}. Seeds: {seeds}."]
    truth = g[g["metric"] == C.TEST_LOGLIK_TRUTH]
    if len(truth):
        t = truth.iloc[0]
        text.append(f"True density on the test split: {t['mean']:.3f} ± {t['se']:.3f} "
                    "nats/example (E_data log p_true; compare E_model log p_true, the "
                    "true log-density of each model's samples).")
    notes = sorted(set(g["note"].dropna()))
    if notes:
        text.append(f"Marked{NOTE_MARK}: {'; '.join(notes)}.")
    return text


def _gallery_images(recs: list[dict], galleries: F.Galleries,
                    dataset: str) -> list[tuple[str, Path]]:
    """The first seed's sample galleries of a dataset, by estimator."""
    if not recs:
        return []
    first = min(int(r["seed"]) for r in recs)
    return [(f"{r['estimator']['name']} samples on {dataset}", galleries.paths[r["id"]])
            for r in sorted(recs, key=lambda r: r["estimator"]["name"])
            if int(r["seed"]) == first and r["id"] in galleries.paths]


def _with_published(table: pd.DataFrame, published: list) -> pd.DataFrame:
    """The leaderboard with one row per published figure (marked, never bold)."""
    rows = []
    for r in published:
        row = {c: "--" for c in table.columns}
        row["likelihood"] = "published"
        row[C.get(C.TEST_LOGLIK).header] = (f"{r.value:.3f}" if r.error is None
                                              else f"{r.value:.3f} ± {r.error:.3f}")
        rows.append(pd.Series(row, name=f"{r.estimator} (published)"))
    extra = pd.DataFrame(rows)
    extra.index.name = table.index.name
    return pd.concat([table, extra])


def _footer(manifest: dict) -> list[str]:
    """Provenance lines of a manifest (checked by :meth:`RunStore.read_manifest`)."""
    if not manifest:
        return ["no manifest.json in this run folder (or one that cannot be read)"]
    versions = manifest.get("versions", {})
    machine = manifest.get("machine", {})
    lines = [f"suite: {manifest.get('suite', {}).get('name', '?')}",
             f"densbench {versions.get('densbench', '?')}, git "
             f"{manifest.get('git_commit') or 'unknown'}",
             ", ".join(f"{k} {v}" for k, v in versions.items() if k != "densbench"),
             f"machine: {machine.get('platform', '?')}, {machine.get('cpus', '?')} CPUs, "
             f"Python {machine.get('python', '?')}"]
    for inv in manifest.get("invocations", [])[-3:]:
        lines.append(f"`{inv.get('command')}` ({inv.get('started')} to "
                     f"{inv.get('finished') or 'unfinished'})")
    return lines


# -- Markdown ----------------------------------------------------------------------------

def _md_table(table: pd.DataFrame) -> str:
    headers = [table.index.name or ""] + [str(c) for c in table.columns]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for idx, row in table.iterrows():
        lines.append("| " + " | ".join([str(idx)] + [str(v) for v in row]) + " |")
    return "\n".join(lines)


def _markdown(rep: _Report, root: Path) -> str:
    out = [f"# {rep.title}", "", rep.summary, ""]
    for sec in rep.sections:
        out += [f"## {sec.title}", ""]
        bullet = sec.title == "Failed cells"
        out += [f"- {t}" if bullet else t for t in sec.text] + ([""] if sec.text else [])
        if sec.table is not None:
            out += [_md_table(sec.table), ""]
        for alt, path in sec.images:
            out.append(f"![{alt}]({path.resolve().relative_to(root.resolve()).as_posix()})")
        if sec.images:
            out.append("")
    out += ["## Provenance", ""] + [f"- {line}" for line in rep.footer] + [""]
    return "\n".join(out)


# -- HTML --------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;
max-width:1200px;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1em;font-size:0.85em}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}
th:first-child,td:first-child{text-align:left}
th{background:#f3f3f3}
img{max-width:100%;margin:0.3em 0.3em 0.3em 0;border:1px solid #eee}
figure{display:inline-block;margin:0 0.5em 0.5em 0;vertical-align:top}
figcaption{font-size:0.75em;color:#555}
footer{margin-top:2em;font-size:0.8em;color:#555;border-top:1px solid #ddd}
"""


def _inline_md(text: str) -> str:
    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    text = re.sub(r"\*(.+?)\*", r"<i>\1</i>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def _html_table(table: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>"
                   for c in [table.index.name or ""] + list(table.columns))
    rows = []
    for idx, row in table.iterrows():
        cells = "".join(f"<td>{_inline_md(str(v))}</td>" for v in [idx, *row])
        rows.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _img(alt: str, path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(alt)}</figcaption></figure>")


def _html(rep: _Report) -> str:
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
             f"<title>{html.escape(rep.title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{html.escape(rep.title)}</h1><p>{_inline_md(rep.summary)}</p>"]
    for sec in rep.sections:
        parts.append(f"<h2>{html.escape(sec.title)}</h2>")
        parts += [f"<p>{_inline_md(t)}</p>" for t in sec.text]
        if sec.table is not None:
            parts.append(_html_table(sec.table))
        parts += [_img(alt, path) for alt, path in sec.images]
    parts.append("<footer><h3>Provenance</h3><ul>"
                 + "".join(f"<li>{_inline_md(line)}</li>" for line in rep.footer)
                 + "</ul></footer></body></html>")
    return "\n".join(parts)


def _read_run(run_dir: Path, out: Path) -> _Run:
    """A run's checked records (a warning for each one left out) and its manifest (one
    that cannot be read is shown as missing)."""
    store = RunStore(run_dir)
    records, skipped = store.checked_records()
    for path, why in skipped:
        warnings.warn(f"skipped {path}: {why}", InvalidRecordWarning, stacklevel=3)
    try:
        manifest = store.read_manifest()
    except StoreError as exc:
        warnings.warn(str(exc), InvalidRecordWarning, stacklevel=3)
        manifest = {}
    return _Run(run_dir.resolve().name, records, skipped, manifest, out)


def write_report(run_dir: str | Path, formats: tuple[str, ...] = FORMATS,
                 out_dir: str | Path | None = None,
                 reference_dir: str | Path | None = None) -> list[Path]:
    """Write ``report.md`` and/or ``report.html``, figures under ``figures/``, all in
    ``out_dir`` (default: the run folder; nothing is written anywhere else); published
    figures come from ``reference_dir`` (default: ``results/reference``). A run with tuned
    cells also gets ``tuning.toml``, the settings its searches chose
    (:func:`~densbench.report.tuning.found_settings`). Each record that fails its check is
    left out with an :class:`InvalidRecordWarning` naming its file and what is wrong."""
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ValueError(f"unknown report format(s) {', '.join(unknown)}; known: md, html")
    root = Path(run_dir)
    target = Path(out_dir) if out_dir else root
    run = _read_run(root, target)
    rep = _build(run, reference_dir)
    outputs = []
    if "md" in formats:
        outputs.append(("report.md", _markdown(rep, target)))
    if "html" in formats:
        outputs.append(("report.html", _html(rep)))
    settings = found_settings(run.records, run.manifest)
    if settings is not None:
        outputs.append(("tuning.toml", settings))
    paths = []
    for name, text in outputs:
        path = confined(target, name)
        path.write_text(text)
        paths.append(path)
    return paths
