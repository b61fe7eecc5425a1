"""Normalising what servers really return: calls, ids, content, truncation, leaks, timings, errors."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.normalize import (
    clean_content,
    error_message,
    is_server_parse_error,
    normalize_reply,
    parse_arguments,
    recover_text_calls,
)
from harness.outcomes import Outcome
from harness.trajectory import Reply
from tests import adversarial
from tests.fakeserver import completion, fake_server, leaked_call_reply, tool_call  # noqa: F401 (fixture)


def body_with(*calls, content=None, finish_reason="tool_calls", **extra):
    return completion({"content": content, "tool_calls": list(calls)}, finish_reason=finish_reason, **extra)


def test_a_structured_call_with_string_arguments():
    reply = normalize_reply(body_with(tool_call("get_weather", {"city": "Paris"}, id="call_9")))
    assert reply.outcome is Outcome.OK
    [call] = reply.tool_calls
    assert (call.id, call.name, call.arguments, call.source) == ("call_9", "get_weather", {"city": "Paris"}, "tool_calls")
    assert call.raw_arguments == '{"city": "Paris"}'
    assert reply.content is None and reply.finish_reason == "tool_calls"


def test_arguments_sent_as_an_object_are_kept_as_given():
    reply = normalize_reply(body_with(tool_call("get_weather", {"city": "Paris"}, as_object=True)))
    assert reply.outcome is Outcome.OK
    assert reply.tool_calls[0].arguments == {"city": "Paris"}
    assert reply.tool_calls[0].raw_arguments == {"city": "Paris"}


@pytest.mark.parametrize("raw, why", [
    ('{"city": Paris}', "not valid JSON"),
    ('["Paris"]', "JSON array"),
    ("42", "JSON number"),
    ('"{\\"city\\": \\"Paris\\"}"', "double-encoded"),
])
def test_arguments_that_are_not_a_json_object_are_malformed(raw, why):
    reply = normalize_reply(body_with(tool_call("get_weather", raw=raw)))
    assert reply.outcome is Outcome.MALFORMED_ARGUMENTS
    [call] = reply.tool_calls
    assert call.arguments is None and call.raw_arguments == raw and not call.truncated
    assert why in call.parse_error


def test_partial_json_cut_off_by_max_tokens_is_a_truncated_call():
    reply = normalize_reply(body_with(tool_call("get_weather", raw='{"city": "Paris'), finish_reason="length"))
    assert reply.outcome is Outcome.TRUNCATED_CALL
    [call] = reply.tool_calls
    assert call.truncated and call.arguments is None and call.raw_arguments == '{"city": "Paris'


def test_hitting_max_tokens_counts_as_truncation_even_if_finish_reason_says_stop():
    body = body_with(tool_call("get_weather", raw='{"city": '), finish_reason="stop",
                     usage={"prompt_tokens": 10, "completion_tokens": 64, "total_tokens": 74})
    assert normalize_reply(body, max_tokens=64).outcome is Outcome.TRUNCATED_CALL
    assert normalize_reply(body, max_tokens=512).outcome is Outcome.MALFORMED_ARGUMENTS


def test_complete_arguments_with_finish_reason_length_are_not_truncated():
    reply = normalize_reply(body_with(tool_call("get_weather", {"city": "Paris"}), finish_reason="length"))
    assert reply.outcome is Outcome.OK and not reply.tool_calls[0].truncated


def test_broken_json_without_hitting_the_limit_is_malformed_not_truncated():
    reply = normalize_reply(body_with(tool_call("get_weather", raw='{"city": "Paris'), finish_reason="tool_calls"))
    assert reply.outcome is Outcome.MALFORMED_ARGUMENTS


def test_empty_or_missing_arguments_mean_no_arguments():
    missing = {"id": "c1", "type": "function", "function": {"name": "list_orders"}}
    reply = normalize_reply(body_with(missing, tool_call("list_orders", raw="", id="c2")))
    assert reply.outcome is Outcome.OK
    assert [c.arguments for c in reply.tool_calls] == [{}, {}]


def test_missing_malformed_and_duplicate_ids_are_synthesised_and_unique():
    calls = [
        tool_call("a", {}, id=None),
        tool_call("b", {}, id=""),
        tool_call("c", {}, id="has spaces in it"),
        tool_call("d", {}, id="call_x"),
        tool_call("e", {}, id="call_x"),
    ]
    reply = normalize_reply(body_with(*calls))
    ids = [c.id for c in reply.tool_calls]
    assert ids == ["call_0", "call_1", "call_2", "call_x", "call_4"]
    nonstring = body_with({"id": 7, "type": "function", "function": {"name": "a", "arguments": "{}"}})
    assert normalize_reply(nonstring).tool_calls[0].id == "call_0"


def test_a_call_without_a_name_is_malformed():
    reply = normalize_reply(body_with({"id": "c", "type": "function", "function": {"arguments": "{}"}}))
    assert reply.outcome is Outcome.MALFORMED_ARGUMENTS
    assert reply.tool_calls[0].name == "" and "no tool name" in reply.tool_calls[0].parse_error


@pytest.mark.parametrize("finish", ["stop", None, "eos", "length"])
def test_finish_reason_does_not_decide_whether_there_are_calls(finish):
    reply = normalize_reply(body_with(tool_call("get_weather", {"city": "Paris"}), finish_reason=finish))
    assert reply.outcome is Outcome.OK and [c.name for c in reply.tool_calls] == ["get_weather"]
    assert reply.finish_reason == finish


def test_text_with_finish_reason_tool_calls_is_a_text_answer():
    reply = normalize_reply(completion({"content": "It is 18 degrees."}, finish_reason="tool_calls"))
    assert reply.outcome is Outcome.OK and reply.tool_calls == [] and reply.content == "It is 18 degrees."


@pytest.mark.parametrize("content", [None, "", "   ", "\n\t "])
def test_empty_content_is_none_and_an_empty_reply_is_named(content):
    assert clean_content(content) is None
    reply = normalize_reply(completion({"content": content}))
    assert reply.outcome is Outcome.EMPTY_REPLY and reply.content is None
    with_call = normalize_reply(body_with(tool_call("get_weather", {"city": "Paris"}), content=content))
    assert with_call.outcome is Outcome.OK and with_call.content is None


def test_content_parts_are_joined():
    assert clean_content([{"type": "text", "text": "Hel"}, {"type": "text", "text": "lo"}]) == "Hello"


def test_the_legacy_function_call_field_is_a_call():
    body = completion({"content": None, "function_call": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}},
                      finish_reason="function_call")
    reply = normalize_reply(body)
    assert reply.outcome is Outcome.OK and reply.tool_calls[0].arguments == {"city": "Oslo"}


# --- leaked calls ----------------------------------------------------------------------------

STYLES = ["tool_call_tag", "bare", "parameters", "list", "fenced", "python_tag", "functools", "pythonic", "xml",
          "string_arguments", "single_quoted", "tool_code", "mistral_args", "functiongemma"]


@pytest.mark.parametrize("style", STYLES)
def test_calls_written_as_text_are_recovered_and_the_text_kept(style):
    body = leaked_call_reply("get_weather", {"city": "Paris"}, style=style).body
    reply = normalize_reply(body)
    assert reply.outcome is Outcome.LEAKED_TEXT_CALL
    [call] = reply.tool_calls
    assert (call.name, call.arguments, call.source) == ("get_weather", {"city": "Paris"}, "text")
    assert reply.content == body["choices"][0]["message"]["content"]


def test_leaked_call_after_prose_and_several_calls_in_tags():
    text = ('Let me check both.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
            '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>')
    calls = recover_text_calls(text)
    assert [(c.id, c.arguments["city"]) for c in calls] == [("call_0", "Paris"), ("call_1", "Oslo")]


def test_nested_openai_shape_in_text_is_recovered():
    text = json.dumps({"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Rome"}}})
    [call] = recover_text_calls(text)
    assert call.name == "get_weather" and call.arguments == {"city": "Rome"}


@pytest.mark.parametrize("text", [
    'The config is {"name": "prod", "replicas": 3}.',
    '{"name": "Paris", "arguments": "none"}',
    '{"city": "Paris", "temp_c": 18}',
    '[1, 2, 3]',
    "Use get_weather(city='Paris') to check.",
    'The tool looks like {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}',
    "{not json at all}",
])
def test_ordinary_json_or_prose_in_an_answer_is_not_a_call(text):
    reply = normalize_reply(completion({"content": text}))
    assert reply.outcome is Outcome.OK and reply.tool_calls == []


def test_a_call_inside_inline_reasoning_is_not_a_call():
    text = '<think>I could call {"name": "get_weather", "arguments": {"city": "Paris"}} but I know it.</think>It is sunny.'
    reply = normalize_reply(completion({"content": text}))
    assert reply.outcome is Outcome.OK and reply.tool_calls == [] and reply.content == text
    after = '<think>need the weather</think>\n<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'
    assert normalize_reply(completion({"content": after})).outcome is Outcome.LEAKED_TEXT_CALL


def test_text_calls_are_not_recovered_when_there_are_structured_ones():
    body = body_with(tool_call("get_weather", {"city": "Paris"}),
                     content='{"name": "send_email", "arguments": {"to": "a@b.c"}}')
    reply = normalize_reply(body)
    assert reply.outcome is Outcome.OK and [c.source for c in reply.tool_calls] == ["tool_calls"]


def test_a_leaked_call_cut_off_by_max_tokens_is_recovered_as_truncated():
    body = completion({"content": '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Par'}, finish_reason="length")
    reply = normalize_reply(body)
    assert reply.outcome is Outcome.LEAKED_TEXT_CALL
    [call] = reply.tool_calls
    assert call.truncated and call.source == "text" and call.name == "get_weather" and call.arguments is None


# --- usage, timings, errors --------------------------------------------------------------------


def test_usage_and_llamacpp_timings():
    timings = {"cache_n": 236, "prompt_n": 1, "prompt_ms": 30.958, "prompt_per_token_ms": 30.958,
               "prompt_per_second": 32.3, "predicted_n": 35, "predicted_ms": 661.064,
               "predicted_per_token_ms": 18.88, "predicted_per_second": 52.94}
    reply = normalize_reply(completion({"content": "hi"}, timings=timings, system_fingerprint="b4567-abc"))
    assert reply.usage.prompt_tokens == 10 and reply.usage.total_tokens == 15
    t = reply.timings
    assert (t.cache_n, t.prompt_n, t.predicted_n, t.predicted_per_second) == (236, 1, 35, 52.94)
    assert t.raw["predicted_per_token_ms"] == 18.88
    assert reply.system_fingerprint == "b4567-abc" and reply.model == "test-model"
    assert reply.response["timings"] == timings


def test_ollama_native_durations_become_timings():
    body = completion({"content": "hi"}, total_duration=5_000_000_000, eval_count=100, eval_duration=2_000_000_000,
                      prompt_eval_count=50, prompt_eval_duration=500_000_000)
    del body["usage"]
    reply = normalize_reply(body)
    t = reply.timings
    assert t.predicted_n == 100 and t.predicted_ms == 2000.0 and t.predicted_per_second == 50.0
    assert t.prompt_n == 50 and t.prompt_per_second == 100.0 and t.raw["total_duration"] == 5_000_000_000
    assert reply.usage.prompt_tokens == 50 and reply.usage.completion_tokens == 100


def test_no_timings_sent_means_none():
    assert normalize_reply(completion({"content": "hi"})).timings is None


def test_a_body_without_choices_is_an_infra_error_or_a_parse_error_by_its_message():
    assert normalize_reply({"object": "list"}).outcome is Outcome.INFRA_ERROR
    assert normalize_reply({"error": {"message": "Failed to parse input at pos 3"}}).outcome is Outcome.SERVER_PARSE_ERROR
    assert normalize_reply({"error": "model is loading"}).outcome is Outcome.INFRA_ERROR


@pytest.mark.parametrize("text", [
    "Failed to parse input at pos 184: <tool_call>",
    "Failed to parse tool call arguments as JSON",
    "error parsing tool call: raw='{...}', err=invalid character",
    "failed to parse JSON: unexpected end of JSON input",
])
def test_server_parse_errors_are_recognised(text):
    assert is_server_parse_error(text)


@pytest.mark.parametrize("text", ["CUDA out of memory", "Loading model", "", None, "context length exceeded"])
def test_other_errors_are_not_parse_errors(text):
    assert not is_server_parse_error(text)


@pytest.mark.parametrize("body, message", [
    ({"error": {"message": "boom", "code": 500}}, "boom"),
    ({"error": "model not found"}, "model not found"),
    ({"detail": "Not Found"}, "Not Found"),
    ({"message": "oops"}, "oops"),
    ({"error parsing tool call": "invalid character 'c'"}, "error parsing tool call: invalid character 'c'"),
    ("plain text", "plain text"),
    ({"ok": True}, None),
])
def test_error_messages_in_every_shape(body, message):
    assert error_message(body) == message


def test_parse_arguments_never_raises():
    for raw in [None, "", "{", "}", "null", "[]", 3, True, ["a"], {"a": 1}, "\x00"]:
        parse_arguments(raw)
        parse_arguments(raw, cut_off=True)


# --- adversarial replies: every one ends as a classified, recordable reply ------------------------

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _recordable(reply: Reply) -> None:
    # what the results file needs: it serialises, and reads back as the same reply
    text = reply.model_dump_json()
    assert Reply.model_validate_json(text).model_dump_json() == text


def _deep_list(n: int) -> str:
    return "[" * n + "]" * n


@pytest.mark.parametrize("body, outcome, why", [
    (completion({"content": "[" * 1200}), Outcome.OK, None),
    (completion({"content": "It is \ud800 sunny"}), Outcome.OK, None),
    (body_with(tool_call("get_weather", raw='{"city": ' + "9" * 5000 + "}")), Outcome.MALFORMED_ARGUMENTS, "5000 digits"),
    (body_with(tool_call("get_weather", {"city": 10**5000}, as_object=True)), Outcome.MALFORMED_ARGUMENTS, "digits"),
    (body_with(tool_call("get_weather", raw='{"city": ' + _deep_list(100_000) + "}")), Outcome.MALFORMED_ARGUMENTS, "too deep"),
    (completion({"content": "[get_weather(city=" + "-" * 1500 + "1)]"}), Outcome.OK, None),
    (completion({"content": "<|python_tag|>get_weather(city=" + "-" * 1500 + "1)"}), Outcome.OK, None),
    (completion({"content": '{"name": "get_weather", "arguments": {"city": ' + "9" * 5000 + "}}"}), Outcome.LEAKED_TEXT_CALL, None),
])
def test_replies_that_used_to_crash_a_run_are_classified_and_recordable(body, outcome, why):
    reply = normalize_reply(body)
    assert reply.outcome is outcome
    if why:
        assert why in reply.tool_calls[0].parse_error and reply.tool_calls[0].arguments is None
    _recordable(reply)


def test_a_lone_surrogate_is_replaced_where_it_is_recorded():
    reply = normalize_reply(body_with(tool_call("get_weather", raw='{"city": "Par\\ud800is"}'), content="x\udfffy"))
    assert reply.tool_calls[0].arguments == {"city": "Par\ufffdis"} and reply.content == "x\ufffdy"
    assert "\ud800" not in reply.model_dump_json()


def test_huge_numbers_elsewhere_in_the_body_do_not_spoil_the_reply():
    body = completion({"content": "18 degrees"}, usage={"prompt_tokens": 10**5000, "completion_tokens": 5})
    reply = normalize_reply(body)
    assert reply.outcome is Outcome.OK and reply.usage.prompt_tokens is None and reply.usage.completion_tokens == 5
    _recordable(reply)


def test_a_body_nested_past_any_limit_is_kept_cut_and_says_so():
    nested: dict = {}
    node = nested
    for _ in range(5000):
        node["a"] = {}
        node = node["a"]
    reply = normalize_reply(completion({"content": "hi"}, extra=nested))
    assert reply.outcome is Outcome.OK
    assert "nested deeper than 64 levels" in reply.model_dump_json()
    _recordable(reply)


@settings(FUZZ, max_examples=200)
@given(adversarial.bodies(), st.sampled_from([None, 5, 512]))
def test_fuzz_normalize_reply_always_classifies_and_records(body, max_tokens):
    reply = normalize_reply(body, max_tokens=max_tokens)
    assert isinstance(reply.outcome, Outcome)
    assert all(c.arguments is not None or c.parse_error for c in reply.tool_calls)
    _recordable(reply)


@FUZZ
@given(adversarial.arguments(), st.booleans())
def test_fuzz_parse_arguments_returns_an_object_or_a_reason(raw, cut_off):
    arguments, error, truncated = parse_arguments(raw, cut_off=cut_off)
    assert (arguments is None) != (error is None)
    assert not truncated or error
    if arguments is not None:
        assert isinstance(arguments, dict)
        json.loads(json.dumps(arguments, allow_nan=True))


# --- through a whole run over real HTTP ----------------------------------------------------------

_OK_BODY = completion({"content": "18 and cloudy"})
_DEEP = "[" * 100_000 + "]" * 100_000
# scenario id -> (first reply body as raw JSON text, the outcome the run is scored)
_HOSTILE = {
    "brackets": (json.dumps(completion({"content": "[" * 1200})), Outcome.MISSING_CALL),
    "surrogate": (json.dumps(body_with(tool_call("get_weather", raw='{"city": "Par\\ud800is"}'))), Outcome.VALUE_ERROR),
    "huge-int-args": (json.dumps(body_with(tool_call("get_weather", raw='{"city": ' + "9" * 5000 + "}"))),
                      Outcome.MALFORMED_ARGUMENTS),
    "huge-int-body": (json.dumps(body_with(tool_call("get_weather", {"city": "Paris"}))).replace(
        '"prompt_tokens": 10', '"prompt_tokens": ' + "9" * 5000), Outcome.OK),
    "deep-args": (json.dumps(body_with(tool_call("get_weather", raw='{"city": ' + _DEEP + "}"))), Outcome.MALFORMED_ARGUMENTS),
    "deep-body": ('{"choices": [{"message": {"content": ' + _DEEP + "}}]}", Outcome.INFRA_ERROR),
    "dashes": (json.dumps(completion({"content": "[get_weather(city=" + "-" * 1500 + "1)]"})), Outcome.MISSING_CALL),
    "tool-code": (json.dumps(completion({"content": '```tool_code\nget_weather(city="Paris")\n```'})), Outcome.LEAKED_TEXT_CALL),
}


async def test_a_run_over_hostile_replies_records_every_one_with_its_outcome(fake_server, tmp_path):
    from harness.client import make_client
    from harness.records import RunConfig, Target, read_results
    from harness.runner import run_suite
    from harness.scenario import Scenario
    from tests.fakeserver import Canned

    scenarios = [Scenario.model_validate({
        "id": sid, "description": "d", "strata": ["tool_selection"], "tools": ["get_weather"], "system": sid,
        "world": {"weather": {"Paris": {"temp_c": 18, "conditions": "cloudy"}}},
        "turns": [{"user": "Weather in Paris?", "expect": [{"call": "get_weather", "args": {"city": "Paris"}}, {"answer": True}]}],
    }) for sid in _HOSTILE]

    def respond(request):
        if request["messages"][-1]["role"] == "tool":
            return _OK_BODY
        return Canned(text=_HOSTILE[request["messages"][0]["content"]][0], content_type="application/json")

    fake_server.responder = respond
    out = tmp_path / "results.jsonl"
    target = Target(name="t", base_url=fake_server.base_url, model="test-model")
    await run_suite(scenarios, [target], out=out, config=RunConfig(),
                    client_factory=lambda t: make_client(t, retries=0, wait_initial_s=0.01))
    results = read_results(out)  # every line reads back
    got = {r.scenario_id: r.score.outcome for r in results.records}
    assert got == {sid: outcome for sid, (_, outcome) in _HOSTILE.items()}
    assert len(out.read_text(encoding="utf-8").splitlines()) == 1 + len(_HOSTILE)


@pytest.mark.parametrize("raw", ['{"city": NaN}', '{"city": Infinity}', '{"city": 1e999}'])
def test_numbers_json_cannot_carry_are_malformed_arguments(raw):
    # sent back in the next request they would make the server refuse it: an infra error for a model fault
    reply = normalize_reply(body_with(tool_call("get_weather", raw=raw)))
    assert reply.outcome is Outcome.MALFORMED_ARGUMENTS and "non-finite" in reply.tool_calls[0].parse_error


@settings(FUZZ, max_examples=60)
@given(adversarial.bodies())
def test_fuzz_a_hostile_reply_runs_scores_and_records_like_any_other(body):
    import asyncio

    from harness.loop import run_scenario
    from harness.records import RunRecord
    from harness.scenario import Scenario
    from harness.scoring import score_scenario

    scenario = Scenario.model_validate({
        "id": "fuzz", "description": "d", "strata": ["tool_selection"], "tools": ["get_weather"],
        "world": {"weather": {"Paris": {"temp_c": 18, "conditions": "cloudy"}}},
        "turns": [{"user": "Weather in Paris?", "expect": [{"call": "get_weather", "args": {"city": "Paris"}}, {"answer": True}]}],
    })

    class Client:
        replies = [normalize_reply(body)]

        async def chat(self, messages, tools, sampling, *, tool_choice="auto"):
            return self.replies.pop(0) if self.replies else normalize_reply(_OK_BODY)

    trajectory = asyncio.run(run_scenario(scenario, Client(), target="t"))
    score = score_scenario(scenario, trajectory)
    assert isinstance(score.outcome, Outcome)
    record = RunRecord(run_id="r", target="t", scenario_id="fuzz", scenario_hash="h", strata=["tool_selection"], epoch=0,
                       trajectory=trajectory, score=score)
    line = record.model_dump_json()
    assert RunRecord.model_validate(json.loads(line)).score.outcome is score.outcome
