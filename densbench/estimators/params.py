"""Hyperparameter constraints, declared once per estimator class and checked in one place.

Each estimator class maps every hyperparameter to a list of constraints in
``_parameter_constraints`` (the pattern of scikit-learn's ``_parameter_constraints``); a
value is valid when it satisfies any of them. :func:`check_params` writes the one message
every estimator uses, ``"<estimator>: <param> must be <what the constraints accept>; got
<value>"``, so that a suite can be validated before anything is fitted with the same code
that ``fit`` runs.

Example:
    >>> check_value("kde", "bandwidth", -1, [Interval(float, 0, None, "neither"),
    ...                                      Options("scott", "cv")])
    Traceback (most recent call last):
    ...
    ValueError: kde: bandwidth must be a finite float > 0 or one of 'scott', 'cv'; got -1
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

__all__ = ["BOOL", "Constraint", "Interval", "ListOf", "Options", "ParamConstraints", "Satisfies",
           "When", "check_params", "check_value", "describe", "is_int", "is_real"]


def is_int(v: Any) -> bool:
    """An integer (Python or NumPy), not a bool."""
    return isinstance(v, int | np.integer) and not isinstance(v, bool | np.bool_)


def is_real(v: Any) -> bool:
    """A real number (int or float, Python or NumPy), not a bool."""
    return is_int(v) or isinstance(v, float | np.floating)


class Constraint(Protocol):
    """What a hyperparameter may be: ``accepts(value)`` and the phrase that ``describe``
    puts after "must be"."""

    def accepts(self, value: Any) -> bool: ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class Interval:
    """An int (``kind=int``) or a finite real number (``kind=float``; ints count) between
    ``low`` and ``high`` (None: unbounded on that side); ``closed`` says which ends belong.

    A float interval never accepts inf or NaN, whatever its bounds.
    """

    kind: type[int] | type[float]
    low: float | None
    high: float | None
    closed: Literal["both", "left", "right", "neither"] = "both"

    def accepts(self, value: Any) -> bool:
        if not (is_int(value) if self.kind is int else is_real(value)):
            return False
        try:
            if self.kind is float and not math.isfinite(float(value)):
                return False
        except OverflowError:  # an int beyond the float range
            return False
        lo_ok = self.low is None or (value >= self.low if self.closed in ("both", "left")
                                     else value > self.low)
        hi_ok = self.high is None or (value <= self.high if self.closed in ("both", "right")
                                      else value < self.high)
        return bool(lo_ok and hi_ok)

    def describe(self) -> str:
        noun = "an int" if self.kind is int else "a finite float"
        lo_op = ">=" if self.closed in ("both", "left") else ">"
        hi_op = "<=" if self.closed in ("both", "right") else "<"
        if self.low is not None and self.high is not None:
            lb = "[" if lo_op == ">=" else "("
            rb = "]" if hi_op == "<=" else ")"
            return f"{noun} in {lb}{_num(self.low)}, {_num(self.high)}{rb}"
        if self.low is not None:
            return f"{noun} {lo_op} {_num(self.low)}"
        if self.high is not None:
            return f"{noun} {hi_op} {_num(self.high)}"
        return noun


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else repr(v)


@dataclass(frozen=True)
class Options:
    """One of a few values (compared by type as well as value, so ``True`` is not ``1``)."""

    values: tuple[Any, ...]

    def __init__(self, *values: Any) -> None:
        object.__setattr__(self, "values", values)

    def accepts(self, value: Any) -> bool:
        return any(type(value) is type(v) and value == v for v in self.values
                   if not isinstance(value, np.ndarray))

    def describe(self) -> str:
        if len(self.values) == 1:
            return repr(self.values[0])
        if all(isinstance(v, bool) for v in self.values):
            return " or ".join(map(repr, self.values))
        return "one of " + ", ".join(map(repr, self.values))


@dataclass(frozen=True)
class ListOf:
    """A list or tuple of at least ``min_len`` (at most ``max_len``) items, each accepted by
    ``item``."""

    item: Constraint
    min_len: int = 1
    max_len: int | None = None
    phrase: str | None = None

    def accepts(self, value: Any) -> bool:
        return (isinstance(value, list | tuple) and len(value) >= self.min_len
                and (self.max_len is None or len(value) <= self.max_len)
                and all(self.item.accepts(v) for v in value))

    def describe(self) -> str:
        if self.phrase is not None:
            return self.phrase
        what = self.item.describe().removeprefix("an ").removeprefix("a ")
        plural = what.replace("int", "ints", 1).replace("float", "floats", 1)
        return f"a non-empty list of {plural}" if self.min_len == 1 else \
            f"a list of at least {self.min_len} {plural}"


@dataclass(frozen=True)
class Satisfies:
    """Any value for which ``test(value)`` is true (for a rule no other constraint says);
    ``phrase`` is what the message says the value must be."""

    test: Callable[[Any], bool]
    phrase: str

    def accepts(self, value: Any) -> bool:
        try:
            return bool(self.test(value))
        except (TypeError, ValueError, OverflowError):
            return False

    def describe(self) -> str:
        return self.phrase


#: An estimator class's declaration: hyperparameter -> the constraints it may satisfy.
ParamConstraints = dict[str, list[Constraint | None]]


@dataclass(frozen=True)
class When:
    """A rule that ties two hyperparameters: when ``key``'s value satisfies ``condition``,
    ``param`` must satisfy one of ``allowed``; ``phrase`` is what the message says it
    must be."""

    key: str
    condition: Constraint
    param: str
    allowed: Sequence[Constraint | None]
    phrase: str

    def check(self, who: str, params: Mapping[str, Any]) -> None:
        if not self.condition.accepts(params[self.key]):
            return
        value = params[self.param]
        if not any((value is None) if c is None else c.accepts(value) for c in self.allowed):
            raise ValueError(f"{who}: {self.param} must be {self.phrase}; got {value!r}")


#: True or False (Python's or NumPy's bool).
BOOL: Constraint = Satisfies(lambda v: isinstance(v, bool | np.bool_), "True or False")


def describe(constraints: Sequence[Constraint | None]) -> str:
    """The phrase after "must be": the constraints' own phrases joined by "or" (``None`` in
    the list: None is allowed)."""
    parts = ["None" if c is None else c.describe() for c in constraints]
    return " or ".join(parts)


def check_value(who: str, param: str, value: Any,
                constraints: Sequence[Constraint | None]) -> None:
    """Raise ``ValueError('<who>: <param> must be ...; got <value>')`` unless ``value``
    satisfies one of ``constraints``."""
    for c in constraints:
        if (value is None) if c is None else c.accepts(value):
            return
    raise ValueError(f"{who}: {param} must be {describe(constraints)}; got {value!r}")


def check_params(who: str, params: Mapping[str, Any],
                 constraints: Mapping[str, Sequence[Constraint | None]],
                 joint: Sequence[When] = ()) -> None:
    """Check every value of ``params`` that has constraints (in the constraints' order),
    then the rules that tie them together."""
    for param, allowed in constraints.items():
        if param in params:
            check_value(who, param, params[param], allowed)
    for rule in joint:
        rule.check(who, params)
