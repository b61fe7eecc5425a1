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

from harness.loop import run_scenario
from harness.outcomes import Outcome, Stratum
from harness.scenario import AnswerStep, AnyOrderStep, ArgSpec, AskStep, CallStep, Difficulty, Matcher, Scenario, load_scenarios
from harness.scoring import resolve_path, score_scenario
from harness.trajectory import Reply, ToolCall
from tools import registry

ROOT = Path(__file__).resolve().parents[1] / "scenarios"
SUITE = [p for p in sorted(ROOT.iterdir()) if p.is_dir() and p.name != "smoke"]
SCENARIOS = load_scenarios(SUITE)
BY_ID = {s.id: s for s in SCENARIOS}

# answers the oracle cannot derive from a matcher (a regex): what a good model would say
ANSWERS = {
    "orders-irrelevant-cooking-question": "Mix regular milk with a tablespoon of lemon juice and let it sit five minutes.",
    "calendar-reschedule-not-organizer": "I couldn't move it: the demo is organised by kai@vendorly.com, so only Kai can.",
}

_MISSING = object()
_NOT_FOUND = resolve_path({}, "nothing")  # what resolve_path returns for a path that is not there


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


# -- the oracle ----------------------------------------------------------------------------------


def _from_schema(schema: dict[str, Any]) -> Any:
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        return {k: _from_schema(v) for k, v in schema.get("properties", {}).items() if k in schema.get("required", [])}
    return {"string": "x", "integer": 1, "number": 1.0, "boolean": True, "array": []}.get(kind, "x")


def _arg_value(spec: ArgSpec, schema: dict[str, Any], captures: dict[str, Any]) -> Any:
    if spec.from_user is not None:
        return spec.from_user
    if spec.from_tool is not None:
        return captures.get(spec.from_tool, _MISSING)
    if spec.absent:
        return _MISSING
    if spec.equals is not None:
        return spec.equals
    if spec.one_of is not None:
        return spec.one_of[0]
    if spec.approx is not None:
        return spec.approx
    if spec.contains is not None:
        if schema.get("type") == "array":
            return list(spec.contains) if isinstance(spec.contains, list) else [spec.contains]
        return " ".join(map(str, spec.contains)) if isinstance(spec.contains, list) else spec.contains
    if spec.regex is not None:
        raise AssertionError(f"the oracle cannot write a value for regex {spec.regex!r}; add an equals/contains")
    return _from_schema(schema)


def _arguments(step: CallStep, captures: dict[str, Any], *, forget: bool = False) -> dict[str, Any]:
    params = registry[step.call].parameters()
    out: dict[str, Any] = {}
    for name, spec in step.args.items():
        value = _arg_value(spec, params["properties"].get(name, {}), captures)
        if forget and spec.is_context_ref:
            value = "ZZ-" + value[::-1] if isinstance(value, str) else value + 1 if isinstance(value, (int, float)) else value
        if value is not _MISSING:
            out[name] = value
    for name in params.get("required", []):
        out.setdefault(name, _from_schema(params["properties"][name]))
    return out


def _text(matcher: Matcher | bool, extra: Matcher | None, fallback: str) -> str:
    parts: list[str] = []
    for m in (matcher, extra):
        if not isinstance(m, Matcher):
            continue
        if m.equals is not None:
            return str(m.equals)
        if m.one_of is not None:
            parts.append(str(m.one_of[0]))
        if m.contains is not None:
            parts += [str(c) for c in (m.contains if isinstance(m.contains, list) else [m.contains])]
        if m.regex is not None and not parts:
            return ""
    return " ".join(parts) or fallback


class OracleClient:
    """Plays every expected step of a scenario in order: one reply per call step, one for each group."""

    def __init__(self, scenario: Scenario, *, forget_context: bool = False, wrong_first: bool = False):
        self.scenario = scenario
        self.forget_context = forget_context
        self.wrong_first = wrong_first
        self.turn = 0
        self.position = 0
        self.captures: dict[str, Any] = {}
        self.in_flight: dict[str, CallStep] = {}
        self.calls = 0

    def _absorb(self, messages: list[dict[str, Any]]) -> None:
        for message in reversed(messages):
            if message["role"] != "tool":
                break
            step = self.in_flight.pop(message["tool_call_id"], None)
            if step is None:
                continue
            result = json.loads(message["content"])
            if isinstance(result, dict) and set(result) == {"error"}:
                continue
            for name, path in step.capture.items():
                value = resolve_path(result, path)
                if value is not _NOT_FOUND:
                    self.captures[name] = value

    def _call(self, step: CallStep) -> ToolCall:
        self.calls += 1
        call_id = f"call_{self.calls}"
        args = _arguments(step, self.captures, forget=self.forget_context)
        self.in_flight[call_id] = step
        return ToolCall(id=call_id, name=step.call, raw_arguments=json.dumps(args), arguments=args)

    def _sloppy(self, expected: Any) -> Reply:
        wanted = {c.call for c in getattr(expected, "any_order", [])} | {getattr(expected, "call", None)}
        other = next(t for t in self.scenario.tools if t not in wanted)
        return Reply(tool_calls=[ToolCall(id="call_bad", name=other, raw_arguments="{}", arguments={})], finish_reason="tool_calls")

    async def chat(self, messages, tools, sampling, *, tool_choice="auto") -> Reply:
        if messages[-1]["role"] == "user":
            self.turn += 1
            self.position = 0
        self._absorb(messages)
        turn = self.scenario.turns[self.turn - 1]
        if self.position >= len(turn.expect):
            return Reply(content="Done.", finish_reason="stop")
        step = turn.expect[self.position]
        self.position += 1
        if self.wrong_first:
            self.wrong_first = False
            self.position = len(turn.expect)
            return self._sloppy(step)
        if isinstance(step, CallStep):
            return Reply(tool_calls=[self._call(step)], finish_reason="tool_calls")
        if isinstance(step, AnyOrderStep):
            return Reply(tool_calls=[self._call(c) for c in reversed(step.any_order)], finish_reason="tool_calls")
        last = self.turn == len(self.scenario.turns) and self.position == len(turn.expect)
        extra = self.scenario.checks.answer if last else None
        matcher = step.answer if isinstance(step, AnswerStep) else step.ask
        fallback = "Done, all set." if isinstance(step, AnswerStep) else "Could you tell me a bit more?"
        content = ANSWERS.get(self.scenario.id) if isinstance(step, AnswerStep) and self.scenario.id in ANSWERS else None
        return Reply(content=content or _text(matcher, extra, fallback), finish_reason="stop")


async def _play(scenario: Scenario, difficulty: Difficulty | None = None, **client_options: Any):
    client = OracleClient(scenario, **client_options)
    trajectory = await run_scenario(scenario, client, target="oracle", difficulty=difficulty)
    return trajectory, score_scenario(scenario, trajectory)


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
