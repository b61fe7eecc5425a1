"""The response cache: keyed by everything that determines a reply, verified on read, hits marked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.clirun import invoke

from harness.cache import CachedClient, ResponseCache, TargetIdentity, cache_key, target_identity
from harness.client import build_request, make_client
from harness.outcomes import Outcome
from harness.records import Provenance, Sampling, Target, read_results
from tests.fakeserver import FakeServer, fake_server, text_reply, unavailable_503  # noqa: F401 - fixture

IDENTITY = TargetIdentity(model="m", server="llama.cpp", server_version="b5090", model_id="m.gguf", quantization="Q4_K_M",
                          digest="sha256:aa", file_size_bytes=1000, file_path="/m.gguf", chat_template="sha:1",
                          context_length=8192)
MESSAGES = [{"role": "user", "content": "Weather in Paris?"}]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}}]
SAMPLING = Sampling()


def key(identity=IDENTITY, messages=MESSAGES, tools=TOOLS, sampling=SAMPLING, tool_choice="auto", epoch=0):
    return cache_key(identity, build_request(identity.model, messages, tools, sampling, tool_choice), epoch)


IDENTITY_CHANGES = {
    "model": "m2", "provider": "litellm", "server": "vllm", "server_version": "b5091", "model_id": "other.gguf",
    "quantization": "Q8_0", "digest": "sha256:bb", "file_size_bytes": 1001, "file_path": "/n.gguf",
    "chat_template": "sha:2", "context_length": 4096, "base_url": "http://x/v1",
}


def test_every_identity_field_is_in_the_key():
    assert set(IDENTITY_CHANGES) == set(TargetIdentity.model_fields)
    base = key()
    for field, value in IDENTITY_CHANGES.items():
        assert key(identity=IDENTITY.model_copy(update={field: value})) != base, field


@pytest.mark.parametrize("change", [
    {"messages": MESSAGES + [{"role": "assistant", "content": "18"}]},
    {"messages": [{"role": "user", "content": "Weather in Lyon?"}]},
    {"tools": []},
    {"tools": [{"type": "function", "function": {"name": "get_forecast", "parameters": {"type": "object"}}}]},
    {"sampling": Sampling(temperature=0.7)},
    {"sampling": Sampling(top_p=0.9)},
    {"sampling": Sampling(seed=1)},
    {"sampling": Sampling(max_tokens=64)},
    {"tool_choice": "required"},
    {"epoch": 1},
], ids=lambda c: next(iter(c)))
def test_every_request_field_and_the_epoch_are_in_the_key(change):
    assert key(**change) != key()


def test_the_same_request_built_again_is_the_same_key():
    assert key(messages=[dict(m) for m in MESSAGES]) == key()


def test_without_provenance_the_endpoint_names_the_build():
    a = target_identity(Target(name="a", base_url="http://127.0.0.1:1/v1", model="m"), None)
    b = target_identity(Target(name="b", base_url="http://127.0.0.1:2/v1", model="m"), None)
    assert a != b
    # once the server says what it serves, the port it moved to does not matter
    prov = Provenance(server="llama.cpp", quantization="Q4_K_M", digest="sha256:aa")
    assert target_identity(Target(name="a", base_url="http://h:1/v1", model="m"), prov) == \
        target_identity(Target(name="a", base_url="http://h:2/v1", model="m"), prov)


def _client(server: FakeServer, cache: ResponseCache, quant: str) -> CachedClient:
    target = Target(name="t", base_url=server.base_url, model="m")
    inner = make_client(target, timeout_s=5, retries=0)
    return CachedClient(inner, cache, target_identity(target, Provenance(server="llama.cpp", quantization=quant)))


async def test_a_hit_is_marked_and_a_quant_change_misses(fake_server, tmp_path):
    cache = ResponseCache(tmp_path / "cache")
    fake_server.enqueue(text_reply("18 degrees"), text_reply("17 degrees"))
    first = await _client(fake_server, cache, "Q4_K_M").chat(MESSAGES, TOOLS, SAMPLING)
    again = await _client(fake_server, cache, "Q4_K_M").chat(MESSAGES, TOOLS, SAMPLING)
    other = await _client(fake_server, cache, "Q8_0").chat(MESSAGES, TOOLS, SAMPLING)
    assert len(fake_server.chat_requests) == 2
    assert (first.cache_hit, again.cache_hit, other.cache_hit) == (False, True, False)
    assert again.content == first.content == "18 degrees" and other.content == "17 degrees"


async def test_epochs_are_independent_draws(fake_server, tmp_path):
    cache = ResponseCache(tmp_path / "cache")
    fake_server.enqueue(text_reply("a"), text_reply("b"))
    client = _client(fake_server, cache, "Q4_K_M")
    e0 = await client.for_epoch(0).chat(MESSAGES, TOOLS, SAMPLING)
    e1 = await client.for_epoch(1).chat(MESSAGES, TOOLS, SAMPLING)
    assert (e0.content, e1.content, e1.cache_hit) == ("a", "b", False)


def _entry(cache_dir: Path) -> Path:
    (entry,) = [p for p in cache_dir.rglob("*.json")]
    return entry


@pytest.mark.parametrize("corrupt", ["tampered reply", "truncated file", "another key's entry"])
async def test_a_corrupted_entry_is_rejected_and_asked_again(fake_server, tmp_path, corrupt):
    cache = ResponseCache(tmp_path / "cache")
    fake_server.enqueue(text_reply("18 degrees"), text_reply("fresh"))
    await _client(fake_server, cache, "Q4_K_M").chat(MESSAGES, TOOLS, SAMPLING)
    path = _entry(tmp_path / "cache")
    if corrupt == "tampered reply":
        entry = json.loads(path.read_text())
        entry["reply"]["content"] = "99 degrees"
        path.write_text(json.dumps(entry))
    elif corrupt == "truncated file":
        path.write_bytes(path.read_bytes()[:40])
    else:
        entry = json.loads(path.read_text())
        entry["key"] = "0" * 64
        path.write_text(json.dumps(entry))
    reply = await _client(fake_server, cache, "Q4_K_M").chat(MESSAGES, TOOLS, SAMPLING)
    assert reply.content == "fresh" and not reply.cache_hit
    assert len(fake_server.chat_requests) == 2
    # the rewritten entry verifies again
    assert (await _client(fake_server, cache, "Q4_K_M").chat(MESSAGES, TOOLS, SAMPLING)).cache_hit


async def test_infrastructure_errors_are_not_cached(fake_server, tmp_path):
    cache = ResponseCache(tmp_path / "cache")
    fake_server.enqueue(unavailable_503(), text_reply("up again"))
    down = await _client(fake_server, cache, "Q4_K_M").chat(MESSAGES, TOOLS, SAMPLING)
    up = await _client(fake_server, cache, "Q4_K_M").chat(MESSAGES, TOOLS, SAMPLING)
    assert down.outcome is Outcome.INFRA_ERROR and up.content == "up again" and not up.cache_hit


def test_a_second_run_with_the_cache_asks_the_server_nothing(fake_server, tmp_path):
    fake_server.responder = lambda request: {"choices": [{"index": 0, "message": {"role": "assistant", "content": "18"},
                                                          "finish_reason": "stop"}]}
    args = ["run", "--base-url", fake_server.base_url, "--model", "test-model", "--tag", "smoke", "--no-preflight",
            "--json", "--cache", str(tmp_path / "cache")]
    first = invoke([*args, "--out", str(tmp_path / "a")])
    asked = len(fake_server.chat_requests)
    second = invoke([*args, "--out", str(tmp_path / "b")])
    assert first.exit_code in (0, 1) and second.exit_code == first.exit_code, second.output
    assert asked > 0 and len(fake_server.chat_requests) == asked
    replies = [s.reply for r in read_results(tmp_path / "b" / "results.jsonl").records for s in r.trajectory.steps]
    assert replies and all(r.cache_hit for r in replies)
    # and it scores the same
    passed = {d: sorted((r.scenario_id, r.score.passed) for r in read_results(tmp_path / d / "results.jsonl").records)
              for d in ("a", "b")}
    assert passed["a"] == passed["b"]
