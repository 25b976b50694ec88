import pytest

import densbench as db
from densbench.report.reference import load_references, matching
from densbench.report.render import write_report
from densbench.runner.execute import run_cells
from densbench.runner.plan import Cell, Spec
from densbench.runner.store import RunStore

DIGITS = db.data.load("digits").protocol


def _ref_file(folder, name, protocol_lines, value):
    (folder / f"{name}.toml").write_text("\n".join([
        f'source = "Test source {name}"', 'metric = "test_loglik"', 'unit = "nats/example"',
        'error = "1 SE"', "[protocol]", *protocol_lines, "[[figures]]",
        f'estimator = "Model {name}"', f"value = {value}", "error = 0.5", ""]))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    run_cells([Cell(Spec("gaussian"), Spec("digits"), 0)], RunStore(root, create=True))
    return root


def _protocol(name):
    small = {"n_train": 10, "n_val": 5, "n_test": 5}
    if db.data.REGISTRY.meta(name).get("folder") or name in ("digits", "mnist5k"):
        return db.data.info(name).protocol  # declared: no data file is read
    return db.data.info(name, **small).protocol


def test_committed_references_match_exactly_the_published_protocols():
    refs = load_references()
    assert {r.unit for r in refs} == {"nats/example", "bits/dim"}
    shown = {name: {r.path.rsplit("/", 1)[1] for r in matching(refs, _protocol(name))}
             for name in db.data.names()}
    for name in ("power", "gas", "hepmass", "miniboone", "bsds300"):
        assert shown.pop(f"uci_{name}") == {f"papamakarios2017_{name}.toml"}
    assert shown.pop("mnist") == {"dequantized_mnist.toml"}
    assert shown.pop("cifar10") == {"dequantized_cifar10.toml", "vandenoord2016_cifar10.toml"}
    assert not any(shown.values()), shown  # digits, mnist5k, synthetic sets: none
    assert not matching(refs, db.data.info("mnist", binarize="dynamic").protocol)


def test_shown_only_where_the_protocol_matches(run, tmp_path):
    refs = tmp_path / "refs"
    refs.mkdir()
    _ref_file(refs, "same", ['dataset = "digits"', f'split = "{DIGITS["split"]}"',
                             "levels = 17"], -99.5)
    _ref_file(refs, "othersplit", ['dataset = "digits"', 'split = "a different split"'], -90.0)
    _ref_file(refs, "binarized", ['dataset = "digits"', "levels = 2"], -20.0)
    write_report(run, ("md",), reference_dir=refs)
    text = (run / "report.md").read_text()
    assert "Model same (published)" in text and "-99.500 ± 0.500" in text
    assert "Test source same" in text
    assert "othersplit" not in text and "binarized" not in text


def test_malformed_reference_file_is_named(tmp_path):
    (tmp_path / "bad.toml").write_text('source = "x"\nmetric = "test_loglik"\n')
    with pytest.raises(ValueError, match="malformed reference file .*bad.toml"):
        load_references(tmp_path)
