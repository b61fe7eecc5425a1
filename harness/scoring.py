"""Scorers: grade every expected step of a trajectory, then the end of the run.

Each turn's actual calls are aligned in order with that turn's expected steps. A call step is graded
on tool selection, argument validity and context retention; answer and ask steps on the text.
`score_scenario` adds the final-answer, end-state and forbidden-call checks. The value comparisons
themselves live in `harness.matchers`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any


from harness.matchers import MISSING as _MISSING
from harness.matchers import describe_value as _short
from harness.matchers import json_type as _json_type
from harness.matchers import match_bfcl, match_value
from harness.matchers import values_equal as _equal
from harness.outcomes import Dimension, Outcome
from harness.scenario import AnswerStep, AnyOrderStep, ArgSpec, AskStep, CallStep, Matcher, Scenario, WorldCheck
from harness.scores import Check, ScenarioScore, StepScore
from harness.trajectory import ToolCall, ToolExecution, Trajectory

__all__ = [
    "match_value",
    "score_call",
    "score_tool_selection",
    "score_arguments",
    "score_scenario",
    "resolve_path",
]


def resolve_path(data: Any, path: str) -> Any:
    """Follow a dotted path (`orders.A17.status`, `outbox.0.to`) into nested dicts and lists.

    Returns `harness.matchers.MISSING` (compare with `is`) when any part is absent.
    """
    if path in ("", "."):
        return data
    node = data
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and re.fullmatch(r"-?\d+", part) and -len(node) <= int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node


# -- calls ---------------------------------------------------------------------------------------


@dataclass
class _Event:
    """One call the model made in a turn, with what the mock did with it."""

    call: ToolCall
    model_step: int
    execution: ToolExecution | None


def score_tool_selection(expected: CallStep, event: _Event, offered: set[str]) -> Check:
    """Right tool, wrong tool, unknown tool, or a call written as text."""
    call = event.call
    if call.source == "text":
        return Check.fail(Dimension.TOOL_SELECTION, Outcome.LEAKED_TEXT_CALL, f"call to {call.name} written as plain text, not a tool call")
    if call.name not in offered:
        return Check.fail(Dimension.TOOL_SELECTION, Outcome.UNKNOWN_TOOL, f"called {call.name!r}, which was not offered (expected {expected.call})")
    if call.name != expected.call:
        return Check.fail(Dimension.TOOL_SELECTION, Outcome.WRONG_TOOL, f"expected {expected.call}, got {call.name}")
    return Check.ok(Dimension.TOOL_SELECTION, f"called {call.name}")


_SCHEMA_KIND = {
    "required": Outcome.MISSING_REQUIRED,
    "additionalProperties": Outcome.UNEXPECTED_PARAM,
    "type": Outcome.TYPE_ERROR,
}


def _schema_checks(parameters: dict[str, Any] | None, arguments: dict[str, Any]) -> list[Check]:
    if not parameters:
        return []
    from jsonschema import Draft202012Validator  # not before the first request: see harness.loop

    checks = []
    for err in Draft202012Validator(parameters).iter_errors(arguments):
        kind = _SCHEMA_KIND.get(err.validator, Outcome.VALUE_ERROR)
        arg = str(err.absolute_path[0]) if err.absolute_path else None
        if err.validator == "required":
            arg = next((p for p in err.validator_value if p not in (err.instance or {})), arg)
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            allowed = set((err.schema or {}).get("properties", {}))
            arg = next((k for k in err.instance if k not in allowed), arg)
        where = "/".join(str(p) for p in err.absolute_path)
        checks.append(Check.fail(Dimension.ARGUMENT_VALIDITY, kind, f"schema: {where + ': ' if where else ''}{err.message}", arg))
    return checks


def _ref_value(spec: ArgSpec, captures: dict[str, Any]) -> tuple[Any, str]:
    if spec.from_user is not None:
        return spec.from_user, f"the user's {'turn ' + str(spec.turn) if spec.turn else 'earlier turn'}"
    value = captures.get(spec.from_tool, _MISSING)
    return value, f"captured {spec.from_tool!r}"


def _graded_like_bfcl(spec: ArgSpec) -> bool:
    # what `harness import bfcl` writes: accepted values (or absent) under BFCL's normalisation
    plain = spec.regex is None and spec.contains is None and spec.not_contains is None and spec.approx is None and spec.length is None
    return spec.normalize == "bfcl" and not spec.is_context_ref and plain and not spec.any


def score_arguments(
    expected: CallStep, call: ToolCall, parameters: dict[str, Any] | None, captures: dict[str, Any]
) -> list[Check]:
    """Argument validity (parse, schema, expectations) and context retention (references honoured)."""
    if call.truncated:
        return [Check.fail(Dimension.ARGUMENT_VALIDITY, Outcome.TRUNCATED_CALL, "arguments cut off by max_tokens (partial JSON)")]
    if call.arguments is None:
        return [Check.fail(Dimension.ARGUMENT_VALIDITY, Outcome.MALFORMED_ARGUMENTS, f"arguments are not a JSON object: {call.parse_error}")]
    args = call.arguments
    bfcl = {name for name, spec in expected.args.items() if _graded_like_bfcl(spec)}
    # BFCL checks types its own way and ignores `enum` and the rest: only the schema's `required` stays
    checks = [c for c in _schema_checks(parameters, args) if c.argument not in bfcl or c.outcome is Outcome.MISSING_REQUIRED]
    context: list[Check] = []
    for name, spec in expected.args.items():
        value = args.get(name, _MISSING)
        if spec.is_context_ref:
            if value is _MISSING:
                if not spec.optional:
                    context.append(Check.fail(Dimension.CONTEXT_RETENTION, Outcome.CONTEXT_LOST, f"{name}: missing; it should carry a value given earlier", name))
                continue
            want, where = _ref_value(spec, captures)
            if want is _MISSING:
                context.append(Check.fail(Dimension.CONTEXT_RETENTION, Outcome.CONTEXT_LOST, f"{name}: {where} is unavailable (that call failed or never happened)", name))
            elif not _equal(want, value, spec.normalize):
                context.append(Check.fail(Dimension.CONTEXT_RETENTION, Outcome.CONTEXT_LOST, f"{name}: expected {_short(want)} from {where}, got {_short(value)}", name))
            else:
                context.append(Check.ok(Dimension.CONTEXT_RETENTION, f"{name} carries {where}", name))
            # a reference may also carry ordinary expectations (a regex on top, say)
            if spec.equals is None and spec.one_of is None and spec.regex is None and spec.contains is None and spec.approx is None:
                continue
        if name in bfcl:
            schema = ((parameters or {}).get("properties") or {}).get(name) if parameters else None
            outcome, reason = match_bfcl(spec, value, schema)
        else:
            outcome, reason = match_value(spec, value)
        if outcome is not Outcome.OK and not any(c.argument == name and not c.passed for c in checks):
            checks.append(Check.fail(Dimension.ARGUMENT_VALIDITY, outcome, f"{name}: {reason}", name))
    if not expected.allow_extra_args:
        for name in args:
            if name not in expected.args and not any(c.argument == name and not c.passed for c in checks):
                checks.append(Check.fail(Dimension.ARGUMENT_VALIDITY, Outcome.UNEXPECTED_PARAM, f"{name}: not expected here", name))
    if not checks:
        checks.append(Check.ok(Dimension.ARGUMENT_VALIDITY, "arguments valid"))
    return checks + context


def score_call(
    expected: CallStep, event: _Event, offered: set[str], parameters: dict[str, Any] | None, captures: dict[str, Any]
) -> list[Check]:
    """All checks for one expected call against one actual call."""
    selection = score_tool_selection(expected, event, offered)
    if not selection.passed:
        return [selection]
    return [selection, *score_arguments(expected, event.call, parameters, captures)]


def _describe_call(call: ToolCall) -> str:
    args = call.arguments if call.arguments is not None else call.raw_arguments
    text = json.dumps(args, default=str) if not isinstance(args, str) else args
    if len(text) > 120:
        text = text[:117] + "..."
    prefix = "text call " if call.source == "text" else ""
    return f"{prefix}{call.name}({text})"


def _describe_expected(step: Any) -> str:
    if isinstance(step, CallStep):
        parts = []
        for name, spec in step.args.items():
            if spec.from_user is not None:
                parts.append(f"{name}={_short(spec.from_user)} (from user)")
            elif spec.from_tool is not None:
                parts.append(f"{name}=<{spec.from_tool}>")
            elif spec.equals is not None:
                parts.append(f"{name}={_short(spec.equals)}")
            elif spec.absent:
                parts.append(f"no {name}")
            else:
                parts.append(f"{name}=…")
        return f"call {step.call}({', '.join(parts)})"
    if isinstance(step, AnyOrderStep):
        return "in any order: " + "; ".join(_describe_expected(c) for c in step.any_order)
    if isinstance(step, AskStep):
        return "ask the user"
    return "answer in text"


# -- scenario ------------------------------------------------------------------------------------


class _Scorer:
    def __init__(self, scenario: Scenario, trajectory: Trajectory, parameters: dict[str, dict[str, Any]]):
        self.scenario = scenario
        self.trajectory = trajectory
        self.parameters = parameters
        self.offered = set(trajectory.offered_tools) or set(scenario.offered_tool_names)
        self.captures: dict[str, Any] = {}
        self.index = 0
        self.stopped = False

    def _capture(self, expected: CallStep, event: _Event) -> None:
        result = event.execution.result if event.execution and event.execution.error is None else _MISSING
        for name, path in expected.capture.items():
            value = resolve_path(result, path) if result is not _MISSING else _MISSING
            if value is not _MISSING:
                self.captures[name] = value

    def _unreached(self, turn: int, step: Any, outcome: Outcome, why: str) -> StepScore:
        dim = Dimension.TOOL_SELECTION if isinstance(step, (CallStep, AnyOrderStep)) else Dimension.ANSWER
        return StepScore(
            index=self.index, turn=turn, kind=step.kind, expected=_describe_expected(step), actual=why,
            checks=[Check.fail(dim, outcome, why)],
        )

    def score_turn(self, turn_no: int) -> list[StepScore]:
        turn = self.scenario.turns[turn_no - 1]
        steps = self.trajectory.turn_steps(turn_no)
        events: list[_Event] = []
        for step in steps:
            by_id = {id(e.call): e for e in step.executions}
            executions = list(step.executions)
            for call in step.reply.tool_calls:
                execution = next((e for e in executions if e.call.id == call.id and e.call.name == call.name), None)
                if execution is not None:
                    executions.remove(execution)
                events.append(_Event(call=call, model_step=step.index, execution=execution or by_id.get(id(call))))
        last = steps[-1] if steps else None
        fatal: Outcome | None = None
        if self.trajectory.stopped_at_turn == turn_no:
            fatal = self.trajectory.outcome
        answer = last.reply.content if last and not any(c.source == "tool_calls" for c in last.reply.tool_calls) else None

        scores: list[StepScore] = []
        p = 0
        for expected in turn.expect:
            if self.stopped:
                scores.append(self._unreached(turn_no, expected, Outcome.NOT_REACHED, "the run stopped earlier"))
            elif isinstance(expected, CallStep):
                if p < len(events):
                    event = events[p]
                    p += 1
                    checks = score_call(expected, event, self.offered, self.parameters.get(event.call.name), self.captures)
                    if checks[0].passed:
                        self._capture(expected, event)
                    scores.append(StepScore(
                        index=self.index, turn=turn_no, kind="call", expected=_describe_expected(expected),
                        actual=_describe_call(event.call), model_step=event.model_step, checks=checks,
                    ))
                else:
                    scores.append(self._missing(turn_no, expected, fatal, answer, last))
            elif isinstance(expected, AnyOrderStep):
                group = events[p : p + len(expected.any_order)]
                p += len(group)
                scores.append(self._score_group(turn_no, expected, group, fatal, answer, last))
            else:
                scores.append(self._score_text(turn_no, expected, events[p:], fatal, answer, last, after_calls=p > 0))
                p = len(events)
            self.index += 1
        if p < len(events) and scores and not self.stopped:
            extra = events[p:]
            scores[-1].checks.append(Check.fail(
                Dimension.TOOL_SELECTION, Outcome.SPURIOUS_CALL,
                "extra call" + ("s" if len(extra) > 1 else "") + " beyond what the turn expects: " + ", ".join(_describe_call(e.call) for e in extra),
            ))
        return scores

    def _missing(self, turn_no: int, expected: Any, fatal: Outcome | None, answer: str | None, last: Any) -> StepScore:
        if fatal is not None:
            self.stopped = True
            why = {
                Outcome.LOOP: "step cap hit: the model kept calling tools",
                Outcome.SERVER_PARSE_ERROR: f"the server could not parse the model's tool call: {last.reply.error if last else ''}",
                Outcome.INFRA_ERROR: f"infrastructure error: {last.reply.error if last else ''}",
            }.get(fatal, str(fatal))
            return StepScore(
                index=self.index, turn=turn_no, kind=expected.kind, expected=_describe_expected(expected), actual=why,
                model_step=last.index if last else None, checks=[Check.fail(Dimension.TOOL_SELECTION, fatal, why)],
            )
        if last is not None and last.reply.outcome is Outcome.EMPTY_REPLY:
            outcome, why = Outcome.EMPTY_REPLY, "the model returned nothing"
        else:
            outcome, why = Outcome.MISSING_CALL, f"answered instead of calling {getattr(expected, 'call', 'the tools')}: {_short(answer or '', 80)}"
        return StepScore(
            index=self.index, turn=turn_no, kind=expected.kind, expected=_describe_expected(expected), actual=why,
            model_step=last.index if last else None, checks=[Check.fail(Dimension.TOOL_SELECTION, outcome, why)],
        )

    def _score_group(self, turn_no: int, expected: AnyOrderStep, group: list[_Event], fatal: Outcome | None, answer: str | None, last: Any) -> StepScore:
        if not group:
            return self._missing(turn_no, expected, fatal, answer, last)
        remaining = list(group)
        checks: list[Check] = []
        for want in expected.any_order:
            candidates = [e for e in remaining if e.call.name == want.call and e.call.source == "tool_calls"]
            best, best_checks = None, None
            for event in candidates:
                trial = score_call(want, event, self.offered, self.parameters.get(event.call.name), self.captures)
                if best_checks is None or sum(c.passed for c in trial) > sum(c.passed for c in best_checks):
                    best, best_checks = event, trial
                if all(c.passed for c in trial):
                    break
            if best is None:
                if remaining:
                    best = remaining[0]
                    best_checks = score_call(want, best, self.offered, self.parameters.get(best.call.name), self.captures)
                else:
                    checks.append(Check.fail(Dimension.TOOL_SELECTION, Outcome.MISSING_CALL, f"no call to {want.call}"))
                    continue
            remaining.remove(best)
            if best_checks and best_checks[0].passed:
                self._capture(want, best)
            checks.extend(best_checks or [])
        return StepScore(
            index=self.index, turn=turn_no, kind="any_order", expected=_describe_expected(expected),
            actual="; ".join(_describe_call(e.call) for e in group), model_step=group[0].model_step, checks=checks,
        )

    def _score_text(self, turn_no: int, expected: AnswerStep | AskStep, calls: list[_Event], fatal: Outcome | None,
                    answer: str | None, last: Any, *, after_calls: bool = False) -> StepScore:
        kind = expected.kind
        describe = _describe_expected(expected)
        if fatal is not None:
            # the model never got to answer: the loop (or server error) is the story, not the calls in it
            return self._missing(turn_no, expected, fatal, answer, last)
        matcher = getattr(expected, kind)
        like_bfcl = isinstance(matcher, Matcher) and matcher.normalize == "bfcl"
        if like_bfcl:
            # BFCL's relevance check: only a call it can decode (structured, JSON-object arguments) counts;
            # a call written as text, broken JSON or an empty reply is "no call"
            calls = [e for e in calls if e.call.source == "tool_calls" and e.call.arguments is not None]
        if calls:
            call = calls[0].call
            # extra calls after the expected ones are spurious; calls where only an answer was due are unexpected
            outcome = Outcome.SPURIOUS_CALL if after_calls else Outcome.UNEXPECTED_CALL
            if call.source == "text":
                # a leaked call where an answer is due is still a call attempt
                why = f"wrote a call to {call.name} as text where it should {'ask' if kind == 'ask' else 'answer'}"
            else:
                why = f"called {', '.join(_describe_call(e.call) for e in calls)} where it should {'ask the user' if kind == 'ask' else 'answer'}"
            return StepScore(index=self.index, turn=turn_no, kind=kind, expected=describe, actual=why,
                             model_step=calls[0].model_step, checks=[Check.fail(Dimension.TOOL_SELECTION, outcome, why)])
        if like_bfcl:
            return StepScore(index=self.index, turn=turn_no, kind=kind, expected=describe, actual=_short(answer or "", 120),
                             model_step=last.index if last else None,
                             checks=[Check.ok(Dimension.TOOL_SELECTION, "no call BFCL would decode, as expected")])
        if not answer:
            return StepScore(index=self.index, turn=turn_no, kind=kind, expected=describe, actual="no text",
                             model_step=last.index if last else None,
                             checks=[Check.fail(Dimension.ANSWER, Outcome.EMPTY_REPLY, "the model returned no text")])
        checks = [Check.ok(Dimension.TOOL_SELECTION, "no call, as expected")]
        if isinstance(matcher, Matcher):
            outcome, reason = match_value(matcher, answer)
            checks.append(Check.ok(Dimension.ANSWER, "answer matches") if outcome is Outcome.OK
                          else Check.fail(Dimension.ANSWER, Outcome.ANSWER_MISMATCH, reason))
        return StepScore(index=self.index, turn=turn_no, kind=kind, expected=describe, actual=_short(answer, 120),
                         model_step=last.index if last else None, checks=checks)


def _world_check(check: WorldCheck, world: dict[str, Any]) -> Check:
    value = resolve_path(world, check.path)
    label = check.path
    if check.where and value is not _MISSING:
        if not isinstance(value, list):
            return Check.fail(Dimension.END_STATE, Outcome.END_STATE_MISMATCH, f"{label}: `where` needs a list, found {_json_type(value)}")
        value = [item for item in value if isinstance(item, dict) and all(_equal(v, item.get(k, _MISSING), "casefold") for k, v in check.where.items())]
        label += f" where {check.where}"
    outcome, reason = match_value(check.expect, value) if value is not _MISSING else match_value(check.expect)
    if outcome is Outcome.OK:
        return Check.ok(Dimension.END_STATE, f"{label} as expected")
    return Check.fail(Dimension.END_STATE, Outcome.END_STATE_MISMATCH, f"{label}: {reason}")


def _forbidden_checks(scenario: Scenario, trajectory: Trajectory) -> list[Check]:
    checks = []
    for rule in scenario.checks.forbidden:
        for execution in trajectory.executions():
            call = execution.call
            if call.name != rule.tool:
                continue
            args = call.arguments or {}
            if all(match_value(m, args.get(k, _MISSING))[0] is Outcome.OK for k, m in rule.args.items()):
                why = f"forbidden call {_describe_call(call)} at model step {execution.step}" + (f" ({rule.reason})" if rule.reason else "")
                checks.append(Check.fail(Dimension.TOOL_SELECTION, Outcome.FORBIDDEN_CALL, why))
                break
        else:
            checks.append(Check.ok(Dimension.TOOL_SELECTION, f"no forbidden call to {rule.tool}"))
    return checks


def _tool_parameters(scenario: Scenario, trajectory: Trajectory) -> dict[str, dict[str, Any]]:
    from harness.tools import registry

    params = {t.name: t.parameters for t in scenario.inline_tools}
    for name in trajectory.offered_tools or scenario.tools:
        tool = registry.get(name)
        if tool is not None and name not in params:
            params[name] = tool.shared_parameters()  # read, never changed: no copy per scenario
    return params


def score_scenario(scenario: Scenario, trajectory: Trajectory) -> ScenarioScore:
    """Grade a finished trajectory: every expected step, then the end-of-run checks."""
    if trajectory.outcome is Outcome.INFRA_ERROR:
        last = trajectory.steps[-1].reply.error if trajectory.steps else ""
        return ScenarioScore(
            scenario_id=scenario.id, passed=False, outcome=Outcome.INFRA_ERROR, infra_error=True,
            reason=f"infrastructure error (excluded from accuracy): {last}",
        )
    scorer = _Scorer(scenario, trajectory, _tool_parameters(scenario, trajectory))
    steps: list[StepScore] = []
    for turn_no in range(1, len(scenario.turns) + 1):
        if trajectory.stopped_at_turn is not None and turn_no > trajectory.stopped_at_turn:
            scorer.stopped = True
        steps.extend(scorer.score_turn(turn_no))
    final: list[Check] = []
    if scenario.checks.answer is not None:
        outcome, reason = match_value(scenario.checks.answer, trajectory.final_answer) if trajectory.final_answer else (Outcome.ANSWER_MISMATCH, "no final answer")
        final.append(Check.ok(Dimension.ANSWER, "final answer matches") if outcome is Outcome.OK
                     else Check.fail(Dimension.ANSWER, Outcome.ANSWER_MISMATCH, f"final answer: {reason}"))
    final += [_world_check(c, trajectory.world_after) for c in scenario.checks.world]
    final += _forbidden_checks(scenario, trajectory)

    first = next((s for s in steps if not s.passed), None)
    failed_final = next((c for c in final if not c.passed), None)
    if first is not None:
        outcome = first.outcome
        reason = f"step {first.index} (turn {first.turn}, {first.expected}): " + next(c.reason for c in first.checks if not c.passed)
    elif failed_final is not None:
        outcome, reason = failed_final.outcome, failed_final.reason
    else:
        outcome, reason = Outcome.OK, ""
    return ScenarioScore(
        scenario_id=scenario.id,
        passed=outcome is Outcome.OK,
        outcome=outcome,
        first_failed_step=first.index if first else None,
        steps=steps,
        final_checks=final,
        reason=reason,
    )
