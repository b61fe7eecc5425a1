"""What may be written or printed: bodies capped to a head and a tail, known secrets redacted.

Results, the log, reports and the terminal all pass through here, so a 50 MB proxy error page is
stored as a bounded excerpt with its size and sha256, and an API key a server echoes back in a 401
is stored as `[REDACTED]`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import sys
from typing import Any, TextIO
from urllib.parse import quote, unquote, urlsplit

__all__ = [
    "CAP_CHARS",
    "REDACTED",
    "add_secret",
    "add_url_secrets",
    "cap_text",
    "cap_value",
    "clear_secrets",
    "guard_streams",
    "redact",
    "redact_url",
    "redact_value",
    "register_env_secrets",
    "secrets",
]

CAP_CHARS = 16_384
"""A string longer than this is stored as its first and last characters plus a note of what was cut."""
_TAIL_CHARS = 4_096
_MAX_DEPTH = 64

REDACTED = "[REDACTED]"
_MIN_SECRET = 6
# values that only stand in for a key: redacting them would garble ordinary text
_PLACEHOLDERS = frozenset({"sk-none", "none", "null", "ollama", "no-key", "dummy", "EMPTY", "sk-no-key-required"})
_ENV_KEYS = ("HARNESS_API_KEY", "OPENAI_API_KEY")
_USERINFO = re.compile(r"(?<=://)[^/\s@\"'<>]+@")

_secrets: set[str] = set()
_forms: list[str] = []


def cap_text(text: str, limit: int = CAP_CHARS) -> str:
    """`text` itself when it fits in `limit` characters, else its head and tail around a note giving
    the full size in bytes and its sha256 (so two stored excerpts can still be told apart)."""
    if len(text) <= limit:
        return text
    raw = text.encode("utf-8", "surrogatepass")
    tail = min(_TAIL_CHARS, limit // 4)
    head = limit - tail
    note = f"\n…[capped: {len(raw):,} bytes, sha256 {hashlib.sha256(raw).hexdigest()}; first {head:,} and last {tail:,} characters kept]…\n"
    return text[:head] + note + text[-tail:]


def cap_value(value: Any, limit: int = CAP_CHARS, _depth: int = 0) -> Any:
    """A copy of a JSON-like value with every string capped (`cap_text`) and nesting beyond 64 levels cut."""
    if isinstance(value, str):
        return cap_text(value, limit)
    if isinstance(value, dict):
        if _depth >= _MAX_DEPTH:
            return {"capped": f"nested deeper than {_MAX_DEPTH} levels"}
        return {cap_text(str(k), limit): cap_value(v, limit, _depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if _depth >= _MAX_DEPTH:
            return [f"[capped: nested deeper than {_MAX_DEPTH} levels]"]
        return [cap_value(v, limit, _depth + 1) for v in value]
    return value


# --- secrets ----------------------------------------------------------------------------------


def add_secret(value: str | None) -> None:
    """Redact `value` from everything written or printed from now on (as is, JSON-escaped and URL-encoded).

    Values shorter than 6 characters and placeholder keys (`sk-none`, `ollama`) are ignored: replacing
    them would garble ordinary text.
    """
    if not value or len(value) < _MIN_SECRET or value in _PLACEHOLDERS or value in _secrets:
        return
    _secrets.add(value)
    forms = {value, json.dumps(value)[1:-1], quote(value, safe=""), quote(value, safe="/:@")}
    # longest first, so a form that contains another is replaced whole
    _forms[:] = sorted(set(_forms) | {f for f in forms if len(f) >= _MIN_SECRET}, key=len, reverse=True)


def secrets() -> frozenset[str]:
    """The secrets registered so far."""
    return frozenset(_secrets)


def clear_secrets() -> None:
    """Forget every registered secret (tests)."""
    _secrets.clear()
    _forms.clear()


def register_env_secrets() -> None:
    """Register the API keys in the environment (HARNESS_API_KEY, and OPENAI_API_KEY, which the openai SDK reads)."""
    for name in _ENV_KEYS:
        add_secret(os.environ.get(name))


def add_url_secrets(url: str | None) -> None:
    """Register the user name and password in a URL's userinfo (`http://user:pass@host/v1`)."""
    if not url or "@" not in url:
        return
    try:
        parts = urlsplit(url)
    except ValueError:
        return
    for piece in (parts.password, parts.username):
        if piece:
            add_secret(unquote(piece))
            add_secret(piece)
    if parts.username is not None and parts.password is not None:
        # httpx sends URL userinfo as Basic auth; a server echoing the header echoes this
        pair = f"{unquote(parts.username)}:{unquote(parts.password)}".encode()
        add_secret(base64.b64encode(pair).decode())


def redact_url(url: str) -> str:
    """`url` with any userinfo replaced: `http://user:pass@host/v1` -> `http://[REDACTED]@host/v1`."""
    return _USERINFO.sub(REDACTED + "@", url)


def redact(text: str) -> str:
    """`text` with every registered secret, and the userinfo of any URL in it, replaced by `[REDACTED]`."""
    for form in _forms:
        if form in text:
            text = text.replace(form, REDACTED)
    if "://" in text and "@" in text:
        text = _USERINFO.sub(REDACTED + "@", text)
    return text


def redact_value(value: Any, _depth: int = 0) -> Any:
    """A copy of a JSON-like value with `redact` applied to every string in it."""
    if isinstance(value, str):
        return redact(value)
    if _depth >= _MAX_DEPTH:
        return value
    if isinstance(value, dict):
        return {redact(str(k)): redact_value(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(v, _depth + 1) for v in value]
    return value


class _Redacting:
    """A text stream that redacts what is written to it and passes everything else through."""

    def __init__(self, stream: TextIO):
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(redact(text) if _forms or "@" in text else text)
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def guard_streams() -> None:
    """Redact everything printed on stdout and stderr from now on (rich, click, structlog, tracebacks)."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, _Redacting):
            setattr(sys, name, _Redacting(stream))
