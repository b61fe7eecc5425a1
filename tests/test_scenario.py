"""Scenario files: validation errors name file, line and field; references are checked at load time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.scenario import (
    AnyOrderStep,
    CallStep,
    Scenario,
    ScenarioError,
    load_scenario_file,
    load_scenarios,
    scenario_json_schema,
    SCHEMA_FILENAME,
)

ROOT = Path(__file__).resolve().parent.parent

GOOD = """\
id: demo-1
description: weather then email
strata: [tool_selection, context_retention]
tags: [Smoke]
tools: [get_weather, send_email]
turns:
  - user: "I'm ana@example.com. Weather in Paris?"
    expect:
      - call: get_weather
        args: {city: Paris}
        capture: {temp: temperature}
      - answer: {contains: "18"}
  - user: Email it to me.
    expect:
      - call: send_email
        args:
          to: {from_user: ana@example.com, turn: 1}
          body: {from_tool: temp, regex: "\\\\d"}
      - answer: true
"""


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_good_file_loads_with_bare_values_as_equals(tmp_path):
    [sc] = load_scenarios(write(tmp_path, GOOD))
    step = sc.turns[0].expect[0]
    assert isinstance(step, CallStep)
    assert step.args["city"].equals == "Paris"
    assert sc.tags == ["smoke"]
    assert sc.source.endswith("s.yaml")
    assert [t for t, _ in sc.expected_steps()] == [1, 1, 2, 2]


def test_errors_name_file_line_and_field(tmp_path):
    bad = GOOD.replace("call: send_email", "cal: send_email").replace("tool_selection,", "tool_choice,")
    path = write(tmp_path, bad)
    with pytest.raises(ScenarioError) as info:
        load_scenarios(path)
    problems = {p.field: p for p in info.value.problems}
    assert problems["strata.0"].line == 3
    assert "tool_choice" in problems["strata.0"].message
    step = problems["turns.1.expect.0"]
    assert step.line == 15 and "exactly one of the keys" in step.message
    assert str(path) in str(info.value)


def test_unknown_field_and_yaml_syntax_error(tmp_path):
    with pytest.raises(ScenarioError) as info:
        load_scenarios(write(tmp_path, GOOD.replace("description:", "descripton:")))
    messages = [str(p) for p in info.value.problems]
    assert any("descripton" in m and "unknown field" in m for m in messages)
    assert any("description" in m and "missing" in m for m in messages)
    with pytest.raises(ScenarioError) as info:
        load_scenarios(write(tmp_path, "id: x\nturns: [\n", "broken.yaml"))
    [problem] = info.value.problems
    assert problem.line is not None and "not valid YAML" in problem.message


def test_from_user_value_must_appear_in_that_turn(tmp_path):
    bad = GOOD.replace("from_user: ana@example.com, turn: 1", "from_user: bob@example.com, turn: 1")
    with pytest.raises(ScenarioError, match="bob@example.com.*does not appear"):
        load_scenarios(write(tmp_path, bad))


def test_from_tool_needs_an_earlier_capture(tmp_path):
    bad = GOOD.replace("capture: {temp: temperature}", "capture: {t: temperature}")
    with pytest.raises(ScenarioError, match="capture 'temp'"):
        load_scenarios(write(tmp_path, bad))


def test_expected_call_to_a_tool_not_offered(tmp_path):
    bad = GOOD.replace("tools: [get_weather, send_email]", "tools: [get_weather]")
    with pytest.raises(ScenarioError, match="does not offer"):
        load_scenarios(write(tmp_path, bad))


def test_unknown_registry_tool_and_duplicate_ids(tmp_path):
    write(tmp_path, GOOD.replace("tools: [get_weather, send_email]", "tools: [get_weather, send_email, teleport]"), "a.yaml")
    write(tmp_path, GOOD, "b.yaml")
    with pytest.raises(ScenarioError) as info:
        load_scenarios(tmp_path)
    text = str(info.value)
    assert "teleport" in text and "known tools" in text
    assert "duplicate id 'demo-1'" in text


def test_tag_and_id_selection(tmp_path):
    write(tmp_path, GOOD, "a.yaml")
    write(tmp_path, GOOD.replace("id: demo-1", "id: demo-2").replace("tags: [Smoke]", "tags: [slow]"), "b.yaml")
    assert [s.id for s in load_scenarios(tmp_path, tags=["smoke"])] == ["demo-1"]
    assert [s.id for s in load_scenarios(tmp_path, tags=["context_retention"])] == ["demo-1", "demo-2"]
    assert [s.id for s in load_scenarios(tmp_path, ids=["demo-2"])] == ["demo-2"]


def test_a_file_may_hold_a_list_of_scenarios(tmp_path):
    body = "\n".join("  " + line if line else line for line in GOOD.splitlines())
    text = "- " + body.lstrip() + "\n- " + body.replace("demo-1", "demo-2").lstrip() + "\n"
    assert [s.id for s in load_scenario_file(write(tmp_path, text))] == ["demo-1", "demo-2"]


def test_any_order_needs_two_calls(tmp_path):
    bad = GOOD.replace("      - call: get_weather\n        args: {city: Paris}\n        capture: {temp: temperature}\n",
                       "      - any_order:\n          - call: get_weather\n")
    with pytest.raises(ScenarioError, match="at least 2"):
        load_scenarios(write(tmp_path, bad))


def test_content_hash_ignores_formatting_but_not_meaning(tmp_path):
    [a] = load_scenarios(write(tmp_path, GOOD, "a.yaml"))
    [b] = load_scenarios(write(tmp_path, "# comment\n" + GOOD, "b.yaml"))
    [c] = load_scenarios(write(tmp_path, GOOD.replace("Paris}", "Lyon}"), "c.yaml"))
    assert a.content_hash == b.content_hash != c.content_hash


def test_committed_json_schema_is_current_and_accepts_the_suite():
    import jsonschema
    import yaml

    committed = json.loads((ROOT / "scenarios" / SCHEMA_FILENAME).read_text())
    assert committed == scenario_json_schema(), "run `harness schema` to regenerate scenarios/scenario.schema.json"
    validator = jsonschema.Draft202012Validator(committed)
    files = sorted((ROOT / "scenarios").rglob("*.yaml"))
    assert files
    for file in files:
        errors = list(validator.iter_errors(yaml.safe_load(file.read_text())))
        assert not errors, f"{file}: {errors[0].message}"
    # and it rejects what the loader rejects
    assert list(validator.iter_errors({"id": "x", "description": "d", "strata": ["nope"], "turns": []}))


def test_inline_tools_count_as_offered():
    sc = Scenario.model_validate({
        "id": "inline", "description": "d", "strata": ["multi_call"],
        "inline_tools": [{"name": "calc", "parameters": {"type": "object", "properties": {"a": {"type": "number"}}}}],
        "turns": [{"user": "hi", "expect": [{"any_order": [{"call": "calc"}, {"call": "calc"}]}]}],
    })
    assert sc.offered_tool_names == ["calc"]
    assert isinstance(sc.turns[0].expect[0], AnyOrderStep)
