"""Generated recipes with one field wrong at a time, over the whole schema: each ends in exit 2
with one line naming that key, before anything is written."""

import dataclasses
import json
import math
import typing

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trainlab.cli import main
from trainlab.recipe import Recipe, dump_toml

FIELDS = [
    (section, f, typing.get_type_hints(cls)[f.name])
    for section, cls in typing.get_type_hints(Recipe).items()
    for f in dataclasses.fields(cls)
]
FREE_TEXT = {"data.data_dir"}  # any folder name is valid; a missing one is found at load
NOT_A_NAME = st.text("qxzjQXZ_", min_size=3, max_size=8).map(lambda s: "zz" + s)


def wrong_values(key: str, hint, meta) -> st.SearchStrategy:
    """Values of the field's meaning's complement: wrong type, out of range, NaN, infinity,
    unknown name or choice."""
    lo, hi = meta.get("lo"), meta.get("hi")
    wrong_type = {
        bool: st.one_of(st.integers(), st.text(max_size=4), st.floats(allow_nan=False)),
        int: st.one_of(st.text(max_size=4), st.booleans(), st.floats(allow_nan=False)),
        float: st.one_of(st.text(max_size=4), st.booleans()),
        str: st.one_of(st.integers(), st.booleans(), st.lists(st.integers(), max_size=2)),
    }
    if typing.get_origin(hint) is dict:  # model.args: a table of a factory's keyword arguments
        return st.one_of(st.integers(), st.text(max_size=4), st.lists(st.integers(), max_size=2))
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint)
        if item is int:  # widths: positive integers, at least one
            bad = st.one_of(st.just([]), st.lists(st.integers(max_value=0), min_size=1, max_size=3))
        else:  # augment.train: each a known augmentation
            bad = st.lists(NOT_A_NAME, min_size=1, max_size=2)
        return st.one_of(bad, st.integers(), st.text(max_size=4))
    out = [wrong_type[hint]]
    if hint in (int, float):
        number = st.integers if hint is int else st.floats
        if lo is not None:
            below = lo if meta["lo_open"] else lo - (1 if hint is int else 1e-6)
            out.append(number(max_value=below, allow_infinity=False, allow_nan=False)
                       if hint is float else number(max_value=below))  # fmt: skip
        if hi is not None:
            above = hi if meta["hi_open"] else hi + (1 if hint is int else 1e-6)
            out.append(number(min_value=above, allow_infinity=False, allow_nan=False)
                       if hint is float else number(min_value=above, max_value=2**62))  # fmt: skip
        if hint is float:
            out.append(st.sampled_from([math.nan, math.inf, -math.inf]))
    if hint is str and meta.get("choices"):
        out.append(NOT_A_NAME)
    if hint is str and (meta.get("registry") or key in ("data.name", "train.device", "model.kind")):
        out.append(NOT_A_NAME)
        out.append(NOT_A_NAME.map(lambda s: f"{s}(1)"))
    return st.one_of(out)


CASES = [
    (f"{section}.{f.name}", hint, f.metadata)
    for section, f, hint in FIELDS
    if f"{section}.{f.name}" not in FREE_TEXT
]


def toml_literal(value) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string, so it is never read as a bare word
    return dump_toml({"s": {"v": value}}).splitlines()[1].removeprefix("v = ")


@pytest.mark.parametrize(("key", "hint", "meta"), CASES, ids=[c[0] for c in CASES])
@settings(max_examples=8, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_one_wrong_field_is_exit_2_one_line_naming_it(key, hint, meta, data, tmp_path, capsys):
    value = data.draw(wrong_values(key, hint, meta), label=key)
    out = tmp_path / "run"
    assert main(["train", "--set", f"{key}={toml_literal(value)}", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("trainlab: error:"), err
    assert key in err, err
    assert not out.exists()


def test_every_field_of_the_schema_is_generated():
    generated = {key for key, _, _ in CASES} | FREE_TEXT
    assert generated == {f"{s}.{f.name}" for s, f, _ in FIELDS} and len(generated) > 40
