"""A scripted OpenAI-compatible server on localhost, speaking real HTTP, for any test that needs one.

    from tests.fakeserver import fake_server, tool_call_reply, text_reply  # noqa: F401 (fixture)

    async def test_it(fake_server):
        fake_server.enqueue(tool_call_reply("get_weather", {"city": "Paris"}), text_reply("18 and cloudy"))
        client = make_client(Target(name="t", base_url=fake_server.base_url, model="test-model"))
        ...
        assert fake_server.chat_requests[0]["temperature"] == 0.0

Chat completions are answered from the queue (`enqueue`), then by `responder(request_json)`, else
with HTTP 418 "nothing scripted". `GET /v1/models` lists `models`; `route()` adds or overrides any
path (`/props`, `/api/tags`, an HTML `/v1/models`). Every request is recorded in `requests`.

Faults, for the reliability tests: `Canned(trickle_s=...)` sends its body a byte at a time,
`huge_page()` is a 50 MB proxy error page, `die_after(n)` stops listening after n chat requests
(connection refused from then on), and `echo_auth = True` answers every chat request with a 401 that
quotes the API key it received, as some providers do.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator

import pytest

__all__ = [
    "Canned",
    "FakeServer",
    "Recorded",
    "completion",
    "fake_server",
    "free_port",
    "html_page",
    "huge_page",
    "leaked_call_reply",
    "parse_error_500",
    "text_reply",
    "tool_call",
    "tool_call_reply",
    "tool_calls_reply",
    "truncated_call_reply",
    "unavailable_503",
]


@dataclass
class Canned:
    """One scripted HTTP answer."""

    status: int = 200
    body: Any = None
    """JSON body (dict or list); ignored when `text` is set."""
    text: str | None = None
    """A raw body, sent as is (HTML, broken JSON, plain text)."""
    content_type: str | None = None
    """Defaults to application/json for `body`, text/plain for `text`."""
    delay_s: float = 0.0
    """Sleep this long before answering (for timeouts)."""
    drop: bool = False
    """Close the connection without sending anything."""
    trickle_s: float = 0.0
    """Send the body one byte at a time, sleeping this long between bytes (a server that never stalls
    long enough for a read timeout, but never finishes either)."""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Recorded:
    """One request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    text: str
    json: Any = None
    """The body parsed as JSON, when it was JSON."""


Reply = Canned | dict[str, Any]
Handler = Callable[[Any], Reply] | Reply


# --- body and reply builders ------------------------------------------------------------------


def completion(
    message: dict[str, Any] | None = None,
    *,
    finish_reason: str | None = "stop",
    model: str = "test-model",
    usage: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A chat-completion body around one message; `extra` adds top-level fields (`timings`, ...)."""
    body: dict[str, Any] = {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": None, **(message or {})},
                     "finish_reason": finish_reason}],
        "usage": usage if usage is not None else {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }
    body.update(extra)
    return body


def text_reply(content: str | None, *, finish_reason: str | None = "stop", **extra: Any) -> Canned:
    """A plain text answer (`content` may be None, "" or whitespace to test empty replies)."""
    return Canned(body=completion({"content": content}, finish_reason=finish_reason, **extra))


def tool_call(name: str, args: Any = None, *, id: str | None = "call_abc", as_object: bool = False,
              raw: str | None = None) -> dict[str, Any]:
    """One wire `tool_calls` entry. `raw` sends the arguments string verbatim (broken JSON);
    `as_object` sends them as an object, as some servers do; `id=None` leaves the id out."""
    arguments: Any = raw if raw is not None else (args if as_object else json.dumps(args if args is not None else {}))
    entry: dict[str, Any] = {"type": "function", "function": {"name": name, "arguments": arguments}}
    if id is not None:
        entry["id"] = id
    return entry


def tool_calls_reply(calls: list[dict[str, Any]], *, content: str | None = None,
                     finish_reason: str | None = "tool_calls", **extra: Any) -> Canned:
    """A reply with the given wire `tool_calls` entries."""
    return Canned(body=completion({"content": content, "tool_calls": calls}, finish_reason=finish_reason, **extra))


def tool_call_reply(name: str, args: Any = None, *, as_object: bool = False, raw: str | None = None,
                    id: str | None = "call_abc", content: str | None = None,
                    finish_reason: str | None = "tool_calls", **extra: Any) -> Canned:
    """A reply with one structured tool call."""
    return tool_calls_reply([tool_call(name, args, id=id, as_object=as_object, raw=raw)],
                            content=content, finish_reason=finish_reason, **extra)


_LEAK_STYLES = ("tool_call_tag", "bare", "parameters", "list", "fenced", "python_tag", "functools", "pythonic", "xml",
                "string_arguments", "single_quoted", "tool_code", "mistral_args", "functiongemma")


def leaked_call_reply(name: str, args: dict[str, Any], *, style: str = "tool_call_tag", prose: str = "") -> Canned:
    """A call written as plain text in `content`, the way real models leak them.

    Styles: `tool_call_tag` (Hermes/Qwen `<tool_call>{...}</tool_call>`), `bare` (`{"name", "arguments"}`),
    `parameters` (`{"name", "parameters"}`, Llama 3), `list` (a JSON list), `fenced` (```json block),
    `python_tag` (`<|python_tag|>{...}`), `functools` (`functools[{...}]`), `pythonic` (`[f(x=1)]`),
    `xml` (Qwen3-coder `<function=f><parameter=x>`), `string_arguments` (arguments as a JSON string),
    `single_quoted` (a Python dict), `tool_code` (Gemma's ```tool_code fence), `mistral_args`
    (`[TOOL_CALLS]f[ARGS]{...}`), `functiongemma` (`<start_function_call>call:f{x:<escape>v<escape>}`).
    """
    obj = json.dumps({"name": name, "arguments": args})
    text = {
        "tool_call_tag": f"<tool_call>\n{obj}\n</tool_call>",
        "bare": obj,
        "parameters": json.dumps({"name": name, "parameters": args}),
        "list": json.dumps([{"name": name, "arguments": args}]),
        "fenced": f"```json\n{obj}\n```",
        "python_tag": "<|python_tag|>" + json.dumps({"name": name, "parameters": args}),
        "functools": f"functools[{obj}]",
        "pythonic": "[" + name + "(" + ", ".join(f"{k}={v!r}" for k, v in args.items()) + ")]",
        "xml": f"<tool_call>\n<function={name}>\n"
        + "".join(f"<parameter={k}>\n{v}\n</parameter>\n" for k, v in args.items())
        + "</function>\n</tool_call>",
        "string_arguments": json.dumps({"name": name, "arguments": json.dumps(args)}),
        "single_quoted": repr({"name": name, "arguments": args}),
        "tool_code": "```tool_code\n" + name + "(" + ", ".join(f"{k}={v!r}" for k, v in args.items()) + ")\n```",
        "mistral_args": f"[TOOL_CALLS]{name}[ARGS]{json.dumps(args)}",
        "functiongemma": f"<start_function_call>call:{name}{{"
        + ",".join(f"{k}:<escape>{v}<escape>" for k, v in args.items()) + "}<end_function_call>",
    }.get(style)
    if text is None:
        raise ValueError(f"unknown leak style {style!r}; one of {_LEAK_STYLES}")
    return text_reply(prose + text)


def truncated_call_reply(name: str, partial: str = '{"city": "Paris') -> Canned:
    """A call cut off by max_tokens: partial JSON arguments, finish_reason `length`."""
    return tool_call_reply(name, raw=partial, finish_reason="length")


def parse_error_500(server: str = "llama.cpp") -> Canned:
    """HTTP 500 because the server could not parse the model's tool call (llama.cpp or ollama wording)."""
    if server == "ollama":
        return Canned(status=500, body={"error": {"message": "error parsing tool call: raw='{\"city\": Paris}', "
                                                  "err=invalid character 'P' looking for beginning of value",
                                                  "type": "api_error"}})
    return Canned(status=500, body={"error": {"code": 500, "message": "Failed to parse input at pos 12: <tool_call>",
                                              "type": "server_error"}})


def unavailable_503(message: str = "Loading model") -> Canned:
    """HTTP 503 as llama.cpp sends while loading a model."""
    return Canned(status=503, body={"error": {"code": 503, "message": message, "type": "unavailable_error"}})


def html_page(status: int = 200) -> Canned:
    """An HTML page, as a web server that is not an OpenAI-compatible API would answer."""
    return Canned(status=status, text="<!doctype html><html><body><h1>Welcome to nginx!</h1></body></html>",
                  content_type="text/html")


def huge_page(megabytes: float = 50, status: int = 502) -> Canned:
    """A proxy's HTML error page of `megabytes` MB (the kind that used to fill a disk with copies of itself)."""
    line = "<p>upstream connect error or disconnect/reset before headers. reset reason: overflow</p>\n"
    body = "<!doctype html><html><body><h1>502 Bad Gateway</h1>\n"
    repeat = int(megabytes * 1_000_000) // len(line) + 1
    return Canned(status=status, text=body + line * repeat + "</body></html>", content_type="text/html")


def free_port() -> int:
    """A TCP port nothing listens on (for connection-refused tests)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the server -------------------------------------------------------------------------------


class FakeServer:
    """A real HTTP server on 127.0.0.1 that answers like an OpenAI-compatible endpoint, from a script."""

    def __init__(self, models: list[str] | None = None):
        self.models: list[str] = list(models) if models is not None else ["test-model"]
        """Ids listed by `GET /v1/models`."""
        self.requests: list[Recorded] = []
        """Every request received, in order."""
        self.responder: Callable[[Any], Reply] | None = None
        """Answers chat requests once the queue is empty: request JSON -> Canned or body dict."""
        self.echo_auth = False
        """Answer chat requests with HTTP 401 quoting the `Authorization` header received."""
        self._queue: list[Canned] = []
        self._die_after: int | None = None
        self._chats = 0
        self._dead = False
        self._routes: dict[tuple[str, str], Handler] = {}
        self._lock = threading.Lock()
        self._httpd = _QuietServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="fakeserver", daemon=True)
        self._thread.start()

    @property
    def root_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, ending in `/v1`."""
        return self.root_url + "/v1"

    def enqueue(self, *replies: Reply) -> FakeServer:
        """Queue answers for the next chat completion requests, in order."""
        with self._lock:
            self._queue.extend(_canned(r) for r in replies)
        return self

    def die_after(self, n: int) -> FakeServer:
        """Stop listening once `n` chat requests have been answered: later connections are refused,
        as when a server crashes mid-run."""
        self._die_after = n
        return self

    def route(self, path: str, reply: Handler, *, method: str = "GET") -> FakeServer:
        """Serve `path` (e.g. `/props`, `/api/tags`, `/v1/models`) with a fixed reply or a callable
        taking the request JSON (None for GET). Overrides the built-in routes."""
        self._routes[(method.upper(), path)] = reply
        return self

    @property
    def chat_requests(self) -> list[Any]:
        """JSON bodies of the chat completion requests received."""
        with self._lock:
            return [r.json for r in self.requests if r.path.endswith("/chat/completions")]

    @property
    def pending(self) -> int:
        """Queued answers not yet served."""
        with self._lock:
            return len(self._queue)

    def close(self) -> None:
        if self._thread.is_alive():
            self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _die(self) -> None:
        # from a handler thread: stop serving and close the listening socket; open connections finish
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FakeServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # called from handler threads
    def _answer(self, rec: Recorded) -> Canned:
        with self._lock:
            self.requests.append(rec)
            route = self._routes.get((rec.method, rec.path))
        if route is not None:
            return _canned(route(rec.json) if callable(route) else route)
        if rec.method == "POST" and rec.path.endswith("/chat/completions"):
            with self._lock:
                if self._dead:
                    # a kept-alive connection outlived the listening socket: cut it, as a crash would
                    return Canned(drop=True)
                self._chats += 1
                if self._die_after is not None and self._chats == self._die_after:
                    self._dead = True
                    threading.Thread(target=self._die, daemon=True).start()
            if self.echo_auth:
                got = next((v for k, v in rec.headers.items() if k.lower() == "authorization"), "")
                return Canned(status=401, body={"error": {
                    "message": f"Incorrect API key provided: {got.removeprefix('Bearer ')}. You can find your "
                               "API key at https://example.invalid/account/api-keys.",
                    "type": "invalid_request_error", "code": "invalid_api_key"}})
            with self._lock:
                if self._queue:
                    return self._queue.pop(0)
            if self.responder is not None:
                return _canned(self.responder(rec.json))
            return Canned(status=418, body={"error": {"message": "fake server: no reply scripted for this request",
                                                      "type": "test_error"}})
        if rec.method == "GET" and rec.path.endswith("/models"):
            return Canned(body={"object": "list", "data": [
                {"id": m, "object": "model", "created": 1_700_000_000, "owned_by": "fake"} for m in self.models]})
        return Canned(status=404, body={"error": {"message": f"no route {rec.method} {rec.path}", "type": "not_found"}})


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client killed mid-reply (the SIGKILL tests) resets the connection: not worth a traceback
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


def _canned(reply: Reply) -> Canned:
    return reply if isinstance(reply, Canned) else Canned(body=reply)


def _handler_for(server: FakeServer) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            text = self.rfile.read(length).decode("utf-8", "replace") if length else ""
            try:
                parsed = json.loads(text) if text else None
            except json.JSONDecodeError:
                parsed = None
            rec = Recorded(method=self.command, path=self.path.split("?", 1)[0], headers=dict(self.headers),
                           text=text, json=parsed)
            canned = server._answer(rec)
            if canned.delay_s:
                time.sleep(canned.delay_s)
            if canned.drop:
                self.close_connection = True
                return
            if canned.text is not None:
                payload = canned.text.encode()
                ctype = canned.content_type or "text/plain; charset=utf-8"
            else:
                payload = json.dumps(canned.body).encode()
                ctype = canned.content_type or "application/json"
            try:
                self.send_response(canned.status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(payload)))
                for key, value in canned.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                if canned.trickle_s:
                    for i in range(len(payload)):
                        self.wfile.write(payload[i:i + 1])
                        self.wfile.flush()
                        time.sleep(canned.trickle_s)
                else:
                    self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                # the client gave up (a timeout test): nothing to answer
                self.close_connection = True

        do_GET = do_POST = do_PUT = do_DELETE = _handle

    return _Handler


@pytest.fixture
def fake_server() -> Iterator[FakeServer]:
    """A fresh `FakeServer` per test, closed afterwards."""
    with FakeServer() as server:
        yield server
