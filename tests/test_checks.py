"""trainlab.checks: the one home of argument checks, against the intervals and message it states."""

from __future__ import annotations

import pytest

from trainlab.checks import check_choice, check_flag, check_int, check_number, check_probability
from trainlab.errors import RegistryError


@pytest.mark.parametrize("p", [0, 0.0, 0.25, 1, 1.0])
def test_probabilities_in_the_closed_interval_are_floats(p):
    assert check_probability(p) == float(p) and type(check_probability(p)) is float


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan"), float("inf"), True, "0.5", None])
def test_anything_else_is_refused_with_name_and_value(p):
    with pytest.raises(RegistryError, match=r"rate must be in \[0, 1\], got"):
        check_probability(p, "rate")


def test_below_one_refuses_one_for_drop_probabilities():
    assert check_probability(0.999, below_one=True) == 0.999
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\), got 1"):
        check_probability(1, below_one=True)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: check_number(float("nan"), "x"), "x must be a finite number, got nan"),
        (lambda: check_number(True, "x", 0), "x must be a finite number >= 0, got True"),
        (lambda: check_number(0, "x", 0, lo_open=True), "x must be a finite number > 0, got 0"),
        (lambda: check_number(2, "x", hi=2, hi_open=True), "x must be a finite number < 2, got 2"),
        (lambda: check_number(2, "x", 1, 2, hi_open=True), "x must be in [1, 2), got 2"),
        (lambda: check_number("1", "x", 0, 1, lo_open=True), "x must be in (0, 1], got '1'"),
        (lambda: check_int(2.0, "n"), "n must be an integer >= 1, got 2.0"),
        (lambda: check_int(False, "n", 0), "n must be an integer >= 0, got False"),
        (lambda: check_int(11, "n", 1, 10), "n must be an integer in [1, 10], got 11"),
        (lambda: check_flag(1, "f"), "f must be True or False, got 1"),
        (lambda: check_choice(1.0, "c", (1, 3)), "c must be 1 or 3, got 1.0"),
        (lambda: check_choice(True, "c", (None, 1, 5)), "c must be None, 1 or 5, got True"),
        (lambda: check_choice("x", "m", ("a",)), "m must be 'a', got 'x'"),
    ],
)
def test_every_check_refuses_in_one_shape_naming_argument_expectation_and_value(call, message):
    with pytest.raises(RegistryError) as err:
        call()
    assert str(err.value) == message


def test_accepted_values_come_back():
    assert check_number(1, "x", 0, 1) == 1.0 and type(check_number(1, "x")) is float
    assert check_int(0, "n", 0) == 0 and check_int(10, "n", 1, 10) == 10
    assert check_flag(False, "f") is False
    assert check_choice(None, "c", (None, 1)) is None and check_choice("b", "m", ("a", "b")) == "b"
