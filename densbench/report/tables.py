"""Result tables: seed aggregation and per-dataset leaderboards (pandas in, pandas out)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import PurePath
from typing import Any

import numpy as np
import pandas as pd

from densbench.metrics import catalogue as C
from densbench.metrics.paired import PairedDifference, across_seeds, paired_difference

__all__ = ["FAILED_MARK", "IMPLICIT", "KIND_LABELS", "LEADERBOARD", "NOTE_MARK",
           "aggregate_seeds", "failures", "format_pm", "leaderboards", "paired_vs_best",
           "sample_quality_tables", "short_failure", "short_names", "summary_table",
           "tuning_tables"]

#: A likelihood figure of an implicit model (a GAN): none exists, not a missing number.
IMPLICIT = "-- (implicit)"

#: Opens the table entry of an estimator whose every cell on a dataset failed.
FAILED_MARK = "✗ "

#: Appended to a table entry whose figure carries a note in some seed's record (the
#: aggregated frame's ``note`` column says which).
NOTE_MARK = " (!)"

KIND_LABELS = {"exact": "exact", "lower_bound": "bound", "stochastic_bound": "stoch. bound",
               "none": "none (implicit)"}

#: Leaderboard columns, in order; headings, units and directions come from the catalogue.
LEADERBOARD = (C.TEST_LOGLIK, C.TEST_BITS_PER_DIM, C.TEST_LOGLIK_PER_DIM, C.KL_TO_TRUTH,
               C.SAMPLES_TRUTH_LOGLIK, C.FIT_SECONDS, C.SCORE_EXAMPLES_PER_S)


def _path_spec(name: str) -> tuple[tuple[str, ...], str] | None:
    """The folders and file, and the ``:object`` part, of a name that is a path (a user's
    ``path/to/model.py:Class``); None for a registry or module name."""
    head, colon, obj = name.rpartition(":")
    if not colon or "/" in obj or "\\" in obj:
        head, obj = name, ""
    if "/" not in head and "\\" not in head:
        return None
    return PurePath(head).parts, obj


def short_names(names: Iterable[str]) -> dict[str, str]:
    """Each name as tables and figures show it: one that is a path to a user's file
    (``/home/me/model.py:Class``) by its file name and ``:object``
    (``model.py:Class``), with as many of its folders as keep two such names apart; any
    other name as it is.

    Example:
        >>> short_names(["gmm", "/a/x/m.py:C", "/a/y/m.py:C"])
        {'/a/x/m.py:C': 'x/m.py:C', '/a/y/m.py:C': 'y/m.py:C', 'gmm': 'gmm'}
    """
    names = sorted(set(names))
    specs = {n: _path_spec(n) for n in names}
    depth = dict.fromkeys(names, 1)
    while True:
        out = {}
        for n in names:
            spec = specs[n]
            out[n] = n if spec is None else "/".join(spec[0][-depth[n]:]) + (
                f":{spec[1]}" if spec[1] else "")
        seen: dict[str, list[str]] = {}
        for n, short in out.items():
            seen.setdefault(short, []).append(n)
        clashes = [n for group in seen.values() if len(group) > 1 for n in group
                   if specs[n] is not None and depth[n] < len(specs[n][0])]
        if not clashes:
            return out
        for n in clashes:
            depth[n] += 1


def _label(frame: pd.DataFrame) -> pd.Series:
    """Estimator name (:func:`short_names`), with its parameters where one dataset has
    several configurations."""
    label = frame["estimator"].map(short_names(frame["estimator"].unique()))
    n_cfg = frame.groupby(["dataset", "estimator"])["params"].transform("nunique")
    multi = n_cfg > 1
    label[multi] = label[multi] + " " + frame.loc[multi, "params"]
    return label


def short_failure(status: str, error: str | None, width: int = 48) -> str:
    """Why a cell failed, short: its status and the first line of its error, cut at
    ``width`` characters.

    Example:
        >>> short_failure("failed", "kde: bandwidth must be > 0 or one of 'scott'; got -1")
        "failed: kde: bandwidth must be > 0 or one of 'sc…"
    """
    first = (error or "").strip().splitlines()[0] if (error or "").strip() else ""
    text = f"{status}: {first}" if first else status
    return text if len(text) <= width else text[:width].rstrip() + "…"


def failures(df: pd.DataFrame) -> dict[tuple[str, str], str]:
    """By (dataset, label): why an estimator has no figure on a dataset where every one
    of its cells there failed (:func:`short_failure` of the first)."""
    if df.empty:
        return {}
    cells = df.drop_duplicates("cell_id").assign(label=lambda d: _label(d))
    out = {}
    for (dataset, label), g in cells.groupby(["dataset", "label"], sort=True):
        if not (g["status"] == "ok").any():
            first = g.sort_values("seed").iloc[0]
            out[(str(dataset), str(label))] = short_failure(str(first["status"]),
                                                           first["error"])
    return out


def aggregate_seeds(df: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds of each metric, with its SE.

    With two or more seeds the SE is the standard error across seeds (std / sqrt(k)); with
    one seed it is that seed's own SE over examples. ``se_kind`` says which. ``note`` is
    the seeds' notes on the figure, distinct ones joined by "; " (None without any).
    """
    # labelled among every cell, so that a failed configuration is told apart
    labelled = df.assign(label=_label(df)) if len(df) else df.assign(label=[])
    ok = labelled[(labelled["status"] == "ok") & labelled["metric"].notna()].copy()
    if ok.empty:
        return pd.DataFrame(columns=["dataset", "label", "estimator", "metric", "mean", "se",
                                     "se_kind", "n_seeds", "unit", "likelihood_kind",
                                     "figure", "note"])
    keys = ["dataset", "label", "estimator", "metric"]
    rows = []
    for key, g in ok.groupby(keys, sort=True):
        values = g["value"].to_numpy(dtype=float)
        k = int(np.isfinite(values).sum())
        mean = float(np.nanmean(values)) if k else math.nan
        if k >= 2:
            se, se_kind = float(np.nanstd(values, ddof=1) / math.sqrt(k)), "seeds"
        else:
            se, se_kind = float(g["se"].iloc[0]), "examples"
        rows.append({**dict(zip(keys, key, strict=True)), "mean": mean, "se": se,
                     "se_kind": se_kind, "n_seeds": len(g), "unit": g["unit"].iloc[0],
                     "likelihood_kind": g["likelihood_kind"].iloc[0],
                     "figure": g["figure"].iloc[0], "note": _notes(g)})
    return pd.DataFrame(rows)


def _notes(g: pd.DataFrame) -> str | None:
    if "note" not in g.columns:  # no record of the frame has a note (the key is optional)
        return None
    notes = list(dict.fromkeys(n for n in g["note"] if isinstance(n, str) and n))
    return "; ".join(notes) or None


def format_pm(mean: float, se: float, digits: int = 3) -> str:
    """``mean ± se`` with a sensible number of digits.

    An SE too small for ``digits`` decimals gets the decimals that show its first two
    significant digits (up to 8), so no uncertainty reads as ``± 0.000``.

    Example:
        >>> format_pm(-2.81234, 0.0123)
        '-2.812 ± 0.012'
        >>> format_pm(0.0281, 0.000123)
        '0.02810 ± 0.00012'
        >>> format_pm(1234.5, float("nan"))
        '1234'
    """
    if mean is None or not math.isfinite(mean):
        return "--"
    if se is not None and 0 < se < 0.5 * 10.0 ** -digits:
        digits = min(8, max(digits, math.ceil(-math.log10(se)) + 1))
    if abs(mean) >= 1000 and not (se is not None and math.isfinite(se) and se < 1):
        text = f"{mean:.0f}"
    else:
        text = f"{mean:.{digits}f}"
    if se is not None and math.isfinite(se):
        text += f" ± {se:.{digits}f}" if se < 1000 else f" ± {se:.0f}"
    return text


def _fmt_cost(value: float) -> str:
    if not math.isfinite(value):
        return "--"
    return f"{value:.3g}" if value < 1e4 else f"{value:.2e}"


def _best_first(values: pd.Series) -> pd.Index:
    """The index of a test log-likelihood column, best first (NaN, e.g. implicit, last)."""
    return values.map(C.get(C.TEST_LOGLIK).badness).sort_values().index


def paired_vs_best(df: pd.DataFrame, per_example: dict[str, np.ndarray],
                   dataset: str) -> dict[str, PairedDifference]:
    """For each estimator (label) on ``dataset``: its paired test log-likelihood
    difference to the best one (mean over common seeds of the per-example differences)."""
    labelled = df.assign(label=_label(df))  # as aggregate_seeds labels them
    ok = labelled[(labelled["status"] == "ok") & (labelled["metric"] == C.TEST_LOGLIK)
                  & (labelled["dataset"] == dataset)]
    if ok.empty:
        return {}
    means = ok.groupby("label")["value"].mean()
    best = means.map(C.get(C.TEST_LOGLIK).badness).idxmin()
    cells = {(r.label, r.seed): r.cell_id for r in ok.itertuples()}
    out: dict[str, PairedDifference] = {}
    for label in means.index:
        per_seed = []
        for (lab, seed), cid in cells.items():
            other = cells.get((best, seed))
            if lab == label and other and cid in per_example and other in per_example:
                a, b = per_example[cid], per_example[other]
                if a.shape == b.shape:
                    per_seed.append(paired_difference(a, b))
        if per_seed:
            out[label] = across_seeds(per_seed)
    return out


def leaderboards(df: pd.DataFrame,
                 per_example: dict[str, np.ndarray] | None = None) -> dict[str, pd.DataFrame]:
    """One formatted table per dataset, best test likelihood first (best marked **bold**);
    a figure with a note in its records (an untrusted Monte-Carlo SE) is marked
    :data:`NOTE_MARK`; an estimator whose every cell on the dataset failed is a last row
    saying why (:data:`FAILED_MARK`, :func:`failures`).

    With ``per_example`` (cell id -> per-example test log-likelihoods) a column gives each
    estimator's paired difference to the best (mean ± SE, across seeds when there are
    several) and marks as *tied* those whose 95% interval contains 0.
    """
    agg = aggregate_seeds(df)
    failed = failures(df)
    boards: dict[str, pd.DataFrame] = {}
    for dataset, g in agg.groupby("dataset", sort=True):
        boards[str(dataset)] = _board(g, df, per_example, str(dataset))
    for dataset in sorted({d for d, _ in failed}):
        table = boards.get(dataset, pd.DataFrame(
            columns=["likelihood", C.get(C.TEST_LOGLIK).header]))
        rows = {lab: why for (d, lab), why in failed.items() if d == dataset}
        extra = pd.DataFrame([{c: "--" for c in table.columns} for _ in rows],
                             index=list(rows), columns=table.columns)
        extra[table.columns[1]] = [FAILED_MARK + why for why in rows.values()]
        boards[dataset] = pd.concat([table, extra]) if len(table) else extra
        boards[dataset].index.name = "estimator"
    return dict(sorted(boards.items()))


def _board(g: pd.DataFrame, df: pd.DataFrame, per_example: dict[str, np.ndarray] | None,
           dataset: str) -> pd.DataFrame:
    """The leaderboard of one dataset's aggregated figures ``g``."""
    wide = g.set_index(["label", "metric"])["mean"].unstack()
    se = g.set_index(["label", "metric"])["se"].unstack()
    noted = set(g.loc[g["note"].notna(), ["label", "metric"]].itertuples(index=False,
                                                                        name=None))
    kinds = g.groupby("label")["likelihood_kind"].first()
    present = [C.get(m) for m in LEADERBOARD if m in wide.columns]
    if C.TEST_BITS_PER_DIM in wide.columns:
        present = [c for c in present if c.name != C.TEST_LOGLIK_PER_DIM]
    order = _best_first(wide[C.TEST_LOGLIK]) if C.TEST_LOGLIK in wide.columns \
        else wide.index
    table = pd.DataFrame(index=order)
    table["likelihood"] = [KIND_LABELS.get(kinds.get(i), "?") for i in order]
    for info in present:
        col = wide[info.name].reindex(order)
        errs = se[info.name].reindex(order)
        is_cost = info.group is C.Group.COST
        cells = [(_fmt_cost(v) if is_cost else
                  IMPLICIT if kinds.get(i) == "none" and not np.isfinite(v) else
                  format_pm(v, e) + (NOTE_MARK if (i, info.name) in noted else ""))
                 for i, v, e in zip(order, col, errs, strict=True)]
        finite = col[np.isfinite(col)]
        if not is_cost and len(finite) and info.direction is not C.Direction.NONE:
            best = finite.map(info.badness).idxmin()
            cells = [f"**{c}**" if i == best else c for i, c in zip(order, cells, strict=True)]
        table[info.header] = cells
        if info.name == C.TEST_LOGLIK and per_example:
            vs = paired_vs_best(df, per_example, dataset)
            table["vs best, paired [nats]"] = [
                (IMPLICIT if kinds.get(i) == "none" else "--") if i not in vs
                else "best" if vs[i].se == 0 and vs[i].mean == 0
                else format_pm(vs[i].mean, vs[i].se) + ("" if vs[i].significant
                                                         else " (tied)")
                for i in order]
    table.index.name = "estimator"
    return table


def sample_quality_tables(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per dataset: each sample metric (mean ± SE over seeds) for every estimator that
    samples, with the floor (validation split vs test split) as the first row."""
    agg = aggregate_seeds(df)
    out: dict[str, pd.DataFrame] = {}
    for dataset, g in agg.groupby("dataset", sort=True):
        est = g[g["metric"].str.startswith(C.SAMPLES_PREFIX)]
        names = [n for n in C.SAMPLE_METRICS if C.samples(n) in set(est["metric"])]
        if not names:
            continue
        floor = g[g["metric"].str.startswith(C.FLOOR_PREFIX)].groupby("metric")[
            ["mean", "se"]].first()
        labels = sorted(est["label"].unique())
        table = pd.DataFrame(index=["floor (val vs test)", *labels])
        for n in names:
            col = []
            f = floor.loc[C.floor(n)] if C.floor(n) in floor.index else None
            col.append(format_pm(f["mean"], f["se"]) if f is not None else "--")
            vals = est[est["metric"] == C.samples(n)].set_index("label")
            for lab in labels:
                col.append(format_pm(vals.loc[lab, "mean"], vals.loc[lab, "se"])
                           if lab in vals.index else "--")
            table[f"{n} {C.get(C.samples(n)).arrow}"] = col
        table.index.name = "estimator"
        out[str(dataset)] = table
    return out


def summary_table(df: pd.DataFrame) -> pd.DataFrame:
    """Dataset x estimator grid of mean test log-likelihood (nats/example) over seeds."""
    agg = aggregate_seeds(df)
    agg = agg[agg["metric"] == C.TEST_LOGLIK]
    if agg.empty:
        return pd.DataFrame()
    return agg.pivot_table(index="dataset", columns="label", values="mean", aggfunc="first")


def _key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True)


def _short(value: Any) -> str:
    """A candidate value for a table: floats to 4 significant digits (the record keeps
    every digit)."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return json.dumps(value)


def _tuned_groups(records: list[dict[str, Any]]) -> dict[tuple[str, str, str],
                                                           list[dict[str, Any]]]:
    """The finished tuned records, grouped by estimator, dataset and search set-up."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in records:
        tuning = r.get("tuning")
        if r.get("status") == "ok" and tuning:
            key = (r["estimator"]["name"], r["dataset"]["name"],
                   _key({"params": r["estimator"].get("params", {}),
                         "tune": r["estimator"].get("tune")}))
            groups.setdefault(key, []).append(r)
    return groups


def _candidate_rows(recs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per candidate setting (in first-tried order): its params, the scores and SEs of the
    seeds that scored it, its seconds, the seeds that chose it and how many failed."""
    rows: dict[str, dict[str, Any]] = {}
    for r in recs:
        t = r["tuning"]
        for i, trial in enumerate(t["trials"]):
            row = rows.setdefault(_key(trial["params"]), {
                "params": trial["params"], "scores": [], "ses": [], "seconds": [],
                "chosen": [], "failed": 0})
            row["seconds"].append(trial["seconds"])
            if trial["score"] is None:
                row["failed"] += 1
            else:
                row["scores"].append(trial["score"])
                row["ses"].append(trial["se"])
            if i == t["chosen_index"]:
                row["chosen"].append(str(r["seed"]))
    return rows


def _score_text(row: dict[str, Any], mean: float, best: bool) -> str:
    """A candidate's score cell: mean ± SE across seeds (one seed: its validation SE),
    its failures, in bold when best."""
    s = row["scores"]
    se = (float(np.std(s, ddof=1) / math.sqrt(len(s))) if len(s) >= 2
          else row["ses"][0] if s and row["ses"][0] is not None else math.nan)
    text = format_pm(mean, se) if s else "--"
    if row["failed"]:
        text += f" ({row['failed']} failed)"
    return f"**{text}**" if best else text


def _candidate_table(first: dict[str, Any], names: list[str],
                     rows: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """The table of one tuning: a row per candidate, the best by the criterion's direction
    in bold."""
    info = C.validation(first.get("criterion", ""))
    better = info.direction.value if info else first.get("better", "higher")
    sign = 1.0 if better == "higher" else -1.0
    means = {k: float(np.mean(v["scores"])) if v["scores"] else math.nan
             for k, v in rows.items()}
    finite = {k: m for k, m in means.items() if math.isfinite(m)}
    best = max(finite, key=lambda k: sign * finite[k]) if finite else None
    header = (f"{first.get('criterion', '?')} [{first.get('unit', '?')}] "
              f"{'↑' if better == 'higher' else '↓'}")
    table = pd.DataFrame(index=range(1, len(rows) + 1))
    for n in names:
        table[n] = [_short(v["params"].get(n)) for v in rows.values()]
    table[header] = [_score_text(v, means[k], k == best) for k, v in rows.items()]
    table["chosen in seeds"] = [", ".join(v["chosen"]) or "--" for v in rows.values()]
    table["seconds"] = [_fmt_cost(float(np.mean(v["seconds"]))) for v in rows.values()]
    table.index.name = "candidate"
    return table


def _tuning_text(first: dict[str, Any], names: list[str], n_candidates: int,
                 recs: list[dict[str, Any]]) -> str:
    """The explanation under a tuning table: the search, the final model and its cost."""
    total = sum(r["tuning"]["seconds"] for r in recs)
    return (f"{first['search']} search over {', '.join(names)}: {n_candidates} candidates "
            f"(search seed {first['seed']}), chosen per dataset and seed on the "
            f"validation split only; final model: {first['final']}. Cost: "
            f"{total:.1f} s of tuning over {len(recs)} seed(s) "
            f"({total / len(recs):.1f} s per cell).")


def tuning_tables(records: list[dict[str, Any]]) -> list[tuple[str, str, pd.DataFrame]]:
    """One table per tuned estimator x dataset (title, explanation, table): a row per
    candidate setting (its values), its validation score (mean ± SE across the seeds that
    scored it; with one seed, ± SE over validation rows), the seeds that chose it (best in
    **bold**) and its mean fit-and-score seconds."""
    out = []
    for (est, dataset, _), recs in sorted(_tuned_groups(records).items()):
        recs = sorted(recs, key=lambda r: int(r["seed"]))
        first = recs[0]["tuning"]
        names = sorted(first["space"])
        rows = _candidate_rows(recs)
        table = _candidate_table(first, names, rows)
        out.append((f"Tuning: {est} on {dataset}", _tuning_text(first, names, len(rows), recs),
                    table))
    return out
