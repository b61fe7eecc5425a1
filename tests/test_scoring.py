"""Scorers: each failure kind is named correctly, at the right step, in the right dimension."""

from __future__ import annotations

import pytest

from harness.loop import run_scenario
from harness.outcomes import Dimension, Outcome
from harness.scenario import Matcher, Scenario
from harness.scoring import match_value, resolve_path, score_scenario
from tests.scripted import ScriptedClient, broken, call, calls, failure, leaked, text

WORLD = {
    "weather": {"Paris": {"temp_c": 18, "conditions": "cloudy"}, "Oslo": {"temp_c": 3, "conditions": "snow"}},
    "contacts": [{"name": "Bob Stone", "email": "bob@example.com"}],
}


def make(turns, **over) -> Scenario:
    data = {"id": "s", "description": "d", "strata": ["tool_selection"], "world": WORLD,
            "tools": ["get_weather", "get_forecast", "send_email", "find_contact"], "turns": turns}
    data.update(over)
    return Scenario.model_validate(data)


async def grade(sc: Scenario, *replies):
    traj = await run_scenario(sc, ScriptedClient(list(replies)), target="t")
    return score_scenario(sc, traj)


WEATHER_TURN = {"user": "Weather in Paris?", "expect": [{"call": "get_weather", "args": {"city": "Paris"}}, {"answer": {"contains": "18"}}]}


# -- matcher -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "matcher, value, outcome",
    [
        ({"equals": "Paris"}, "  paris ", Outcome.OK),
        ({"equals": "Paris", "normalize": "exact"}, "paris", Outcome.VALUE_ERROR),
        ({"equals": 3.0}, 3, Outcome.OK),  # ints are accepted for floats
        ({"equals": 3}, "3", Outcome.TYPE_ERROR),
        ({"equals": True}, 1, Outcome.TYPE_ERROR),  # a bool is not a number
        ({"one_of": ["NYC", "New York"]}, "new york", Outcome.OK),
        ({"one_of": ["NYC"]}, "LA", Outcome.VALUE_ERROR),
        ({"regex": r"^\d{4}-\d{2}-\d{2}$"}, "2026-11-25", Outcome.OK),
        ({"regex": r"^\d{4}-\d{2}-\d{2}$"}, "25/11/2026", Outcome.VALUE_ERROR),
        ({"contains": ["18", "cloudy"]}, "It is 18°C and Cloudy.", Outcome.OK),
        ({"contains": "rain"}, "It is 18°C", Outcome.VALUE_ERROR),
        ({"contains": ["a"]}, ["a", "b"], Outcome.OK),
        ({"not_contains": ["sorry"]}, "Sorry, no.", Outcome.VALUE_ERROR),
        ({"approx": 2.5, "tolerance": 0.01}, 2.505, Outcome.OK),
        ({"approx": 2.5, "tolerance": 0.001}, 2.51, Outcome.VALUE_ERROR),
        ({"approx": 2.5}, "2.5", Outcome.TYPE_ERROR),
        ({"length": 2}, [1, 2], Outcome.OK),
        ({"any": True}, {"x": 1}, Outcome.OK),
        ({"equals": "Los Angeles, CA", "normalize": "bfcl"}, "los angeles ca", Outcome.OK),
        ({"equals": {"a": ["X"]}}, {"a": ["x"]}, Outcome.OK),
    ],
)
def test_match_value(matcher, value, outcome):
    assert match_value(Matcher.model_validate(matcher), value)[0] is outcome


def test_match_value_presence():
    assert match_value(Matcher(absent=True))[0] is Outcome.OK
    assert match_value(Matcher(absent=True), "x")[0] is Outcome.UNEXPECTED_PARAM
    assert match_value(Matcher(equals="x"))[0] is Outcome.MISSING_REQUIRED
    assert match_value(Matcher(equals="x", optional=True))[0] is Outcome.OK
    assert match_value(Matcher(equals="x", optional=True), "y")[0] is Outcome.VALUE_ERROR


def test_resolve_path():
    data = {"orders": {"A1": {"items": [{"sku": "k"}]}}}
    assert resolve_path(data, "orders.A1.items.0.sku") == "k"
    assert resolve_path(data, "orders.A1.items.-1.sku") == "k"
    assert resolve_path(data, "orders.B2") is not None and resolve_path(data, "orders.B2") is resolve_path(data, "x")
    assert resolve_path(data, ".") is data


# -- tool selection ------------------------------------------------------------------------------


async def test_all_correct_passes():
    score = await grade(make([WEATHER_TURN]), calls(call("get_weather", city="Paris")), text("18 and cloudy"))
    assert score.passed and score.outcome is Outcome.OK and score.first_failed_step is None
    assert [s.passed for s in score.steps] == [True, True]


async def test_wrong_tool_fails_the_step_with_both_names():
    score = await grade(make([WEATHER_TURN]), calls(call("get_forecast", city="Paris")), text("18"))
    step = score.steps[0]
    assert score.outcome is Outcome.WRONG_TOOL and score.first_failed_step == 0
    assert step.failed(Dimension.TOOL_SELECTION) and "expected get_weather, got get_forecast" in step.checks[0].reason


async def test_unknown_tool():
    score = await grade(make([WEATHER_TURN]), calls(call("weather_lookup", city="Paris")), text("18"))
    assert score.steps[0].outcome is Outcome.UNKNOWN_TOOL


async def test_missing_call_when_the_model_answers_instead():
    score = await grade(make([WEATHER_TURN]), text("It is probably 18."))
    assert score.steps[0].outcome is Outcome.MISSING_CALL
    assert "answered instead" in score.steps[0].actual


async def test_leaked_text_call_is_its_own_outcome():
    score = await grade(make([WEATHER_TURN]), leaked("get_weather", city="Paris"))
    assert score.outcome is Outcome.LEAKED_TEXT_CALL


async def test_call_where_none_was_needed():
    sc = make([{"user": "Tell me a joke", "expect": [{"answer": True}]}], strata=["irrelevance"])
    score = await grade(sc, calls(call("get_weather", city="Paris")), text("Here is a joke"))
    assert score.outcome is Outcome.UNEXPECTED_CALL
    ok = await grade(sc, text("Why did the chicken..."))
    assert ok.passed


async def test_ask_step_fails_when_the_model_invents_an_argument():
    sc = make([{"user": "What's the weather?", "expect": [{"ask": {"contains": "city"}}]}], strata=["missing_info"])
    invented = await grade(sc, calls(call("get_weather", city="London")), text("..."))
    assert invented.outcome is Outcome.UNEXPECTED_CALL
    asked = await grade(sc, text("Which city do you mean?"))
    assert asked.passed
    vague = await grade(sc, text("Sure, one moment."))
    assert vague.outcome is Outcome.ANSWER_MISMATCH


async def test_spurious_extra_call_fails_the_turn():
    score = await grade(make([WEATHER_TURN]), calls(call("get_weather", city="Paris"), call("get_weather", _id="2", city="Oslo")), text("18"))
    assert score.outcome is Outcome.SPURIOUS_CALL and score.first_failed_step == 1
    assert "Oslo" in score.steps[1].actual


# -- arguments -----------------------------------------------------------------------------------


async def test_argument_failures_are_named_per_argument():
    sc = make([{"user": "Mail bob", "expect": [{"call": "send_email", "args": {"to": "bob@example.com"}, "allow_extra_args": False}]}])
    cases = {
        Outcome.MISSING_REQUIRED: call("send_email", to="bob@example.com", subject="s"),
        Outcome.TYPE_ERROR: call("send_email", to="bob@example.com", subject="s", body=5),
        Outcome.UNEXPECTED_PARAM: call("send_email", to="bob@example.com", subject="s", body="b", cc="x@y.z"),
        Outcome.VALUE_ERROR: call("send_email", to="rob@example.com", subject="s", body="b"),
    }
    for outcome, c in cases.items():
        score = await grade(sc, calls(c), text("ok"))
        failed = [ch for ch in score.steps[0].checks if not ch.passed]
        assert failed[0].outcome is outcome, (outcome, failed)
        assert failed[0].dimension is Dimension.ARGUMENT_VALIDITY
        assert failed[0].argument in {"body", "cc", "to"}


async def test_malformed_and_truncated_arguments():
    assert (await grade(make([WEATHER_TURN]), broken("get_weather", '{"city": Par'), text("x"))).outcome is Outcome.MALFORMED_ARGUMENTS
    assert (await grade(make([WEATHER_TURN]), broken("get_weather", '{"city": "Par', truncated=True), text("x"))).outcome is Outcome.TRUNCATED_CALL


async def test_enum_violation_is_a_value_error():
    sc = make([{"user": "Weather in Paris in kelvin", "expect": [{"call": "get_weather"}]}])
    score = await grade(sc, calls(call("get_weather", city="Paris", unit="kelvin")), text("x"))
    assert score.steps[0].outcome is Outcome.VALUE_ERROR and score.steps[0].checks[1].argument == "unit"


# -- context retention ---------------------------------------------------------------------------


CONTEXT = [
    {"user": "I'm bob@example.com. Weather in Paris?", "expect": [
        {"call": "get_weather", "args": {"city": "Paris"}, "capture": {"sky": "conditions"}}, {"answer": True}]},
    {"user": "Mail me the sky.", "expect": [
        {"call": "send_email", "args": {"to": {"from_user": "bob@example.com", "turn": 1}, "body": {"from_tool": "sky"}}}, {"answer": True}]},
]


async def test_context_references_hold():
    score = await grade(make(CONTEXT), calls(call("get_weather", city="Paris")), text("cloudy"),
                        calls(call("send_email", to="bob@example.com", subject="s", body="Cloudy")), text("sent"))
    assert score.passed
    assert any(c.dimension is Dimension.CONTEXT_RETENTION and c.passed for c in score.steps[2].checks)


async def test_forgotten_user_value_is_context_lost_not_value_error():
    score = await grade(make(CONTEXT), calls(call("get_weather", city="Paris")), text("cloudy"),
                        calls(call("send_email", to="rob@example.com", subject="s", body="cloudy")), text("sent"))
    step = score.steps[2]
    assert score.outcome is Outcome.CONTEXT_LOST and score.first_failed_step == 2
    assert step.failed(Dimension.CONTEXT_RETENTION) and not step.failed(Dimension.ARGUMENT_VALIDITY)
    [lost] = [c for c in step.checks if not c.passed]
    assert lost.argument == "to" and "rob@example.com" in lost.reason


async def test_invented_tool_value_is_context_lost():
    score = await grade(make(CONTEXT), calls(call("get_weather", city="Paris")), text("cloudy"),
                        calls(call("send_email", to="bob@example.com", subject="s", body="sunny")), text("sent"))
    assert score.steps[2].outcome is Outcome.CONTEXT_LOST and "captured 'sky'" in score.steps[2].checks[-1].reason


# -- order-free groups, end checks, fatal outcomes -----------------------------------------------


GROUP = [{"user": "Weather in Paris and Oslo", "expect": [
    {"any_order": [{"call": "get_weather", "args": {"city": "Paris"}}, {"call": "get_weather", "args": {"city": "Oslo"}}]},
    {"answer": True}]}]


async def test_any_order_group_passes_in_either_order_and_fails_on_a_missing_member():
    for a, b in (("Paris", "Oslo"), ("Oslo", "Paris")):
        score = await grade(make(GROUP), calls(call("get_weather", _id="1", city=a), call("get_weather", _id="2", city=b)), text("ok"))
        assert score.passed, score.reason
    score = await grade(make(GROUP), calls(call("get_weather", city="Paris")), text("ok"))
    assert not score.passed and any(c.outcome is Outcome.MISSING_CALL for c in score.steps[0].checks)
    score = await grade(make(GROUP), calls(call("get_weather", _id="1", city="Paris"), call("get_weather", _id="2", city="Paris")), text("ok"))
    assert score.steps[0].outcome is Outcome.VALUE_ERROR


async def test_end_state_answer_and_forbidden_checks():
    checks = {"answer": {"contains": "sent"},
              "world": [{"path": "outbox", "expect": {"length": 1}},
                        {"path": "outbox", "where": {"to": "bob@example.com"}, "expect": {"length": 1}}],
              "forbidden": [{"tool": "send_email", "args": {"to": {"regex": "evil"}}}]}
    turns = [{"user": "Mail bob@example.com", "expect": [{"call": "send_email"}, {"answer": True}]}]
    good = await grade(make(turns, checks=checks), calls(call("send_email", to="bob@example.com", subject="s", body="b")), text("sent"))
    assert good.passed and all(c.passed for c in good.final_checks)
    wrong_to = await grade(make(turns, checks=checks), calls(call("send_email", to="evil@x.y", subject="s", body="b")), text("sent"))
    kinds = {c.outcome for c in wrong_to.final_checks if not c.passed}
    assert kinds == {Outcome.END_STATE_MISMATCH, Outcome.FORBIDDEN_CALL}
    assert wrong_to.outcome is Outcome.END_STATE_MISMATCH


async def test_loop_and_later_steps_not_reached():
    sc = make([WEATHER_TURN, {"user": "and Oslo?", "expect": [{"call": "get_weather"}]}], max_steps=2)
    score = await grade(sc, calls(call("get_weather", city="Paris")), calls(call("get_weather", _id="2", city="Paris")))
    assert score.outcome is Outcome.LOOP and score.first_failed_step == 1
    assert score.steps[0].passed
    assert score.steps[2].outcome is Outcome.NOT_REACHED


async def test_server_parse_error_is_the_models_failure():
    score = await grade(make([WEATHER_TURN]), failure(Outcome.SERVER_PARSE_ERROR, "Failed to parse input"))
    assert score.outcome is Outcome.SERVER_PARSE_ERROR and not score.infra_error
    assert [s.outcome for s in score.steps] == [Outcome.SERVER_PARSE_ERROR, Outcome.NOT_REACHED]


async def test_infra_error_is_excluded_not_wrong():
    score = await grade(make([WEATHER_TURN]), failure(Outcome.INFRA_ERROR, "connection refused"))
    assert score.infra_error and score.outcome is Outcome.INFRA_ERROR and not score.steps
    assert "excluded from accuracy" in score.reason


def test_bfcl_mode_refuses_a_float_for_an_integer_parameter():
    from harness.scenario import ArgSpec, CallStep
    from harness.scoring import score_arguments
    from harness.trajectory import ToolCall

    params = {"type": "object", "properties": {"n": {"type": "integer"}}}
    sent = ToolCall(id="1", name="f", arguments={"n": 5.0})
    bfcl = score_arguments(CallStep(call="f", args={"n": ArgSpec(equals=5, normalize="bfcl")}), sent, params, {})
    plain = score_arguments(CallStep(call="f", args={"n": ArgSpec(equals=5)}), sent, params, {})
    assert bfcl[0].outcome is Outcome.TYPE_ERROR and "BFCL rejects" in bfcl[0].reason
    assert plain[0].outcome is Outcome.OK
