"""Turn what OpenAI-compatible servers really return into one `Reply`: pure functions, no I/O.

Servers disagree on details (arguments as a string or an object, ids missing, `finish_reason`
that lies, calls leaked into `content`, timings in their own fields); this module absorbs that.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

from harness.outcomes import Outcome
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
    the server reports a `finish_reason` other than `length`.
    """
    if not isinstance(body, dict):
        return Reply(outcome=Outcome.INFRA_ERROR, error=f"reply is not a JSON object: {_clip(repr(body))}")
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
    calls = normalize_tool_calls(_wire_calls(message), cut_off=hit_limit)
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
        arguments, error, truncated = parse_arguments(raw, cut_off=cut_off)
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
    tools). Anything that does not parse into an object gets a `parse_error`; when `cut_off` and
    the JSON stops before its end, the call is `truncated` instead.
    """
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        if cut_off and isinstance(raw, str):
            return None, "arguments cut off by max_tokens before they began", True
        return {}, None, False
    if isinstance(raw, dict):
        return raw, None, False
    if not isinstance(raw, str):
        return None, f"arguments are a JSON {_json_type(raw)}, not an object", False
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        if cut_off and _stops_early(raw, exc):
            return None, f"arguments cut off by max_tokens: {exc.msg} at char {exc.pos}", True
        return None, f"arguments are not valid JSON: {exc.msg} at char {exc.pos}", False
    if isinstance(value, dict):
        return value, None, False
    if isinstance(value, str):
        return None, "arguments are a JSON string, not an object (double-encoded JSON?)", False
    return None, f"arguments are a JSON {_json_type(value)}, not an object", False


def _stops_early(text: str, exc: json.JSONDecodeError) -> bool:
    # partial JSON fails at its very end, or inside a string that never closes
    return exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string")


_JSON_TYPES = {list: "array", dict: "object", bool: "boolean", int: "number", float: "number", str: "string",
               type(None): "null"}


def _json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


# --- calls leaked into plain text -------------------------------------------------------------

_PYTHON_TAG = "<|python_tag|>"
_THINK = re.compile(r"<think>.*?(</think>|$)", re.DOTALL | re.IGNORECASE)
_XML_FUNCTION = re.compile(r"<function=([\w.\-]+)>(.*?)</function>", re.DOTALL)
_XML_PARAMETER = re.compile(r"<parameter=([\w.\-]+)>\n?(.*?)\n?</parameter>", re.DOTALL)
_OPEN_TAG = re.compile(r"<tool_call>", re.IGNORECASE)
_CLOSE_TAG = re.compile(r"</tool_call>", re.IGNORECASE)
_PARTIAL_NAME = re.compile(r'"name"\s*:\s*"([^"\\]+)"')


def recover_text_calls(content: str | None, *, cut_off: bool = False) -> list[ToolCall]:
    """Tool calls the model wrote as plain text in `content`, as `ToolCall(source="text")`.

    Recognised: JSON objects with a string `name` and an object `arguments` or `parameters`,
    alone, in a list, inside `<tool_call>` tags, ```json fences, after `<|python_tag|>`,
    `functools` or `[TOOL_CALLS]`; Qwen's `<function=name><parameter=p>` XML; pythonic
    `[get_weather(city="Paris")]`. Other JSON in an answer is not a call. With `cut_off`, an
    unclosed `<tool_call>` whose JSON stops early becomes one truncated call.
    """
    if not content:
        return []
    # a call the model only thought about (reasoning left inline in content) is not a call
    content = _THINK.sub("", content)
    found: list[tuple[str, Any]] = []  # (name, arguments object)
    found += _json_calls(content)
    if not found:
        found += _xml_calls(content)
    if not found:
        found += _pythonic_calls(content)
    calls = [
        ToolCall(id=f"call_{n}", name=name, raw_arguments=args, arguments=args, source="text")
        for n, (name, args) in enumerate(found)
    ]
    if not calls and cut_off:
        partial = _truncated_tagged_call(content)
        if partial is not None:
            calls.append(partial)
    return calls


def _call_shape(value: Any) -> tuple[str, dict[str, Any]] | None:
    if not isinstance(value, dict):
        return None
    name = value.get("name")
    args = value.get("arguments", value.get("parameters"))
    if isinstance(name, str) and name.strip() and isinstance(args, dict) and not _is_schema(args):
        return name.strip(), args
    return None


def _is_schema(args: dict[str, Any]) -> bool:
    # a tool *definition* quoted in an answer (`parameters` holds a JSON Schema) is not a call
    return args.get("type") == "object" and isinstance(args.get("properties"), dict)


def _json_calls(content: str) -> list[tuple[str, Any]]:
    decoder = json.JSONDecoder()
    out: list[tuple[str, Any]] = []
    i = 0
    while i < len(content):
        if content[i] not in "{[":
            i += 1
            continue
        try:
            value, end = decoder.raw_decode(content, i)
        except json.JSONDecodeError:
            i += 1
            continue
        items = value if isinstance(value, list) else [value]
        shapes = [_call_shape(v) for v in items]
        if items and all(s is not None for s in shapes):
            out += [s for s in shapes if s is not None]
            i = end
        else:
            # not a call (or a list holding other things): look inside it for one
            i += 1
    return out


def _xml_calls(content: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for match in _XML_FUNCTION.finditer(content):
        args: dict[str, Any] = {}
        for param in _XML_PARAMETER.finditer(match.group(2)):
            text = param.group(2).strip()
            try:
                args[param.group(1)] = json.loads(text)
            except json.JSONDecodeError:
                args[param.group(1)] = text
        out.append((match.group(1), args))
    return out


def _pythonic_calls(content: str) -> list[tuple[str, Any]]:
    text = content.strip()
    if _PYTHON_TAG in text:
        return _pythonic(text.split(_PYTHON_TAG, 1)[1].strip())
    if not text.endswith("]"):
        # only a python-tagged call or a `[f(x=1), ...]` list that ends the reply is read as code
        return []
    for start in (i for i, ch in enumerate(text) if ch == "["):
        found = _pythonic(text[start:], list_only=True)
        if found:
            return found
    return []


def _pythonic(text: str, *, list_only: bool = False) -> list[tuple[str, Any]]:
    try:
        tree = ast.parse(text, mode="eval").body
    except (SyntaxError, ValueError):
        return []
    if list_only and not isinstance(tree, ast.List):
        return []
    nodes = tree.elts if isinstance(tree, ast.List) else [tree]
    out: list[tuple[str, Any]] = []
    for node in nodes:
        if not isinstance(node, ast.Call) or node.args:
            return []
        func = node.func
        # llama 3.1 writes `get_weather.call(city="Paris")`
        if isinstance(func, ast.Attribute) and func.attr == "call" and isinstance(func.value, ast.Name):
            name = func.value.id
        elif isinstance(func, ast.Name):
            name = func.id
        else:
            return []
        try:
            args = {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords if kw.arg is not None}
        except (ValueError, SyntaxError):
            return []
        out.append((name, args))
    return out


def _truncated_tagged_call(content: str) -> ToolCall | None:
    opens = list(_OPEN_TAG.finditer(content))
    if not opens or _CLOSE_TAG.search(content, opens[-1].end()):
        return None
    tail = content[opens[-1].end():].strip()
    name = _PARTIAL_NAME.search(tail)
    if name is None:
        return None
    return ToolCall(id="call_0", name=name.group(1), raw_arguments=tail, arguments=None, source="text",
                    truncated=True, parse_error="call text cut off by max_tokens")


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
