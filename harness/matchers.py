"""Value matchers: does a value meet its expectation?

`match_value` checks an argument, an answer or a world value against a scenario `Matcher` (equals,
one_of, regex, ...). `match_bfcl` checks an argument the way BFCL's AST checker does, for the
expectations `harness import bfcl` writes (`normalize: bfcl`).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from harness.outcomes import Outcome
from harness.scenario import Matcher

__all__ = ["MISSING", "describe_value", "json_type", "match_bfcl", "match_value", "standardize_string", "values_equal"]


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
"""Stands for "not present" (an argument left out, a path that leads nowhere); compare with `is`."""

_MISSING = MISSING
_BFCL_STRIP = re.compile(r"[ ,./\-_*^]")


def standardize_string(text: str) -> str:
    """BFCL's `standardize_string`: drop spaces and `, . / - _ * ^`, lower-case, `'` read as `"`."""
    return _BFCL_STRIP.sub("", text).lower().replace("'", '"')


def _norm_str(s: str, mode: str) -> str:
    if mode == "exact":
        return s
    if mode == "bfcl":
        return standardize_string(s)
    return " ".join(s.split()).casefold()


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def values_equal(expected: Any, actual: Any, mode: str = "casefold") -> bool:
    """Equal under a matcher's `normalize` mode: strings normalised, numbers numerically, containers item by item."""
    if _is_number(expected) and _is_number(actual):
        return math.isclose(float(expected), float(actual), rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(expected, str) and isinstance(actual, str):
        return _norm_str(expected, mode) == _norm_str(actual, mode)
    if isinstance(expected, list) and isinstance(actual, list):
        return len(expected) == len(actual) and all(values_equal(e, a, mode) for e, a in zip(expected, actual))
    if isinstance(expected, dict) and isinstance(actual, dict):
        return expected.keys() == actual.keys() and all(values_equal(expected[k], actual[k], mode) for k in expected)
    return type(expected) is type(actual) and expected == actual


def json_type(v: Any) -> str:
    """The JSON type name of a value (`null`, `boolean`, `number`, `string`, `array`, `object`)."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if _is_number(v):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def describe_value(v: Any, limit: int = 60) -> str:
    """A value as a reason shows it: JSON (strings quoted), cut to `limit` characters."""
    text = json.dumps(v, default=str) if not isinstance(v, str) else repr(v)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def match_value(matcher: Matcher, value: Any = _MISSING) -> tuple[Outcome, str]:
    """Check one value against a matcher; `value` left out means "not present".

    Returns (`ok`, "") or the failure kind with a reason a human can read.
    """
    present = value is not _MISSING
    if matcher.absent:
        return (Outcome.UNEXPECTED_PARAM, f"must be absent, got {describe_value(value)}") if present else (Outcome.OK, "")
    if not present:
        return (Outcome.OK, "") if matcher.optional else (Outcome.MISSING_REQUIRED, "missing")
    mode = matcher.normalize
    if matcher.equals is not None and not values_equal(matcher.equals, value, mode):
        if json_type(matcher.equals) != json_type(value):
            return Outcome.TYPE_ERROR, f"expected {json_type(matcher.equals)} {describe_value(matcher.equals)}, got {json_type(value)} {describe_value(value)}"
        return Outcome.VALUE_ERROR, f"expected {describe_value(matcher.equals)}, got {describe_value(value)}"
    if matcher.one_of is not None and not any(values_equal(o, value, mode) for o in matcher.one_of):
        return Outcome.VALUE_ERROR, f"expected one of {describe_value(matcher.one_of, 80)}, got {describe_value(value)}"
    if matcher.regex is not None:
        flags = 0 if mode == "exact" else re.IGNORECASE
        text = value if isinstance(value, str) else json.dumps(value)
        if not re.search(matcher.regex, text, flags):
            return Outcome.VALUE_ERROR, f"{describe_value(value)} does not match /{matcher.regex}/"
    if matcher.contains is not None:
        if isinstance(value, list):
            needles = matcher.contains if isinstance(matcher.contains, list) else [matcher.contains]
            missing = [n for n in needles if not any(values_equal(n, item, mode) for item in value)]
        elif isinstance(value, str):
            needles = [matcher.contains] if isinstance(matcher.contains, str) else matcher.contains
            hay = _norm_str(value, mode)
            missing = [n for n in needles if _norm_str(str(n), mode) not in hay]
        else:
            return Outcome.TYPE_ERROR, f"expected text or a list to search, got {json_type(value)} {describe_value(value)}"
        if missing:
            return Outcome.VALUE_ERROR, f"{describe_value(value)} does not contain {describe_value(missing)}"
    if matcher.not_contains is not None:
        hay = _norm_str(value if isinstance(value, str) else json.dumps(value), mode)
        found = [n for n in matcher.not_contains if _norm_str(n, mode) in hay]
        if found:
            return Outcome.VALUE_ERROR, f"{describe_value(value)} contains {describe_value(found)}, which it must not"
    if matcher.approx is not None:
        if not _is_number(value):
            return Outcome.TYPE_ERROR, f"expected a number near {matcher.approx}, got {json_type(value)} {describe_value(value)}"
        if abs(float(value) - matcher.approx) > matcher.tolerance:
            return Outcome.VALUE_ERROR, f"expected {matcher.approx} ± {matcher.tolerance}, got {value}"
    if matcher.length is not None:
        if not isinstance(value, (list, str, dict)):
            return Outcome.TYPE_ERROR, f"expected something with a length, got {json_type(value)}"
        if len(value) != matcher.length:
            return Outcome.VALUE_ERROR, f"expected length {matcher.length}, got {len(value)}"
    return Outcome.OK, ""


# -- BFCL's AST checker ----------------------------------------------------------------------------

# JSON Schema types (as the importer writes them) -> the Python types BFCL's checker compares with
_BFCL_TYPES: dict[str, type] = {
    "string": str, "integer": int, "number": float, "boolean": bool, "array": list, "object": dict,
}

_TYPE_NAMES: dict[type, str] = {str: "string", int: "integer", float: "float", bool: "boolean", list: "array", dict: "dict"}


def _blank(value: Any) -> bool:
    return isinstance(value, str) and value == ""


def _accepted(matcher: Matcher) -> list[Any]:
    # back to BFCL's answer list: the accepted values, and "" when the argument may be left out
    values = matcher.one_of if matcher.one_of is not None else [matcher.equals]
    kept = [v for v in values if not _blank(v)]
    return kept + [""] if matcher.optional or len(kept) < len(values) else kept


def _schema_type(schema: dict[str, Any] | None, fallback: type) -> type:
    kind = (schema or {}).get("type") if isinstance(schema, dict) else None
    if schema is None:
        return fallback
    # no type: BFCL's `any`, which its checker reads as a string
    return _BFCL_TYPES.get(kind, str) if isinstance(kind, str) else str


def _answer_type(accepted: list[Any]) -> type | None:
    return next((type(a) for a in accepted if not _blank(a)), None)


def _type_ok(value: Any, accepted: list[Any], expected: type, nested: type | None) -> tuple[bool, bool]:
    """BFCL's `type_checker`: (valid, is_variable). A value of the answer's type passes as a "variable"."""
    answer_type = _answer_type(accepted)
    is_variable = answer_type is not None and answer_type is not expected
    if type(value) is expected:
        if nested is None:
            return True, is_variable
        # items are checked one level deep against each list answer; a non-list answer ("") lets any list through
        for answer in accepted:
            if not isinstance(answer, list) or all(_type_ok(item, answer, nested, None)[0] for item in value):
                return True, is_variable
        return False, is_variable
    if answer_type is not None and type(value) is answer_type:
        return True, True
    return False, is_variable


def _std(value: Any) -> Any:
    return standardize_string(value) if type(value) is str else value


def _dict_ok(value: dict[str, Any], answer: Any) -> bool:
    # one concrete accepted dict (the importer expands BFCL's {key: [values]} into these)
    if not isinstance(answer, dict) or value.keys() != answer.keys():
        return False
    return all(_std(v) == _std(answer[k]) for k, v in value.items())


def _list_ok(value: list[Any], answer: Any) -> bool:
    if _blank(answer):
        answer = []  # BFCL's list checker reads an optional marker as the empty list
    if not isinstance(answer, (list, str)):
        return False
    return [_std(v) for v in value] == [_std(a) for a in answer]


def _list_of_dicts_ok(value: list[Any], answer: Any) -> bool:
    if _blank(answer):
        answer = []
    if not isinstance(answer, list) or len(answer) != len(value):
        return False
    return all(isinstance(v, dict) and _dict_ok(v, a) for v, a in zip(value, answer))


def match_bfcl(matcher: Matcher, value: Any = MISSING, schema: dict[str, Any] | None = None) -> tuple[Outcome, str]:
    """Check one argument as BFCL's AST checker does; `schema` is the parameter's JSON Schema.

    The type check comes first: the schema's type (`number` for BFCL's float, where an int passes;
    no type for BFCL's `any`, read as a string), or the type of the first accepted value when that
    differs (BFCL's "variable": a bool answer for a string parameter, `null`, `"dontcare"` for an
    integer), with array items checked one level deep. Then strings compare after
    `standardize_string`, lists item by item (strings in them standardised), dicts key by key, and
    anything else with Python's `==`. `enum` and other schema keywords are not checked, as in BFCL.
    """
    if value is MISSING:
        return (Outcome.OK, "") if matcher.optional or matcher.absent else (Outcome.MISSING_REQUIRED, "missing")
    if matcher.absent:
        return Outcome.UNEXPECTED_PARAM, f"must be absent, got {describe_value(value)}"
    accepted = _accepted(matcher)
    expected = _schema_type(schema, _answer_type(accepted) or str)
    nested = None
    if expected is list:
        items = (schema or {}).get("items")
        nested = _schema_type(items if isinstance(items, dict) else {}, str) if schema is not None else None
    if expected is float and type(value) is int:
        value = float(value)  # BFCL lets Python widen an int for a float parameter
    valid, is_variable = _type_ok(value, accepted, expected, nested)
    if not valid:
        want = _TYPE_NAMES.get(expected, expected.__name__) + (f" of {_TYPE_NAMES.get(nested, nested.__name__)}" if nested is not None else "")
        return Outcome.TYPE_ERROR, f"BFCL rejects {describe_value(value)}: expects {want}, got {json_type(value)}"
    if not is_variable:
        if expected is dict:
            ok = any(_dict_ok(value, a) for a in accepted if not _blank(a))
        elif expected is list and nested is dict:
            ok = any(_list_of_dicts_ok(value, a) for a in accepted)
        elif expected is str:
            ok = standardize_string(value) in [standardize_string(a) for a in accepted if type(a) is str]
        elif expected is list:
            ok = any(_list_ok(value, a) for a in accepted)
        else:
            ok = value in accepted
    else:
        ok = value in accepted
    if ok:
        return Outcome.OK, ""
    return Outcome.VALUE_ERROR, f"expected one of {describe_value([a for a in accepted if not _blank(a)], 80)}, got {describe_value(value)}"
