"""Hyperparameter constraints: what they accept and the one message they write."""

from __future__ import annotations

import math

import numpy as np
import pytest

import densbench as db
from densbench.estimators.params import (
    BOOL,
    Interval,
    ListOf,
    Options,
    Satisfies,
    check_value,
    describe,
)


@pytest.mark.parametrize("constraint, good, bad", [
    (Interval(int, 1, None), [1, 7, np.int64(3)], [0, -1, 1.0, True, "2", None]),
    (Interval(int, 0, 3, "neither"), [1, 2], [0, 3, 2.5]),
    (Interval(float, 0, None, "neither"), [1e-300, 1, 2.5, np.float32(1)],
     [0, 0.0, -1.0, math.inf, math.nan, True, "1", 10**400]),
    (Interval(float, 0, 1, "right"), [1.0, 0.5], [0.0, 1.0000001]),
    (Options("full", "diag"), ["full", "diag"], ["tied", 1, None]),
    (Options(1, 2), [1, 2], [True, 1.0]),
    (ListOf(Interval(int, 1, None)), [[1], (1, 2)], [[], [0], 3, "12", [1.5]]),
    (ListOf(Interval(int, 1, None), 2, 2), [(8, 8)], [(8,), (1, 2, 3)]),
    (BOOL, [True, False, np.bool_(True)], [1, 0, None, "yes"]),
])
def test_constraints_accept_and_refuse(constraint, good, bad):
    assert all(constraint.accepts(v) for v in good)
    assert not any(constraint.accepts(v) for v in bad)


@pytest.mark.parametrize("constraints, phrase", [
    ([Interval(int, 1, None)], "an int >= 1"),
    ([Interval(float, 0, None, "left")], "a finite float >= 0"),
    ([Interval(float, 0, 1, "right")], "a finite float in (0, 1]"),
    ([None, Interval(int, 2, None)], "None or an int >= 2"),
    ([Interval(int, 1, None), ListOf(Interval(int, 1, None))],
     "an int >= 1 or a non-empty list of ints >= 1"),
    ([Interval(int, 1, None), Options("auto")], "an int >= 1 or 'auto'"),
    ([BOOL], "True or False"),
])
def test_phrases(constraints, phrase):
    assert describe(constraints) == phrase


def test_the_uniform_message():
    rule = [Satisfies(lambda h: h > 0, "> 0"), Options("scott", "silverman", "cv")]
    with pytest.raises(ValueError) as err:
        check_value("kde", "bandwidth", -1, rule)
    assert str(err.value) == ("kde: bandwidth must be > 0 or one of 'scott', 'silverman', "
                              "'cv'; got -1")
    check_value("kde", "bandwidth", "cv", rule)
    with pytest.raises(ValueError, match="got 'x'"):  # the test's TypeError is a refusal
        check_value("kde", "bandwidth", "x", rule[:1])


@pytest.mark.parametrize("name, params, message", [
    ("gmm", {"n_components": -3}, "gmm: n_components must be an int >= 1 or a non-empty "
                                  "list of ints >= 1; got -3"),
    ("kde", {"bandwidth": "huge"}, "kde: bandwidth must be > 0"),
    ("made", {"conditional": "categorical"}, "made: levels must be an int >= 2 for "
                                             "categorical conditionals; got None"),
    ("maf", {"lr": 0}, "maf: lr must be a finite float > 0; got 0"),
])
def test_check_params_without_fitting(name, params, message):
    """The classmethod the suite validator calls: nothing is built or fitted."""
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(")):
        db.estimators.get(name).check_params(params)
