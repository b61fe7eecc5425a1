"""Difficulty knobs: parsing, merging, distractors, stripped schemas, history and padded results."""

from __future__ import annotations

import pytest

from harness import knobs
from harness.loop import run_scenario
from harness.scenario import Difficulty, Scenario
from tests.scripted import ScriptedClient, call, calls, text
from harness.tools import registry


def scenario(id: str = "knob-test", **over) -> Scenario:
    data = {
        "id": id,
        "description": "d",
        "strata": ["tool_selection"],
        "tools": ["search_trains", "search_flights"],
        "world": {"trains": [
            {"id": "TR-11", "origin": "Paris", "destination": "Lyon", "date": "2026-05-02", "depart": "08:00", "arrive": "10:00", "price": 40.0},
            {"id": "TR-12", "origin": "Paris", "destination": "Lyon", "date": "2026-05-02", "depart": "09:30", "arrive": "11:30", "price": 30.0},
        ]},
        "turns": [{"user": "Trains Paris to Lyon on 2026-05-02?", "expect": [{"call": "search_trains"}, {"answer": True}]}],
    }
    data.update(over)
    return Scenario.model_validate(data)


# -- parsing -------------------------------------------------------------------------------------


def test_parse_knobs_reads_numbers_and_booleans():
    assert knobs.parse_knobs(["distractor_tools=3", "strip-descriptions=yes", "history_turns= 2"]) == {
        "distractor_tools": 3, "strip_descriptions": True, "history_turns": 2,
    }
    assert knobs.parse_knobs([]) == {}


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("distractors=3", "unknown knob 'distractors'; known knobs: distractor_tools"),
        ("distractor_tools", "expected NAME=VALUE"),
        ("long_outputs=lots", "long_outputs takes a whole number, got 'lots'"),
        ("history_turns=-1", "must be 0 or more"),
        ("strip_descriptions=maybe", "takes true or false"),
    ],
)
def test_parse_knobs_says_what_is_wrong(item, message):
    with pytest.raises(knobs.KnobError, match=message.replace("(", r"\(")):
        knobs.parse_knobs([item])


def test_command_line_overrides_win_knob_by_knob():
    merged = knobs.merge_difficulty(Difficulty(history_turns=2, long_outputs=5), {"long_outputs": 1, "strip_descriptions": True})
    assert merged == Difficulty(history_turns=2, long_outputs=1, strip_descriptions=True)
    assert knobs.merge_difficulty(None, None) == Difficulty()
    assert knobs.merge_difficulty(Difficulty(history_turns=2), Difficulty(distractor_tools=1)).history_turns == 2


# -- tools ---------------------------------------------------------------------------------------


def test_distractors_come_from_other_domains_and_depend_only_on_the_scenario_id():
    sc = scenario()
    picked = knobs.distractor_names(sc, 4)
    assert len(picked) == len(set(picked)) == 4
    assert all(registry[name].domain != "travel" for name in picked)
    assert knobs.distractor_names(scenario(), 4) == picked
    assert knobs.distractor_names(scenario(id="another"), 4) != picked
    assert knobs.distractor_names(sc, Difficulty(distractor_tools=2)) == picked[:2]
    assert knobs.distractor_names(sc, 0) == []


def test_distractors_fall_back_to_unoffered_tools_of_the_same_domain():
    everything_else = len(registry.names()) - 2
    picked = knobs.distractor_names(scenario(), everything_else + 5)
    assert len(picked) == everything_else and "book_flight" in picked
    assert not {"search_trains", "search_flights"} & set(picked)


def test_schemas_strip_descriptions_only_when_asked():
    sc = scenario()
    plain = knobs.tool_schemas(sc)
    stripped = knobs.tool_schemas(sc, Difficulty(strip_descriptions=True, distractor_tools=1))
    assert [t["function"]["name"] for t in plain] == ["search_trains", "search_flights"]
    assert len(stripped) == 3 and [t.name for t in knobs.offered_tools(sc, Difficulty(distractor_tools=1))][:2] == sc.tools
    assert plain[0]["function"]["parameters"]["properties"]["origin"]["description"]
    for tool in stripped:
        assert tool["function"]["description"]  # the tool's own description stays
        assert all("description" not in p for p in tool["function"]["parameters"]["properties"].values())


# -- history -------------------------------------------------------------------------------------


def test_history_is_finished_plain_exchanges_and_deterministic():
    sc = scenario()
    history = knobs.history_prefix(sc, 3)
    assert [m["role"] for m in history] == ["user", "assistant"] * 3
    assert all(m["content"] and "tool_calls" not in m for m in history)
    assert knobs.history_prefix(scenario(), 3) == history
    twelve = knobs.history_prefix(sc, 12)
    assert len({m["content"] for m in twelve if m["role"] == "user"}) == 12  # no repeats within the bank
    assert len(knobs.history_prefix(sc, 30)) == 60  # past the bank it cycles
    assert knobs.history_prefix(sc, 0) == []


# -- padding -------------------------------------------------------------------------------------


def test_padding_adds_plausible_records_that_keep_the_right_answer():
    result = {"trains": [
        {"id": "TR-11", "depart": "08:00", "arrive": "10:00", "price": 40.0, "origin": "Paris"},
        {"id": "TR-12", "depart": "09:30", "arrive": "11:30", "price": 30.0, "origin": "Paris"},
    ], "note": "ok"}
    padded = knobs.pad_result(result, 5, "search_trains")
    real, extra = padded["trains"][:2], padded["trains"][2:]
    assert real == result["trains"] and len(extra) == 5 and padded["note"] == "ok"
    ids = [t["id"] for t in padded["trains"]]
    assert len(set(ids)) == 7 and all(i.startswith("TR-") for i in ids)
    assert all(t["price"] > 40.0 for t in extra)  # the cheapest stays the cheapest
    assert all(t["depart"] > "09:30" for t in extra)  # the earliest stays the earliest
    assert all(t["arrive"] > t["depart"] for t in extra)  # durations kept
    assert all(t["origin"] == "Paris" for t in extra)
    assert result["trains"][0] == {"id": "TR-11", "depart": "08:00", "arrive": "10:00", "price": 40.0, "origin": "Paris"}


def test_padding_leaves_single_records_empty_lists_and_zero_alone():
    order = {"order_id": "A1", "items": [{"sku": "M", "quantity": 1}]}
    assert knobs.pad_result(order, 3, "get_order") == order
    assert knobs.pad_result({"trains": []}, 3, "search_trains") == {"trains": []}
    assert knobs.pad_result({"free_starts": ["09:00"]}, 3, "find_free_slots") == {"free_starts": ["09:00"]}
    assert knobs.pad_result({"trains": [{"id": "T1"}]}, 0, "search_trains") == {"trains": [{"id": "T1"}]}


def test_padded_paths_and_emails_do_not_collide_with_real_ones():
    files = knobs.pad_result({"files": [{"path": "/r/a.md"}, {"path": "/r/old-1-a.md"}]}, 3, "list_files")["files"]
    assert len({f["path"] for f in files}) == 5
    people = knobs.pad_result({"people": [{"name": "Omar Haddad", "email": "omar@acme.io"}]}, 3, "lookup_person")["people"]
    assert len({p["email"] for p in people}) == 4 and all(p["email"].endswith("@acme.io") for p in people)
    assert "Omar Haddad" not in [p["name"] for p in people[1:]]


async def test_the_loop_applies_every_knob():
    sc = scenario(difficulty={"distractor_tools": 2, "long_outputs": 3, "history_turns": 2, "strip_descriptions": True})
    client = ScriptedClient([calls(call("search_trains", origin="Paris", destination="Lyon", date="2026-05-02")), text("08:00")])
    trajectory = await run_scenario(sc, client, target="t")
    first = client.requests[0]
    assert len(first["tools"]) == 4
    assert [m["role"] for m in first["messages"]] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert len(trajectory.steps[0].executions[0].result["trains"]) == 5
    assert all("description" not in p for t in first["tools"] for p in t["function"]["parameters"]["properties"].values())


def test_harden_is_one_pure_transform_and_hardening_twice_adds_nothing():
    sc = scenario(difficulty={"distractor_tools": 2, "history_turns": 2, "long_outputs": 3, "strip_descriptions": True})
    hard = knobs.harden(sc)
    assert sc.tools == ["search_trains", "search_flights"] and not sc.few_shot  # the original is untouched
    assert hard.tools[:2] == sc.tools and len(hard.tools) == 4
    assert [m.role for m in hard.few_shot] == ["user", "assistant", "user", "assistant"]
    assert hard.difficulty == Difficulty(long_outputs=3, strip_descriptions=True)
    assert knobs.harden(hard) == hard
    assert hard.id == sc.id and hard.content_hash != sc.content_hash
    # overrides win knob by knob, and no knobs at all gives the scenario back as it is
    assert len(knobs.harden(sc, {"distractor_tools": 0}).tools) == 2
    plain = scenario()
    assert knobs.harden(plain) is plain


async def test_the_loop_sees_exactly_the_hardened_scenario():
    sc = scenario(difficulty={"distractor_tools": 2, "history_turns": 1})
    script = [calls(call("search_trains", origin="Paris", destination="Lyon", date="2026-05-02")), text("08:00")]
    via_knobs, via_transform = ScriptedClient(list(script)), ScriptedClient(list(script))
    await run_scenario(sc, via_knobs, target="t")
    await run_scenario(knobs.harden(sc), via_transform, target="t")
    assert via_knobs.requests[0]["tools"] == via_transform.requests[0]["tools"]
    assert via_knobs.requests[0]["messages"] == via_transform.requests[0]["messages"]
