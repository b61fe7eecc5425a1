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


# -- broken files: every one exits 2 with file, line, field and what was expected ----------------

BROKEN = ROOT / "tests" / "data" / "broken"

# file -> (line, field or None, words the message must hold)
BROKEN_FILES = {
    "binary.yaml": (2, None, "binary file"),
    "latin1.yaml": (1, None, "not UTF-8"),
    "huge_int.yaml": (8, None, "5000 digits"),
    "bad_inline_schema.yaml": (8, "inline_tools.0.parameters", "not a valid JSON Schema at properties/q/type"),
    "recursive_anchor.yaml": (6, None, "recursive anchor"),
    "alias_bomb.yaml": (12, None, "alias bomb"),
    "max_steps_zero.yaml": (15, "max_steps", "greater than or equal to 1"),
    "max_steps_negative.yaml": (11, "turns.0.max_steps", "greater than or equal to 1"),
    "on_call_zero.yaml": (16, "faults.0.on_call", "greater than or equal to 1"),
    "contradictory.yaml": (13, "turns.0.expect.0.args.city", "absent: true contradicts equals"),
    "expected_and_forbidden.yaml": (16, "checks.forbidden.0", "both expected and forbidden"),
    "duplicate_key.yaml": (5, "description", "duplicate key 'description' (first at line 2)"),
    "unknown_tool.yaml": (5, "tools.1", "did you mean 'get_weather'"),
    "empty.yaml": (1, None, "the file is empty"),
    "from_user_missing.yaml": (13, "turns.0.expect.0.args.city.from_user", "'Lyon' does not appear"),
    "from_tool_missing.yaml": (13, "turns.0.expect.0.args.city.from_tool", "capture 'town'"),
    "arg_not_in_schema.yaml": (13, "turns.0.expect.0.args.country", "get_weather has no argument 'country'"),
    "few_shot_unoffered.yaml": (17, "few_shot.1.tool_calls.0.name", "few-shot call to 'send_email'"),
    "family_missing_value.yaml": (11, None, "placeholder ${temp} has no value in this row"),
    "family_bad_instance.yaml": (11, "max_steps", "greater than or equal to 1"),
}


def _validate(*paths: Path) -> tuple[int, str]:
    from click.testing import CliRunner

    from harness.cli import main

    result = CliRunner().invoke(main, ["validate", *map(str, paths)])
    return result.exit_code, result.output


def test_the_broken_corpus_is_all_covered():
    assert {p.name for p in BROKEN.iterdir()} == set(BROKEN_FILES) | {"dup_id_a.yaml", "dup_id_b.yaml"}


@pytest.mark.parametrize("name", sorted(BROKEN_FILES))
def test_a_broken_file_exits_2_naming_file_line_field_and_what_was_expected(name):
    line, field, words = BROKEN_FILES[name]
    code, output = _validate(BROKEN / name)
    assert code == 2, output
    assert "Traceback" not in output
    flat = " ".join(output.split())
    where = f"{BROKEN / name}:{line}" + (f" at {field}:" if field else ":")
    assert where in flat, flat
    assert words in flat, flat


def test_a_duplicate_id_names_both_places():
    code, output = _validate(BROKEN / "dup_id_a.yaml", BROKEN / "dup_id_b.yaml")
    flat = " ".join(output.split())
    assert code == 2
    assert f"{BROKEN / 'dup_id_b.yaml'}:1 at id: duplicate id 'same-id' (first at {BROKEN / 'dup_id_a.yaml'}:1)" in flat


def test_the_family_error_names_the_row_as_well_as_the_template_line():
    code, output = _validate(BROKEN / "family_missing_value.yaml")
    assert code == 2 and "(row at line 4)" in output and "family 'fam', instance 2 (row 2): placeholder" in output
    assert "row at line 3" not in output  # the good row is not blamed


def test_every_problem_comes_in_one_report(tmp_path):
    bad = (GOOD.replace("tools: [get_weather, send_email]", "tools: [get_weather, send_email, teleport]")
               .replace("tags: [Smoke]", "tags: [Smoke]\nmax_steps: 0")
               .replace("from_user: ana@example.com, turn: 1", "from_user: bob@example.com, turn: 1"))
    write(tmp_path, bad, "a.yaml")
    write(tmp_path, GOOD.replace("capture: {temp: temperature}", "capture: {t: temperature}"), "b.yaml")
    with pytest.raises(ScenarioError) as info:
        load_scenarios(tmp_path)
    text = str(info.value)
    # a field error (max_steps) and an unknown tool in a.yaml; a reference error in b.yaml
    assert "a.yaml:5 at max_steps" in text and "teleport" in text and "capture 'temp'" in text
    clean = GOOD.replace("from_user: ana@example.com, turn: 1", "from_user: bob@example.com, turn: 1")
    write(tmp_path, clean, "a.yaml")
    with pytest.raises(ScenarioError) as info:
        load_scenarios(tmp_path)
    # the references of both files, and the duplicate id, in the same report
    text = str(info.value)
    assert "bob@example.com" in text and "capture 'temp'" in text and "duplicate id 'demo-1'" in text


def test_a_large_file_that_only_uses_anchors_honestly_loads():
    # the built-in files share one world per file through anchors: not a bomb
    assert len(load_scenarios(ROOT / "scenarios" / "orders")) > 50


# -- families ------------------------------------------------------------------------------------

FAMILY = """\
- family: weather-now
  description: one city per row
  rows:
    - {city: Paris, temp: 18, email: ana@example.com}
    - {city: Oslo, temp: -3, email: bo@example.no}
  product:
    unit: [celsius, fahrenheit]
  template:
    id: weather-now-${city}-${unit}
    description: Weather in ${city} in ${unit}.
    catches: the wrong city
    strata: [context_retention]
    tags: [weather]
    tools: [get_weather, send_email]
    world:
      weather:
        ${city}: {temp_c: "${temp}", conditions: cloudy}
    turns:
      - user: "I'm ${email}. Weather in ${city} in ${unit}? (item ${n})"
        expect:
          - call: get_weather
            args: {city: "${city}", unit: "${unit}"}
          - answer: true
      - user: Email it to me.
        expect:
          - call: send_email
            args: {to: {from_user: "${email}", turn: 1}}
          - answer: true
"""


def test_a_family_expands_into_one_scenario_per_row_with_its_own_values(tmp_path):
    scenarios = load_scenarios(write(tmp_path, FAMILY))
    assert [s.id for s in scenarios] == [
        "weather-now-Paris-celsius", "weather-now-Paris-fahrenheit", "weather-now-Oslo-celsius", "weather-now-Oslo-fahrenheit",
    ]
    assert {s.family for s in scenarios} == {"weather-now"}
    assert len({s.content_hash for s in scenarios}) == 4
    oslo = scenarios[2]
    # a whole-string placeholder keeps the row's type; inside text it is written in
    assert oslo.world == {"weather": {"Oslo": {"temp_c": -3, "conditions": "cloudy"}}}
    assert oslo.turns[0].user == "I'm bo@example.no. Weather in Oslo in celsius? (item 3)"
    assert oslo.turns[0].expect[0].args["city"].equals == "Oslo"
    assert oslo.turns[1].expect[0].args["to"].from_user == "bo@example.no"
    # inherited from the template
    assert all(s.strata == scenarios[0].strata and s.tags == ["weather"] for s in scenarios)
    assert oslo.source_line == 5  # the row


def test_family_instances_are_selected_like_a_tag_and_by_family(tmp_path):
    path = write(tmp_path, FAMILY)
    write(tmp_path, GOOD, "other.yaml")
    assert len(load_scenarios(tmp_path, tags=["weather-now"])) == 4
    assert len(load_scenarios(tmp_path, families=["weather-now"])) == 4
    assert [s.id for s in load_scenarios(tmp_path, tags=["smoke"])] == ["demo-1"]
    assert load_scenarios(path, ids=["weather-now-Oslo-celsius"])[0].family == "weather-now"


def test_an_id_without_a_placeholder_is_numbered_and_the_family_label_does_not_change_the_hash(tmp_path):
    text = FAMILY.replace("id: weather-now-${city}-${unit}", "id: weather-now")
    scenarios = load_scenarios(write(tmp_path, text))
    assert [s.id for s in scenarios] == ["weather-now-1", "weather-now-2", "weather-now-3", "weather-now-4"]
    relabelled = scenarios[0].model_copy(update={"family": None})
    assert relabelled.content_hash == scenarios[0].content_hash


def test_a_family_needs_values_and_is_in_the_editor_schema(tmp_path):
    with pytest.raises(ScenarioError, match="needs `rows`"):
        load_scenarios(write(tmp_path, FAMILY.replace("  rows:\n    - {city: Paris, temp: 18, email: ana@example.com}\n"
                                                      "    - {city: Oslo, temp: -3, email: bo@example.no}\n", "")
                                       .replace("  product:\n    unit: [celsius, fahrenheit]\n", "")))
    import jsonschema
    import yaml

    validator = jsonschema.Draft202012Validator(scenario_json_schema())
    assert not list(validator.iter_errors(yaml.safe_load(FAMILY)))
    assert list(validator.iter_errors([{"family": "x", "rows": [{}], "template": {}, "extra": 1}]))


def test_a_mistake_in_the_template_is_reported_once_with_the_rows_it_hit(tmp_path):
    bad = FAMILY.replace("    tags: [weather]\n", "    tags: [weather]\n    max_steps: 0\n")
    with pytest.raises(ScenarioError) as info:
        load_scenarios(write(tmp_path, bad))
    [problem] = info.value.problems
    assert problem.field == "max_steps" and problem.line == 14
    assert "family 'weather-now', 4 of 4 instances" in problem.message and "lines 4, 5" in problem.message


def test_list_shows_families_with_their_instance_counts_and_selects_one(tmp_path):
    from click.testing import CliRunner

    from harness.cli import main

    write(tmp_path, FAMILY, "fam.yaml")
    write(tmp_path, GOOD, "one.yaml")
    result = CliRunner().invoke(main, ["list", str(tmp_path), "--families"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "weather-now" in result.output and "│ 4 " in result.output and "demo-1" in result.output
    assert "5 scenarios: 4 in 1 family, 1 on their own" in result.output
    result = CliRunner().invoke(main, ["list", str(tmp_path), "--family", "weather-now"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "weather-now-Oslo-celsius" in result.output and "demo-1" not in result.output
    result = CliRunner().invoke(main, ["list", str(tmp_path), "--family", "nope"])
    assert result.exit_code == 2 and "families: weather-now" in result.output
    result = CliRunner().invoke(main, ["validate", str(tmp_path)])
    assert "5 scenarios OK, 4 of them in 1 family" in result.output
