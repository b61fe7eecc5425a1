"""The response cache (`--cache DIR`, off by default): re-score or re-report a run without asking again.

An entry is keyed by everything that determines the reply: the target's identity (model id, server
build, quantization, digest or file hash, chat template: a quant change is a different key), the
request body as sent (messages, tools, tool_choice, sampling) and the epoch (so epochs stay
independent draws). Each entry stores a SHA-256 of its reply and is verified on read; an entry
that does not verify is rejected (a miss, the server is asked, the entry rewritten). Replies that
are infrastructure errors are never stored.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import pydantic_core
import structlog
from pydantic import BaseModel, ConfigDict

from harness.outcomes import Outcome
from harness.records import Provenance, Sampling, Target
from harness.trajectory import Reply

__all__ = ["CACHE_VERSION", "TargetIdentity", "ResponseCache", "CachedClient", "target_identity", "cache_key"]

log = structlog.get_logger("harness.cache")

CACHE_VERSION = 1
"""Part of every key: bumping it invalidates every entry."""


class TargetIdentity(BaseModel):
    """What makes one build behind one server give the replies it gives."""

    model_config = ConfigDict(frozen=True)

    model: str
    """The model id sent in requests."""
    provider: str = "openai"
    server: str | None = None
    server_version: str | None = None
    """Server build or version."""
    model_id: str | None = None
    """The model id the server reports."""
    quantization: str | None = None
    digest: str | None = None
    """Ollama digest or GGUF file sha256."""
    file_size_bytes: int | None = None
    file_path: str | None = None
    chat_template: str | None = None
    context_length: int | None = None
    base_url: str | None = None
    """Only when the server says nothing about its build: then the endpoint is all that names it."""


def target_identity(target: Target, prov: Provenance | None) -> TargetIdentity:
    """The identity of `target` from what its server said (`prov`); the endpoint stands in when it said nothing."""
    prov = prov or Provenance()
    known = any((prov.digest, prov.quantization, prov.file_path, prov.file_size_bytes, prov.server_version))
    return TargetIdentity(
        model=target.model, provider=target.provider, server=prov.server if prov.server != "unknown" else None,
        server_version=prov.server_version, model_id=prov.model_id, quantization=prov.quantization,
        digest=prov.digest, file_size_bytes=prov.file_size_bytes, file_path=prov.file_path,
        chat_template=prov.chat_template, context_length=prov.context_length,
        base_url=None if known else target.base_url,
    )


def cache_key(identity: TargetIdentity, request: dict[str, Any], epoch: int) -> str:
    """SHA-256 over the canonical JSON of identity, request body and epoch."""
    payload = {"v": CACHE_VERSION, "target": identity.model_dump(), "request": request, "epoch": epoch}
    return hashlib.sha256(pydantic_core.to_json(_canonical(payload), fallback=str)).hexdigest()


def _canonical(value: Any) -> Any:
    # sorted keys at every level: the same request built in another order is the same key
    if isinstance(value, dict):
        return {k: _canonical(value[k]) for k in sorted(value)}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return value


def _digest(reply_json: bytes) -> str:
    return hashlib.sha256(reply_json).hexdigest()


class ResponseCache:
    """Replies on disk under `root`, one file per key (`ab/abcd….json`), written atomically."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> Reply | None:
        """The stored reply, or None when absent or when the entry fails verification (then it is logged)."""
        path = self._path(key)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            entry = pydantic_core.from_json(raw)
            reply_json = pydantic_core.to_json(entry["reply"])
            if entry.get("key") != key or entry.get("sha256") != _digest(reply_json):
                raise ValueError("hash or key mismatch")
            reply = Reply.model_validate(entry["reply"])
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("cache.rejected", key=key, path=str(path), reason=str(exc)[:200])
            return None
        return reply

    def put(self, key: str, reply: Reply) -> None:
        """Store `reply` under `key` (atomically: a crash leaves the old entry or none)."""
        data = reply.model_dump(mode="json")
        data["cache_hit"] = False
        reply_json = pydantic_core.to_json(data)
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(pydantic_core.to_json({"key": key, "sha256": _digest(reply_json), "reply": data}))
        os.replace(tmp, path)


class CachedClient:
    """A chat client that answers from a `ResponseCache` first and stores what the server says.

    `for_epoch(epoch)` gives the view the runner uses for one scenario run (the epoch is part of
    the key); a hit comes back with `cache_hit=True`.
    """

    def __init__(self, inner: Any, cache: ResponseCache, identity: TargetIdentity, *, epoch: int = 0):
        self.inner = inner
        self.cache = cache
        self.identity = identity
        self.epoch = epoch

    def for_epoch(self, epoch: int) -> CachedClient:
        return CachedClient(self.inner, self.cache, self.identity, epoch=epoch)

    async def chat(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], sampling: Sampling, *,
                   tool_choice: str | None = "auto") -> Reply:
        from harness.client import build_request

        body = build_request(self.identity.model, messages, tools, sampling, tool_choice)
        key = cache_key(self.identity, body, self.epoch)
        hit = self.cache.get(key)
        if hit is not None:
            hit.cache_hit = True
            return hit
        reply = await self.inner.chat(messages, tools, sampling, tool_choice=tool_choice)
        if reply.outcome is not Outcome.INFRA_ERROR:
            self.cache.put(key, reply)
        return reply

    async def list_models(self) -> list[str]:
        return await self.inner.list_models()

    async def aclose(self) -> None:
        await self.inner.aclose()
