"""The agent loop: what gets sent, what gets executed, and what gets recorded."""

from __future__ import annotations

import json

from harness.loop import few_shot_messages, run_scenario
from harness.outcomes import Outcome
from harness.records import Sampling
from harness.scenario import Scenario
from tests.scripted import ScriptedClient, broken, call, calls, failure, leaked, text


def scenario(**over) -> Scenario:
    data = {
        "id": "loop-test",
        "description": "d",
        "strata": ["tool_selection"],
        "tools": ["get_weather", "send_email"],
        "world": {"weather": {"Paris": {"temp_c": 18, "conditions": "cloudy"}}},
        "turns": [
            {"user": "Weather in Paris?", "expect": [{"call": "get_weather", "args": {"city": "Paris"}}, {"answer": True}]},
            {"user": "Mail it to a@b.c", "expect": [{"call": "send_email"}, {"answer": True}]},
        ],
    }
    data.update(over)
    return Scenario.model_validate(data)


async def test_runs_tools_on_the_world_and_records_everything():
    sc = scenario()
    client = ScriptedClient([
        calls(call("get_weather", city="Paris")), text("18 and cloudy"),
        calls(call("send_email", to="a@b.c", subject="w", body="18")), text("sent"),
    ])
    traj = await run_scenario(sc, client, target="t", sampling=Sampling(temperature=0.2, seed=7))
    assert traj.outcome is Outcome.OK
    assert [s.turn for s in traj.steps] == [1, 1, 2, 2]
    [weather] = traj.steps[0].executions
    assert weather.executed and weather.schema_valid and weather.result["temperature"] == 18
    # the tool result goes back to the model, linked by call id
    tool_msg = client.requests[1]["messages"][-1]
    assert tool_msg == {"role": "tool", "tool_call_id": "call_get_weather", "name": "get_weather", "content": json.dumps(weather.result)}
    assert client.requests[0]["sampling"].seed == 7
    assert {t["function"]["name"] for t in client.requests[0]["tools"]} == {"get_weather", "send_email"}
    assert traj.world_before.get("outbox") is None
    assert traj.world_after["outbox"][0]["to"] == "a@b.c"
    assert traj.final_answer == "sent"
    # the scenario's own world is untouched: every run starts from a fresh copy
    assert "outbox" not in sc.world


async def test_unknown_tool_bad_json_and_invalid_args_are_not_executed_but_answered():
    sc = scenario(turns=[{"user": "Weather in Paris?", "expect": [{"call": "get_weather"}]}])
    client = ScriptedClient([
        calls(call("teleport", to="Mars")),
        broken("get_weather", '{"city": '),
        calls(call("get_weather", city=3)),
        calls(call("get_weather", city="Paris", planet="Earth")),
        text("done"),
    ])
    traj = await run_scenario(sc, client, target="t")
    execs = traj.executions()
    assert [e.executed for e in execs] == [False, False, False, False]
    assert not execs[0].offered and "unknown tool 'teleport'" in execs[0].error
    assert "not a valid JSON object" in execs[1].error
    assert execs[2].schema_valid is False and any("city" in e for e in execs[2].schema_errors)
    assert execs[3].schema_valid is False and "planet" in execs[3].error
    # each error reached the model as the tool's result
    assert json.loads(client.requests[1]["messages"][-1]["content"])["error"].startswith("unknown tool")


async def test_injected_fault_fails_the_nth_call_only():
    sc = scenario(faults=[{"tool": "get_weather", "on_call": 1, "error": "503 try again"}],
                  turns=[{"user": "Weather in Paris?", "expect": [{"call": "get_weather"}, {"call": "get_weather"}, {"answer": True}]}])
    client = ScriptedClient([calls(call("get_weather", city="Paris")), calls(call("get_weather", city="Paris")), text("18")])
    traj = await run_scenario(sc, client, target="t")
    first, second = traj.executions()
    assert first.injected_fault and first.error == "503 try again" and not first.executed
    assert second.executed and second.result["temperature"] == 18


async def test_step_cap_is_a_loop_and_stops_the_scenario():
    sc = scenario(max_steps=3)
    client = ScriptedClient([calls(call("get_weather", city="Paris"))] * 3)
    traj = await run_scenario(sc, client, target="t")
    assert traj.outcome is Outcome.LOOP and traj.stopped_at_turn == 1
    assert len(traj.steps) == 3 and len(client.requests) == 3


async def test_server_parse_error_and_infra_error_stop_the_run():
    for outcome in (Outcome.SERVER_PARSE_ERROR, Outcome.INFRA_ERROR):
        traj = await run_scenario(scenario(), ScriptedClient([failure(outcome)]), target="t")
        assert traj.outcome is outcome and traj.stopped_at_turn == 1 and len(traj.steps) == 1


async def test_leaked_text_call_is_an_answer_not_an_execution():
    client = ScriptedClient([leaked("get_weather", city="Paris"), text("ok")])
    traj = await run_scenario(scenario(), client, target="t")
    assert traj.executions() == []
    assert client.requests[1]["messages"][-2] == {"role": "assistant", "content": traj.steps[0].reply.content}


def test_few_shot_calls_and_results_are_linked_by_id():
    sc = scenario(few_shot=[
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}]},
        {"role": "tool", "name": "get_weather", "content": '{"temperature": 3}'},
        {"role": "assistant", "content": "3 degrees."},
    ])
    msgs = few_shot_messages(sc.few_shot)
    assert msgs[1]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city": "Oslo"}'}
    assert msgs[2]["tool_call_id"] == msgs[1]["tool_calls"][0]["id"]
    assert [m["role"] for m in msgs] == ["user", "assistant", "tool", "assistant"]


async def test_few_shot_prefix_comes_after_system_and_before_the_user():
    sc = scenario(system="SYS", few_shot=[{"role": "user", "content": "example"}, {"role": "assistant", "content": "reply"}])
    client = ScriptedClient([text("no"), text("no")])
    await run_scenario(sc, client, target="t")
    roles = [(m["role"], m["content"]) for m in client.requests[0]["messages"]]
    assert roles == [("system", "SYS"), ("user", "example"), ("assistant", "reply"), ("user", "Weather in Paris?")]


async def test_inline_tools_validate_and_return_canned_results():
    sc = Scenario.model_validate({
        "id": "inline", "description": "d", "strata": ["multi_call"],
        "inline_tools": [{"name": "calc", "parameters": {"type": "object", "properties": {"a": {"type": "number"}}, "required": ["a"]},
                          "results": [{"v": 1}, {"v": 2}]}],
        "turns": [{"user": "go", "expect": [{"call": "calc"}]}],
    })
    client = ScriptedClient([calls(call("calc", _id="1", a=1), call("calc", _id="2", a=2), call("calc", _id="3", b=1)), text("done")])
    traj = await run_scenario(sc, client, target="t")
    results = [(e.result, e.schema_valid) for e in traj.executions()]
    assert results == [({"v": 1}, True), ({"v": 2}, True), (None, False)]


async def test_inline_tools_can_answer_by_their_arguments():
    sc = Scenario.model_validate({
        "id": "inline-cases", "description": "d", "strata": ["tool_selection"],
        "inline_tools": [{"name": "stock", "parameters": {"type": "object", "properties": {"sku": {"type": "string"}}},
                          "cases": [{"when": {"sku": "MUG-12"}, "result": {"in_stock": 4}},
                                    {"when": {"sku": {"regex": "^ZZ"}}, "error": "discontinued"}],
                          "result": {"in_stock": 0}}],
        "turns": [{"user": "go", "expect": [{"call": "stock"}]}],
    })
    client = ScriptedClient([calls(call("stock", _id="1", sku="mug-12"), call("stock", _id="2", sku="ZZ-9"),
                                   call("stock", _id="3", sku="LMP-7")), text("done")])
    traj = await run_scenario(sc, client, target="t")
    assert [(e.result, e.error) for e in traj.executions()] == [({"in_stock": 4}, None), (None, "discontinued"), ({"in_stock": 0}, None)]
