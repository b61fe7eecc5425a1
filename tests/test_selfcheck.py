"""The self-check: the oracle replays a scenario's expectations through the real loop and scorers."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from harness.cli import main
from harness.scenario import load_scenarios
from harness.selfcheck import selfcheck

PASSABLE = """\
id: sc-ok
description: weather lookup
strata: [tool_selection]
tags: [weather]
tools: [get_weather, get_forecast]
world: {weather: {Paris: {temp_c: 18, conditions: cloudy}}}
turns:
  - user: "Weather in Paris?"
    expect:
      - call: get_weather
        args: {city: Paris}
      - answer: {contains: "18"}
"""

UNREACHABLE_CHECK = "checks:\n  world:\n    - {path: outbox, expect: {length: 1}}\n"


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(text)
    return folder / name


async def test_a_passable_scenario_is_ok_and_one_no_model_can_pass_is_named(tmp_path):
    write(tmp_path, "ok.yaml", PASSABLE)
    # an email is checked for at the end, but no step sends one: the author's mistake, not the model's
    write(tmp_path, "bad.yaml", PASSABLE.replace("sc-ok", "sc-bad") + UNREACHABLE_CHECK)
    found = {c.scenario_id: c for c in await selfcheck(load_scenarios(tmp_path))}
    assert found["sc-ok"].status == "ok"
    assert found["sc-bad"].status == "not_passable" and "outbox" in found["sc-bad"].reason
    assert found["sc-bad"].source.endswith("bad.yaml:1")


async def test_a_scenario_that_cannot_fail_is_named(tmp_path):
    lenient = PASSABLE.replace("      - call: get_weather\n        args: {city: Paris}\n      - answer: {contains: \"18\"}\n", "")
    lenient = lenient.replace("    expect:\n", "    expect: []\n")
    write(tmp_path, "lenient.yaml", lenient)
    [check] = await selfcheck(load_scenarios(tmp_path))
    assert check.status == "cannot_fail"


def test_the_command_exits_2_and_names_the_scenario_when_one_is_not_passable(tmp_path):
    write(tmp_path, "ok.yaml", PASSABLE)
    result = CliRunner().invoke(main, ["selfcheck", str(tmp_path)])
    assert result.exit_code == 0 and "1 scenarios self-checked: ok 1" in result.output
    write(tmp_path, "bad.yaml", PASSABLE.replace("sc-ok", "sc-bad") + UNREACHABLE_CHECK)
    result = CliRunner().invoke(main, ["selfcheck", str(tmp_path), "--json"])
    assert result.exit_code == 2
    rows = {r["scenario_id"]: r for r in map(json.loads, result.output.splitlines())}
    assert rows["sc-bad"]["status"] == "not_passable" and rows["sc-ok"]["status"] == "ok"


async def test_scoring_the_whole_suite_leaves_the_shared_tool_schemas_as_they_were():
    # scoring reads each tool's cached schema without a copy: nothing on the way may change it
    import copy
    from pathlib import Path

    from harness.tools import registry

    before = {t.name: copy.deepcopy(t.shared_parameters()) for t in registry.all()}
    checks = await selfcheck(load_scenarios(Path(__file__).resolve().parent.parent / "scenarios"))
    assert len(checks) >= 300 and {c.status for c in checks} == {"ok"}
    assert {t.name: t.shared_parameters() for t in registry.all()} == before
