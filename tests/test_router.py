"""Several servers of one build as one target, through LiteLLM's Router: a replica that dies mid-run costs no results."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from harness.client import make_client
from harness.records import RunConfig, Target
from harness.router import RouterChatClient, router_model_list
from harness.runner import run_suite
from harness.scenario import load_scenarios
from tests.fakeserver import Canned, FakeServer

pytest.importorskip("litellm")

SMOKE = load_scenarios([str(Path(__file__).resolve().parent.parent / "scenarios")], tags=["smoke"])


class Replica:
    """A fake server that answers in text, and can die: then every request is dropped and no new connection is taken."""

    def __init__(self, name: str, *, die_after: int | None = None):
        self.name, self.die_after = name, die_after
        self.server = FakeServer()
        self.answered = 0
        self.after_death: list[str] = []
        self.dead = False
        self._lock = threading.Lock()
        self.server.responder = self.answer

    def answer(self, request):
        with self._lock:
            if self.dead:
                return Canned(drop=True)
            self.answered += 1
            if self.die_after is not None and self.answered >= self.die_after:
                self.dead = True
                threading.Thread(target=self.server.close, daemon=True).start()
        return {"choices": [{"index": 0, "message": {"role": "assistant", "content": f"18 degrees from {self.name}"},
                             "finish_reason": "stop"}]}


def test_every_endpoint_is_a_router_deployment_under_the_targets_name():
    target = Target(name="q4", base_url="http://a/v1", endpoints=["http://b/v1"], model="gemma")
    deployments = router_model_list(target, timeout_s=5)
    assert [d["model_name"] for d in deployments] == ["q4", "q4"]
    assert [d["litellm_params"]["api_base"] for d in deployments] == ["http://a/v1", "http://b/v1"]
    assert all(d["litellm_params"]["model"] == "openai/gemma" for d in deployments)
    assert isinstance(make_client(target), RouterChatClient)


async def test_a_replica_killed_mid_run_and_the_run_completes_on_the_other(tmp_path):
    dying, healthy = Replica("a", die_after=3), Replica("b")
    target = Target(name="q4", base_url=dying.server.base_url, endpoints=[healthy.server.base_url], model="test-model")
    try:
        results = await run_suite(SMOKE, [target], out=tmp_path / "results.jsonl", config=RunConfig(epochs=3),
                                  client_factory=lambda t: make_client(t, timeout_s=5, retries=2, wait_initial_s=0.01,
                                                                       wait_max_s=0.05))
    finally:
        healthy.server.close()
    assert dying.dead, "the first replica should have died during the run"
    assert len(results.records) == 3 * len(SMOKE)
    assert not [r.scenario_id for r in results.records if r.score.infra_error]
    answers = [s.reply.content for r in results.records for s in r.trajectory.steps]
    # both took work, and the survivor took everything after the death
    assert sum("from a" in a for a in answers) == dying.answered == 3
    assert sum("from b" in a for a in answers) == len(answers) - 3


def test_every_endpoint_must_answer_at_the_start(tmp_path):
    from tests.clirun import invoke

    from tests.fakeserver import free_port

    up = Replica("a")
    down = f"http://127.0.0.1:{free_port()}/v1"
    try:
        result = invoke(["run", "--base-url", up.server.base_url, "--base-url", down, "--model",
                                           "test-model", "--tag", "smoke", "--no-preflight", "--out", str(tmp_path / "r")])
    finally:
        up.server.close()
    assert result.exit_code == 3
    assert down in result.output and "refused" in result.output.lower()
    assert up.answered == 0
