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
