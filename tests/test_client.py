"""The client over real HTTP against the scripted fake server: parsing, retries, failures as data."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from structlog.testing import capture_logs

from harness.client import TargetError, build_request, check_target, make_client
from harness.outcomes import Outcome
from harness.records import Sampling, Target
from tests.fakeserver import (  # noqa: F401 - fake_server is a fixture
    Canned,
    FakeServer,
    completion,
    fake_server,
    free_port,
    html_page,
    huge_page,
    leaked_call_reply,
    parse_error_500,
    text_reply,
    tool_call,
    tool_call_reply,
    tool_calls_reply,
    truncated_call_reply,
    unavailable_503,
)

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city.",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                           "required": ["city"]}}}
MESSAGES = [{"role": "user", "content": "Weather in Paris?"}]
SAMPLING = Sampling(temperature=0.3, top_p=0.9, seed=7, max_tokens=256)


def target(server: FakeServer | None = None, *, base_url: str | None = None, model: str = "test-model",
           provider: str = "openai") -> Target:
    return Target(name="t", base_url=base_url or server.base_url, model=model, provider=provider)


def client(server: FakeServer | None = None, *, retries: int = 2, timeout_s: float = 5.0, **kw):
    return make_client(target(server, **kw), timeout_s=timeout_s, retries=retries, wait_initial_s=0.01, wait_max_s=0.02)


async def ask(server: FakeServer, *replies, tools=(WEATHER,), **kw):
    server.enqueue(*replies)
    async with client(server, **kw) as c:
        return await c.chat(list(MESSAGES), list(tools), SAMPLING)


# --- what the model said ---------------------------------------------------------------------


async def test_a_correct_call(fake_server):
    reply = await ask(fake_server, tool_call_reply("get_weather", {"city": "Paris"}, id="call_abc"))
    assert reply.outcome is Outcome.OK
    [call] = reply.tool_calls
    assert (call.id, call.name, call.arguments, call.source) == ("call_abc", "get_weather", {"city": "Paris"}, "tool_calls")
    assert reply.status_code == 200 and reply.attempts == 1 and reply.latency_ms > 0
    assert reply.error is None


async def test_a_wrong_or_unknown_tool_is_returned_as_called(fake_server):
    # choosing the tool is the scorer's business; the client only parses
    reply = await ask(fake_server, tool_call_reply("teleport", {"to": "Mars"}))
    assert reply.outcome is Outcome.OK and reply.tool_calls[0].name == "teleport"


async def test_bad_json_arguments_are_malformed_and_kept_verbatim(fake_server):
    reply = await ask(fake_server, tool_call_reply("get_weather", raw='{"city": Paris}'))
    assert reply.outcome is Outcome.MALFORMED_ARGUMENTS
    [call] = reply.tool_calls
    assert call.arguments is None and call.raw_arguments == '{"city": Paris}' and "not valid JSON" in call.parse_error


async def test_schema_invalid_arguments_are_parsed_as_given(fake_server):
    reply = await ask(fake_server, tool_call_reply("get_weather", {"city": 3, "planet": "Earth"}))
    assert reply.outcome is Outcome.OK and reply.tool_calls[0].arguments == {"city": 3, "planet": "Earth"}


@pytest.mark.parametrize("style", ["tool_call_tag", "bare", "parameters", "list", "fenced", "python_tag",
                                   "functools", "pythonic", "xml"])
async def test_leaked_text_calls(fake_server, style):
    reply = await ask(fake_server, leaked_call_reply("get_weather", {"city": "Paris"}, style=style, prose="Sure. "))
    assert reply.outcome is Outcome.LEAKED_TEXT_CALL
    [call] = reply.tool_calls
    assert (call.name, call.arguments, call.source) == ("get_weather", {"city": "Paris"}, "text")
    assert reply.content.startswith("Sure. ")


async def test_a_call_truncated_by_max_tokens(fake_server):
    reply = await ask(fake_server, truncated_call_reply("get_weather", '{"city": "Paris'))
    assert reply.outcome is Outcome.TRUNCATED_CALL and reply.finish_reason == "length"
    [call] = reply.tool_calls
    assert call.truncated and call.arguments is None and call.raw_arguments == '{"city": "Paris'


async def test_arguments_sent_as_an_object(fake_server):
    reply = await ask(fake_server, tool_call_reply("get_weather", {"city": "Paris"}, as_object=True))
    assert reply.outcome is Outcome.OK
    assert reply.tool_calls[0].arguments == {"city": "Paris"} and reply.tool_calls[0].raw_arguments == {"city": "Paris"}


@pytest.mark.parametrize("content", [None, "", "  \n"])
async def test_null_empty_or_whitespace_content(fake_server, content):
    with_call = await ask(fake_server, tool_call_reply("get_weather", {"city": "Paris"}, content=content))
    assert with_call.outcome is Outcome.OK and with_call.content is None
    alone = await ask(fake_server, text_reply(content))
    assert alone.outcome is Outcome.EMPTY_REPLY and alone.content is None and alone.tool_calls == []


async def test_missing_ids_are_synthesised(fake_server):
    reply = await ask(fake_server, tool_calls_reply([tool_call("get_weather", {"city": "Paris"}, id=None),
                                                     tool_call("get_weather", {"city": "Oslo"}, id=None)]))
    assert [c.id for c in reply.tool_calls] == ["call_0", "call_1"]


async def test_a_lying_finish_reason_is_ignored(fake_server):
    call_with_stop = await ask(fake_server, tool_call_reply("get_weather", {"city": "Paris"}, finish_reason="stop"))
    assert call_with_stop.outcome is Outcome.OK and len(call_with_stop.tool_calls) == 1
    assert call_with_stop.finish_reason == "stop"
    text_with_tool_calls = await ask(fake_server, text_reply("18 and cloudy", finish_reason="tool_calls"))
    assert text_with_tool_calls.outcome is Outcome.OK and text_with_tool_calls.tool_calls == []
    assert text_with_tool_calls.content == "18 and cloudy"


async def test_llamacpp_timings_and_the_raw_body_are_captured(fake_server):
    timings = {"cache_n": 120, "prompt_n": 14, "prompt_ms": 20.5, "prompt_per_token_ms": 1.46,
               "prompt_per_second": 682.9, "predicted_n": 9, "predicted_ms": 150.2,
               "predicted_per_token_ms": 16.7, "predicted_per_second": 59.9}
    reply = await ask(fake_server, text_reply("hi", timings=timings))
    assert reply.timings.cache_n == 120 and reply.timings.prompt_n == 14
    assert reply.timings.predicted_per_second == 59.9
    assert reply.response["timings"] == timings  # non-standard fields survive in the record
    assert reply.usage.completion_tokens == 5


# --- what was sent ---------------------------------------------------------------------------


async def test_the_request_body_is_recorded_with_explicit_sampling(fake_server):
    messages = list(MESSAGES)
    fake_server.enqueue(text_reply("ok"))
    async with client(fake_server) as c:
        reply = await c.chat(messages, [WEATHER], SAMPLING)
    sent = fake_server.chat_requests[0]
    assert reply.request == sent
    assert sent["model"] == "test-model" and sent["messages"] == MESSAGES and sent["tools"] == [WEATHER]
    assert (sent["temperature"], sent["top_p"], sent["seed"], sent["max_tokens"]) == (0.3, 0.9, 7, 256)
    assert sent["tool_choice"] == "auto"
    # the record is a snapshot: the loop appending to its messages does not change it
    messages.append({"role": "assistant", "content": "ok"})
    assert len(reply.request["messages"]) == 1


async def test_no_tools_means_no_tools_field_and_tool_choice_none_is_not_sent(fake_server):
    fake_server.enqueue(text_reply("a"), text_reply("b"))
    async with client(fake_server) as c:
        await c.chat(MESSAGES, [], SAMPLING)
        await c.chat(MESSAGES, [WEATHER], SAMPLING, tool_choice=None)
    first, second = fake_server.chat_requests
    assert "tools" not in first and "tool_choice" not in first
    assert second["tools"] == [WEATHER] and "tool_choice" not in second
    # sampling defaults are still sent explicitly
    assert all(k in first for k in ("temperature", "top_p", "seed", "max_tokens"))


def test_build_request_rejects_a_forced_choice_without_tools():
    with pytest.raises(ValueError):
        build_request("m", MESSAGES, [], SAMPLING, "required")


async def test_a_scripted_multi_step_conversation(fake_server):
    def responder(request):
        last = request["messages"][-1]
        if last["role"] == "tool":
            return text_reply(f"It is {last['content']}")
        return tool_call_reply("get_weather", {"city": "Paris"}, id="call_1")

    fake_server.responder = responder
    async with client(fake_server) as c:
        first = await c.chat(MESSAGES, [WEATHER], SAMPLING)
        history = MESSAGES + [{"role": "assistant", "content": "", "tool_calls": [tool_call("get_weather", {"city": "Paris"}, id="call_1")]},
                              {"role": "tool", "tool_call_id": "call_1", "content": "18C"}]
        second = await c.chat(history, [WEATHER], SAMPLING)
    assert first.tool_calls[0].name == "get_weather"
    assert second.content == "It is 18C"
    assert fake_server.chat_requests[1]["messages"][-1]["tool_call_id"] == "call_1"


# --- failures and retries --------------------------------------------------------------------


@pytest.mark.parametrize("server", ["llama.cpp", "ollama"])
async def test_a_500_tool_call_parse_error_is_the_models_failure_and_not_retried(fake_server, server):
    reply = await ask(fake_server, parse_error_500(server), text_reply("must not be reached"))
    assert reply.outcome is Outcome.SERVER_PARSE_ERROR
    assert len(fake_server.chat_requests) == 1 and reply.attempts == 1
    assert reply.status_code == 500 and "parse" in reply.error.lower()
    assert reply.response["error"]["message"]  # the error body is recorded
    assert reply.request["model"] == "test-model"


async def test_503_then_success_is_retried(fake_server):
    reply = await ask(fake_server, unavailable_503(), tool_call_reply("get_weather", {"city": "Paris"}))
    assert reply.outcome is Outcome.OK and reply.attempts == 2
    assert len(fake_server.chat_requests) == 2


@pytest.mark.parametrize("failure", [
    Canned(status=502, text="Bad Gateway"),
    Canned(status=504, text="Gateway Timeout"),
    Canned(status=429, body={"error": {"message": "slow down"}}, headers={"Retry-After": "0"}),
    Canned(status=500, body={"error": {"message": "CUDA error: out of memory"}}),
    Canned(drop=True),
])
async def test_infrastructure_errors_are_retried(fake_server, failure):
    reply = await ask(fake_server, failure, text_reply("fine"))
    assert reply.outcome is Outcome.OK and reply.attempts == 2 and reply.content == "fine"


async def test_retries_run_out_into_an_infra_error(fake_server):
    reply = await ask(fake_server, *[unavailable_503()] * 3, text_reply("too late"), retries=2)
    assert reply.outcome is Outcome.INFRA_ERROR and reply.attempts == 3
    assert len(fake_server.chat_requests) == 3 and fake_server.pending == 1
    assert "503" in reply.error and "Loading model" in reply.error and "3 attempts" in reply.error


async def test_connection_refused_is_an_infra_error_after_all_attempts():
    base = f"http://127.0.0.1:{free_port()}/v1"
    async with client(base_url=base, retries=2) as c:
        reply = await c.chat(MESSAGES, [WEATHER], SAMPLING)
    assert reply.outcome is Outcome.INFRA_ERROR and reply.attempts == 3
    assert "refused" in reply.error.lower() and base in reply.error
    assert reply.request["max_tokens"] == 256  # what we tried to send is still on record


async def test_a_reply_slower_than_the_timeout_is_an_infra_error(fake_server):
    reply = await ask(fake_server, Canned(delay_s=1.5, body=completion({"content": "late"})),
                      Canned(delay_s=1.5, body=completion({"content": "late"})), retries=1, timeout_s=0.3)
    assert reply.outcome is Outcome.INFRA_ERROR and reply.attempts == 2
    assert "timeout" in reply.error.lower()


async def test_a_trickling_reply_is_cut_at_the_wall_clock_deadline(fake_server):
    # a byte every 50 ms never trips a read timeout; the whole reply would take about 20 s
    started = time.perf_counter()
    reply = await ask(fake_server, Canned(trickle_s=0.05, body=completion({"content": "slow " * 60})),
                      retries=0, timeout_s=1.0)
    elapsed = time.perf_counter() - started
    assert reply.outcome is Outcome.INFRA_ERROR and "within 1s (timeout)" in reply.error
    assert 0.9 < elapsed < 2.0, elapsed


async def test_a_trickle_then_a_good_reply_is_retried_and_scored(fake_server):
    reply = await ask(fake_server, Canned(trickle_s=0.05, body=completion({"content": "slow " * 60})),
                      text_reply("fast"), retries=1, timeout_s=0.5)
    assert reply.outcome is Outcome.OK and reply.content == "fast" and reply.attempts == 2


async def test_a_50_mb_error_page_is_an_infra_error_with_a_bounded_excerpt(fake_server):
    started = time.perf_counter()
    reply = await ask(fake_server, huge_page(50), retries=0, timeout_s=60)
    assert reply.outcome is Outcome.INFRA_ERROR and reply.status_code == 502
    assert "502 Bad Gateway" in reply.error and len(reply.error) < 3_000
    assert "bytes, sha256" in reply.response["raw_text"] and len(reply.response["raw_text"]) < 3_000
    assert time.perf_counter() - started < 15  # a regex over the whole page took 14 s alone


@pytest.mark.parametrize("status", [400, 401, 404, 422])
async def test_client_errors_are_not_retried(fake_server, status):
    reply = await ask(fake_server, Canned(status=status, body={"error": {"message": "nope"}}), text_reply("x"))
    assert reply.outcome is Outcome.INFRA_ERROR and reply.attempts == 1 and reply.status_code == status
    assert "nope" in reply.error and len(fake_server.chat_requests) == 1


async def test_vllm_without_auto_tool_choice_says_how_to_fix_it(fake_server):
    msg = '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set'
    reply = await ask(fake_server, Canned(status=400, body={"object": "error", "message": msg, "type": "BadRequestError", "code": 400}))
    assert reply.outcome is Outcome.INFRA_ERROR and reply.attempts == 1
    assert "restart it with `--enable-auto-tool-choice --tool-call-parser" in reply.error


async def test_a_non_json_reply_is_an_infra_error_that_says_so(fake_server):
    reply = await ask(fake_server, html_page())
    assert reply.outcome is Outcome.INFRA_ERROR and "not JSON" in reply.error and "text/html" in reply.error
    assert reply.response["raw_text"].startswith("<!doctype html>")


async def test_an_error_inside_a_200_body_is_classified_by_its_message(fake_server):
    reply = await ask(fake_server, {"error": {"message": "Failed to parse input at pos 0: <tool_call>"}})
    assert reply.outcome is Outcome.SERVER_PARSE_ERROR and reply.attempts == 1


async def test_structlog_events_carry_the_context(fake_server):
    import structlog

    structlog.reset_defaults()  # every level: an earlier CLI test may have configured the log at info
    fake_server.enqueue(unavailable_503(), text_reply("ok"))
    with capture_logs() as logs:
        async with client(fake_server) as c:
            await c.chat(MESSAGES, [WEATHER], SAMPLING)
    events = [e["event"] for e in logs]
    assert events == ["client.request", "client.retry", "client.request", "client.reply"]
    retry, reply = logs[1], logs[3]
    assert retry["status"] == 503 and retry["attempt"] == 1 and retry["model"] == "test-model"
    assert reply["outcome"] == "ok" and reply["attempts"] == 2 and reply["status"] == 200 and reply["latency_ms"] >= 0
    # a retried reply is worth a look (info, in the log file by default); a plain one is debug (--verbose)
    assert [e["log_level"] for e in logs] == ["debug", "warning", "debug", "info"]


# --- targets ---------------------------------------------------------------------------------


async def test_check_target_returns_the_served_models(fake_server):
    fake_server.models = ["test-model", "other"]
    assert await check_target(target(fake_server)) == ["test-model", "other"]
    async with client(fake_server) as c:
        assert await c.list_models() == ["test-model", "other"]


async def test_an_unknown_model_is_a_target_error_listing_what_is_served(fake_server):
    fake_server.models = ["qwen2.5:7b", "llama3.1:8b"]
    with pytest.raises(TargetError) as err:
        await check_target(target(fake_server, model="qwen2.5:7b-q4"))
    text = str(err.value)
    assert "'qwen2.5:7b-q4'" in text and "'llama3.1:8b'" in text and fake_server.base_url in text


async def test_model_names_match_the_way_servers_list_them(fake_server):
    fake_server.models = ["llama3:latest", "/models/Qwen2.5-7B-Instruct-Q4_K_M.gguf"]
    await check_target(target(fake_server, model="llama3"))
    await check_target(target(fake_server, model="Qwen2.5-7B-Instruct-Q4_K_M.gguf"))
    await check_target(target(fake_server, model="openai/llama3", provider="litellm"))


async def test_a_single_model_llama_server_accepts_any_model_name(fake_server):
    fake_server.route("/v1/models", {"object": "list", "data": [{"id": "model.gguf", "object": "model", "owned_by": "llamacpp"}]})
    assert await check_target(target(fake_server, model="anything")) == ["model.gguf"]


@pytest.mark.parametrize("answer, phrase", [
    (html_page(), "not like an OpenAI-compatible server"),
    (html_page(status=404), "HTTP 404"),
    (Canned(body={"status": "ok"}), "not like an OpenAI-compatible server"),
    (Canned(status=401, body={"error": {"message": "invalid api key"}}), "api_key"),
])
async def test_a_server_that_is_not_openai_compatible_is_a_target_error(fake_server, answer, phrase):
    fake_server.route("/v1/models", answer)
    with pytest.raises(TargetError, match=phrase):
        await check_target(target(fake_server))


async def test_an_unreachable_server_is_a_target_error():
    base = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(TargetError, match="Cannot reach") as err:
        await check_target(target(base_url=base))
    assert base in str(err.value)


async def test_a_silent_server_is_a_target_error(fake_server):
    fake_server.route("/v1/models", Canned(delay_s=1.0, body={"data": []}))
    with pytest.raises(TargetError, match="did not answer"):
        await check_target(target(fake_server), timeout_s=0.2)


def test_fake_server_serves_extra_routes_and_records_requests(fake_server):
    import httpx

    fake_server.route("/props", {"build_info": "b5000"}).route("/api/show", lambda req: {"echo": req}, method="POST")
    assert httpx.get(fake_server.root_url + "/props").json() == {"build_info": "b5000"}
    assert httpx.post(fake_server.root_url + "/api/show", json={"model": "x"}).json() == {"echo": {"model": "x"}}
    assert httpx.post(fake_server.base_url + "/chat/completions", json={}).status_code == 418  # nothing scripted
    assert [(r.method, r.path) for r in fake_server.requests] == [
        ("GET", "/props"), ("POST", "/api/show"), ("POST", "/v1/chat/completions")]


# --- litellm ---------------------------------------------------------------------------------


def test_importing_the_client_does_not_import_litellm():
    code = "import sys, harness.client; assert 'litellm' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


async def test_litellm_route_normalises_and_classifies_the_same_way(fake_server):
    pytest.importorskip("litellm")
    fake_server.enqueue(
        tool_call_reply("get_weather", {"city": "Paris"}, timings={"predicted_per_second": 40.0}),
        parse_error_500(),
        unavailable_503(), leaked_call_reply("get_weather", {"city": "Oslo"}),
    )
    async with client(fake_server, model="openai/test-model", provider="litellm") as c:
        ok = await c.chat(MESSAGES, [WEATHER], SAMPLING)
        parse = await c.chat(MESSAGES, [WEATHER], SAMPLING)
        retried = await c.chat(MESSAGES, [WEATHER], SAMPLING)
    assert ok.outcome is Outcome.OK and ok.tool_calls[0].arguments == {"city": "Paris"}
    assert ok.timings.predicted_per_second == 40.0
    assert ok.request["temperature"] == 0.3 and ok.request["model"] == "openai/test-model"
    assert fake_server.chat_requests[0]["model"] == "test-model" and fake_server.chat_requests[0]["seed"] == 7
    assert parse.outcome is Outcome.SERVER_PARSE_ERROR and parse.attempts == 1
    assert retried.outcome is Outcome.LEAKED_TEXT_CALL and retried.attempts == 2
    assert len(fake_server.chat_requests) == 4


@pytest.mark.parametrize("canned, outcome", [
    (Canned(status=400, text='{"error": {"message": "bad \\ud800 input", "n": ' + "9" * 5000 + "}}",
            content_type="application/json"), Outcome.INFRA_ERROR),
    (Canned(status=200, text='{"choices": ' + "[" * 100_000 + "]" * 100_000 + "}", content_type="application/json"),
     Outcome.INFRA_ERROR),
])
async def test_an_unreadable_or_hostile_body_is_a_recordable_reply(fake_server, canned, outcome):
    from harness.trajectory import Reply

    reply = await ask(fake_server, canned, retries=0)
    assert reply.outcome is outcome and reply.error
    assert Reply.model_validate_json(reply.model_dump_json()).error == reply.error


async def test_a_plain_reply_is_logged_at_debug_and_the_cli_log_drops_it_unless_verbose(fake_server, tmp_path):
    from harness.logs import configure_logging

    for verbose in (False, True):
        log_file = tmp_path / f"log-{verbose}.jsonl"
        configure_logging(log_file, verbose=verbose, quiet=True)
        fake_server.enqueue(text_reply("ok"))
        async with client(fake_server) as c:
            await c.chat(MESSAGES, [WEATHER], SAMPLING)
        configure_logging(None, quiet=True)
        events = [json.loads(line)["event"] for line in log_file.read_text().splitlines()]
        assert ("client.reply" in events) is verbose, events


async def test_a_proxy_named_in_the_environment_carries_the_requests(fake_server, monkeypatch):
    # looked up once per target (not per request, in a thread); NO_PROXY is honoured
    monkeypatch.setenv("HTTP_PROXY", fake_server.root_url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    fake_server.enqueue(text_reply("via the proxy"))
    behind = Target(name="t", base_url="http://model-host.invalid:9/v1", model="test-model")
    async with make_client(behind, timeout_s=5.0, retries=0) as c:
        reply = await c.chat(MESSAGES, [WEATHER], SAMPLING)
    assert reply.outcome is Outcome.OK and reply.content == "via the proxy"
    assert fake_server.requests[-1].path == "http://model-host.invalid:9/v1/chat/completions"
    monkeypatch.setenv("NO_PROXY", "model-host.invalid")
    async with make_client(behind, timeout_s=5.0, retries=0) as c:
        reply = await c.chat(MESSAGES, [WEATHER], SAMPLING)
    assert reply.outcome is Outcome.INFRA_ERROR and "model-host.invalid" in reply.error


def test_one_client_serves_two_event_loops(fake_server):
    # a session belongs to its loop: the second asyncio.run must not meet the first one's closed loop
    import asyncio

    fake_server.enqueue(text_reply("one"), text_reply("two"))
    c = client(fake_server)
    first = asyncio.run(c.chat(MESSAGES, [WEATHER], SAMPLING))
    second = asyncio.run(c.chat(MESSAGES, [WEATHER], SAMPLING))
    asyncio.run(c.aclose())
    assert (first.content, second.content) == ("one", "two")
    assert first.outcome is Outcome.OK and second.outcome is Outcome.OK
