import pytest

from densbench.registry import UnknownNameError
from densbench.runner.plan import (
    Cell,
    Spec,
    SuiteError,
    builtin_suite,
    builtin_suite_names,
    parse_suite,
)

GOOD = """
name = "t"
seeds = 2
[[datasets]]
name = "banana"
[datasets.params]
n_train = 50
[[estimators]]
name = "kde"
[estimators.params]
bandwidth = 0.3
[[estimators]]
name = "gaussian"
"""


def test_suite_expands_to_cells():
    s = parse_suite(GOOD, "t.toml")
    cells = s.cells()
    assert len(cells) == 4
    assert {c.seed for c in cells} == {0, 1}
    assert len({c.id for c in cells}) == 4


def test_cell_id_is_stable_and_depends_on_everything():
    c = Cell(Spec("kde", {"bandwidth": 0.3}), Spec("banana", {"n_train": 50}), 0)
    # a fixed value: the id must never change between versions for the same cell
    assert c.id == Cell(Spec("kde", {"bandwidth": 0.3}), Spec("banana", {"n_train": 50}), 0).id
    assert len(c.id) == 16
    assert c.id != Cell(Spec("kde", {"bandwidth": 0.4}), Spec("banana", {"n_train": 50}), 0).id
    assert c.id != Cell(Spec("kde", {"bandwidth": 0.3}), Spec("banana", {"n_train": 51}), 0).id
    assert c.id != Cell(Spec("kde", {"bandwidth": 0.3}), Spec("banana", {"n_train": 50}), 1).id
    # the budget is not part of the identity
    assert c.id == Cell(c.estimator, c.dataset, 0, timeout_s=5).id


@pytest.mark.parametrize("text, message", [
    ("name = [", "not valid TOML"),
    ("seeds = 1\n[[estimators]]\nname='kde'", "'datasets' must be"),
    ("[[datasets]]\nname='banana'\n[[estimators]]\nname='nope'", "unknown estimator 'nope'"),
    ("[[datasets]]\nname='nope'\n[[estimators]]\nname='kde'", "unknown dataset 'nope'"),
    ("seeds = 0\n[[datasets]]\nname='banana'\n[[estimators]]\nname='kde'", "seeds must be"),
    ("bogus = 1\n[[datasets]]\nname='banana'\n[[estimators]]\nname='kde'", "unknown key"),
    ("[[datasets]]\nname='banana'\n[[estimators]]\nname='kde'\nbandwidth=1", "under 'params'"),
    ("[[datasets]]\nname='banana'\n[datasets.params]\nsize=3\n[[estimators]]\nname='kde'",
     "unknown parameter"),
    ("[[datasets]]\nname='banana'\n[[estimators]]\nname='kde'\n[estimators.params]\nbw=1",
     "unknown parameter"),
    ("[budget]\ncell_timeout_s=-1\n[[datasets]]\nname='banana'\n[[estimators]]\nname='kde'",
     "cell_timeout_s"),
])
def test_malformed_suites_are_named(text, message):
    with pytest.raises((SuiteError, UnknownNameError), match=message):
        parse_suite(text, "bad.toml")


def test_builtin_suites_validate():
    assert {"default", "quick"} <= set(builtin_suite_names())
    for name in builtin_suite_names():
        s = builtin_suite(name)
        assert s.cells()
    with pytest.raises(SuiteError, match="no built-in suite"):
        builtin_suite("nope")


def test_restrict_keeps_suite_params_and_adds_defaults():
    s = builtin_suite("default").restrict(estimators=["kde", "gaussian"], datasets=["banana"],
                                          n_seeds=2)
    assert [e.name for e in s.estimators] == ["kde", "gaussian"]
    assert s.estimators[0].params == {"bandwidth": "cv"}
    assert s.seeds == (0, 1)
    with pytest.raises(UnknownNameError, match="known: .*kde"):
        builtin_suite("default").restrict(estimators=["kdee"])


def test_estimator_restricted_to_some_datasets():
    text = GOOD.replace('name = "gaussian"', 'name = "gaussian"\ndatasets = ["digits"]')
    text += '[[datasets]]\nname = "digits"\n'
    s = parse_suite(text, "t.toml")
    pairs = {(c.estimator.name, c.dataset.name) for c in s.cells()}
    assert pairs == {("kde", "banana"), ("kde", "digits"), ("gaussian", "digits")}
    with pytest.raises(SuiteError, match="must be a list of dataset names"):
        parse_suite(GOOD.replace('name = "gaussian"', 'name = "gaussian"\ndatasets = "x"'),
                    "t.toml")


SUITE = """
name = "t"
[[datasets]]
name = "banana"
[[estimators]]
name = "kde"
"""


@pytest.mark.parametrize("text, message", [
    (SUITE.replace('name = "kde"', 'name = "gmm"\n[estimators.params]\nn_components = -3'),
     r"^bad\.toml: estimators\[0\] \(gmm\) params: gmm: n_components must be an int >= 1 "
     r"or a non-empty list of ints >= 1; got -3$"),
    (SUITE.replace('name = "kde"', 'name = "kde"\n[estimators.params]\nbandwidth = "huge"'),
     r"^bad\.toml: estimators\[0\] \(kde\) params: kde: bandwidth must be .*; got 'huge'$"),
    (SUITE.replace('name = "kde"', 'name = "made"\n[estimators.params]\n'
                                   'conditional = "categorical"'),
     r"estimators\[0\] \(made\) params: made: levels must be an int >= 2 for categorical"),
    (SUITE.replace('name = "banana"', 'name = "digits"\n[datasets.params]\nn_val = 0'),
     r"^bad\.toml: datasets\[0\] \(digits\) params: dataset digits: n_val must be an int "
     r">= 1; got 0$"),
    (SUITE.replace('name = "kde"', 'name = "kde"\ndatasets = ["banan"]'),
     r"^bad\.toml: estimators\[0\] \(kde\): datasets names unknown dataset\(s\) banan; "
     r"known: .*banana"),
    (SUITE.replace('name = "kde"', 'name = "kde"\ndatasets = ["digits"]'),
     r"^bad\.toml: estimators\[0\] \(kde\): runs only on digits, none of which .* no cell"),
    (SUITE + '[[estimators]]\nname = "kde"\n',
     r"^bad\.toml: estimators\[1\] \(kde\) repeats estimators\[0\] with the same params"),
    (SUITE + '[[datasets]]\nname = "banana"\n',
     r"^bad\.toml: datasets\[1\] \(banana\) repeats datasets\[0\]"),
    (SUITE.replace('name = "t"', 'name = "../../x"'),
     r"^bad\.toml: name '\.\./\.\./x' must be a plain folder name"),
    (SUITE.replace('name = "t"', 'name = "a/b"'), r"name 'a/b' must be a plain folder"),
])
def test_suites_are_validated_before_anything_runs(text, message):
    with pytest.raises(SuiteError, match=message):
        parse_suite(text, "bad.toml")


def test_same_entry_on_other_datasets_is_no_duplicate():
    two = SUITE + '[[datasets]]\nname = "funnel"\n'
    split = two.replace('name = "kde"', 'name = "kde"\ndatasets = ["banana"]') + \
        '[[estimators]]\nname = "kde"\ndatasets = ["funnel"]\n'
    assert len(parse_suite(split, "t.toml").cells()) == 2
    overlap = split.replace('datasets = ["funnel"]', 'datasets = ["funnel", "banana"]')
    with pytest.raises(SuiteError, match=r"estimators\[1\] \(kde\) repeats estimators\[0\]"):
        parse_suite(overlap, "t.toml")


def test_same_estimator_with_other_params_is_no_duplicate():
    text = SUITE + '[[estimators]]\nname = "kde"\n[estimators.params]\nbandwidth = 0.3\n'
    assert len(parse_suite(text, "t.toml").cells()) == 2


def test_restriction_that_leaves_a_named_estimator_without_cells():
    default = builtin_suite("default")
    with pytest.raises(SuiteError, match=r"^--estimators hmm \(as densbench/suites/default"
                                         r"\.toml: estimators\[\d+\] \(hmm\) sets it\): runs "
                                         r"only on hmm_seq, digits, none of which .*\(banana\)"):
        default.restrict(estimators=["hmm"], datasets=["banana"])
    # not named: the estimators that cannot run on the chosen datasets are left out
    names = {e.name for e in default.restrict(datasets=["banana"]).estimators}
    assert "kde" in names and "hmm" not in names and "vae" not in names
    with pytest.raises(SuiteError, match="--estimators names kde more than once"):
        default.restrict(estimators=["kde", "gmm", "kde"])
    # named, with per-dataset entries: the entries for other datasets are left out
    for name, dataset in (("maf", "grid_5x5"), ("diffusion", "digits")):
        cells = default.restrict(estimators=[name], datasets=[dataset], n_seeds=1).cells()
        assert len(cells) == 1 and cells[0].dataset.name == dataset


def _cli(tmp_path, *args):
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run([sys.executable, "-m", "densbench", "run", *args],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)


def test_cli_refuses_a_bad_suite_in_one_line_before_running(tmp_path):
    suite = tmp_path / "bad.toml"
    suite.write_text(SUITE.replace('name = "kde"', 'name = "gmm"\n[estimators.params]\n'
                                                   'n_components = -3'))
    res = _cli(tmp_path, "--suite", str(suite), "--out", str(tmp_path / "out"))
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "bad.toml: estimators[0] (gmm) params: gmm: n_components" \
        in lines[0], res.stderr
    assert not (tmp_path / "out").exists()
    res = _cli(tmp_path, "--estimators", "hmm", "--datasets", "banana", "--out",
               str(tmp_path / "out"))
    assert res.returncode == 2 and "--estimators hmm (as " in res.stderr, res.stderr
    assert "sets it): runs only on" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
    res = _cli(tmp_path, "--estimators", "kdee", "--datasets", "banana")
    assert res.returncode == 2 and res.stderr.startswith(
        "densbench: error: --estimators kdee: unknown estimator 'kdee'; known: "), res.stderr


def test_samples_n_zero_draws_none_and_one_is_refused():
    cells = parse_suite(SUITE + "[samples]\nn = 0\n", "t.toml").cells()
    assert [c.n_samples for c in cells] == [0]
    with pytest.raises(SuiteError, match=r"\[samples\] n must be 0 \(draw none\) or an int "
                                         r">= 2; got 1"):
        parse_suite(SUITE + "[samples]\nn = 1\n", "t.toml")


@pytest.mark.parametrize(("names", "message"), [
    ({"estimators": ["kdee"]}, r"^--estimators kdee: unknown estimator 'kdee'; known: "),
    ({"datasets": ["nope"]}, r"^--datasets nope: unknown dataset 'nope'; known: "),
    ({"datasets": ["missing.npy"]}, r"^--datasets missing.npy: dataset \S*missing.npy: no "
                                    r"such file"),
    ({"estimators": ["no_such_module_xyz:M"]},
     r"^--estimators no_such_module_xyz:M: estimator 'no_such_module_xyz:M': cannot import"),
])
def test_an_ad_hoc_run_names_the_option_and_the_name_as_typed(names, message):
    """A run made of command-line names (the default suite restricted) says which option
    and name are wrong, not the default suite's file."""
    with pytest.raises((SuiteError, UnknownNameError), match=message) as err:
        builtin_suite("default").restrict(**names)
    assert "default.toml" not in str(err.value)
