"""The runner: every target x scenario x epoch, written as it lands, resumable."""

from __future__ import annotations

import asyncio

import pytest

from harness.outcomes import Outcome
from harness.records import RunConfig, Target, read_results
from harness.runner import resume_conflicts, run_suite, scenario_set_hash
from harness.scenario import Scenario
from tests.scripted import call, calls, failure, text


def scenarios() -> list[Scenario]:
    base = {"description": "d", "strata": ["tool_selection"], "tools": ["get_weather", "get_forecast"],
            "world": {"weather": {"Paris": {"temp_c": 18, "conditions": "cloudy"}}}}
    return [
        Scenario.model_validate({**base, "id": f"s{i}", "turns": [{"user": "Weather in Paris?", "expect": [
            {"call": "get_weather", "args": {"city": "Paris"}}, {"answer": True}]}]})
        for i in range(3)
    ]


class Model:
    """Answers every scenario correctly, except for the scenario ids it is told to fail or to be down for."""

    def __init__(self, wrong=(), down=(), gate: asyncio.Event | None = None):
        self.wrong, self.down, self.gate = set(wrong), set(down), gate
        self.served: list[str] = []

    async def chat(self, messages, tools, sampling, *, tool_choice="auto"):
        user = next(m["content"] for m in messages if m["role"] == "user")
        sid = messages[0]["content"]
        self.served.append(sid)
        if self.gate is not None:
            await self.gate.wait()
        if sid in self.down:
            return failure(Outcome.INFRA_ERROR, "connection refused")
        if messages[-1]["role"] == "tool":
            return text("18")
        name = "get_forecast" if sid in self.wrong else "get_weather"
        return calls(call(name, city="Paris"))

    async def aclose(self):
        pass


def with_ids(scs):
    # the scripted model learns the scenario id from the system prompt
    return [sc.model_copy(update={"system": sc.id}) for sc in scs]


async def test_runs_every_target_and_epoch_and_writes_records(tmp_path):
    scs = with_ids(scenarios())
    out = tmp_path / "results.jsonl"
    targets = [Target(name="ref", base_url="http://x/v1", model="m"), Target(name="q2", base_url="http://y/v1", model="m")]
    models = {"ref": Model(), "q2": Model(wrong={"s1"})}
    results = await run_suite(scs, targets, out=out, config=RunConfig(epochs=2), client_factory=lambda t: models[t.name])
    assert len(results.records) == 2 * 3 * 2
    failed = {(r.target, r.scenario_id) for r in results.records if not r.score.passed}
    assert failed == {("q2", "s1")}
    assert {r.score.outcome for r in results.records if not r.score.passed} == {Outcome.WRONG_TOOL}


class WithBodies(Model):
    """Model, with the raw request and response bodies a real client records."""

    async def chat(self, messages, tools, sampling, *, tool_choice="auto"):
        reply = await super().chat(messages, tools, sampling, tool_choice=tool_choice)
        return reply.model_copy(update={"request": {"messages": list(messages), "tools": tools},
                                        "response": {"id": "r", "choices": []}})


async def test_the_records_a_run_returns_leave_their_raw_bodies_in_the_file(tmp_path):
    out = tmp_path / "results.jsonl"
    target = [Target(name="t", base_url="http://x/v1", model="m")]
    results = await run_suite(with_ids(scenarios()), target, out=out, config=RunConfig(), client_factory=lambda t: WithBodies())
    steps = [s for r in results.records for s in r.trajectory.steps]
    assert results.bodies is False and steps
    assert all(s.reply.request == {} and s.reply.response is None for s in steps)
    assert all(s.reply.tool_calls or s.reply.content for s in steps)  # the rest of each reply is kept
    on_disk = [s for r in read_results(out, bodies=True).records for s in r.trajectory.steps]
    assert len(on_disk) == len(steps)
    assert all(s.reply.request["messages"] and s.reply.response == {"id": "r", "choices": []} for s in on_disk)


async def test_resume_skips_finished_runs_and_retries_infra_errors(tmp_path):
    scs = with_ids(scenarios())
    out = tmp_path / "results.jsonl"
    target = [Target(name="t", base_url="http://x/v1", model="m")]
    await run_suite(scs, target, out=out, config=RunConfig(), client_factory=lambda t: Model(down={"s2"}))
    first = read_results(out)
    assert [r.score.infra_error for r in sorted(first.records, key=lambda r: r.scenario_id)] == [False, False, True]
    again = Model()
    results = await run_suite(scs, target, out=out, config=RunConfig(), client_factory=lambda t: again)
    assert set(again.served) == {"s2"}  # only the infra failure ran again
    assert all(r.score.passed for r in results.latest())
    assert len(results.headers) == 2  # each session leaves its own header


async def test_interrupting_keeps_the_runs_already_finished(tmp_path):
    scs = with_ids(scenarios())
    out = tmp_path / "results.jsonl"
    gate = asyncio.Event()

    class Slow(Model):
        async def chat(self, messages, tools, sampling, *, tool_choice="auto"):
            if messages[0]["content"] == "s2":
                await asyncio.Event().wait()  # hangs until cancelled
            return await super().chat(messages, tools, sampling, tool_choice=tool_choice)

    task = asyncio.create_task(run_suite(scs, [Target(name="t", base_url="http://x/v1", model="m")], out=out,
                                         config=RunConfig(), client_factory=lambda t: Slow()))
    for _ in range(200):
        await asyncio.sleep(0.01)
        if out.exists() and len(out.read_text().splitlines()) >= 3:
            break
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(r.scenario_id for r in read_results(out).records) == ["s0", "s1"]
    gate.set()


def test_scenario_set_hash_names_the_task():
    a = scenarios()
    b = scenarios()
    b[0] = b[0].model_copy(update={"system": "other"})
    assert scenario_set_hash(a) == scenario_set_hash(list(reversed(a))) != scenario_set_hash(b)


async def test_a_run_hashes_each_scenario_once_and_the_hashes_given_are_the_ones_recorded(tmp_path, monkeypatch):
    from harness.runner import content_hashes

    scs = with_ids(scenarios())
    hashes = content_hashes(scs)
    assert scenario_set_hash(scs, hashes) == scenario_set_hash(scs)
    made = []
    plain = Scenario.content_hash
    monkeypatch.setattr(Scenario, "content_hash", property(lambda sc: made.append(sc.id) or plain.fget(sc)))
    out = tmp_path / "results.jsonl"
    target = [Target(name="ref", base_url="http://x/v1", model="m")]
    results = await run_suite(scs, target, out=out, config=RunConfig(epochs=2), client_factory=lambda t: Model(), hashes=hashes)
    assert made == []  # handed in: none made again
    assert {r.scenario_hash for r in results.records} == set(hashes.values())
    await run_suite(scs, target, out=tmp_path / "other.jsonl", config=RunConfig(epochs=2), client_factory=lambda t: Model())
    assert sorted(made) == ["s0", "s1", "s2"]  # not handed in: one each, whatever the epochs and targets


async def test_resume_conflicts_name_every_difference_from_the_run_on_file(tmp_path):
    scs = with_ids(scenarios())
    out = tmp_path / "results.jsonl"
    target = Target(name="t", base_url="http://u:pw-secret-1@x/v1", model="m")
    config = RunConfig(scenario_set_hash=scenario_set_hash(scs), scenario_ids=[s.id for s in scs], epochs=1)
    await run_suite(scs, [target], out=out, config=config, client_factory=lambda t: Model())
    old = read_results(out)
    assert resume_conflicts(old, scs, [target], config) == []  # the stored URL is redacted; still the same target

    changed = scs[:2] + [scs[2].model_copy(update={"system": "other"})]
    new_config = config.model_copy(update={
        "scenario_set_hash": scenario_set_hash(changed), "epochs": 2, "difficulty": {"distractor_tools": 2},
        "sampling": config.sampling.model_copy(update={"temperature": 0.7})})
    other = Target(name="t", base_url="http://u:pw-secret-1@x/v1", model="m-q2")
    conflicts = resume_conflicts(old, changed, [other], new_config)
    assert conflicts == [
        "scenario set: content changed in s2",
        "epochs: 1 then, 2 now",
        "sampling temperature: 0.0 then, 0.7 now",
        "difficulty knobs: none then, {'distractor_tools': 2} now",
        "target 't' model: 'm' then, 'm-q2' now",
    ]
    assert resume_conflicts(old, scs, [Target(name="q4", base_url="http://x/v1", model="m")], config) == [
        "targets: ['t'] then, ['q4'] now"]


async def test_the_results_returned_are_the_results_on_file_without_a_second_read(tmp_path, monkeypatch):
    # a reply carrying a registered secret and one too large for a line are stored changed (redacted, capped):
    # what run_suite returns must be what the file holds, and the file is read only before the run (resume)
    from harness import records, runner, scrub

    scrub.add_secret("sk-the-secret-key-123")
    try:
        class Leaky(Model):
            async def chat(self, messages, tools, sampling, *, tool_choice="auto"):
                sid = messages[0]["content"]
                if messages[-1]["role"] == "tool" and sid == "s1":
                    return text("18 degrees, key sk-the-secret-key-123")
                if messages[-1]["role"] == "tool" and sid == "s2":
                    return text("18 " + "x" * (4 * scrub.CAP_CHARS + 10))
                return await super().chat(messages, tools, sampling, tool_choice=tool_choice)

        scs = with_ids(scenarios())
        out = tmp_path / "results.jsonl"
        target = [Target(name="t", base_url="http://x/v1", model="m")]
        await run_suite(scs[:1], target, out=out, config=RunConfig(), client_factory=lambda t: Leaky())
        reads = []
        real = runner.read_results
        monkeypatch.setattr(runner, "read_results", lambda p: reads.append(p) or real(p))
        returned = await run_suite(scs, target, out=out, config=RunConfig(epochs=2), client_factory=lambda t: Leaky())
        assert len(reads) == 1  # the resume's look at what was there, not a read-back at the end
        on_file = records.read_results(out)
        assert returned.model_dump(mode="json") == on_file.model_dump(mode="json")
        dumped = returned.model_dump_json()
        assert "sk-the-secret-key-123" not in dumped and "[REDACTED]" in dumped
        assert len(returned.records) == 1 + 3 * 2 - 1 and len(returned.headers) == 2
    finally:
        scrub.clear_secrets()
