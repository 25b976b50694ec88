import re

import numpy as np
import pytest

from densbench.metrics import catalogue as C
from densbench.report.render import write_report
from densbench.report.tables import (
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
