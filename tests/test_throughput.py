"""Generation speed: the server's timings where it sends them, else measured from usage and latency."""

from __future__ import annotations

import pytest

from harness.normalize import normalize_reply
from harness.outcomes import Outcome
from harness.throughput import generation_speed
from tests.fakeserver import completion


def test_a_reply_without_timings_still_gets_a_speed_measured_here():
    """Ollama sends no timings: tok/s comes from usage and latency, and says so."""
    body = completion({"content": "hi"}, usage={"prompt_tokens": 10, "completion_tokens": 40, "total_tokens": 50})
    ollama = [normalize_reply(body).model_copy(update={"latency_ms": 500.0}) for _ in range(2)]
    speed = generation_speed(ollama)
    assert speed.source == "client" and speed.tokens_per_s == pytest.approx(80.0)
    timed = normalize_reply({**body, "timings": {"predicted_per_second": 120.0, "predicted_n": 40}})
    assert generation_speed([*ollama, timed]).source == "server"
    assert generation_speed([*ollama, timed]).tokens_per_s == pytest.approx(120.0)
    assert generation_speed([]).tokens_per_s is None


def test_infrastructure_errors_do_not_count_as_slow_replies():
    body = completion({"content": "hi"}, usage={"prompt_tokens": 10, "completion_tokens": 40, "total_tokens": 50})
    good = normalize_reply(body).model_copy(update={"latency_ms": 500.0})
    failed = good.model_copy(update={"outcome": Outcome.INFRA_ERROR, "latency_ms": 30_000.0})
    assert generation_speed([good, failed]).tokens_per_s == pytest.approx(80.0)
