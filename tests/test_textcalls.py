"""Leaked calls: the formats servers' parsers accept, what is not a call, and a scan that stays linear."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness import textcalls
from harness.textcalls import recover_text_calls
from harness.trajectory import ToolCall
from tests import adversarial

PARIS = [("get_weather", {"city": "Paris"})]
PARIS_OSLO = [("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Oslo"})]

FORMATS = {
    # the OpenAI wire shape keeps arguments as a JSON string; models copy it
    "arguments as a JSON string": ('{"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}', PARIS),
    "openai shape in tags, string arguments": (
        '<tool_call>{"type": "function", "function": {"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}}</tool_call>',
        PARIS),
    "gemma tool_code fence": ('```tool_code\nget_weather(city="Paris")\n```', PARIS),
    "gemma tool_code fence, print-wrapped": ("Let me look.\n```tool_code\nprint(get_weather(city='Paris'))\n```", PARIS),
    "single-quoted dict": ("{'name': 'get_weather', 'arguments': {'city': 'Paris'}}", PARIS),
    "single-quoted dict in tags": ("<tool_call>\n{'name': 'get_weather', 'arguments': {'city': 'Paris'}}\n</tool_call>", PARIS),
    "trailing commas": ('{"name": "get_weather", "arguments": {"city": "Paris",},}', PARIS),
    "pretty-printed in a json fence after prose": (
        'I will check.\n```json\n{\n  "name": "get_weather",\n  "arguments": {\n    "city": "Paris"\n  }\n}\n```', PARIS),
    # vLLM llama3_json / llama.cpp llama 3.x
    "llama3 json, semicolon-separated": (
        '{"name": "get_weather", "parameters": {"city": "Paris"}}; {"name": "get_weather", "parameters": {"city": "Oslo"}}',
        PARIS_OSLO),
    "llama 3.2 with type": ('{"type": "function", "name": "get_weather", "parameters": {"city": "Paris"}}', PARIS),
    "llama 3.1 builtin after python_tag": ('<|python_tag|>get_weather.call(city="Paris")', PARIS),
    "llama 3.1 custom function tag": ('<function=get_weather>{"city": "Paris"}</function>', PARIS),
    # vLLM mistral / llama.cpp mistral nemo, magistral
    "mistral list": ('[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "a1b2c3d4e"}]', PARIS),
    "mistral v11 name then args": ('[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}', PARIS),
    "mistral with call id": ('[TOOL_CALLS]get_weather[CALL_ID]a1b2c3d4e[ARGS]{"city": "Paris"}', PARIS),
    "mistral name then json": ('[TOOL_CALLS]get_weather{"city": "Paris"}[TOOL_CALLS]get_weather{"city": "Oslo"}', PARIS_OSLO),
    # vLLM pythonic / llama 4 / lfm2
    "pythonic list of two": ('[get_weather(city="Paris"), get_weather(city="Oslo")]', PARIS_OSLO),
    "pythonic after prose": ('I will check both.\n[get_weather(city="Paris"), get_weather(city="Oslo")]', PARIS_OSLO),
    "lfm2 markers": ('<|tool_call_start|>[get_weather(city="Paris")]<|tool_call_end|>', PARIS),
    "a reply that is only a call": ('get_weather(city="Paris")', PARIS),
    # llama.cpp's generic parser (templates without native tool calls) and Ollama's key aliases
    "llama.cpp generic, tool_calls": ('{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "123456789"}]}',
                                      PARIS),
    "llama.cpp generic, tool_call": ('{"tool_call": {"name": "get_weather", "arguments": {"city": "Paris"}}}', PARIS),
    "function as the name key": ('{"function": "get_weather", "parameters": {"city": "Paris"}}', PARIS),
    # llama.cpp's other chat parsers
    "functionary v3.2": ('>>>get_weather\n{"city": "Paris"}', PARIS),
    "deepseek r1": ('<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{"city": "Paris"}\n```'
                    "<｜tool▁call▁end｜><｜tool▁calls▁end｜>", PARIS),
    "deepseek v3.1": ('<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{"city": "Paris"}<｜tool▁call▁end｜>', PARIS),
    "kimi k2": ('<|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>'
                '{"city": "Paris"}<|tool_call_end|><|tool_calls_section_end|>', PARIS),
    "gpt-oss harmony": ('<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city": "Paris"}<|call|>', PARIS),
    "command r7b": ('<|START_ACTION|>[{"tool_call_id": "0", "tool_name": "get_weather", "parameters": {"city": "Paris"}}]'
                    "<|END_ACTION|>", PARIS),
    "granite": ('<|tool_call|>[{"name": "get_weather", "arguments": {"city": "Paris"}}]', PARIS),
    "nemotron": ('<TOOLCALL>[{"name": "get_weather", "arguments": {"city": "Paris"}}]</TOOLCALL>', PARIS),
    "functiongemma": ("<start_function_call>call:get_weather{city:<escape>Paris<escape>}<end_function_call>", PARIS),
    "functiongemma, two calls and a number": (
        "<start_function_call>call:get_weather{city:<escape>Paris, France<escape>,days:3}<end_function_call>"
        "<start_function_call>call:get_weather{city:<escape>Oslo<escape>}<end_function_call>",
        [("get_weather", {"city": "Paris, France", "days": 3}), ("get_weather", {"city": "Oslo"})]),
    "glm 4.5": ("<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n</tool_call>", PARIS),
    "seed-oss xml": ("<seed:tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n</function>\n</seed:tool_call>",
                     PARIS),
    "hermes, two calls on one line": ('<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'
                                      '<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>', PARIS_OSLO),
}


@pytest.mark.parametrize("text, expected", FORMATS.values(), ids=FORMATS.keys())
def test_leaked_call_formats_are_recovered(text, expected):
    calls = recover_text_calls(text)
    assert [(c.name, c.arguments) for c in calls] == expected
    assert all(c.source == "text" and c.id == f"call_{n}" for n, c in enumerate(calls))


NOT_CALLS = {
    "backticks in a sentence": 'To check, the assistant would send `{"name": "get_weather", "arguments": {"city": "Paris"}}` to it.',
    "backticks ending a sentence": 'The call looks like `{"name": "get_weather", "arguments": {"city": "Paris"}}`.',
    "single quotes in a sentence": "Send '{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}' to the endpoint.",
    "double quotes in a sentence": 'The log says "{"name": "get_weather", "arguments": {"city": "Paris"}}" was sent.',
    "mid-sentence": 'The call {"name": "get_weather", "arguments": {"city": "Paris"}} would return the weather.',
    "a python fence showing code": '```python\nget_weather(city="Paris")\n```\nThat is how you would call it.',
    "a call mentioned in prose": "Use get_weather(city='Paris') to check.",
    "a tool definition": '{"type": "function", "function": {"name": "get_weather", "parameters": '
                         '{"type": "object", "properties": {"city": {"type": "string"}}}}}',
    "arguments that are a string but not JSON": '{"name": "Paris", "arguments": "none"}',
    "json inside a json string": '{"answer": "{\\"name\\": \\"get_weather\\", \\"arguments\\": {}}"}',
    "a call only thought about": '<think>{"name": "get_weather", "arguments": {"city": "Paris"}}</think>It is sunny.',
    "functionary text channel": ">>>all\nIt is sunny in Paris.",
}


@pytest.mark.parametrize("text", NOT_CALLS.values(), ids=NOT_CALLS.keys())
def test_json_or_code_shown_in_an_answer_is_not_a_call(text):
    assert recover_text_calls(text) == []


# --- linear time ---------------------------------------------------------------------------------

SIZE = 200_000
LONG_ANSWERS = {
    # each of these took a minute or more before (ast.parse or raw_decode from every bracket)
    "links ending in a bracket": "see [note] " * (SIZE // 11) + "[end]",
    "open brackets then one close": "a[b " * (SIZE // 4) + "]",
    "json objects in prose": '{"k": 1, "v": [1, 2], "name": "x"} ' * (SIZE // 36),
    "unclosed strings": '{"a": "x\\" ' * (SIZE // 12),
    "nested brackets": "[" * (SIZE // 2) + "]" * (SIZE // 2),
    "nested brackets around a name": "[x " * (SIZE // 5) + '"name"' + " ]" * (SIZE // 5),
    "unclosed function tags": "<function=f>" * (SIZE // 12),
    "unclosed fences": "```tool_code\n" * (SIZE // 13),
    "functiongemma, unclosed escapes": "<start_function_call>call:f{" + "a:<escape>x," * (SIZE // 12) + "}<end_function_call>",
    "call-shaped objects": '{"name": "f", "arguments": {"a": [1, {"b": 2}]}}\n' * (SIZE // 50),
}


@pytest.mark.parametrize("text", LONG_ANSWERS.values(), ids=LONG_ANSWERS.keys())
def test_a_200_kb_answer_is_scanned_in_linear_work(text, monkeypatch):
    # count the characters handed to the parsers: a linear scan hands each character to a few of them,
    # a quadratic one to one per bracket
    handed = {"json": 0, "python": 0}
    span_value, pythonic = textcalls._span_value, textcalls._pythonic

    def counted_span(text, start, end):
        handed["json"] += end - start
        return span_value(text, start, end)

    def counted_python(code, **kw):
        handed["python"] += len(code)
        return pythonic(code, **kw)

    monkeypatch.setattr(textcalls, "_span_value", counted_span)
    monkeypatch.setattr(textcalls, "_pythonic", counted_python)
    started = time.perf_counter()
    recover_text_calls(text)
    elapsed = time.perf_counter() - started
    assert handed["json"] <= 4 * len(text)
    assert handed["python"] <= 3 * len(text)
    assert elapsed < 20  # a backstop only, far above the ~0.1-0.7 s this takes on 2 busy cores


# --- fuzz ---------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(adversarial.texts(), st.booleans())
def test_fuzz_recover_text_calls_never_raises_and_records(text, cut_off):
    calls = recover_text_calls(text, cut_off=cut_off)
    assert all(isinstance(c, ToolCall) and c.source == "text" for c in calls)
    for call in calls:
        assert call.arguments is not None or call.truncated
        dumped = call.model_dump_json()
        assert ToolCall.model_validate_json(dumped).model_dump_json() == dumped
        json.loads(dumped)
