"""The agent loop: drive one scenario against one client, executing tool calls on the mock world.

Send messages + tool schemas; run the calls the reply makes and append their results; repeat until
the model answers (then the next user turn comes) or the step cap is hit (`loop`). Everything that
happens is recorded in the `Trajectory`; model failures are data, only harness bugs raise.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

import structlog

from harness.knobs import harden, pad_result
from harness.outcomes import Outcome
from harness.records import Sampling
from harness.scenario import Difficulty, FewShotMessage, InlineTool, Scenario
from harness.trajectory import Reply, Step, ToolCall, ToolExecution, Trajectory
from harness.tools import MockTool, World, registry, run_tool
from harness.tools.base import ToolError

__all__ = ["ChatClientLike", "ToolSet", "build_toolset", "few_shot_messages", "run_scenario"]

log = structlog.get_logger("harness.loop")


class ChatClientLike(Protocol):
    """What the loop needs from a client (see `harness.client.ChatClient`)."""

    async def chat(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], sampling: Sampling, *, tool_choice: str | None = "auto"
    ) -> Reply: ...


@dataclass
class _Offered:
    name: str
    schema: dict[str, Any]
    """The OpenAI `tools` entry."""
    parameters: dict[str, Any]
    run: Any
    """callable(world, arguments, nth_call) -> result; raises ToolError."""
    validator: Any = None
    """A jsonschema validator of `parameters`; built once, on the first call that needs it."""

    def schema_errors(self, arguments: dict[str, Any]) -> list[str]:
        if self.validator is None:
            # imported here: jsonschema (attrs classes made at import) costs 50 ms before the first request
            from jsonschema import Draft202012Validator

            self.validator = Draft202012Validator(self.parameters)
        return _schema_errors(self.validator, arguments)


_REGISTRY_OFFERS: dict[tuple[MockTool, bool], _Offered] = {}
"""Registry tools as offered, per (tool, strip_descriptions): their schemas and validators are built
once per process, not once per run (pydantic's JSON Schema generation is the cost)."""


def _registry_offer(name: str, strip: bool) -> _Offered:
    tool = registry[name]
    offer = _REGISTRY_OFFERS.get((tool, strip))
    if offer is None:
        offer = _Offered(name=name, schema=tool.openai_schema(strip_descriptions=strip), parameters=tool.parameters(),
                         run=_registry_runner(name))
        _REGISTRY_OFFERS[(tool, strip)] = offer
    return offer


@dataclass
class ToolSet:
    """The tools offered in one run: their schemas for the request and how to execute them."""

    tools: dict[str, _Offered] = field(default_factory=dict)
    result_hook: Any = None
    """Optional callable(tool_name, result) -> result, for difficulty knobs that pad outputs."""

    @property
    def schemas(self) -> list[dict[str, Any]]:
        return [t.schema for t in self.tools.values()]

    def parameters(self, name: str) -> dict[str, Any] | None:
        tool = self.tools.get(name)
        return tool.parameters if tool else None


def _inline_runner(tool: InlineTool) -> Any:
    from harness.scoring import match_value

    def run(world: World, arguments: dict[str, Any], nth: int) -> Any:
        for case in tool.cases:
            if all(match_value(m, *([arguments[k]] if k in arguments else []))[0] is Outcome.OK for k, m in case.when.items()):
                if case.error is not None:
                    raise ToolError(case.error)
                return case.result
        if tool.results:
            return tool.results[min(nth, len(tool.results)) - 1]
        return tool.result

    return run


def _registry_runner(name: str) -> Any:
    def run(world: World, arguments: dict[str, Any], nth: int) -> Any:
        return run_tool(registry[name], world, arguments)

    return run


def build_toolset(scenario: Scenario, difficulty: Difficulty | None = None) -> ToolSet:
    """The tools a run offers: the scenario's registry and inline tools, as `knobs.harden` left them.

    A `difficulty` given here, or the scenario's own, is applied first (`knobs.harden`, which does
    nothing more to a scenario it already hardened).
    """
    if difficulty is not None or scenario.difficulty != Difficulty():
        scenario = harden(scenario, difficulty)
    strip = scenario.difficulty.strip_descriptions
    toolset = ToolSet()
    for name in scenario.tools:
        # shared between runs: nothing downstream changes an offered schema
        toolset.tools[name] = _registry_offer(name, strip)
    for inline in scenario.inline_tools:
        params = json.loads(json.dumps(inline.parameters))
        shown = json.loads(json.dumps(params))
        if strip:
            for prop in shown.get("properties", {}).values():
                if isinstance(prop, dict):
                    prop.pop("description", None)
        toolset.tools[inline.name] = _Offered(
            name=inline.name,
            schema={"type": "function", "function": {"name": inline.name, "description": inline.description, "parameters": shown}},
            parameters=params,
            run=_inline_runner(inline),
        )
    if scenario.difficulty.long_outputs:
        n = scenario.difficulty.long_outputs
        toolset.result_hook = lambda tool_name, result: pad_result(result, n, tool_name)
    return toolset


def few_shot_messages(few_shot: list[FewShotMessage]) -> list[dict[str, Any]]:
    """Turn a scenario's few-shot examples into OpenAI messages, with ids linking calls to results."""
    messages: list[dict[str, Any]] = []
    pending: list[tuple[str, str]] = []  # (id, name) of calls not yet answered
    counter = 0
    for msg in few_shot:
        if msg.role == "assistant" and msg.tool_calls:
            calls = []
            for call in msg.tool_calls:
                counter += 1
                call_id = f"fs_{counter}"
                pending.append((call_id, call.name))
                calls.append(
                    {"id": call_id, "type": "function", "function": {"name": call.name, "arguments": json.dumps(call.arguments)}}
                )
            messages.append({"role": "assistant", "content": msg.content or "", "tool_calls": calls})
        elif msg.role == "tool":
            index = next((i for i, (_, name) in enumerate(pending) if msg.name in (None, name)), 0 if pending else None)
            call_id, name = pending.pop(index) if index is not None else (f"fs_{counter}", msg.name or "tool")
            messages.append({"role": "tool", "tool_call_id": call_id, "name": name, "content": msg.content or ""})
        else:
            messages.append({"role": msg.role, "content": msg.content or ""})
    return messages


def _assistant_message(reply: Reply, calls: list[ToolCall]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.content or ""}
    if calls:
        wire = []
        for call in calls:
            # a call whose arguments did not parse goes back as "{}": some servers' templates
            # refuse to re-render invalid JSON, which would turn one model error into an infra error
            args = json.dumps(call.arguments) if call.arguments is not None else "{}"
            wire.append({"id": call.id, "type": "function", "function": {"name": call.name, "arguments": args}})
        message["tool_calls"] = wire
    return message


def _schema_errors(validator: Any, arguments: dict[str, Any]) -> list[str]:
    out = []
    for err in sorted(validator.iter_errors(arguments), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in err.absolute_path) or "(arguments)"
        out.append(f"{where}: {err.message}")
    return out


class _Executor:
    """Runs calls on the mock world, recording each before it runs."""

    def __init__(self, scenario: Scenario, toolset: ToolSet, world: World):
        self.scenario = scenario
        self.toolset = toolset
        self.world = world
        self.calls_per_tool: Counter[str] = Counter()
        self.faults = {(f.tool, f.on_call): f for f in scenario.faults}

    def execute(self, call: ToolCall, step: int, turn: int) -> ToolExecution:
        offered = self.toolset.tools.get(call.name)
        record = ToolExecution(step=step, turn=turn, call=call, offered=offered is not None)
        if offered is None:
            record.error = f"unknown tool {call.name!r}; available tools: {', '.join(self.toolset.tools)}"
            return record
        if call.arguments is None:
            why = "were cut off (truncated)" if call.truncated else f"are not a valid JSON object ({call.parse_error})"
            record.error = f"the arguments for {call.name} {why}"
            return record
        errors = offered.schema_errors(call.arguments)
        record.schema_valid = not errors
        record.schema_errors = errors
        if errors:
            record.error = f"invalid arguments for {call.name}: " + "; ".join(errors)
            return record
        self.calls_per_tool[call.name] += 1
        nth = self.calls_per_tool[call.name]
        fault = self.faults.get((call.name, nth))
        if fault is not None:
            record.error = fault.error
            record.injected_fault = True
            return record
        try:
            result = offered.run(self.world, call.arguments, nth)
        except ToolError as exc:
            record.executed = True
            record.error = str(exc)
            return record
        if self.toolset.result_hook is not None:
            result = self.toolset.result_hook(call.name, result)
        record.executed = True
        record.result = result
        return record


def _tool_message(execution: ToolExecution) -> dict[str, Any]:
    content = json.dumps({"error": execution.error}) if execution.error is not None else json.dumps(execution.result, default=str)
    return {"role": "tool", "tool_call_id": execution.call.id, "name": execution.call.name, "content": content}


async def run_scenario(
    scenario: Scenario,
    client: ChatClientLike,
    *,
    target: str,
    sampling: Sampling | None = None,
    epoch: int = 0,
    difficulty: Difficulty | None = None,
    tool_choice: str | None = "auto",
) -> Trajectory:
    """Run one scenario to its end (or to the first fatal failure) and return the full trajectory."""
    sampling = sampling or Sampling()
    # every knob is applied here, once, as a transform of the scenario; the loop below knows none of them
    scenario = harden(scenario, difficulty)
    toolset = build_toolset(scenario)
    world = World(scenario.world)
    executor = _Executor(scenario, toolset, world)
    bound = log.bind(scenario=scenario.id, target=target, epoch=epoch)

    # an empty system prompt sends none (BFCL's FC mode sends none; an empty one still shifts templates)
    messages: list[dict[str, Any]] = [{"role": "system", "content": scenario.system}] if scenario.system else []
    messages += few_shot_messages(scenario.few_shot)

    trajectory = Trajectory(
        scenario_id=scenario.id,
        target=target,
        epoch=epoch,
        offered_tools=list(toolset.tools),
        world_before=scenario.world,  # World worked on its own copy: the scenario's stays as given
        started_at=datetime.now(timezone.utc),
    )
    started = time.perf_counter()
    step_index = 0
    for turn_no, turn in enumerate(scenario.turns, start=1):
        messages.append({"role": "user", "content": turn.user})
        cap = turn.max_steps or scenario.max_steps
        answered = False
        for _ in range(cap):
            reply = await client.chat(messages, toolset.schemas, sampling, tool_choice=tool_choice)
            step = Step(index=step_index, turn=turn_no, reply=reply)
            trajectory.steps.append(step)
            step_index += 1
            structured = [c for c in reply.tool_calls if c.source == "tool_calls"]
            bound.debug(  # every step is in the record; the log has it with --verbose
                "step.done",
                turn=turn_no,
                step=step.index,
                outcome=str(reply.outcome),
                calls=[c.name for c in reply.tool_calls],
                latency_ms=round(reply.latency_ms or 0),
            )
            if reply.outcome in (Outcome.INFRA_ERROR, Outcome.SERVER_PARSE_ERROR):
                trajectory.outcome = reply.outcome
                trajectory.stopped_at_turn = turn_no
                break
            if not structured:
                # a text answer (leaked text calls included: a real client would not run them)
                messages.append(_assistant_message(reply, []))
                trajectory.final_answer = reply.content
                answered = True
                break
            messages.append(_assistant_message(reply, structured))
            for call in structured:
                execution = executor.execute(call, step.index, turn_no)
                step.executions.append(execution)
                messages.append(_tool_message(execution))
        if trajectory.outcome is not Outcome.OK:
            break
        if not answered:
            trajectory.outcome = Outcome.LOOP
            trajectory.stopped_at_turn = turn_no
            bound.warning("scenario.loop", turn=turn_no, cap=cap)
            break
    trajectory.messages = messages
    after = world.release()
    # an untouched world is stored as the one it started from: a record holds one copy of it, not two
    trajectory.world_after = trajectory.world_before if after == trajectory.world_before else after
    trajectory.duration_ms = (time.perf_counter() - started) * 1000
    return trajectory
