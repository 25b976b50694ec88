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
from densbench.report.describe import footer, intro
from densbench.report.layout import Drawn, save
from densbench.report.reference import load_references, matching, refused, refused_line
from densbench.report.tables import (
    FAILED_MARK,
    NOTE_MARK,
    aggregate_seeds,
    failures,
    format_pm,
    leaderboards,
    sample_quality_tables,
    short_names,
    tuning_tables,
)
from densbench.report.tuning import found_settings
from densbench.runner.store import RunStore, StoreError, dataset_labels, frame, per_example

__all__ = ["FIGURES", "FORMATS", "PAGE_PX", "InvalidRecordWarning", "fit_width", "write_report"]

#: The folder of the report's figures, inside the report's folder.
FIGURES = "figures"

FORMATS = ("md", "html")

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
    images: list[tuple[str, Drawn]] = field(default_factory=list)


@dataclass
class _Report:
    title: str
    summary: str
    sections: list[_Section]
    footer: list[str]
    #: each estimator's full name -> its name as shown
    names: dict[str, str] = field(default_factory=dict)


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


def _overview(run: _Run, df: pd.DataFrame, agg: pd.DataFrame) -> _Section:
    """The run-level figures: ranks (failed cells marked), quality vs cost, IWAE curves."""
    overview = _Section("Overview")
    if agg.empty:
        return overview
    builders = (("ranks", lambda: (F.rank_figure(agg, failures(df)), [])),
                ("quality_vs_cost", lambda: F.quality_vs_cost(agg)),
                ("iwae_curves", lambda: (F.iwae_figure(agg), [])))
    for name, build in builders:
        what = name.replace("_", " ")
        drawn = _drawn(overview.text, what, _saved, build, run.figure(f"{name}.png"))
        if drawn:
            overview.images.append((what, drawn))
    return overview


def _saved(build: Callable[[], Any], path: Path) -> Drawn | None:
    """The figure ``build`` returns, with its caption's notes, saved at ``path``."""
    built = build()
    if built is None or built[0] is None:
        return None
    return save(built[0], path, built[1])


def _build(run: _Run, reference_dir: str | Path | None = None) -> _Report:
    df = frame(run.records)
    agg = aggregate_seeds(df)
    agg = agg if "label" in agg else agg.assign(label=[])
    names = short_names(r["estimator"]["name"] for r in run.records)
    galleries = F.render_sample_figures(run.records, run.out, FIGURES, names)
    sections: list[_Section] = []
    overview = _overview(run, df, agg)
    if overview.images or overview.text:
        sections.append(overview)
    sections += _dataset_sections(run, df, agg, galleries, load_references(reference_dir),
                                  names)
    sections += [_Section(title, [text], table)
                 for title, text, table in tuning_tables(run.records)]
    failed = df[df["status"] != "ok"].drop_duplicates("cell_id")
    if len(failed):
        sections.append(_Section("Failed cells", [
            f"{names.get(r['estimator'], r['estimator'])} / {r['dataset']} / seed "
            f"{r['seed']}: {r['status']}: {r['error']}" for _, r in failed.iterrows()]))
    if run.skipped:
        sections.append(_Section("Skipped records", [
            f"{path.name}: {why}" for path, why in run.skipped]))
    summary = intro(run.records, agg, run.manifest, names=names, skipped=len(run.skipped),
                    paired=bool(per_example(run.records)))
    return _Report(f"densbench report: {run.name}", summary, sections, footer(run.manifest),
                   names)


def _dataset_sections(run: _Run, df: pd.DataFrame, agg: pd.DataFrame, galleries: F.Galleries,
                      references: list, names: dict[str, str]) -> list[_Section]:
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
            path = _drawn(sec.text, "sample metrics figure", _saved,
                          lambda d=dataset: F.sample_metrics_figure(agg, d),
                          run.figure(f"samples_{file_stem(dataset)}.png"))
            if path:
                sec.images.append((f"sample metrics vs floor on {dataset}", path))
        fig, with_truth = _drawn(sec.text, "density figure", F.density_figure, recs,
                                 names) or (None, False)
        if fig is not None:
            path = save(fig, run.figure(f"density_{file_stem(dataset)}.png"))
            sec.images.append((f"densities on {dataset}", path))
            if not with_truth and any((r.get("data") or {}).get("has_truth") for r in recs):
                missing.add("truth_grid")
        sec.images += _gallery_images(recs, galleries, dataset, names)
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
        text.append(f"True density on the test split: {format_pm(t['mean'], t['se'])} "
                    "nats/example (E_data log p_true; compare E_model log p_true, the "
                    "true log-density of each model's samples).")
    notes = sorted(set(g["note"].dropna()))
    if notes:
        text.append(f"Marked{NOTE_MARK}: {'; '.join(notes)}.")
    return text


def _gallery_images(recs: list[dict], galleries: F.Galleries, dataset: str,
                    names: dict[str, str]) -> list[tuple[str, Drawn]]:
    """The first seed's sample galleries of a dataset, by estimator."""
    if not recs:
        return []
    first = min(int(r["seed"]) for r in recs)
    return [(f"{names.get(r['estimator']['name'], r['estimator']['name'])} samples on "
             f"{dataset}", galleries.paths[r["id"]])
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


# -- tables that fit the page ------------------------------------------------------------

#: The report's column (CSS max-width of its body), in CSS px: no table may be wider.
PAGE_PX = 1200
#: A table's text size in CSS px (0.85em of 16 px) and the width of one character in em:
#: digits are 0.64 em in DejaVu Sans, the widest common sans-serif, and bold ones 0.7 em.
_TABLE_FONT_PX = 13.6
_CHAR_EM = {False: 0.64, True: 0.7}
#: A cell's padding and border, in CSS px (the CSS below).
_CELL_PAD_PX = 16


def _text_px(text: str, bold: bool = False) -> float:
    return len(text) * _CHAR_EM[bold] * _TABLE_FONT_PX


def _column_px(header: str, cells: list[str]) -> float:
    """A column's width: its widest cell (never wrapped) or the longest word of its
    header (headers wrap between words)."""
    words = [_text_px(w, True) for w in header.split()] or [0.0]
    texts = [_text_px(c.replace("**", ""), c.startswith("**")) for c in cells] or [0.0]
    return max(max(words), max(texts)) + _CELL_PAD_PX


def fit_width(table: pd.DataFrame, width_px: float = PAGE_PX) -> list[pd.DataFrame]:
    """``table`` as few tables, each the rows' names and a run of its columns, as fit
    ``width_px`` when no number is wrapped (a wide table is split, never cut off)."""
    index_px = _column_px(str(table.index.name or ""), [str(i) for i in table.index])
    widths = [_column_px(str(c), [str(v) for v in table[c]]) for c in table.columns]
    n = len(widths)
    for parts in range(1, max(n, 1) + 1):
        bounds = [round(k * n / parts) for k in range(parts + 1)]
        runs = list(zip(bounds[:-1], bounds[1:], strict=True))
        if all(index_px + sum(widths[a:b]) <= width_px for a, b in runs):
            return [table.iloc[:, a:b] for a, b in runs]
    return [table.iloc[:, [j]] for j in range(n)]


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
            out += [line for part in fit_width(sec.table) for line in (_md_table(part), "")]
        for alt, drawn in sec.images:
            rel = drawn.path.resolve().relative_to(root.resolve()).as_posix()
            out.append(f"![{alt}]({rel})")
            out += [f"*{note[:1].upper()}{note[1:]}.*" for note in drawn.notes]
        if sec.images:
            out.append("")
    out += ["## Provenance", ""] + [f"- {line}" for line in rep.footer] + [""]
    return "\n".join(out)


# -- HTML --------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;
max-width:PAGE_PXpx;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1em;font-size:0.85em}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}
td{white-space:nowrap}
.pm{white-space:nowrap}
th:first-child,td:first-child{text-align:left}
th{background:#f3f3f3}
td.failed{color:#444;text-align:left;
background:repeating-linear-gradient(135deg,#eee 0 5px,#ddd 5px 10px)}
img{max-width:100%;height:auto;margin:0.3em 0.3em 0.3em 0;border:1px solid #eee}
figure{display:inline-block;margin:0 0.5em 0.5em 0;vertical-align:top;max-width:100%}
figcaption{font-size:0.75em;color:#555;max-width:60em}
footer{margin-top:2em;font-size:0.8em;color:#555;border-top:1px solid #ddd}
code{overflow-wrap:anywhere}
""".replace("PAGE_PX", str(PAGE_PX))

#: "mean ± se" in running text: kept on one line.
_PM = re.compile(r"(?<![\w.])(-?\d[\d.]*(?:e[+-]?\d+)? ± \d[\d.]*(?:e[+-]?\d+)?)")


def _inline_md(text: str) -> str:
    text = html.escape(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    text = re.sub(r"\*(.+?)\*", r"<i>\1</i>", text)
    text = re.sub(r"`(.+?)`", r"<code>\1</code>", text)
    return _PM.sub(r'<span class="pm">\1</span>', text)


def _html_table(table: pd.DataFrame, names: dict[str, str]) -> str:
    """A table; an estimator shown by a short name carries its full name as a tooltip,
    a failed estimator's entry is marked."""
    full = {short: name for name, short in names.items() if short != name}
    head = "".join(f"<th>{html.escape(str(c))}</th>"
                   for c in [table.index.name or ""] + list(table.columns))
    rows = []
    for idx, row in table.iterrows():
        name = next((f for s, f in full.items() if str(idx).startswith(s)), None)
        first = f' title="{html.escape(name)}"' if name else ""
        cells = [f"<td{first}>{_inline_md(str(idx))}</td>"] + [
            f'<td class="failed">{_inline_md(str(v))}</td>' if str(v).startswith(FAILED_MARK)
            else f"<td>{_inline_md(str(v))}</td>" for v in row]
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _img(alt: str, drawn: Drawn) -> str:
    """A figure at its legible size (:attr:`Drawn.css_width`), with what a page needs to
    check that: its smallest font (pt) and resolution."""
    data = base64.b64encode(drawn.path.read_bytes()).decode("ascii")
    caption = "; ".join([alt, *drawn.notes])
    return (f'<figure><img alt="{html.escape(alt)}" width="{drawn.css_width}" '
            f'data-min-font-pt="{drawn.min_font_pt:g}" data-dpi="{drawn.dpi:g}" '
            f'src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _html(rep: _Report) -> str:
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
             f"<title>{html.escape(rep.title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{html.escape(rep.title)}</h1><p>{_inline_md(rep.summary)}</p>"]
    for sec in rep.sections:
        parts.append(f"<h2>{html.escape(sec.title)}</h2>")
        parts += [f"<p>{_inline_md(t)}</p>" for t in sec.text]
        if sec.table is not None:
            parts += [_html_table(part, rep.names) for part in fit_width(sec.table)]
        parts += [_img(alt, drawn) for alt, drawn in sec.images]
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
