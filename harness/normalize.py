"""Turn what OpenAI-compatible servers really return into one `Reply`: pure functions, no I/O.

Servers disagree on details (arguments as a string or an object, ids missing, `finish_reason`
that lies, calls leaked into `content`, timings in their own fields); this module absorbs that.
"""

from __future__ import annotations

import json
import re
from typing import Any

from harness.outcomes import Outcome
from harness.safejson import load_json, replaced_in, sanitize
from harness.textcalls import recover_text_calls
from harness.trajectory import Reply, ServerTimings, ToolCall, Usage

__all__ = [
    "normalize_reply",
    "normalize_tool_calls",
    "recover_text_calls",
    "parse_arguments",
    "clean_content",
    "parse_usage",
    "parse_timings",
    "error_message",
    "is_server_parse_error",
]

_NS_PER_MS = 1_000_000

# llama.cpp, Ollama and friends answer 500 when their tool-call parser chokes on the model's output
_SERVER_PARSE_PATTERNS = re.compile(
    r"failed to parse input"  # llama.cpp chat parser: "Failed to parse input at pos 184: ..."
    r"|failed to parse tool call"  # llama.cpp: "Failed to parse tool call arguments as JSON"
    r"|error parsing tool call"  # ollama: "error parsing tool call: raw='...', err=..."
    r"|tool call parsing failed"  # ollama model parsers (qwen3, gemma4)
    r"|failed to parse json"  # ollama qwen3 parser: "failed to parse JSON: unexpected end of JSON input"
    r"|(unable|could not|cannot) parse (the )?tool call"
    r"|invalid tool call",
    re.IGNORECASE,
)

_ID_OK = re.compile(r"^[A-Za-z0-9_.:\-]{1,256}$")


def normalize_reply(body: dict[str, Any], *, max_tokens: int | None = None) -> Reply:
    """Normalise one chat-completion body into a `Reply` with its outcome decided.

    `max_tokens` (the request's) lets a call cut off at the token limit count as truncated even when
    the server reports a `finish_reason` other than `length`. Never raises: whatever the body holds
    (lone surrogates, huge numbers, deep nesting) is made safe to record first (`harness.safejson`).
    """
    if not isinstance(body, dict):
        return Reply(outcome=Outcome.INFRA_ERROR,
                     error=f"reply is a JSON {_json_type(body)}, not an object: {_clip(repr(sanitize(body)))}")
    body = sanitize(body)
    usage = parse_usage(body)
    common: dict[str, Any] = {
        "response": body,
        "usage": usage,
        "timings": parse_timings(body),
        "model": body.get("model") if isinstance(body.get("model"), str) else None,
        "system_fingerprint": body.get("system_fingerprint") if isinstance(body.get("system_fingerprint"), str) else None,
    }
    message, finish_reason = _first_message(body)
    if message is None:
        error = error_message(body)
        if error is not None:
            outcome = Outcome.SERVER_PARSE_ERROR if is_server_parse_error(error) else Outcome.INFRA_ERROR
            return Reply(outcome=outcome, error=f"server returned an error in the reply body: {error}", **common)
        return Reply(outcome=Outcome.INFRA_ERROR, error="reply has no `choices[0].message`: not an OpenAI chat completion", **common)

    hit_limit = finish_reason == "length" or (
        max_tokens is not None and usage.completion_tokens is not None and usage.completion_tokens >= max_tokens
    )
    content = clean_content(message.get("content"))
    calls = _tool_calls(_wire_calls(message), cut_off=hit_limit)
    if calls:
        # the structured calls decide the outcome, whatever finish_reason says
        if any(c.truncated for c in calls):
            outcome = Outcome.TRUNCATED_CALL
        elif any(c.parse_error for c in calls):
            outcome = Outcome.MALFORMED_ARGUMENTS
        else:
            outcome = Outcome.OK
    else:
        calls = recover_text_calls(content, cut_off=hit_limit)
        if calls:
            outcome = Outcome.LEAKED_TEXT_CALL
        elif content is None:
            outcome = Outcome.EMPTY_REPLY
        else:
            outcome = Outcome.OK
    return Reply(outcome=outcome, content=content, tool_calls=calls, finish_reason=finish_reason, **common)


def _first_message(body: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    choices = body.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        choice = choices[0]
        finish = choice.get("finish_reason")
        finish = finish if isinstance(finish, str) else None
        message = choice.get("message")
        if isinstance(message, dict):
            return message, finish
        if isinstance(choice.get("text"), str):  # a legacy completions-style choice
            return {"content": choice["text"]}, finish
        return None, finish
    # ollama's native /api/chat shape, in case a target points there
    if isinstance(body.get("message"), dict) and "done" in body:
        reason = body.get("done_reason")
        return body["message"], reason if isinstance(reason, str) else None
    return None, None


def _wire_calls(message: dict[str, Any]) -> list[Any]:
    calls = message.get("tool_calls")
    out = list(calls) if isinstance(calls, list) else []
    legacy = message.get("function_call")
    if not out and isinstance(legacy, dict):
        # the pre-tools `function_call` field, still sent by a few servers
        out.append({"function": legacy})
    return out


def clean_content(content: Any) -> str | None:
    """The text of a message; None when absent, empty or whitespace. Content-part lists are joined."""
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
        content = "".join(parts)
    if not isinstance(content, str) or not content.strip():
        return None
    return content


def normalize_tool_calls(wire: list[Any], *, cut_off: bool = False) -> list[ToolCall]:
    """Structured `tool_calls` entries as `ToolCall`s: ids fixed up, arguments parsed (never raised on).

    `cut_off`: the reply hit the token limit, so arguments that stop mid-JSON are a truncation.
    """
    return _tool_calls(sanitize(wire), cut_off=cut_off)


def _tool_calls(wire: list[Any], *, cut_off: bool) -> list[ToolCall]:
    # wire is sanitized already
    calls: list[ToolCall] = []
    seen: set[str] = set()
    for n, entry in enumerate(wire):
        if not isinstance(entry, dict):
            calls.append(ToolCall(id=_fresh_id(n, seen), name="", raw_arguments=None,
                                  parse_error=f"tool call entry is not an object: {_clip(repr(entry))}"))
            continue
        fn = entry.get("function") if isinstance(entry.get("function"), dict) else entry
        name = fn.get("name")
        raw = fn.get("arguments", fn.get("parameters"))
        raw_id = entry.get("id")
        call_id = raw_id if isinstance(raw_id, str) and _ID_OK.match(raw_id) and raw_id not in seen else _fresh_id(n, seen)
        seen.add(call_id)
        arguments, error, truncated = _parse_arguments(raw, cut_off=cut_off)
        if not isinstance(name, str) or not name.strip():
            error = error or "the call has no tool name"
            name = name.strip() if isinstance(name, str) else ""
        calls.append(ToolCall(id=call_id, name=name, raw_arguments=_raw(raw), arguments=arguments,
                              parse_error=error, truncated=truncated))
    return calls


def _fresh_id(n: int, seen: set[str]) -> str:
    candidate, k = f"call_{n}", 0
    while candidate in seen:
        k += 1
        candidate = f"call_{n}_{k}"
    return candidate


def _raw(raw: Any) -> str | dict[str, Any] | list[Any] | None:
    if raw is None or isinstance(raw, (str, dict, list)):
        return raw
    # a number or bool where arguments belong: keep it visible as JSON text
    return json.dumps(raw)


def parse_arguments(raw: Any, *, cut_off: bool = False) -> tuple[dict[str, Any] | None, str | None, bool]:
    """Parse call arguments as sent: `(arguments, parse_error, truncated)`.

    A JSON object string or an object is fine. Missing or empty arguments mean `{}` (no-parameter
    tools). Anything that does not parse into an object gets a `parse_error`, and so do arguments
    no tool could take (an integer past 300 digits, nesting past 64 levels); when `cut_off` and
    the JSON stops before its end, the call is `truncated` instead. Never raises.
    """
    return _parse_arguments(sanitize(raw), cut_off=cut_off)


def _parse_arguments(raw: Any, *, cut_off: bool) -> tuple[dict[str, Any] | None, str | None, bool]:
    # raw is sanitized already
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        if cut_off and isinstance(raw, str):
            return None, "arguments cut off by max_tokens before they began", True
        return {}, None, False
    if isinstance(raw, dict):
        return _usable(raw)
    if not isinstance(raw, str):
        return None, f"arguments are a JSON {_json_type(raw)}, not an object", False
    try:
        value = load_json(raw)
    except json.JSONDecodeError as exc:
        if cut_off and _stops_early(raw, exc):
            return None, f"arguments cut off by max_tokens: {exc.msg} at char {exc.pos}", True
        return None, f"arguments are not valid JSON: {exc.msg} at char {exc.pos}", False
    except ValueError as exc:
        return None, f"arguments are not usable JSON: {exc}", False
    if isinstance(value, dict):
        return _usable(value)
    if isinstance(value, str):
        return None, "arguments are a JSON string, not an object (double-encoded JSON?)", False
    return None, f"arguments are a JSON {_json_type(value)}, not an object", False


def _usable(arguments: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None, bool]:
    replaced = replaced_in(arguments)
    if replaced is not None:
        return None, f"arguments hold a value no tool can take: {replaced}", False
    return arguments, None, False


def _stops_early(text: str, exc: json.JSONDecodeError) -> bool:
    # partial JSON fails at its very end, or inside a string that never closes
    return exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string")


_JSON_TYPES = {list: "array", dict: "object", bool: "boolean", int: "number", float: "number", str: "string",
               type(None): "null"}


def _json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


# --- usage and server timings -----------------------------------------------------------------


def parse_usage(body: dict[str, Any]) -> Usage:
    """Token counts from `usage`, or from Ollama's native `prompt_eval_count`/`eval_count`."""
    usage = body.get("usage")
    if isinstance(usage, dict):
        return Usage(
            prompt_tokens=_int(usage.get("prompt_tokens")),
            completion_tokens=_int(usage.get("completion_tokens")),
            total_tokens=_int(usage.get("total_tokens")),
        )
    prompt, completion = _int(body.get("prompt_eval_count")), _int(body.get("eval_count"))
    if prompt is None and completion is None:
        return Usage()
    total = (prompt or 0) + (completion or 0)
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=total)


_OLLAMA_FIELDS = ("total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration", "eval_count", "eval_duration")


def parse_timings(body: dict[str, Any]) -> ServerTimings | None:
    """llama.cpp's `timings` block, or Ollama's native nanosecond durations; None when neither is sent."""
    timings = body.get("timings")
    if isinstance(timings, dict):
        return ServerTimings(
            prompt_n=_int(timings.get("prompt_n")),
            cache_n=_int(timings.get("cache_n")),
            prompt_ms=_float(timings.get("prompt_ms")),
            predicted_n=_int(timings.get("predicted_n")),
            predicted_ms=_float(timings.get("predicted_ms")),
            prompt_per_second=_float(timings.get("prompt_per_second")),
            predicted_per_second=_float(timings.get("predicted_per_second")),
            raw=timings,
        )
    raw = {k: body[k] for k in _OLLAMA_FIELDS if k in body}
    if not raw:
        return None
    prompt_n, predicted_n = _int(raw.get("prompt_eval_count")), _int(raw.get("eval_count"))
    prompt_ms = _ms(raw.get("prompt_eval_duration"))
    predicted_ms = _ms(raw.get("eval_duration"))
    return ServerTimings(
        prompt_n=prompt_n,
        prompt_ms=prompt_ms,
        predicted_n=predicted_n,
        predicted_ms=predicted_ms,
        prompt_per_second=_rate(prompt_n, prompt_ms),
        predicted_per_second=_rate(predicted_n, predicted_ms),
        raw=raw,
    )


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _ms(ns: Any) -> float | None:
    value = _float(ns)
    return value / _NS_PER_MS if value is not None else None


def _rate(n: int | None, ms: float | None) -> float | None:
    return n / (ms / 1000) if n is not None and ms else None


# --- error bodies -----------------------------------------------------------------------------


def error_message(body: Any) -> str | None:
    """The server's error message from an error body, whatever its shape; None when there is none.

    Shapes seen: `{"error": {"message": ...}}` (OpenAI, llama.cpp, vLLM), `{"error": "..."}`
    (Ollama), `{"detail": ...}` (FastAPI), `{"message": ...}`, and Ollama's
    `{"error parsing tool call": "..."}` with the message in the key.
    """
    if isinstance(body, str):
        return body.strip() or None
    if not isinstance(body, dict):
        return None
    err = body.get("error")
    if isinstance(err, dict):
        msg = err.get("message")
        if isinstance(msg, str):
            return msg
        return json.dumps(err)
    if isinstance(err, str) and err:
        return err
    for key in ("detail", "message"):
        value = body.get(key)
        if isinstance(value, str) and value:
            return value
        if value:
            return json.dumps(value)
    for key, value in body.items():
        if isinstance(key, str) and "error" in key.lower():
            return f"{key}: {value}"
    return None


def is_server_parse_error(text: str | None) -> bool:
    """Whether an error says the server could not parse the model's tool call (a model failure)."""
    return bool(text) and _SERVER_PARSE_PATTERNS.search(text) is not None


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
