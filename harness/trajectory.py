"""What a run of one scenario against one target leaves behind: every request, reply and tool call.

The client fills `Reply`, the loop turns replies into `Step`s and tool executions, and the
scorer reads a finished `Trajectory`. Nothing here is computed: it is the record.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from harness.outcomes import Outcome

__all__ = [
    "ToolCall",
    "Usage",
    "ServerTimings",
    "Reply",
    "ToolExecution",
    "Step",
    "Trajectory",
]


class _Record(BaseModel):
    model_config = ConfigDict()


class ToolCall(_Record):
    """A tool call as the model made it, normalised across servers."""

    id: str
    """The call id (synthesised as `call_<n>` when the server sent none or a malformed one)."""
    name: str
    """The tool name the model asked for."""
    raw_arguments: str | dict[str, Any] | list[Any] | None = None
    """The arguments exactly as they came over the wire (a JSON string, or an object on some servers)."""
    arguments: dict[str, Any] | None = None
    """The parsed arguments; None when they did not parse into an object."""
    parse_error: str | None = None
    """Why the arguments did not parse, when they did not."""
    source: Literal["tool_calls", "text"] = "tool_calls"
    """`tool_calls`: a structured call; `text`: recovered from plain text in `content` (a leaked call)."""
    truncated: bool = False
    """The arguments were cut off by max_tokens (partial JSON, finish_reason `length`)."""


class Usage(_Record):
    """Token counts the server reported."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None


class ServerTimings(_Record):
    """The server's own timings, where it sends them (llama.cpp `timings`, Ollama native durations)."""

    prompt_n: int | None = None
    """Prompt tokens processed (llama.cpp)."""
    cache_n: int | None = None
    """Prompt tokens reused from the cache (llama.cpp)."""
    prompt_ms: float | None = None
    predicted_n: int | None = None
    predicted_ms: float | None = None
    prompt_per_second: float | None = None
    predicted_per_second: float | None = None
    """Generation speed in tokens per second."""
    raw: dict[str, Any] = Field(default_factory=dict)
    """Everything the server sent, unparsed."""


class Reply(_Record):
    """One model reply, normalised. Produced by the client; failures are data, not exceptions."""

    outcome: Outcome = Outcome.OK
    """`ok`, or a reply-level failure: `leaked_text_call`, `server_parse_error`, `truncated_call`,
    `malformed_arguments`, `empty_reply`, `infra_error`."""
    content: str | None = None
    """The text, with any leaked call text still in it; None when empty or whitespace."""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    """Structured calls, then any recovered from text."""
    finish_reason: str | None = None
    """As the server said (it can lie: a call with `stop`, text with `tool_calls`)."""
    request: dict[str, Any] = Field(default_factory=dict)
    """The exact request body sent. Kept in results.jsonl; `{}` in the records a run keeps for its reports
    and in those `read_results` returns unless asked for `bodies=True` (see harness.records, "Memory")."""
    response: dict[str, Any] | None = None
    """The raw reply body (or error body) as received; in memory, like `request`, only with `bodies=True`."""
    status_code: int | None = None
    """HTTP status of the final attempt, when known."""
    error: str | None = None
    """Why the reply failed, in words (for infra and server errors)."""
    latency_ms: float | None = None
    """Wall time of the successful attempt."""
    attempts: int = 1
    """Attempts made, retries for infrastructure errors included."""
    usage: Usage = Field(default_factory=Usage)
    timings: ServerTimings | None = None
    model: str | None = None
    """The model name the server reported in the reply."""
    system_fingerprint: str | None = None
    cache_hit: bool = False
    """Replayed from the response cache (`--cache DIR`) instead of asked of the server; latency and
    timings are those recorded when the reply was first asked for."""


class ToolExecution(_Record):
    """One tool call run against the mock world; recorded before the tool runs, completed after."""

    step: int
    """Index of the model step (0-based, across the scenario) whose reply made this call."""
    turn: int
    """1-based user turn."""
    call: ToolCall
    """The call as the model made it."""
    offered: bool
    """Whether the tool was offered to the model."""
    schema_valid: bool | None = None
    """Whether the parsed arguments validated against the tool's JSON Schema (None if not parsed)."""
    schema_errors: list[str] = Field(default_factory=list)
    """jsonschema's messages, each with the path of the argument."""
    executed: bool = False
    """Whether the mock function ran (it does not for unknown tools, bad JSON or schema-invalid arguments)."""
    result: Any = None
    """What the tool returned."""
    error: str | None = None
    """The error the model saw instead of a result."""
    injected_fault: bool = False
    """The error was a scenario fault, not the tool's own."""


class Step(_Record):
    """One model request and its reply, with the tool calls it made executed."""

    index: int
    """0-based, across the whole scenario."""
    turn: int
    """1-based user turn."""
    reply: Reply
    executions: list[ToolExecution] = Field(default_factory=list)


class Trajectory(_Record):
    """Everything that happened in one run of one scenario against one target."""

    scenario_id: str
    target: str
    """The target's name in this run."""
    epoch: int = 0
    steps: list[Step] = Field(default_factory=list)
    messages: list[dict[str, Any]] = Field(default_factory=list)
    """The final conversation as sent to the model (few-shot prefix included)."""
    offered_tools: list[str] = Field(default_factory=list)
    """Tool names offered, distractors included."""
    world_before: dict[str, Any] = Field(default_factory=dict)
    world_after: dict[str, Any] = Field(default_factory=dict)
    final_answer: str | None = None
    """The last text reply of the last turn."""
    outcome: Outcome = Outcome.OK
    """`ok` when the conversation ran to its end, else what stopped it (`loop`, `server_parse_error`, `infra_error`)."""
    stopped_at_turn: int | None = None
    """The 1-based turn in which the run stopped early, if it did."""
    started_at: datetime | None = None
    duration_ms: float | None = None

    def turn_steps(self, turn: int) -> list[Step]:
        return [s for s in self.steps if s.turn == turn]

    def executions(self) -> list[ToolExecution]:
        return [e for s in self.steps for e in s.executions]
