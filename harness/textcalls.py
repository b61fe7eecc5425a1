"""Tool calls a model wrote as plain text in `content` (leaked calls), in the formats servers' own parsers accept.

One linear pass finds every balanced `{...}` / `[...]` span (double-quoted strings respected); only
spans near the top of the bracket tree are parsed, so a 200 KB answer costs a few passes over it,
never one per bracket. Pure functions, no I/O; nothing here raises on any text.
"""

from __future__ import annotations

import ast
import bisect
import re
from typing import Any

from harness.safejson import load_json, sanitize
from harness.trajectory import ToolCall

__all__ = ["recover_text_calls"]

# bracket levels below the outermost at which a span that did not parse is still tried
_TRY_DEPTH = 3
# longest text handed to ast.parse (python-style calls), and to the lenient dict parsers; real calls are far shorter
_MAX_CODE = 100_000
_MAX_LENIENT = 20_000
# how far around a bare JSON call the prose check looks
_WINDOW = 200

_THINK = re.compile(r"<think>.*?(?:</think>|$)", re.DOTALL | re.IGNORECASE)
_SCAN = re.compile(r'[\[\]{}"]')
# the rest of a double-quoted string; possessive, so a string that never closes costs one pass
_STRING_REST = re.compile(r'[^"\\\n]*+(?:\\.[^"\\\n]*+)*+"')
_ALNUM = re.compile(r"[^\W_]")
_QUOTES = {"`": "`", "'": "'", "‘": "’", "“": "”"}

_NAME_KEYS = ("name", "tool_name", "function")
_ARG_KEYS = ("arguments", "parameters")

_OPEN_TAG = re.compile(r"<tool_call>", re.IGNORECASE)
_CLOSE_TAG = re.compile(r"</tool_call>", re.IGNORECASE)
_PARTIAL_NAME = re.compile(r'"name"\s*:\s*"([^"\\]+)"')
_PYTHON_TAG = "<|python_tag|>"

# formats where a marker names the tool and the JSON that follows is the arguments alone
_NAMED_ARGS = [
    # mistral (tokenizer v11+, magistral, devstral): [TOOL_CALLS]name[CALL_ID]id[ARGS]{...}, or [TOOL_CALLS]name{...}
    re.compile(r"\[TOOL_CALLS\]\s*([A-Za-z_][\w.\-]*)\s*(?:\[CALL_ID\]\s*[\w\-]+\s*)?(?:\[ARGS\])?\s*(?=\{)"),
    # functionary v3.1 and llama 3.1's custom format: <function=name>{...}</function>
    re.compile(r"<function=([\w.\-]+)>\s*(?=\{)"),
    # functionary v3.2: >>>name\n{...}
    re.compile(r"(?:^|\n)>>>\s*(?!all\b)([\w.\-]+)\s*\n\s*(?=\{)"),
    # deepseek v3 / r1: <｜tool▁sep｜>name\n```json\n{...}
    re.compile(r"<｜tool▁sep｜>\s*([\w.\-]+)\s*(?:```(?:json)?)?\s*(?=\{)"),
    # deepseek v3.1: <｜tool▁call▁begin｜>name<｜tool▁sep｜>{...}
    re.compile(r"<｜tool▁call▁begin｜>\s*([\w.\-]+)\s*<｜tool▁sep｜>\s*(?=\{)"),
    # kimi k2: <|tool_call_begin|>functions.name:0<|tool_call_argument_begin|>{...}
    re.compile(r"<\|tool_call_begin\|>\s*(?:functions\.)?([\w\-]+(?:\.[\w\-]+)*?)(?::\d+)?\s*<\|tool_call_argument_begin\|>\s*(?=\{)"),
    # gpt-oss harmony: to=functions.name <|constrain|>json<|message|>{...}
    re.compile(r"to=functions\.([\w.\-]+)[^\n]{0,120}?<\|message\|>\s*(?=\{)"),
]

# python-style calls: a marker, then code
_FENCE = re.compile(r"```[ \t]*([\w\-]*)[ \t]*\n?")
_CODE_FENCES = {"tool_code", "tool_call", "tool_calls"}
_CALL_START = re.compile(r"[A-Za-z_][\w.]*\(")
_LFM_OPEN, _LFM_CLOSE = "<|tool_call_start|>", "<|tool_call_end|>"

# qwen3-coder / seed-oss XML, and GLM 4.5's key-value pairs
_XML_FUNCTION = re.compile(r"<function=([\w.\-]+)>|</function>")
_XML_PARAMETER = re.compile(r"<parameter=([\w.\-]+)>|</parameter>")
_GLM_CALL = re.compile(r"<tool_call>\s*([\w.\-]+)\s*(?=<arg_key>)|</tool_call>")
_GLM_PAIR = re.compile(r"<arg_key>\s*([^<]*?)\s*</arg_key>\s*<arg_value>|</arg_value>")
# functiongemma: <start_function_call>call:name{city:<escape>Paris<escape>,days:3}<end_function_call>
_FG_CALL = re.compile(r"<start_function_call>\s*call:([\w.\-]+)\s*\{|<end_function_call>")
_FG_ARG = re.compile(r"\s*([\w.\-]+)\s*:\s*(?:<escape>(.*?)<escape>|([^,<]*))\s*(?:,|$)", re.DOTALL)


def recover_text_calls(content: str | None, *, cut_off: bool = False) -> list[ToolCall]:
    """Tool calls the model wrote as plain text in `content`, as `ToolCall(source="text")`.

    Recognised (what llama.cpp's chat parsers, Ollama's and vLLM's hermes, llama3_json, mistral and
    pythonic parsers accept, and a few more): JSON objects with a `name` (or `tool_name`) and
    `arguments` or `parameters` (an object, or a JSON string of one), alone, in a list, one per
    line or `;`-separated, nested in the OpenAI shape, inside `<tool_call>` tags, ```json fences,
    after `<|python_tag|>`, `functools` or `[TOOL_CALLS]`; single-quoted (Python) dicts and trailing
    commas; tool name before JSON arguments (mistral `[TOOL_CALLS]f[ARGS]{...}`, `<function=f>{...}`,
    functionary `>>>f`, DeepSeek, Kimi K2, gpt-oss); Qwen's `<function=f><parameter=p>` and GLM's
    `<arg_key>` XML; FunctionGemma's `<start_function_call>call:f{x:<escape>a<escape>}`; python calls `[f(x=1)]` ending the reply, after `<|python_tag|>`, in Gemma's
    ```tool_code fence or LFM2's `<|tool_call_start|>`, or making up the whole reply.

    Not a call: other JSON, a tool definition, a call quoted inline in a sentence (in backticks or
    quotes, or with prose on both sides), or one inside `<think>`. With `cut_off`, an unclosed
    `<tool_call>` whose JSON stops early becomes one truncated call.
    """
    if not isinstance(content, str) or not content:
        return []
    content = sanitize(content)
    # a call the model only thought about (reasoning left inline in content) is not a call
    text = _THINK.sub("", content)
    spans = _Spans(text)
    found = _named_args_calls(text, spans)
    if not found:
        found = _json_calls(text, spans)
    if not found:
        found = _xml_calls(text) or _glm_calls(text) or _functiongemma_calls(text)
    if not found:
        found = _pythonic_calls(text, spans)
    calls = [
        ToolCall(id=f"call_{n}", name=name, raw_arguments=args, arguments=args, source="text")
        for n, (name, args) in enumerate(found)
    ]
    if not calls and cut_off:
        partial = _truncated_tagged_call(text)
        if partial is not None:
            calls.append(partial)
    return calls


# --- the bracket tree -------------------------------------------------------------------------


class _Spans:
    """Every balanced bracket span of a text, with its depth, found in one pass."""

    def __init__(self, text: str):
        self.text = text
        self.spans: list[tuple[int, int, int]] = []
        """(start, end exclusive, depth), by start."""
        self.end_at: dict[int, int] = {}
        """start -> end of the span opening there."""
        self.start_of: dict[int, int] = {}
        """end -> start of the span closing there."""
        self.newlines = [m.start() for m in re.finditer("\n", text)]
        pairs = _match_brackets(text)
        pairs.sort()
        ends: list[int] = []
        for start, end in pairs:
            while ends and ends[-1] <= start:
                ends.pop()
            self.spans.append((start, end, len(ends)))
            ends.append(end)
            self.end_at[start] = end
            self.start_of[end] = start

    def line_bounds(self, pos: int) -> tuple[int, int]:
        k = bisect.bisect_left(self.newlines, pos)
        start = self.newlines[k - 1] + 1 if k > 0 else 0
        end = self.newlines[k] if k < len(self.newlines) else len(self.text)
        return start, end


def _match_brackets(text: str) -> list[tuple[int, int]]:
    pairs: list[tuple[int, int]] = []
    stack: list[tuple[str, int]] = []
    open_count = {"{": 0, "[": 0}
    pos, n = 0, len(text)
    search = _SCAN.search
    while pos < n:
        m = search(text, pos)
        if m is None:
            break
        i = m.start()
        ch = text[i]
        if ch == '"':
            rest = _STRING_REST.match(text, i + 1)
            if rest is not None:
                pos = rest.end()
            else:
                # a string that never closes swallows the rest of its line (JSON strings hold no newline)
                nl = text.find("\n", i)
                pos = n if nl < 0 else nl
            continue
        pos = i + 1
        if ch in "{[":
            stack.append((ch, i))
            open_count[ch] += 1
            continue
        want = "{" if ch == "}" else "["
        if not open_count[want]:
            continue  # a stray closer: checked in O(1), so a run of them stays linear
        while True:
            kind, start = stack.pop()
            open_count[kind] -= 1
            if kind == want:
                break
        pairs.append((start, i + 1))
    return pairs


# --- JSON calls -------------------------------------------------------------------------------


def _json_calls(text: str, spans: _Spans) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    skip_until = 0
    last_end = 0
    for start, end, depth in spans.spans:
        if start < skip_until or depth > _TRY_DEPTH:
            continue
        value = _span_value(text, start, end)
        if value is _NAMELESS:
            # no call can be in here, nor in anything inside it
            skip_until = end
            continue
        if value is _NOTHING:
            continue  # inner spans are tried in turn
        # parsed: its insides are known now, whatever they hold
        skip_until = end
        found = _calls_in(value)
        if found and not _mentioned_in_prose(text, spans, start, end, last_end):
            out += found
            last_end = end
    return out


_NOTHING: Any = object()
_NAMELESS: Any = object()


def _span_value(text: str, start: int, end: int) -> Any:
    """The span parsed; `_NAMELESS` when it holds no key a call needs, `_NOTHING` when it does not parse."""
    span = text[start:end]
    if "name" not in span and "function" not in span:
        return _NAMELESS
    return _parse_span(span)


def _parse_span(span: str) -> Any:
    try:
        return load_json(span)
    except ValueError:
        pass
    if len(span) > _MAX_LENIENT or "name" not in span:
        return _NOTHING
    # what models write and servers' lenient parsers take: trailing commas, python dicts
    fixed = _TRAILING_COMMA.sub(lambda m: m.group(1) or "", span)
    if fixed != span:
        try:
            return load_json(fixed)
        except ValueError:
            pass
    if "'" in span:
        value = _literal(span)
        if isinstance(value, (dict, list)):
            return value
    return _NOTHING


_TRAILING_COMMA = re.compile(r'("[^"\\]*+(?:\\.[^"\\]*+)*+")|,\s*+(?=[}\]])')


def _literal(code: str) -> Any:
    """A python literal as JSON-like data, or `_NOTHING`."""
    try:
        value = ast.literal_eval(code)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _NOTHING
    return _jsonable(value)


def _jsonable(value: Any, depth: int = 0) -> Any:
    if depth > 64:
        return _NOTHING
    if value is None or isinstance(value, (str, bool, int, float)):
        return sanitize(value)
    if isinstance(value, (list, tuple)):
        items = [_jsonable(v, depth + 1) for v in value]
        return _NOTHING if any(v is _NOTHING for v in items) else items
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            v = _jsonable(v, depth + 1)
            if not isinstance(k, str) or v is _NOTHING:
                return _NOTHING
            out[sanitize(k)] = v
        return out
    return _NOTHING  # sets, bytes, complex numbers: not JSON


def _calls_in(value: Any, depth: int = 0) -> list[tuple[str, dict[str, Any]]]:
    """Every call-shaped object in a parsed value, outermost first (a call's own arguments are not looked into)."""
    shape = _call_shape(value)
    if shape is not None:
        return [shape]
    if depth > 64:
        return []
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    return [c for item in items for c in _calls_in(item, depth + 1)]


def _call_shape(value: Any) -> tuple[str, dict[str, Any]] | None:
    if not isinstance(value, dict):
        return None
    name = next((value[k] for k in _NAME_KEYS if isinstance(value.get(k), str)), None)
    args = next((value[k] for k in _ARG_KEYS if k in value), None)
    if isinstance(args, str):
        # arguments sent as a JSON string, as the OpenAI wire format has them
        try:
            args = load_json(args)
        except ValueError:
            return None
    if isinstance(name, str) and name.strip() and isinstance(args, dict) and not _is_schema(args):
        return name.strip(), args
    return None


def _is_schema(args: dict[str, Any]) -> bool:
    # a tool *definition* quoted in an answer (`parameters` holds a JSON Schema) is not a call
    return args.get("type") == "object" and isinstance(args.get("properties"), dict)


def _mentioned_in_prose(text: str, spans: _Spans, start: int, end: int, last_end: int) -> bool:
    """Whether JSON at text[start:end] is quoted inline or sits mid-sentence: shown, not called."""
    line_start, line_end = spans.line_bounds(start)
    before = text[max(line_start, last_end, start - _WINDOW):start]
    after = text[end:min(line_end, end + _WINDOW)]
    tight_before, tight_after = before.rstrip(), after.lstrip()
    if tight_before and tight_before[-1] in _QUOTES and tight_after.startswith(_QUOTES[tight_before[-1]]):
        if tight_before[-1] != "`" or not tight_before.endswith("```"):
            # `{...}` or '{...}' with words around it on the line
            return bool(_ALNUM.search(tight_before[:-1]) or _ALNUM.search(tight_after[1:]))
    prose_before = bool(_ALNUM.search(before)) and not tight_before.endswith((">", "]", "functools", "```json", "```"))
    prose_after = bool(_ALNUM.search(after)) and not tight_after.startswith(("<", "```"))
    return prose_before and prose_after


# --- the tool name outside, the arguments as JSON -------------------------------------------------


def _named_args_calls(text: str, spans: _Spans) -> list[tuple[str, dict[str, Any]]]:
    if not any(marker in text for marker in ("[TOOL_CALLS]", "<function=", ">>>", "tool▁", "<|tool_call_begin|>", "to=functions.")):
        return []
    found: list[tuple[int, str, dict[str, Any]]] = []
    for pattern in _NAMED_ARGS:
        for m in pattern.finditer(text):
            start = m.end()
            end = spans.end_at.get(start)
            if end is None:
                continue
            value = _parse_span(text[start:end])
            if isinstance(value, dict):
                found.append((start, m.group(1), value))
    found.sort(key=lambda f: f[0])
    return [(name, args) for _, name, args in found]


# --- XML calls ----------------------------------------------------------------------------------


def _tag_bodies(text: str, tokens: re.Pattern[str]) -> list[tuple[str, str]]:
    """(open tag's group 1, body) for each open tag that a close tag follows; one pass over the text."""
    out: list[tuple[str, str]] = []
    opened: re.Match[str] | None = None
    for m in tokens.finditer(text):
        if m.group(1) is not None:
            opened = m
        elif opened is not None:
            out.append((opened.group(1), text[opened.end():m.start()]))
            opened = None
    return out


def _xml_value(text: str) -> Any:
    text = text.strip()
    try:
        return load_json(text)
    except ValueError:
        return text


def _xml_calls(text: str) -> list[tuple[str, dict[str, Any]]]:
    if "<function=" not in text:
        return []
    return [
        (name, {param: _xml_value(value) for param, value in _tag_bodies(body, _XML_PARAMETER)})
        for name, body in _tag_bodies(text, _XML_FUNCTION)
    ]


def _glm_calls(text: str) -> list[tuple[str, dict[str, Any]]]:
    if "<arg_key>" not in text:
        return []
    return [
        (name, {key: _xml_value(value) for key, value in _tag_bodies(body, _GLM_PAIR)})
        for name, body in _tag_bodies(text, _GLM_CALL)
    ]


def _functiongemma_calls(text: str) -> list[tuple[str, dict[str, Any]]]:
    if "<start_function_call>" not in text:
        return []
    out: list[tuple[str, dict[str, Any]]] = []
    for name, body in _tag_bodies(text, _FG_CALL):
        body = body.rstrip()
        if not body.endswith("}"):
            return []
        body, args, pos = body[:-1], {}, 0
        while pos < len(body):
            m = _FG_ARG.match(body, pos)
            if m is None or m.end() == pos:
                return []  # not the key:value list this format is
            escaped, bare = m.group(2), m.group(3)
            args[m.group(1)] = escaped if escaped is not None else _xml_value(bare)
            pos = m.end()
        out.append((name, args))
    return out


# --- python-style calls ---------------------------------------------------------------------------


def _pythonic_calls(text: str, spans: _Spans) -> list[tuple[str, dict[str, Any]]]:
    stripped = text.strip()
    if _PYTHON_TAG in text:
        return _pythonic(text.split(_PYTHON_TAG, 1)[1])
    if _LFM_OPEN in text:
        body = text.split(_LFM_OPEN, 1)[1].split(_LFM_CLOSE, 1)[0]
        return _pythonic(body)
    if "```" in text:
        fences = list(_FENCE.finditer(text))
        for opening, closing in zip(fences[::2], fences[1::2]):
            if opening.group(1).lower() in _CODE_FENCES:
                found = _pythonic(text[opening.end():closing.start()])
                if found:
                    return found
    if not stripped.endswith(("]", ")")):
        return []
    # a `[f(x=1), ...]` list that ends the reply, or a reply that is nothing but calls
    end = len(text.rstrip())
    candidates = []
    if stripped.endswith("]") and end in spans.start_of:
        candidates.append(spans.start_of[end])
    last_line = stripped.rsplit("\n", 1)[-1].lstrip()
    if last_line.startswith("["):
        candidates.append(end - len(last_line))
    for start in dict.fromkeys(candidates):
        found = _pythonic(text[start:end], list_only=True)
        if found:
            return found
    if len(stripped) > _MAX_LENIENT or not _CALL_START.match(stripped):
        return []
    return _pythonic(stripped, calls_only=True)


def _pythonic(code: str, *, list_only: bool = False, calls_only: bool = False) -> list[tuple[str, dict[str, Any]]]:
    """Calls written as python: `[f(x=1), g(y=2)]`, `f(x=1); g(y=2)`, `print(f(x=1))`, `f.call(x=1)`."""
    code = code.strip()
    if not code or len(code) > _MAX_CODE:
        return []
    try:
        tree = ast.parse(code, mode="exec")
    except (SyntaxError, ValueError, MemoryError, RecursionError, OverflowError):
        return []
    if not tree.body or not all(isinstance(stmt, ast.Expr) for stmt in tree.body):
        return []
    exprs = [stmt.value for stmt in tree.body]  # type: ignore[attr-defined]
    if len(exprs) == 1 and isinstance(exprs[0], ast.List):
        nodes = exprs[0].elts
    elif list_only:
        return []
    else:
        nodes = exprs
    out: list[tuple[str, dict[str, Any]]] = []
    for node in nodes:
        call = _python_call(node)
        if call is None:
            return []
        out.append(call)
    if calls_only and not out:
        return []
    return out


def _python_call(node: ast.expr) -> tuple[str, dict[str, Any]] | None:
    # gemma wraps its call in print(...)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print" \
            and len(node.args) == 1 and not node.keywords and isinstance(node.args[0], ast.Call):
        node = node.args[0]
    if not isinstance(node, ast.Call) or node.args:
        return None
    func = node.func
    # llama 3.1 writes `brave_search.call(query="...")`
    if isinstance(func, ast.Attribute) and func.attr == "call" and isinstance(func.value, ast.Name):
        name = func.value.id
    elif isinstance(func, ast.Name):
        name = func.id
    else:
        return None
    args: dict[str, Any] = {}
    for kw in node.keywords:
        if kw.arg is None:
            return None
        try:
            value = _jsonable(ast.literal_eval(kw.value))
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return None
        if value is _NOTHING:
            return None
        args[kw.arg] = value
    return name, args


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
