"""Bounded JSON: parsing raises only ValueError, and what it returns is always safe to record and read back."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings

from harness.safejson import MAX_DEPTH, Replaced, load_json, replaced_in, sanitize
from tests import adversarial


@pytest.mark.parametrize("text, why", [
    ("[" * 100_000 + "]" * 100_000, "too deep"),
    (b"\xff\xfe{}", "could not be read"),
    ('{"a": ', "Expecting value"),
])
def test_load_json_raises_only_value_error_with_a_reason(text, why):
    with pytest.raises(ValueError, match=why):
        load_json(text)


def test_what_no_record_can_hold_is_replaced_and_says_what_it_was():
    value = load_json('{"n": ' + "9" * 5000 + ', "s": "a\\ud800b", "x": NaN, "ok": [1, 2.5, "c"]}')
    assert value["n"] == "<integer of 5000 digits: 999999999999…999999999999>" and isinstance(value["n"], Replaced)
    assert value["s"] == "a\ufffdb" and value["ok"] == [1, 2.5, "c"]
    assert replaced_in(value) == value["n"] and replaced_in({"ok": [1]}) is None
    nested = load_json("[" * 200 + "]" * 200)
    assert replaced_in(nested) == f"<nested deeper than {MAX_DEPTH} levels: dropped>"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(adversarial.json_values())
def test_fuzz_sanitized_values_serialise_strictly_and_read_back(value):
    text = json.dumps(sanitize(value), allow_nan=False)
    assert json.loads(text) == json.loads(json.dumps(sanitize(json.loads(text)), allow_nan=False))
