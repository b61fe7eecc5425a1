"""An in-process scripted chat client for loop and scoring tests (the HTTP fake is tests/fakeserver.py)."""

from __future__ import annotations

import copy
import json
from typing import Any

from harness.outcomes import Outcome
from harness.trajectory import Reply, ToolCall


def call(name: str, _id: str | None = None, **args: Any) -> ToolCall:
    return ToolCall(id=_id or f"call_{name}", name=name, raw_arguments=json.dumps(args), arguments=args)


def calls(*tool_calls: ToolCall) -> Reply:
    return Reply(tool_calls=list(tool_calls), finish_reason="tool_calls")


def text(content: str) -> Reply:
    return Reply(content=content, finish_reason="stop")


def leaked(name: str, **args: Any) -> Reply:
    body = json.dumps({"name": name, "arguments": args})
    return Reply(
        outcome=Outcome.LEAKED_TEXT_CALL,
        content=f"<tool_call>{body}</tool_call>",
        tool_calls=[ToolCall(id="call_0", name=name, raw_arguments=json.dumps(args), arguments=args, source="text")],
    )


def broken(name: str, raw: str, *, truncated: bool = False) -> Reply:
    return Reply(
        outcome=Outcome.TRUNCATED_CALL if truncated else Outcome.MALFORMED_ARGUMENTS,
        tool_calls=[ToolCall(id="call_x", name=name, raw_arguments=raw, arguments=None, parse_error="bad JSON", truncated=truncated)],
        finish_reason="length" if truncated else "tool_calls",
    )


def failure(outcome: Outcome, error: str = "boom") -> Reply:
    return Reply(outcome=outcome, error=error)


class ScriptedClient:
    """Returns the queued replies in order; records the messages and tools of every request."""

    def __init__(self, replies: list[Reply]):
        self.replies = list(replies)
        self.requests: list[dict[str, Any]] = []

    async def chat(self, messages, tools, sampling, *, tool_choice="auto") -> Reply:
        self.requests.append({"messages": copy.deepcopy(messages), "tools": tools, "sampling": sampling, "tool_choice": tool_choice})
        if not self.replies:
            raise AssertionError("the scenario asked for more replies than the test scripted")
        return self.replies.pop(0)

    async def aclose(self) -> None:
        pass
