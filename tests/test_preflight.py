"""Preflight probes tell a broken serving stack from a broken quant; confounds name what else differs."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from harness.outcomes import Outcome
from harness.preflight import confounds, preflight
from harness.records import Provenance, Target
from harness.trajectory import Reply, ToolCall, Usage
from tests.fake_ollama import FakeOllama, OllamaModel
from tests.fakeserver import free_port

TOOLS = [
    {"type": "function", "function": {
        "name": "send_email", "description": "Send an email.",
        "parameters": {"type": "object", "properties": {
            "to": {"type": "string"}, "subject": {"type": "string"}, "body": {"type": "string"}},
            "required": ["to", "subject", "body"]}}},
    {"type": "function", "function": {
        "name": "get_weather", "description": "Current weather for a city.",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "City name"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city", "unit"]}}},
]
TARGET = Target(name="q4", base_url="http://127.0.0.1:9/v1", model="m")
PROV = Provenance(server="llama.cpp", server_version="b5090", chat_template="qwen (abc)", context_length=8192)
_BEG = re.compile(r"Call the (\S+) tool now with these arguments: (\{.*\})\.")


class StubServer:
    """An in-process client that behaves like a server with the given faults."""

    def __init__(self, *, tool_token_fraction: float = 1.0, leak: bool = False, honours_tool_choice: bool = True,
                 usage: bool = True, fail: Exception | None = None, reply: Reply | None = None):
        self.tool_token_fraction = tool_token_fraction
        self.leak = leak
        self.honours_tool_choice = honours_tool_choice
        self.usage = usage
        self.fail = fail
        self.reply = reply
        self.requests: list[dict[str, Any]] = []

    async def chat(self, messages, tools, sampling, *, tool_choice="auto") -> Reply:
        self.requests.append({"messages": messages, "tools": tools, "tool_choice": tool_choice, "sampling": sampling})
        if self.fail is not None:
            raise self.fail
        if self.reply is not None:
            return self.reply
        sees_tools = bool(tools) and self.tool_token_fraction > 0.5
        tokens = len(json.dumps(messages)) // 4 + int(self.tool_token_fraction * len(json.dumps(tools)) // 4)
        beg = _BEG.search(messages[-1]["content"])
        if self.honours_tool_choice and tool_choice == "none":
            wants = None
        elif self.honours_tool_choice and tool_choice == "required" and tools:
            wants = (tools[0]["function"]["name"], {})
        else:
            wants = (beg.group(1), json.loads(beg.group(2))) if beg and sees_tools else None
        if wants is None:
            reply = Reply(content="ready", finish_reason="stop")
        elif self.leak:
            name, args = wants
            reply = Reply(outcome=Outcome.LEAKED_TEXT_CALL, content=f"<tool_call>{json.dumps({'name': name, 'arguments': args})}</tool_call>",
                          tool_calls=[ToolCall(id="call_0", name=name, raw_arguments=json.dumps(args), arguments=args, source="text")],
                          finish_reason="stop")
        else:
            name, args = wants
            reply = Reply(tool_calls=[ToolCall(id="call_1", name=name, raw_arguments=json.dumps(args), arguments=args)],
                          finish_reason="tool_calls")
        if self.usage:
            reply.usage = Usage(prompt_tokens=tokens, completion_tokens=5, total_tokens=tokens + 5)
        return reply


async def run(client: Any, provenance: Provenance | None = PROV, tools: list[dict[str, Any]] = TOOLS) -> dict[str, Any]:
    return await preflight(TARGET, client, tools, provenance=provenance)


async def test_a_healthy_server_passes_every_probe():
    found = await run(StubServer())

    assert found["tools_in_prompt"] is True
    assert found["tool_prompt_tokens"] == found["prompt_tokens_with_tools"] - found["prompt_tokens_without_tools"] > 50
    assert found["structured_calls"] == "structured"
    assert found["arguments_wire"] == "string"
    assert found["honours_tool_choice_none"] is True
    assert found["honours_tool_choice_required"] is True
    assert (found["server"], found["server_version"], found["chat_template"], found["context_length"]) == (
        "llama.cpp", "b5090", "qwen (abc)", 8192)
    assert found["warnings"] == []
    assert [p["probe"] for p in found["probes"]] == ["no_tools", "with_tools", "call_auto", "call_none", "call_required"]


async def test_the_probe_asks_for_the_easiest_tool_with_valid_arguments():
    client = StubServer()
    await run(client)
    beg = next(r for r in client.requests if r["tool_choice"] == "auto" and "Call the" in r["messages"][-1]["content"])
    assert "get_weather" in beg["messages"][-1]["content"]  # two required parameters, not three
    assert '{"city": "example", "unit": "celsius"}' in beg["messages"][-1]["content"]
    assert all(r["sampling"].temperature == 0.0 for r in client.requests)


async def test_a_template_that_drops_the_tools_is_detected_from_prompt_tokens():
    found = await run(StubServer(tool_token_fraction=0.0))

    assert found["tools_in_prompt"] is False
    assert found["prompt_tokens_with_tools"] == found["prompt_tokens_without_tools"]
    assert any("the server's chat template dropped the tools" in w for w in found["warnings"])
    assert found["structured_calls"] == "no_call"
    assert len(found["warnings"]) == 1  # the call not made follows from the drop: said once


async def test_tools_rendered_only_in_part_are_a_warning_not_a_drop():
    found = await run(StubServer(tool_token_fraction=0.15))
    assert found["tools_in_prompt"] is True
    assert any("only in part" in w for w in found["warnings"])


async def test_a_call_leaked_as_text_is_detected():
    found = await run(StubServer(leak=True))

    assert found["structured_calls"] == "leaked_text"
    assert any("as plain text" in w for w in found["warnings"])
    assert found["honours_tool_choice_none"] is None  # no structured call to withhold: inconclusive


async def test_a_server_that_ignores_tool_choice_is_detected():
    found = await run(StubServer(honours_tool_choice=False))

    assert found["structured_calls"] == "structured"
    assert found["honours_tool_choice_none"] is False
    assert found["honours_tool_choice_required"] is False
    # runs send tool_choice "auto", so this is a note, not a warning about the results
    assert found["warnings"] == []
    assert any('ignores tool_choice "none"' in n for n in found["notes"])
    assert any('"required" is not enforced' in n for n in found["notes"])


async def test_without_usage_the_tools_check_is_unknown_not_failed():
    found = await run(StubServer(usage=False))
    assert found["tools_in_prompt"] is None
    assert not any("dropped" in w for w in found["warnings"])


async def test_a_probe_that_fails_is_recorded_and_never_raises():
    found = await run(StubServer(fail=RuntimeError("socket closed")))
    assert found["tools_in_prompt"] is None and found["structured_calls"] is None
    assert all(p["outcome"] == "error" for p in found["probes"])
    assert any("socket closed" in w for w in found["warnings"])

    down = await run(StubServer(reply=Reply(outcome=Outcome.INFRA_ERROR, error="connection refused")))
    assert any("got no answer: connection refused" in w for w in down["warnings"])


async def test_without_provenance_the_server_is_probed_for_its_facts():
    target = Target(name="x", base_url=f"http://127.0.0.1:{free_port()}/v1", model="m")
    found = await preflight(target, StubServer(), TOOLS)
    assert found["server"] == "unknown"
    assert found["structured_calls"] == "structured"


async def test_no_tools_means_no_probes():
    client = StubServer()
    found = await run(client, tools=[])
    assert client.requests == [] and found["tools_in_prompt"] is None


async def test_against_fake_ollama_over_http_dropped_tools_and_ignored_tool_choice_show():
    client_mod = pytest.importorskip("harness.client")
    models = [OllamaModel("qwen2.5:7b-instruct-q4_K_M"), OllamaModel("qwen2.5:7b-instruct-q2_K", drop_tools=True)]
    with FakeOllama(models) as server:
        results = {}
        for tag in ("qwen2.5:7b-instruct-q4_K_M", "qwen2.5:7b-instruct-q2_K"):
            target = Target(name=tag, base_url=server.base_url, model=tag)
            client = client_mod.make_client(target)
            try:
                results[tag] = await preflight(target, client, TOOLS)
            finally:
                await client.aclose()

    good, dropped = results["qwen2.5:7b-instruct-q4_K_M"], results["qwen2.5:7b-instruct-q2_K"]
    assert good["server"] == "ollama"
    assert good["tools_in_prompt"] is True and good["structured_calls"] == "structured"
    assert good["honours_tool_choice_none"] is False  # Ollama's compat layer ignores tool_choice
    assert dropped["tools_in_prompt"] is False
    assert any("dropped the tools" in w for w in dropped["warnings"])


async def test_against_fake_ollama_a_leaked_call_shows():
    client_mod = pytest.importorskip("harness.client")
    with FakeOllama([OllamaModel("qwen2.5:7b-instruct-q3_K_S", leak=True)]) as server:
        target = Target(name="q3", base_url=server.base_url, model="qwen2.5:7b-instruct-q3_K_S")
        client = client_mod.make_client(target)
        try:
            found = await preflight(target, client, TOOLS)
        finally:
            await client.aclose()
    assert found["structured_calls"] == "leaked_text"


# -- confounds ------------------------------------------------------------------------------------


def prov(**fields: Any) -> Provenance:
    base = {"server": "ollama", "server_version": "0.6.8", "chat_template": "ollama (aaa)", "context_length": 4096,
            "family": "qwen2", "parameter_size": "7.6B"}
    return Provenance(**{**base, **fields})


def test_targets_that_differ_only_in_the_quant_have_no_confounds():
    assert confounds({"fp16": prov(quantization="F16", digest="1"), "q4": prov(quantization="Q4_K_M", digest="2")}) == []


def test_a_different_chat_template_is_a_confound_naming_both_targets():
    [line] = confounds({"fp16": prov(), "q4": prov(chat_template="ollama (bbb)")})
    assert line.startswith("chat template differs (fp16=ollama (aaa), q4=ollama (bbb))")
    assert "not from the quantization" in line


def test_a_different_context_length_and_server_are_confounds():
    lines = confounds({"ref": prov(server="llama.cpp", server_version="b5090", context_length=8192), "q4": prov()})
    assert any(line.startswith("server kind differs (ref=llama.cpp, q4=ollama)") for line in lines)
    assert any(line.startswith("context length differs (ref=8192, q4=4096)") for line in lines)
    assert any(line.startswith("server version differs") for line in lines)


def test_tools_dropped_on_one_target_but_not_another_is_a_confound():
    lines = confounds({"ref": prov(preflight={"tools_in_prompt": True, "structured_calls": "structured"}),
                       "q4": prov(preflight={"tools_in_prompt": False, "structured_calls": "no_call"})})
    assert any(line.startswith("tools in the prompt differs (ref=yes, q4=no)") for line in lines)
    # a build that leaks or skips calls on the same server is what the comparison measures, not a confound
    assert not any(line.startswith("tool-call format") for line in lines)


def test_unknowns_are_not_differences():
    assert confounds({"a": prov(), "b": prov(chat_template=None, context_length=None, server_version=None)}) == []


def test_same_digest_and_cpu_spill_are_named():
    lines = confounds({
        "a": prov(digest="d" * 64, memory_bytes=10, vram_bytes=10),
        "b": prov(digest="d" * 64, memory_bytes=10, vram_bytes=4),
    })
    assert any("a and b are the same build" in line for line in lines)
    assert any(line.startswith("b partly run on the CPU") for line in lines)


def test_kv_cache_dtype_is_compared():
    lines = confounds({"a": prov(server="vllm", extra={"kv_cache_dtype": "auto"}),
                       "b": prov(server="vllm", extra={"kv_cache_dtype": "fp8"})})
    assert [line.split(" (")[0] for line in lines] == ["KV cache dtype differs"]


def test_one_target_has_no_confounds():
    assert confounds({"only": prov()}) == []


# -- what a person is told ------------------------------------------------------------------------


def test_the_same_model_on_llama_cpp_and_ollama_has_one_parameter_count():
    from harness.preflight import parameter_count

    llama = Provenance(server="llama.cpp", parameter_size="270M", extra={"gguf": {"parameters": 268_098_176}})
    ollama = Provenance(server="ollama", parameter_size="268.10M", extra={"parameter_count": 268_098_176})
    assert parameter_count(llama) == parameter_count(ollama) == "270M"
    # labels alone agree too, and a different model still differs
    assert parameter_count(Provenance(parameter_size="7.62B")) == parameter_count(Provenance(parameter_size="7.6B"))
    assert parameter_count(Provenance(parameter_size="7B")) != parameter_count(Provenance(parameter_size="8B"))
    assert parameter_count(Provenance(parameter_size="8x7B")) == "8x7B"
    assert parameter_count(Provenance()) is None


def test_a_server_that_serves_another_model_than_asked_is_named():
    from harness.preflight import served_model_warning

    asked = Target(name="q4", base_url="http://127.0.0.1:8080/v1", model="qwen2.5-7b")
    warning = served_model_warning(asked, ["gemma-3-270m-Q4_K_M.gguf"])
    assert warning is not None and "serves 'gemma-3-270m-Q4_K_M.gguf'" in warning and "'qwen2.5-7b'" in warning
    assert served_model_warning(asked.model_copy(update={"model": "gemma-3-270m-Q4_K_M"}),
                                ["/models/gemma-3-270m-Q4_K_M.gguf"]) is None
    assert served_model_warning(asked.model_copy(update={"model": "llama3"}), ["llama3:latest"]) is None


def test_warnings_shared_by_targets_are_grouped_in_first_seen_order():
    from harness.preflight import group_warnings

    grouped = group_warnings({"a": ["slow", "dropped tools"], "b": ["dropped tools"], "c": ["slow"]})
    assert grouped == [("slow", ["a", "c"]), ("dropped tools", ["a", "b"])]
