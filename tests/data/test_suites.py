"""The built-in `images` and `published` suites end to end through the command line, and the
report and comparison of a finished run without its raw data."""

from __future__ import annotations

import math
import re
import shutil
from importlib import resources
from pathlib import Path

import pytest

from densbench.runner.store import RunStore, load
from tests.data.formats import write_all
from tests.data.test_cli_files import cli

#: Budgets cut to a few seconds per cell: the same suites, tiny networks, one epoch.
TINY = ((r"max_epochs = \d+", "max_epochs = 1"), (r"patience = \d+", "patience = 1"),
        (r"hidden = \[[^\]]*\]", "hidden = [8]"), (r"hidden = \d+", "hidden = 8"),
        (r"transforms = \d+", "transforms = 1"), (r"k_eval = \d+", "k_eval = 4"),
        (r"k_train = 50", "k_train = 2"), (r"latent_dim = \d+", "latent_dim = 2"),
        (r"seeds = \d+", "seeds = 1"), (r"\[samples\]\nn = \d+\n", ""),
        (r"cell_timeout_s = \d+\n", ""))
#: Without a time limit the cells run in the command's own process (no worker process to
#: start); the test's own timeout still bounds the run.
#: Sampling an autoregressive flow at 3072 dimensions takes 3072 sequential passes, and
#: sample metrics at 784 and 3072 dimensions covariance eigendecompositions: the end-to-end
#: runs here draw no samples.
NO_SAMPLE_METRICS = "\n[samples]\nn = 0\nmetrics = false\n"


def tiny_suite(name: str, out: Path, cuts: tuple[tuple[str, str], ...] = ()) -> Path:
    """Built-in suite ``name`` at :data:`TINY` budgets, each of ``cuts`` (pattern,
    replacement) applied exactly once."""
    text = resources.files("densbench.suites").joinpath(f"{name}.toml").read_text()
    for pattern, repl in TINY:
        text = re.sub(pattern, repl, text)
    for pattern, repl in cuts:
        text, n = re.subn(pattern, repl, text)
        assert n == 1, f"{name}.toml changed: {pattern!r} matched {n} times"
    path = out / f"{name}_tiny.toml"
    path.write_text(text + NO_SAMPLE_METRICS)
    return path


@pytest.mark.slow
def test_images_suite_runs_on_mnist5k_offline(tmp_path):
    suite = tiny_suite("images", tmp_path)
    chosen = {"diag_gaussian", "gaussian", "ppca", "made_mog", "maf", "realnvp"}
    res = cli("run", "--suite", str(suite), "--estimators", ",".join(sorted(chosen)),
              "--datasets", "mnist5k", "--out", str(tmp_path / "run"), "--no-progress")
    assert res.returncode == 0, res.stderr + res.stdout
    df = load(tmp_path / "run")
    bpd = df[df["metric"] == "test_bits_per_dim"].set_index("estimator")["value"]
    assert set(bpd.index) == chosen
    # bounds on 8-bit digits: positive, and the best model beats uniform levels (8 bits);
    # the flows and MADE MoG, one epoch of a tiny network in logit space, do not diverge
    assert (bpd > 0).all() and bpd.min() < 8, bpd
    assert (bpd[["made_mog", "maf", "realnvp"]] < 8).all(), bpd
    transforms = {r["estimator"]["name"]: r["transform"]
                  for r in RunStore(tmp_path / "run").records()}
    assert transforms["maf"].endswith("logit(1e-06 + (1 - 2 * 1e-06) y)")
    assert transforms["ppca"] == "uniform dequantization, (x + u) / 256"


#: The 3072-D CIFAR-10 path through its cheapest estimator only: building MAF's masks at
#: 3072 inputs and a 3072 x 3072 covariance cost seconds whatever the rows, and the other
#: datasets run those estimators' protocols already.
CIFAR_CHEAPEST = ((r', "cifar10"\]', "]"),
                  (r'\[\[estimators\]\]\nname = "maf"\ndatasets = \["cifar10"\]\n'
                   r'\[estimators\.params\]\n(?:\w+ = [^\n]*\n)*', ""))


@pytest.mark.slow
def test_published_suite_end_to_end_then_report_without_raw_data(tmp_path):
    root = tmp_path / "data"
    write_all(root)
    suite = tiny_suite("published", tmp_path, CIFAR_CHEAPEST)
    run = tmp_path / "run"
    res = cli("run", "--suite", str(suite), "--data-root", str(root), "--out", str(run),
              "--no-progress", DENSBENCH_VERIFY_CHECKSUMS="0")
    assert res.returncode == 0, res.stderr + res.stdout[-3000:]
    records = RunStore(run).records()
    assert len(records) == 32 and {r["status"] for r in records} == {"ok"}
    assert [r["estimator"]["name"] for r in records if r["dataset"]["name"] == "cifar10"] == [
        "realnvp"]
    assert not any("samples_preview" in r for r in records)  # [samples] n = 0: none drawn
    assert {r["dataset"]["name"] for r in records} == {
        "uci_power", "uci_gas", "uci_hepmass", "uci_miniboone", "uci_bsds300", "mnist",
        "cifar10", "binarized_mnist"}

    shutil.rmtree(root)  # a finished run's report and comparison need no raw data
    empty = tmp_path / "empty"
    empty.mkdir()
    rep = cli("report", str(run), "--format", "md", DENSBENCH_DATA_ROOT=str(empty))
    assert rep.returncode == 0, rep.stderr
    text = (run / "report.md").read_text()
    sections = dict(re.findall(r"\n## ([a-z0-9_]+)\n(.*?)(?=\n## |\Z)", text, re.S))
    assert "MAF (5) (published)" in sections["uci_power"]
    assert "MAF MoG (5) (published)" in sections["uci_bsds300"]
    # bits/dim converted to nats/example with the dataset's dimension
    maf = f"{-1.89 * 784 * math.log(2):.3f}"
    assert "MAF (published)" in sections["mnist"] and maf in sections["mnist"]
    # figures of another protocol are named apart, never as rows beside densbench's
    apart = "Published under another protocol, so not in the table"
    assert "Glow (published)" not in sections["mnist"] and apart in sections["mnist"]
    assert "(published)" not in sections["cifar10"] and apart in sections["cifar10"]
    assert "MAF (5) (published)" not in sections["mnist"]
    assert "(published)" not in sections["binarized_mnist"]  # no figure of that protocol
    cmp = cli("compare", str(run), str(run), DENSBENCH_DATA_ROOT=str(empty))
    assert cmp.returncode == 0, cmp.stderr
    assert "32 cells ok in both runs" in cmp.stdout
