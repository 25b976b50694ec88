import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from densbench.metrics import catalogue as C
from densbench.report.render import PAGE_PX, fit_width, write_report
from densbench.report.tables import (
    FAILED_MARK,
    NOTE_MARK,
    aggregate_seeds,
    leaderboards,
    sample_quality_tables,
)
from densbench.runner.execute import run_cells
from densbench.runner.plan import Cell, Spec
from densbench.runner.store import RunStore, load

SMALL = {"n_train": 300, "n_val": 100, "n_test": 300}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    store = RunStore(root, create=True)
    cells = [Cell(Spec(e), Spec(d, p), s) for e in ("diag_gaussian", "gaussian")
             for d, p in (("banana", SMALL), ("digits", {})) for s in (0, 1)]
    cells.append(Cell(Spec("kde", {"bandwidth": -1.0}), Spec("banana", SMALL), 0))  # fails

    run_cells(cells, store)
    return root


def test_seed_aggregation_is_mean_and_se_across_seeds(run):
    df = load(run)
    agg = aggregate_seeds(df)
    row = agg[(agg.dataset == "banana") & (agg.estimator == "gaussian")
              & (agg.metric == "test_loglik")].iloc[0]
    per_seed = df[(df.dataset == "banana") & (df.estimator == "gaussian")
                  & (df.metric == "test_loglik")]["value"].to_numpy()
    assert row["mean"] == pytest.approx(per_seed.mean())
    assert row["se"] == pytest.approx(per_seed.std(ddof=1) / np.sqrt(2))
    assert row["se_kind"] == "seeds" and row["n_seeds"] == 2


def test_leaderboard_bolds_the_best_and_shows_units(run):
    boards = leaderboards(load(run))
    digits = boards["digits"]
    assert "test [bits/dim]" in digits.columns
    assert digits.index[0] == "gaussian"  # correlated pixels: full covariance wins
    assert digits["test [bits/dim]"].iloc[0].startswith("**")
    assert "KL to truth [nats]" in boards["banana"].columns


def test_an_untrusted_mc_se_is_noted_in_the_record_and_marked_in_the_report(tmp_path):
    # two importance samples per example: an ESS of at most 2, too low for an MC SE
    vae = Spec("vae", {"latent_dim": 2, "hidden": 8, "max_epochs": 2, "k_eval": 2})
    small = {"n_train": 200, "n_val": 50, "n_test": 100}
    run_cells([Cell(spec, Spec("banana", small), 0, sample_metrics=False)
               for spec in (vae, Spec("gaussian"))], RunStore(tmp_path, create=True))
    df = load(tmp_path)
    vae = df[(df.estimator == "vae") & df.metric.isin(["test_loglik", "test_iwae_mc_se"])]
    assert len(vae) == 2 and vae["note"].str.startswith("low ESS (median ").all()
    assert df[df.estimator != "vae"]["note"].isna().all()
    board = leaderboards(df)["banana"]
    column = f"{C.get(C.TEST_LOGLIK).header}"
    assert board.loc["vae", column].endswith(NOTE_MARK)
    assert not board.loc["gaussian", column].endswith(NOTE_MARK)


def test_markdown_report_with_galleries_and_failures(run):
    path = write_report(run, ("md",))[0]
    text = path.read_text()
    assert "## banana" in text and "## digits" in text and "## Failed cells" in text
    assert "kde: bandwidth must be" in text
    links = re.findall(r"\]\((figures/[0-9a-f]+\.png)\)", text)
    assert len(links) == 4  # 2 estimators x 2 datasets, first seed
    for link in links:
        assert (run / link).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_estimator_whose_every_cell_failed_is_a_marked_row_saying_why(run):
    board = leaderboards(load(run))["banana"]
    assert board.index[-1] == "kde"  # after the ranked ones
    entry = board.loc["kde", C.get(C.TEST_LOGLIK).header]
    assert entry.startswith(FAILED_MARK + "failed: ") and "bandwidth must be" in entry
    assert "kde" not in leaderboards(load(run))["digits"].index  # it ran on banana only
    html = write_report(run, ("html",))[0].read_text()
    assert html.count('<td class="failed">') == 1


def test_a_table_too_wide_for_the_page_is_split_never_cut():
    wide = pd.DataFrame({f"metric_{i} ↓": ["0.000 ± 0.001", "**-12.345 ± 0.067**"]
                         for i in range(10)}, index=["floor (val vs test)", "diag_gaussian"])
    wide.index.name = "estimator"
    parts = fit_width(wide)
    assert len(parts) == 2
    assert [c for p in parts for c in p.columns] == list(wide.columns)
    assert all(list(p.index) == list(wide.index) for p in parts)
    assert len(fit_width(wide, 3 * PAGE_PX)) == 1
    assert len(fit_width(wide.iloc[:, :4])) == 1


def test_headings_and_arrows_are_the_catalogues(run):
    board = leaderboards(load(run))["banana"]
    for metric in (C.TEST_LOGLIK, C.KL_TO_TRUTH, C.SAMPLES_TRUTH_LOGLIK, C.FIT_SECONDS):
        info = C.get(metric)
        assert f"{info.label} [{info.unit}]" in board.columns, metric
    # the column's unit is the unit its records carry
    units = load(run).query("metric == @C.SAMPLES_TRUTH_LOGLIK")["unit"].unique().tolist()
    assert "E_model log p_true [" + units[0] + "]" in board.columns
    quality = sample_quality_tables(load(run))["banana"]
    assert {"mmd2 ↓", "c2st_accuracy →0.5", "coverage ↑", "density →1"} <= set(quality)


# -- a run folder is data: reading it runs nothing and writes only under the output folder


def _tree(root, skip=None):
    """Every path under ``root`` (links not followed) with its content or link target."""
    out = {}
    for path in sorted(root.rglob("*")):
        if skip is not None and path.is_relative_to(skip):
            continue
        out[str(path)] = (os.readlink(path) if path.is_symlink() else
                          path.read_bytes() if path.is_file() else "dir")
    return out


def _records(run_dir):
    return {p: json.loads(p.read_text()) for p in sorted((run_dir / "cells").glob("*.json"))}


def _crafted(run, root, marker):
    """A copy of ``run`` at ``root/a/b/run`` with records that name code: a dataset
    ``timeit:main`` whose params would create ``marker`` and no stored dataset info (so an
    old reader loaded it by name), an estimator ``os:system``, and records whose ids are
    paths (relative and absolute)."""
    dst = root / "a" / "b" / "run"
    shutil.copytree(run, dst)
    source = next(r for r in _records(dst).values()
                  if r["dataset"]["name"] == "banana" and r["status"] == "ok")
    evil = json.loads(json.dumps(source))
    evil["id"] = "e" * 16
    evil["dataset"] = {"name": "timeit:main", "params": {"args": [
        "-n", "1", "-r", "1", "-s", f"import pathlib; pathlib.Path({str(marker)!r}).touch()",
        "pass"]}}
    evil["estimator"] = {"name": "os:system", "params": {"command": f"touch {marker}"}}
    del evil["data"]["info"]
    (dst / "cells" / f"{evil['id']}.json").write_text(json.dumps(evil))
    for name, bad_id in (("1" * 16, "../../x"), ("2" * 16, str(root / "abs"))):
        (dst / "cells" / f"{name}.json").write_text(json.dumps({**source, "id": bad_id}))
    return dst


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "densbench", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(Path.cwd())})


@pytest.mark.slow
def test_reading_a_crafted_run_runs_nothing_and_writes_only_under_its_out(run, tmp_path):
    marker = tmp_path / "MARKER"
    crafted = _crafted(run, tmp_path, marker)
    out, cwd = tmp_path / "out", tmp_path / "cwd"
    out.mkdir()
    cwd.mkdir()
    before = _tree(tmp_path, skip=out)
    res = _cli("report", str(crafted), "--out", str(out), cwd=cwd)
    assert res.returncode == 0, res.stderr
    assert not marker.exists()
    assert _tree(tmp_path, skip=out) == before, "report wrote outside its --out folder"
    warnings = [ln for ln in res.stderr.splitlines() if ln.startswith("densbench: warning:")]
    assert len(warnings) == 2 and "Traceback" not in res.stderr, res.stderr
    for name in ("1" * 16, "2" * 16):
        assert any(f"{name}.json" in w and "id must be 16 hex digits" in w for w in warnings)
    text = (out / "report.md").read_text()
    assert "## Skipped records" in text and "## timeit:main" in text
    assert "Not shown: sample galleries of image data and published figures" in text
    assert {p.parent for p in out.rglob("*.png")} == {out / "figures"}

    res = _cli("compare", str(crafted), str(run), cwd=cwd)  # a verdict needs every record
    assert res.returncode == 2 and res.stderr.count("\n") == 1, res.stderr
    assert "densbench: error: invalid record" in res.stderr
    assert "id must be 16 hex digits" in res.stderr
    for name in ("1" * 16, "2" * 16):
        (crafted / "cells" / f"{name}.json").unlink()
    assert load(crafted)["dataset"].eq("timeit:main").any()
    res = _cli("compare", str(run), str(crafted), cwd=cwd)
    assert res.returncode == 0, res.stderr
    assert not marker.exists() and not any(cwd.iterdir())


def _copy(run, dst, edit=None):
    shutil.copytree(run, dst, ignore=shutil.ignore_patterns("figures", "report.*"))
    for path, rec in _records(dst).items():
        if edit is not None:
            edit(rec)
            path.write_text(json.dumps(rec))
    return dst


def test_report_out_holds_every_file_and_the_run_is_left_as_it_was(run, tmp_path):
    src, out = _copy(run, tmp_path / "run"), tmp_path / "out"
    out.mkdir()
    before = _tree(src)
    paths = write_report(src, out_dir=out)
    assert _tree(src) == before, "reading a run wrote into it"
    assert {p.name for p in paths} == {"report.md", "report.html"}
    links = re.findall(r"\]\((figures/[^)]+\.png)\)", (out / "report.md").read_text())
    assert len(links) >= 8
    for link in links:
        assert (out / link).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_link_planted_in_a_run_cannot_steer_a_write_outside(run, tmp_path):
    src, elsewhere = _copy(run, tmp_path / "run"), tmp_path / "elsewhere"
    elsewhere.mkdir()
    (src / "figures").symlink_to(elsewhere)
    with pytest.raises(ValueError, match="outside the report's folder"):
        write_report(src)
    assert not any(elsewhere.iterdir())


def test_a_report_resolves_no_name_and_says_what_older_records_lack(run, tmp_path,
                                                                    monkeypatch):
    import densbench.data

    def older(rec):  # records as an older densbench wrote them
        for key in ("truth_grid",):
            rec.pop(key, None)
        for key in ("info", "test_preview"):
            (rec.get("data") or {}).pop(key, None)

    def refuse(*args, **kwargs):
        raise AssertionError("the report resolved a dataset name")

    src = _copy(run, tmp_path / "older", older)
    new = {r["dataset"]["name"]: r for r in _records(run).values() if r["status"] == "ok"}
    assert {"info", "test_preview"} <= set(new["banana"]["data"]) and "truth_grid" in \
        new["banana"]
    monkeypatch.setattr(densbench.data.REGISTRY, "get", refuse)
    text = write_report(run, ("md",), out_dir=_copy(run, tmp_path / "full"))[0].read_text()
    assert "Not shown" not in text
    text = write_report(src, ("md",))[0].read_text()
    banana = text.split("## banana: sample quality")[1].split("## digits")[0]
    assert "the test data beside 2-D samples" in banana
    assert "the true density beside the estimated ones" in banana
    digits = text.split("## digits: sample quality")[1]
    assert "sample galleries of image data" in digits and "samples on digits" not in digits
    assert len(re.findall(r"samples on banana\]", banana)) == 2  # samples alone
