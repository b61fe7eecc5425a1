"""Concurrency defaults to what the server says it serves at once; --concurrency overrides it."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from tests.clirun import invoke

from harness.concurrency import MAX_CONCURRENCY, choose_concurrency
from harness.records import Provenance
from tests.fakeserver import FakeServer
from tests.test_servers import llama_cpp


def test_llama_cpp_total_slots_sets_the_default():
    chosen = choose_concurrency("q4", Provenance(server="llama.cpp", extra={"total_slots": 4}), None)
    assert (chosen.value, chosen.source) == (4, "llama.cpp total_slots")


def test_the_flag_overrides_what_the_server_says():
    chosen = choose_concurrency("q4", Provenance(server="llama.cpp", extra={"total_slots": 4}), 2)
    assert (chosen.value, chosen.source) == (2, "--concurrency")


def test_vllm_max_num_seqs_from_its_metrics_info():
    prov = Provenance(server="vllm", extra={"metrics_info": {
        "vllm:cache_config_info": {"block_size": "16"}, "vllm:scheduler_config_info": {"max_num_seqs": "256"}}})
    chosen = choose_concurrency("awq", prov, None)
    assert (chosen.value, chosen.source) == (MAX_CONCURRENCY, "vllm max_num_seqs")


def test_ollama_num_parallel_from_the_environment():
    chosen = choose_concurrency("q8", Provenance(server="ollama"), None, env={"OLLAMA_NUM_PARALLEL": "3"})
    assert (chosen.value, chosen.source) == (3, "OLLAMA_NUM_PARALLEL")


def test_a_server_that_says_nothing_gets_one_at_a_time():
    for prov in (None, Provenance(server="openai-compatible"), Provenance(server="llama.cpp", extra={"total_slots": None}),
                 Provenance(server="ollama")):
        assert choose_concurrency("x", prov, None, env={}).value == 1


def _busy_llama(slots: int, delay_s: float = 0.25) -> tuple[FakeServer, dict[str, int]]:
    """A llama.cpp-looking server with `slots` slots that counts the chat requests it holds at once."""
    server = llama_cpp()
    props = server._routes[("GET", "/props")]
    server.route("/props", {**props, "total_slots": slots})
    seen = {"now": 0, "most": 0}
    lock = threading.Lock()

    def answer(request):
        with lock:
            seen["now"] += 1
            seen["most"] = max(seen["most"], seen["now"])
        time.sleep(delay_s)
        with lock:
            seen["now"] -= 1
        return {"choices": [{"index": 0, "message": {"role": "assistant", "content": "18 degrees"}, "finish_reason": "stop"}]}

    server.responder = answer
    return server, seen


def _run(server: FakeServer, tmp_path: Path, *extra: str):
    return invoke(["run", "--base-url", server.base_url, "--model", "m", "--tag", "smoke",
                                     "--out", str(tmp_path / "run"), "--json", *extra])


def test_a_run_keeps_every_server_slot_busy(tmp_path):
    server, seen = _busy_llama(slots=3)
    with server:
        result = _run(server, tmp_path)
    assert result.exit_code in (0, 1), result.output
    assert seen["most"] == 3


def test_the_flag_wins_over_the_servers_slots(tmp_path):
    server, seen = _busy_llama(slots=3)
    with server:
        result = _run(server, tmp_path, "--concurrency", "1")
    assert result.exit_code in (0, 1), result.output
    assert seen["most"] == 1
