"""Self-check: is every scenario passable, and can it fail?

An oracle client plays exactly what a scenario's expectations ask for (captured tool results feed
later calls) through the real loop, mock tools and scorers; the scenario must pass. A perturbed
replay (a wrong first move) must fail. `harness selfcheck` runs both over a user's own folder.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel

from harness.loop import build_toolset, run_scenario
from harness.outcomes import Outcome
from harness.scenario import AnswerStep, AnyOrderStep, ArgSpec, CallStep, Difficulty, Matcher, Scenario
from harness.scores import ScenarioScore
from harness.scoring import resolve_path, score_scenario
from harness.trajectory import Reply, ToolCall, Trajectory

__all__ = ["OracleClient", "CannotWrite", "SelfCheck", "replay", "selfcheck_scenario", "selfcheck"]

_MISSING = object()
_NOT_FOUND = resolve_path({}, "nothing")  # what resolve_path returns for a path that is not there


class CannotWrite(Exception):
    """The oracle cannot derive a value from an expectation (a bare regex): the scenario is unverified."""


def _regex_example(regex: str) -> str:
    """A string matching `regex`, from its literal alternatives (`(?i)rain|12` -> `rain`)."""
    import re

    body = re.sub(r"^\(\?[a-zA-Z]+\)", "", regex)
    for part in body.split("|"):
        candidate = re.sub(r"\(\?:|[()\\^$?*+\[\]{}.]", "", part).strip()
        if candidate and re.search(regex, candidate):
            return candidate
    raise CannotWrite(f"the oracle cannot write a value for regex {regex!r}; add an equals or contains")


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
        return _regex_example(spec.regex)
    return _from_schema(schema)


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
            parts.append(_regex_example(m.regex))
    return " ".join(parts) or fallback


class OracleClient:
    """Plays every expected step of a scenario in order: one reply per call step, one for each group.

    `forget_context` changes every value bound to something said or seen earlier; `wrong_first`
    makes the first move a wrong one and then gives up on that turn; `answers` supplies text for
    answers the oracle cannot derive from their matcher (a regex).
    """

    def __init__(self, scenario: Scenario, *, forget_context: bool = False, wrong_first: bool = False,
                 answers: dict[str, str] | None = None):
        self.scenario = scenario
        self.forget_context = forget_context
        self.wrong_first = wrong_first
        self.answers = answers or {}
        self.parameters = {name: tool.parameters for name, tool in build_toolset(scenario).tools.items()}
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

    def _arguments(self, step: CallStep) -> dict[str, Any]:
        params = self.parameters.get(step.call) or {"properties": {}}
        out: dict[str, Any] = {}
        for name, spec in step.args.items():
            value = _arg_value(spec, params.get("properties", {}).get(name, {}), self.captures)
            if self.forget_context and spec.is_context_ref:
                value = "ZZ-" + value[::-1] if isinstance(value, str) else value + 1 if isinstance(value, (int, float)) else value
            if value is not _MISSING:
                out[name] = value
        for name in params.get("required", []):
            out.setdefault(name, _from_schema(params.get("properties", {}).get(name, {})))
        return out

    def _call(self, step: CallStep) -> ToolCall:
        self.calls += 1
        call_id = f"call_{self.calls}"
        args = self._arguments(step)
        self.in_flight[call_id] = step
        return ToolCall(id=call_id, name=step.call, raw_arguments=json.dumps(args), arguments=args)

    def _wrong(self, expected: Any) -> Reply:
        wanted = {c.call for c in getattr(expected, "any_order", [])} | {getattr(expected, "call", None)}
        other = next((t for t in self.scenario.offered_tool_names if t not in wanted), None)
        if isinstance(expected, (CallStep, AnyOrderStep)) and other is None:
            return Reply(content="I can't help with that.", finish_reason="stop")
        name = other or self.scenario.offered_tool_names[0]
        return Reply(tool_calls=[ToolCall(id="call_bad", name=name, raw_arguments="{}", arguments={})], finish_reason="tool_calls")

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
            return self._wrong(step)
        if isinstance(step, CallStep):
            return Reply(tool_calls=[self._call(step)], finish_reason="tool_calls")
        if isinstance(step, AnyOrderStep):
            return Reply(tool_calls=[self._call(c) for c in reversed(step.any_order)], finish_reason="tool_calls")
        last = self.turn == len(self.scenario.turns) and self.position == len(turn.expect)
        extra = self.scenario.checks.answer if last else None
        matcher = step.answer if isinstance(step, AnswerStep) else step.ask
        fallback = "Done, all set." if isinstance(step, AnswerStep) else "Could you tell me a bit more?"
        given = self.answers.get(self.scenario.id) if isinstance(step, AnswerStep) else None
        return Reply(content=given or _text(matcher, extra, fallback), finish_reason="stop")


async def replay(scenario: Scenario, difficulty: Difficulty | None = None, *,
                 client: Any = None, **client_options: Any) -> tuple[Trajectory, ScenarioScore]:
    """Run `client` (default: an `OracleClient` for the scenario) through the real loop and score it."""
    client = client or OracleClient(scenario, **client_options)
    trajectory = await run_scenario(scenario, client, target="oracle", difficulty=difficulty)
    return trajectory, score_scenario(scenario, trajectory)


class SelfCheck(BaseModel):
    """What the self-check found for one scenario."""

    scenario_id: str
    """The scenario."""
    source: str | None = None
    """Its file and line."""
    status: Literal["ok", "not_passable", "cannot_fail", "unverified"]
    """`ok`: the oracle passes and a wrong first move fails; `not_passable`: even the oracle fails;
    `cannot_fail`: a wrong first move passes too; `unverified`: the oracle could not write an expected value."""
    reason: str = ""
    """Why, when not `ok`: the scorer's reason, or what the oracle could not write."""


async def selfcheck_scenario(scenario: Scenario, *, answers: dict[str, str] | None = None) -> SelfCheck:
    """Replay the expected trajectory (must pass) and a wrong first move (must fail)."""
    where = f"{scenario.source}:{scenario.source_line}" if scenario.source_line else scenario.source
    base = {"scenario_id": scenario.id, "source": where}
    try:
        trajectory, score = await replay(scenario, answers=answers)
    except CannotWrite as exc:
        return SelfCheck(**base, status="unverified", reason=str(exc))
    if not score.passed or trajectory.outcome is not Outcome.OK:
        return SelfCheck(**base, status="not_passable", reason=score.reason or str(trajectory.outcome))
    _, wrong = await replay(scenario, answers=answers, wrong_first=True)
    if wrong.passed:
        return SelfCheck(**base, status="cannot_fail", reason="a wrong first move passes too: the expectations check nothing")
    return SelfCheck(**base, status="ok")


async def selfcheck(scenarios: list[Scenario], *, answers: dict[str, str] | None = None) -> list[SelfCheck]:
    """`selfcheck_scenario` for each scenario, in order."""
    return [await selfcheck_scenario(sc, answers=answers) for sc in scenarios]
