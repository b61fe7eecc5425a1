"""The built-in scenario suite: it loads, covers every stratum, and is graded as intended.

The oracle test replays, for every scenario, exactly what the expectations ask for (captured tool
results feed later calls) and asserts the scenario passes: each one is satisfiable by the real loop,
mock tools and scorer. The sloppy and amnesiac clients break one thing and must fail.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from harness.outcomes import Outcome, Stratum
from harness.scenario import AnswerStep, AnyOrderStep, AskStep, CallStep, Difficulty, Scenario, load_scenarios
from harness.selfcheck import OracleClient, replay, selfcheck_scenario
from tools import registry

ROOT = Path(__file__).resolve().parents[1] / "scenarios"
SUITE = [p for p in sorted(ROOT.iterdir()) if p.is_dir() and p.name != "smoke"]
SCENARIOS = load_scenarios(SUITE)
BY_ID = {s.id: s for s in SCENARIOS}

# -- the suite's shape ---------------------------------------------------------------------------


def test_suite_is_big_enough_and_spans_domains():
    assert len(SCENARIOS) >= 40
    domains = {t for s in SCENARIOS for t in s.tags} & set(registry.by_domain())
    assert len(domains - {"weather", "email"}) >= 4, domains


def test_every_stratum_has_at_least_six_scenarios():
    counts = Counter(str(st) for s in SCENARIOS for st in s.strata)
    thin = {str(st): counts[str(st)] for st in Stratum if counts[str(st)] < 6}
    assert not thin, f"strata with fewer than 6 scenarios: {thin}"


def test_every_scenario_says_what_it_catches_and_has_a_domain_tag():
    domains = set(registry.by_domain())
    for s in SCENARIOS:
        assert s.catches and "\n" not in s.catches.strip(), s.id
        assert domains & set(s.tags), f"{s.id}: no domain tag among {s.tags}"


def test_ids_are_unique_across_the_whole_tree_including_smoke():
    everything = load_scenarios(ROOT)
    ids = [s.id for s in everything]
    assert len(ids) == len(set(ids))


def test_every_file_points_editors_at_the_schema():
    for path in sorted(ROOT.rglob("*.yaml")):
        assert path.read_text().startswith("# yaml-language-server: $schema=../scenario.schema.json"), path


def test_every_file_validates_against_the_committed_schema_editors_use():
    import yaml
    from jsonschema import Draft202012Validator

    validator = Draft202012Validator(json.loads((ROOT / "scenario.schema.json").read_text()))
    for path in sorted(ROOT.rglob("*.yaml")):
        errors = [e.message for e in validator.iter_errors(yaml.safe_load(path.read_text()))]
        assert not errors, (path, errors[:3])


def test_context_retention_scenarios_span_three_to_eight_steps():
    for s in SCENARIOS:
        if Stratum.CONTEXT_RETENTION in s.strata:
            assert 3 <= len(s.expected_steps()) <= 8, (s.id, len(s.expected_steps()))


def test_missing_info_scenarios_ask_and_irrelevance_scenarios_answer_without_calls():
    for s in SCENARIOS:
        steps = [step for _, step in s.expected_steps()]
        if Stratum.MISSING_INFO in s.strata:
            assert any(isinstance(step, AskStep) for step in steps), s.id
        if Stratum.IRRELEVANCE in s.strata:
            assert isinstance(s.turns[0].expect[0], AnswerStep), s.id


def test_error_recovery_scenarios_meet_an_error():
    for s in SCENARIOS:
        if Stratum.ERROR_RECOVERY in s.strata:
            assert s.faults or "error" in s.description.lower() or "fail" in s.description.lower() or "not exist" in s.description.lower(), s.id


# -- the oracle (harness.selfcheck, also `harness selfcheck`) -------------------------------------


async def _play(scenario: Scenario, difficulty: Difficulty | None = None, **client_options: Any):
    return await replay(scenario, difficulty, **client_options)


@pytest.mark.parametrize("scenario_id", sorted(BY_ID))
async def test_oracle_passes_every_scenario(scenario_id):
    trajectory, score = await _play(BY_ID[scenario_id])
    assert score.passed, score.reason
    assert trajectory.outcome is Outcome.OK


async def test_oracle_still_passes_with_every_knob_turned_up():
    hard = Difficulty(distractor_tools=4, long_outputs=3, strip_descriptions=True, history_turns=3)
    failed = {}
    for scenario in SCENARIOS:
        trajectory, score = await _play(scenario, hard)
        assert len(trajectory.offered_tools) == len(scenario.tools) + 4
        if not score.passed:
            failed[scenario.id] = score.reason
    assert not failed


@pytest.mark.parametrize("scenario_id", sorted(BY_ID))
async def test_a_wrong_first_move_fails_at_step_zero(scenario_id):
    _, score = await _play(BY_ID[scenario_id], wrong_first=True)
    assert not score.passed
    assert score.first_failed_step == 0
    assert score.outcome in {Outcome.WRONG_TOOL, Outcome.UNEXPECTED_CALL, Outcome.MISSING_CALL}


def _has_context_ref(scenario: Scenario) -> bool:
    for _, step in scenario.expected_steps():
        calls = step.any_order if isinstance(step, AnyOrderStep) else [step] if isinstance(step, CallStep) else []
        if any(spec.is_context_ref for c in calls for spec in c.args.values()):
            return True
    return False


@pytest.mark.parametrize("scenario_id", sorted(s.id for s in SCENARIOS if _has_context_ref(s)))
async def test_forgetting_a_referenced_value_is_graded_context_lost(scenario_id):
    _, score = await _play(BY_ID[scenario_id], forget_context=True)
    assert not score.passed
    outcomes = {c.outcome for step in score.steps for c in step.checks if not c.passed}
    assert Outcome.CONTEXT_LOST in outcomes, score.reason
