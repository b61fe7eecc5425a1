"""An instant OpenAI-compatible stub for benchmarks: raw asyncio HTTP/1.1 keep-alive, TCP_NODELAY.

    python benchmarks/stub.py --port 8990 [--latency 0.2]

After a user message it calls the first offered tool with arguments made from the tool's schema
(the first enum value, "x", 1, true, ...); after a tool result it answers in text. So every turn of
a scenario costs two calls and the harness executes real tool calls on the way. `GET /_stats`
says how many chat requests came and when the first arrived and the last was answered
(`time.monotonic()`, comparable across processes on one machine); `POST /_reset` clears that.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import time
from typing import Any

__all__ = ["serve"]

_stats: dict[str, Any] = {"n": 0, "first": None, "last": None, "inflight": 0, "max_inflight": 0}
_args_cache: dict[str, str] = {}


def _dummy(schema: dict[str, Any]) -> Any:
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    return {"integer": 1, "number": 1.0, "boolean": True, "array": [], "object": {}}.get(kind, "x")


def _arguments(tool: dict[str, Any]) -> str:
    fn = tool.get("function", {})
    name = fn.get("name", "")
    if name not in _args_cache:
        params = fn.get("parameters") or {}
        props = params.get("properties") or {}
        _args_cache[name] = json.dumps({k: _dummy(props.get(k) or {}) for k in params.get("required") or []})
    return _args_cache[name]


def _reply(body: dict[str, Any]) -> dict[str, Any]:
    messages = body.get("messages") or [{}]
    tools = body.get("tools") or []
    message: dict[str, Any] = {"role": "assistant", "content": "done: 18 degrees"}
    finish = "stop"
    if tools and messages[-1].get("role") == "user":
        fn = tools[0]["function"]["name"]
        message = {"role": "assistant", "content": None, "tool_calls": [
            {"id": f"call_{_stats['n']}", "type": "function", "function": {"name": fn, "arguments": _arguments(tools[0])}}]}
        finish = "tool_calls"
    return {"id": "chatcmpl-stub", "object": "chat.completion", "created": 0, "model": body.get("model", "stub"),
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}


def _response(status: int, payload: Any) -> bytes:
    data = json.dumps(payload).encode()
    head = (f"HTTP/1.1 {status} OK\r\ncontent-type: application/json\r\ncontent-length: {len(data)}\r\n"
            "connection: keep-alive\r\n\r\n")
    return head.encode() + data


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, latency: float) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            length = 0
            for line in lines[1:]:
                if line[:15].lower() == "content-length:":
                    length = int(line[15:])
            raw = await reader.readexactly(length) if length else b""
            if method == "POST" and path.endswith("/chat/completions"):
                now = time.monotonic()
                if _stats["first"] is None:
                    _stats["first"] = now
                _stats["n"] += 1
                _stats["inflight"] += 1
                _stats["max_inflight"] = max(_stats["max_inflight"], _stats["inflight"])
                if latency:
                    await asyncio.sleep(latency)
                out = _response(200, _reply(json.loads(raw)))
                _stats["inflight"] -= 1
                _stats["last"] = time.monotonic()
            elif path.endswith("/models"):
                out = _response(200, {"object": "list", "data": [{"id": "stub", "object": "model", "owned_by": "stub"}]})
            elif path == "/_stats":
                out = _response(200, _stats)
            elif path == "/_reset":
                _stats.update(n=0, first=None, last=None, inflight=0, max_inflight=0)
                out = _response(200, {"ok": True})
            else:
                out = _response(404, {"error": {"message": f"no route {path}"}})
            writer.write(out)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def serve(port: int, latency: float = 0.0) -> None:
    """Serve on 127.0.0.1:`port` until cancelled."""
    server = await asyncio.start_server(lambda r, w: _handle(r, w, latency), "127.0.0.1", port, backlog=512)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8990)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each chat reply")
    ns = parser.parse_args()
    try:
        asyncio.run(serve(ns.port, ns.latency))
    except KeyboardInterrupt:
        pass
