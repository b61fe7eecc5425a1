"""JSON from servers and models, made safe to keep: parsing that never raises past `ValueError`, and a
`sanitize` that turns any parsed value into one that serialises into results.jsonl and reads back.

What is replaced, and how a reader sees it: lone surrogates become U+FFFD; an integer longer than
300 digits (no float holds it, Python refuses to print one past 4300), NaN and Infinity (not JSON),
and anything nested deeper than 64 levels become `Replaced` strings that say what stood there.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

__all__ = ["MAX_DEPTH", "MAX_INT_DIGITS", "Replaced", "load_json", "replaced_in", "sanitize"]

MAX_DEPTH = 64
"""Containers nested deeper than this are replaced (no tool takes arguments that deep)."""

MAX_INT_DIGITS = 300
"""Integers with more digits are replaced: below this every integer still converts to a float."""

# ints past this many bits have more than MAX_INT_DIGITS digits (10**300 < 2**997)
_MAX_INT_BITS = 997
_SURROGATE = re.compile(r"[\ud800-\udfff]")


class Replaced(str):
    """A value `sanitize` could not keep, as a string saying what it was (`<integer of 5000 digits: 123…789>`)."""


def load_json(text: str | bytes) -> Any:
    """Parse JSON and `sanitize` it. Raises `ValueError` (a `json.JSONDecodeError` for broken JSON) and nothing else."""
    try:
        value = _DECODER.decode(text.decode("utf-8") if isinstance(text, bytes) else text)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise ValueError("JSON nested too deep to read") from None
    except (ValueError, TypeError, MemoryError) as exc:
        # bytes that are not UTF-8, or an interpreter limit
        raise ValueError(f"JSON could not be read: {type(exc).__name__}: {str(exc)[:200]}") from None
    return sanitize(value)


def _parse_int(text: str) -> int | Replaced:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        return Replaced(f"<integer of {digits} digits: {text[:12]}…{text[-12:]}>")
    return int(text)


_DECODER = json.JSONDecoder(parse_int=_parse_int)


def sanitize(value: Any, _depth: int = 0) -> Any:
    """A copy of `value` (JSON-like: dicts, lists, strings, numbers) that is safe to record; see the module docstring.

    Never raises: anything that is not JSON-like is kept as its type name.
    """
    # exact types first: this runs over every reply body
    kind = type(value)
    if kind is str:
        return value if value.isascii() or not _SURROGATE.search(value) else _SURROGATE.sub("\ufffd", value)
    if kind is dict or kind is list:
        if _depth >= MAX_DEPTH:
            return Replaced(f"<nested deeper than {MAX_DEPTH} levels: dropped>")
        if kind is dict:
            return {sanitize(k if type(k) is str else str(k)): sanitize(v, _depth + 1) for k, v in value.items()}
        return [sanitize(v, _depth + 1) for v in value]
    if value is None or kind is bool:
        return value
    if kind is int:
        if value.bit_length() > _MAX_INT_BITS:
            return Replaced(f"<integer of about {int(value.bit_length() * 0.30103) + 1} digits>")
        return value
    if kind is float:
        # NaN and Infinity are not JSON: sent back to a server in the next request, they would be refused
        return value if math.isfinite(value) else Replaced(f"<non-finite number: {value}>")
    if isinstance(value, Replaced):
        return value
    # subclasses (a str enum, an int subclass), tuples, and what is not JSON at all
    if isinstance(value, str):
        return sanitize(str(value), _depth)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return sanitize(int(value), _depth)
    if isinstance(value, float):
        return sanitize(float(value), _depth)
    if isinstance(value, dict):
        return sanitize(dict(value), _depth)
    if isinstance(value, (list, tuple)):
        return sanitize(list(value), _depth)
    return Replaced(f"<{type(value).__name__} value>")


def replaced_in(value: Any, _depth: int = 0) -> Replaced | None:
    """The first `Replaced` string inside a sanitized value, or None."""
    if isinstance(value, Replaced):
        return value
    if _depth > MAX_DEPTH:
        return None
    if isinstance(value, dict):
        items: Any = value.values()
    elif isinstance(value, list):
        items = value
    else:
        return None
    for item in items:
        found = replaced_in(item, _depth + 1)
        if found is not None:
            return found
    return None
