"""Render stored results to documents (Markdown for now)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from densbench.report.tables import aggregate_seeds, leaderboards
from densbench.runner.store import RunStore, load, load_per_example

__all__ = ["markdown_report", "write_markdown"]


def _md_table(table: pd.DataFrame) -> str:
    headers = [table.index.name or ""] + [str(c) for c in table.columns]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for idx, row in table.iterrows():
        lines.append("| " + " | ".join([str(idx)] + [str(v) for v in row]) + " |")
    return "\n".join(lines)


def markdown_report(run_dir: str | Path, figures: dict[str, Path] | None = None) -> str:
    """The Markdown leaderboard of a run folder (``figures``: cell id -> gallery PNG)."""
    store = RunStore(run_dir)
    records = {r["id"]: r for r in store.records()}
    manifest = store.read_manifest()
    df = load(run_dir)
    agg = aggregate_seeds(df)
    out = [f"# densbench report: {Path(run_dir).name}", ""]
    n_cells = df["cell_id"].nunique()
    n_ok = df.loc[df["status"] == "ok", "cell_id"].nunique()
    out.append(f"{n_ok} of {n_cells} cells ok. Figures are means over seeds ± standard "
               "error across seeds (± SE over test examples where a dataset has one seed). "
               "Log-likelihoods are in the units of the original data; for discrete data "
               "(digits) continuous estimators report the uniform-dequantization lower bound "
               "on the discrete log-probability. Best per column in **bold** "
               "(highest log-likelihood, lowest bits/dim and KL). 'vs best' is the paired "
               "difference of per-example test log-likelihoods to the best estimator on the "
               "same test points (mean ± SE, across seeds); *tied* means its 95% interval "
               "contains 0.")
    out.append("")
    per_example = load_per_example(run_dir)
    for dataset, table in leaderboards(df, per_example).items():
        g = agg[agg["dataset"] == dataset]
        kinds = sorted(set(g["figure"].dropna()))
        seeds = int(g["n_seeds"].max()) if len(g) else 0
        out.append(f"## {dataset}")
        out.append("")
        out.append(f"Figure: {'; '.join(kinds) or 'n/a'}. Seeds: {seeds}.")
        out.append("")
        out.append(_md_table(table))
        out.append("")
        shown = _galleries(records, figures or {}, dataset, Path(run_dir))
        if shown:
            out.append("Samples (first seed):")
            out.append("")
            out.extend(shown)
            out.append("")
    failed = df[df["status"] != "ok"].drop_duplicates("cell_id")
    if len(failed):
        out.append("## Failed cells")
        out.append("")
        for _, r in failed.iterrows():
            out.append(f"- {r['estimator']} / {r['dataset']} / seed {r['seed']}: "
                       f"{r['status']}: {r['error']}")
        out.append("")
    if manifest:
        out.append("## Provenance")
        out.append("")
        versions = manifest.get("versions", {})
        out.append(f"- suite: {manifest.get('suite', {}).get('name', '?')}")
        out.append(f"- densbench {versions.get('densbench', '?')}, git "
                   f"{manifest.get('git_commit') or 'unknown'}")
        out.append("- " + ", ".join(f"{k} {v}" for k, v in versions.items()
                                    if k != "densbench"))
        machine = manifest.get("machine", {})
        out.append(f"- machine: {machine.get('platform', '?')}, {machine.get('cpus', '?')} "
                   f"CPUs, Python {machine.get('python', '?')}")
        for inv in manifest.get("invocations", [])[-3:]:
            out.append(f"- `{inv.get('command')}` ({inv.get('started')} to "
                       f"{inv.get('finished') or 'unfinished'})")
        out.append("")
    return "\n".join(out)


def _galleries(records: dict, figures: dict[str, Path], dataset: str, root: Path) -> list[str]:
    chosen = [r for r in records.values() if r["id"] in figures
              and r["dataset"]["name"] == dataset]
    if not chosen:
        return []
    first = min(int(r["seed"]) for r in chosen)
    lines = []
    for r in sorted(chosen, key=lambda r: r["estimator"]["name"]):
        if int(r["seed"]) == first:
            rel = figures[r["id"]].resolve().relative_to(root.resolve())
            lines.append(f"![{r['estimator']['name']} samples on {dataset}]({rel.as_posix()})")
    return lines


def write_markdown(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write ``report.md`` (and the sample galleries under ``figures/``) into the run
    folder, or the report to ``out``; return the report's path."""
    from densbench.report.figures import render_sample_figures

    root = Path(run_dir)
    figures = render_sample_figures(RunStore(root).records(), root / "figures")
    path = Path(out) if out else root / "report.md"
    path.write_text(markdown_report(run_dir, figures))
    return path
