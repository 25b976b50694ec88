import json
import tomllib
from pathlib import Path

import pytest

import densbench as db
from densbench.metrics import catalogue as C
from densbench.report.reference import (
    ERROR_KINDS,
    PROTOCOL_KEYS,
    default_reference_dir,
    load_references,
    matching,
    refused,
)
from densbench.report.render import write_report
from densbench.runner.execute import run_cells
from densbench.runner.plan import Cell, Spec
from densbench.runner.store import RunStore

DIGITS = db.data.load("digits").protocol


def _ref_file(folder, name, protocol_lines, value, *, error="0.5", kind="standard error",
              multiple="1", figure_lines=('citation = "Table 9, p. 4"',)):
    head = [f'source = "Test source {name}"', 'metric = "test_loglik"',
            'unit = "nats/example"', f'error_kind = "{kind}"',
            'checked = "a test file"']
    if multiple is not None:
        head.append(f"error_multiple = {multiple}")
    fig = ["[[figures]]", f'estimator = "Model {name}"', f"value = {value}",
           *([f"error = {error}"] if error is not None else []), *figure_lines]
    (folder / f"{name}.toml").write_text("\n".join([*head, "[protocol]", *protocol_lines,
                                                     *fig, ""]))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    run_cells([Cell(Spec("gaussian"), Spec("digits"), 0)], RunStore(root, create=True))
    return root


def _protocol(name):
    small = {"n_train": 10, "n_val": 5, "n_test": 5}
    if db.data.REGISTRY.meta(name).get("folder") or name in ("digits", "mnist5k",
                                                             "binarized_mnist5k"):
        return db.data.info(name).protocol  # declared: no data file is read
    return db.data.info(name, **small).protocol


def test_committed_references_match_exactly_the_published_protocols():
    refs = load_references()
    shown = {name: {Path(r.path).name for r in matching(refs, _protocol(name))}
             for name in db.data.names()}
    for name in ("power", "gas", "hepmass", "miniboone", "bsds300"):
        assert shown.pop(f"uci_{name}") == {f"papamakarios2017_{name}.toml",
                                            f"durkan2019_{name}.toml"}
    assert shown.pop("mnist") == {"papamakarios2017_mnist.toml"}
    assert not any(shown.values()), shown  # CIFAR-10 (flips, unchecked), digits...: none
    assert not matching(refs, db.data.info("mnist", binarize="dynamic").protocol)
    # fixed-binarized MNIST: the Pixel RNN figures are listed apart, never in the table,
    # since which static draw they used (the .amat files or another) was not verified
    apart = {Path(r.path).name: why for r, why in refused(refs, _protocol("binarized_mnist"))}
    assert set(apart) == {"vandenoord2016_binarized_mnist.toml"}
    assert any(w.startswith("binarization:") for w in apart["vandenoord2016_binarized_mnist.toml"])
    assert not refused(refs, db.data.info("mnist", binarize="dynamic").protocol)
    apart = {Path(r.path).name for r, _ in refused(refs, _protocol("cifar10"))}
    assert apart == {"papamakarios2017_cifar10.toml", "dinh2017_cifar10.toml",
                     "kingma2018_cifar10.toml", "grathwohl2019_cifar10.toml",
                     "vandenoord2016_cifar10.toml"}
    # the NSF table's figures quoted from other papers print ± over runs, not an SE
    quoted = {r.estimator for r, why in refused(refs, _protocol("uci_gas"))
              if any("standard deviations, not a standard error" in w for w in why)}
    assert quoted == {"FFJORD", "NAF", "Block-NAF", "SOS"}


def test_every_committed_reference_file_follows_the_format():
    folder = default_reference_dir()
    files = sorted(folder.glob("*.toml"))
    assert files
    for path in files:
        raw = tomllib.loads(path.read_text())
        for key in ("source", "metric", "unit", "error_kind", "checked", "protocol",
                    "figures"):
            assert raw.get(key), (path.name, key)
        assert raw["unit"] == C.get(raw["metric"]).unit, path.name
        assert raw["error_kind"] in ERROR_KINDS, path.name
        assert set(raw["protocol"]) <= set(PROTOCOL_KEYS), path.name
        assert all(f.get("citation", "").strip() for f in raw["figures"]), path.name
    refs = load_references(folder)  # the loader's own checks pass on every file
    assert len(refs) == sum(len(tomllib.loads(p.read_text())["figures"]) for p in files)
    maf = [r for r in refs if r.metric == "test_loglik"
           and r.source.startswith("Papamakarios, Pavlakou & Murray (2017)")]
    assert len(maf) == 40 and all((r.error_kind, r.error_multiple) == ("standard error", 2.0)
                                  for r in maf)


def test_the_pixel_rnn_binarized_mnist_file_parses_as_published_nats():
    refs = [r for r in load_references()
            if Path(r.path).name == "vandenoord2016_binarized_mnist.toml"]
    # the paper prints a negative log-likelihood in nats; the file states log-likelihoods
    assert {r.estimator: r.value for r in refs} == {"PixelRNN": -79.20, "PixelCNN": -81.30}
    assert all((r.metric, r.unit, r.error_kind, r.error) ==
               ("test_loglik", "nats/example", "none printed", None) for r in refs)
    assert all((r.protocol["dataset"], r.protocol["kind"], r.protocol["levels"]) ==
               ("binarized_mnist", "discrete", 2) for r in refs)


FIXED = db.data.info("binarized_mnist").protocol
DYNAMIC = db.data.info("mnist", binarize="dynamic").protocol


def _binary_ref(folder, name, dataset, binarization):
    _ref_file(folder, name, [f'dataset = "{dataset}"', 'kind = "discrete"', "levels = 2",
                             f"binarization = {json.dumps(binarization)}"], -80.0,
              kind="none printed", multiple=None, error=None)


def test_binarization_pairs_a_fixed_figure_only_with_fixed_and_a_dynamic_only_with_dynamic(
        tmp_path):
    _binary_ref(tmp_path, "fixed", "binarized_mnist", FIXED["binarization"])
    # a figure trained on images re-drawn every time they are seen (Burda et al. 2016),
    # even when its source calls the data "binarized MNIST"
    _binary_ref(tmp_path, "redrawn", "binarized_mnist",
                "dynamic: each pixel Bernoulli(x / 255), re-drawn every time an image is given "
                "to the model")
    _binary_ref(tmp_path, "per_seed", "mnist", DYNAMIC["binarization"])
    refs = load_references(tmp_path)
    shown = {name: [r.estimator for r in matching(refs, p)]
             for name, p in (("fixed", FIXED), ("dynamic", DYNAMIC))}
    assert shown == {"fixed": ["Model fixed"], "dynamic": ["Model per_seed"]}
    (fig, why), = refused(refs, FIXED)
    assert fig.estimator == "Model redrawn" and why[0].startswith("binarization: 'dynamic")
    assert refused(refs, DYNAMIC) == []  # the binarized_mnist figures are other data


BASE = ['dataset = "digits"', f'split = "{DIGITS["split"]}"', "levels = 17",
        'augmentation = "none"']


@pytest.mark.parametrize("what, lines, kind", [
    ("split", ['dataset = "digits"', 'split = "all 1797 images train"'], "standard error"),
    ("augmentation", [*BASE[:3], 'augmentation = "horizontal flips"'], "standard error"),
    ("pixel_order", [*BASE, 'pixel_order = "channel-major"'], "standard error"),
    ("binarization", [*BASE, 'binarization = "dynamic: re-drawn every minibatch"'],
     "standard error"),
    ("standard deviation", BASE, "standard deviation"),
])
def test_a_figure_under_another_protocol_is_never_paired_and_says_why(tmp_path, what,
                                                                        lines, kind):
    _ref_file(tmp_path, "same", BASE, -99.5)
    _ref_file(tmp_path, "other", lines, -90.0, kind=kind)
    refs = load_references(tmp_path)
    assert [r.estimator for r in matching(refs, DIGITS)] == ["Model same"]
    (fig, why), = refused(refs, DIGITS)
    assert fig.estimator == "Model other" and what in "; ".join(why)


def test_shown_only_where_the_protocol_matches_with_errors_as_one_se(run, tmp_path):
    refs = tmp_path / "refs"
    refs.mkdir()
    _ref_file(refs, "same", BASE, -99.5, error="0.02", multiple="2")
    _ref_file(refs, "flipped", [*BASE[:3], 'augmentation = "horizontal flips"'], -90.0)
    _ref_file(refs, "binarized", ['dataset = "digits"', "levels = 2"], -20.0)
    write_report(run, ("md",), reference_dir=refs)
    text = (run / "report.md").read_text()
    # 0.02 printed as 2 standard errors is 0.01 standard error, and the report says so
    assert "Model same (published)" in text and "-99.500 ± 0.010" in text
    assert "± 0.020" not in text and "printed ± 2 standard errors, divided by 2" in text
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert not any("flipped" in line or "binarized" in line for line in table)
    assert "not in the table: Model flipped -90" in text and "horizontal flips" in text
    assert "Model binarized" not in text  # other levels: another dataset, not listed


@pytest.mark.parametrize("change, message", [
    ({"figure_lines": ()}, "figure 1: 'citation'"),
    ({"kind": "2 sd"}, "error_kind must be one of"),
    ({"multiple": None}, "error_multiple"),
    ({"kind": "none printed", "multiple": None}, "none printed"),
])
def test_a_reference_file_breaking_the_format_is_named(tmp_path, change, message):
    _ref_file(tmp_path, "bad", BASE, -1.0, **change)
    with pytest.raises(ValueError, match=rf"malformed reference file .*bad.toml: .*{message}"):
        load_references(tmp_path)


@pytest.mark.parametrize("text, message", [
    ('source = "x"\nmetric = "test_loglik"\n', "'unit' must be a non-empty string"),
    ('source = "s"\nmetric = "test_loglik"\nunit = "bits/dim"\nchecked = "c"\n'
     'error_kind = "none printed"\n[protocol]\ndataset = "d"\n[[figures]]\n'
     'estimator = "e"\nvalue = 1\ncitation = "T1"\n', "not the catalogue's unit"),
    ('source = "s"\nmetric = "test_loglik"\nunit = "nats/example"\nchecked = "c"\n'
     'error_kind = "none printed"\n[protocol]\ndataset = "d"\naugmentaton = "none"\n'
     '[[figures]]\nestimator = "e"\nvalue = 1\ncitation = "T1"\n', "unknown protocol key"),
])
def test_malformed_reference_file_is_named(tmp_path, text, message):
    (tmp_path / "bad.toml").write_text(text)
    with pytest.raises(ValueError, match=f"malformed reference file .*bad.toml: .*{message}"):
        load_references(tmp_path)
