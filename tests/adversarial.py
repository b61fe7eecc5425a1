"""Hypothesis strategies for what a broken model or server can send: bracket runs, deep nesting, huge
numbers, lone surrogates, and random JSON-ish text built from the pieces real leaked calls are made of.

    @given(adversarial.texts())
    def test_it(text): recover_text_calls(text)
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

__all__ = ["arguments", "bodies", "bracket_runs", "deep", "huge_int", "json_values", "jsonish", "texts"]

_PIECES = [
    '{"name": ', '"get_weather"', '"arguments": ', '"parameters": ', '{"city": "Paris"}', '"{\\"city\\": 1}"',
    "{", "}", "[", "]", ",", ":", '"', "'", "`", "\\", "(", ")", "=", ";", "\n", " ", "-", "true", "null",
    "NaN", "Infinity", "1e999", "<tool_call>", "</tool_call>", "```json\n", "```tool_code\n", "```", "<|python_tag|>",
    "[TOOL_CALLS]", "[ARGS]", "<function=f>", "</function>", "<parameter=x>", "</parameter>", "<arg_key>",
    "<arg_value>", "<think>", "</think>", ">>>f\n", "<｜tool▁sep｜>", "to=functions.f<|message|>",
    'get_weather(city="Paris")', "print(", "{'name': 'f', 'arguments': {", "\\ud800", "\\udfff", "\ud800",
    "9" * 310, "-" * 40, "functools", "<start_function_call>call:f{", "<escape>", "<end_function_call>",
]


def bracket_runs() -> st.SearchStrategy[str]:
    """Runs of one bracket or quote character, up to a few thousand long, glued together."""
    run = st.tuples(st.sampled_from(list("[]{}()\"'`<>,:")), st.integers(1, 3000)).map(lambda t: t[0] * t[1])
    return st.lists(run, min_size=1, max_size=4).map("".join)


def deep(max_depth: int = 100_000) -> st.SearchStrategy[str]:
    """JSON (or almost JSON) nested up to `max_depth` deep: lists, objects, or a call whose arguments nest."""
    def build(args: tuple[str, int, bool]) -> str:
        kind, n, closed = args
        opener, closer = {"list": ("[", "]"), "object": ('{"a": ', "}"), "call": ("[", "]")}[kind]
        inner = opener * n + "1" + (closer * n if closed else "")
        if kind == "call":
            return '{"name": "f", "arguments": {"a": ' + inner + "}}"
        return inner
    return st.tuples(st.sampled_from(["list", "object", "call"]), st.integers(50, max_depth), st.booleans()).map(build)


def huge_int() -> st.SearchStrategy[str]:
    """Integer literals from just under to far past what a float or Python's str->int limit takes."""
    return st.tuples(st.integers(290, 6000), st.booleans()).map(lambda t: ("-" if t[1] else "") + "9" * t[0])


def jsonish() -> st.SearchStrategy[str]:
    """Random text built from the pieces of leaked calls and of broken JSON."""
    piece = st.sampled_from(_PIECES) | st.text(max_size=4) | huge_int().map(lambda s: s[:320])
    return st.lists(piece, max_size=40).map("".join)


def texts() -> st.SearchStrategy[str]:
    """Any of the adversarial families, as model output text."""
    return st.one_of(
        jsonish(),
        bracket_runs(),
        deep(),
        huge_int().map(lambda n: '{"name": "f", "arguments": {"a": ' + n + "}}"),
        st.integers(100, 3000).map(lambda n: "[f(x=" + "-" * n + "1)]"),
        st.integers(100, 3000).map(lambda n: "<|python_tag|>f(x=" + "(" * n + "1" + ")" * n + ")"),
        st.text(st.characters(categories=["Cs", "Ll", "Po", "Ps", "Pe"]), max_size=50),
    )


def json_values(max_leaves: int = 30) -> st.SearchStrategy[Any]:
    """JSON-like Python values with the awkward leaves: lone surrogates, huge ints, inf and nan."""
    leaf = st.one_of(
        st.none(), st.booleans(), st.floats(allow_nan=True, allow_infinity=True),
        st.integers(), st.integers(min_value=10**299, max_value=10**1200),
        st.text(max_size=10), st.text(st.characters(categories=["Cs"]), min_size=1, max_size=3),
    )
    key = st.text(max_size=5) | st.text(st.characters(categories=["Cs"]), min_size=1, max_size=2)
    return st.recursive(leaf, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(key, kids, max_size=4),
                        max_leaves=max_leaves)


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def arguments() -> st.SearchStrategy[Any]:
    """What can stand where call arguments belong: adversarial text, JSON values, objects nested past any limit."""
    return st.one_of(
        texts(),
        json_values(),
        json_values().map(lambda v: json.dumps(v, ensure_ascii=True)),
        st.integers(70, 5000).map(lambda n: {"a": _nested(n)}),
        st.dictionaries(st.text(max_size=3), json_values(8), max_size=3),
    )


def bodies() -> st.SearchStrategy[Any]:
    """Chat completion bodies whose content, calls or other fields are adversarial, and bodies that are not bodies."""
    def body(message: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
        return {"choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": "stop"}], **extra}

    call = st.builds(lambda name, args: {"id": "c", "type": "function", "function": {"name": name, "arguments": args}},
                     st.one_of(st.just("get_weather"), st.text(max_size=5), json_values(3)), arguments())
    message = st.fixed_dictionaries({}, optional={"content": st.one_of(texts(), json_values(5)),
                                                  "tool_calls": st.one_of(st.lists(call, max_size=3), json_values(5))})
    extra = st.fixed_dictionaries({}, optional={"usage": json_values(5), "timings": json_values(5), "model": json_values(2)})
    return st.one_of(st.builds(body, message, extra), json_values(), st.integers(60, 5000).map(lambda n: {"choices": _nested(n)}))
