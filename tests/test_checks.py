"""trainlab.checks: the one probability check, against the intervals it states."""

from __future__ import annotations

import pytest

from trainlab.checks import check_probability
from trainlab.errors import RegistryError


@pytest.mark.parametrize("p", [0, 0.0, 0.25, 1, 1.0])
def test_probabilities_in_the_closed_interval_are_floats(p):
    assert check_probability(p) == float(p) and type(check_probability(p)) is float


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan"), float("inf"), True, "0.5", None])
def test_anything_else_is_refused_with_name_and_value(p):
    with pytest.raises(RegistryError, match=r"rate must be in \[0, 1\], a probability, got"):
        check_probability(p, "rate")


def test_below_one_refuses_one_for_drop_probabilities():
    assert check_probability(0.999, below_one=True) == 0.999
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\), a probability, got 1"):
        check_probability(1, below_one=True)
