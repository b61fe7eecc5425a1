"""Faults made to happen for real: the `harness` process against a fault-injecting server on localhost.

A server dying mid-run, a flaky one, a trickling one, a 50 MB error page, a 401 that echoes the key,
a torn results line, `--out` reused, a resume that would mix unlike runs, Ctrl-C, and SIGKILL at random
moments followed by resumes. Each test checks what an operator would see: the exit code, the message,
and what is (and is not) on disk.
"""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import structlog

from harness.records import read_results
from tests.fakeserver import Canned, FakeServer, huge_page, text_reply, tool_call_reply

ROOT = Path(__file__).resolve().parent.parent

SCENARIO = """\
id: {id}
description: weather lookup
strata: [tool_selection]
tools: [get_weather]
world: {{weather: {{Paris: {{temp_c: 18, conditions: cloudy}}}}}}
turns:
  - user: "What's the weather in Paris? ({id})"
    expect:
      - call: get_weather
        args: {{city: Paris}}
      - answer: {{contains: "18"}}
"""


def make_suite(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"s{i:02d}.yaml").write_text(SCENARIO.format(id=f"w{i:02d}"))
    return folder


def scenario_of(request: dict) -> str:
    first = next(m["content"] for m in request["messages"] if m["role"] == "user")
    return first.rsplit("(", 1)[1].rstrip(")")


def good_model(request: dict) -> Canned:
    if request["messages"][-1]["role"] == "tool":
        return text_reply("It is 18 degrees and cloudy.")
    return tool_call_reply("get_weather", {"city": "Paris"})


def env(**extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("HARNESS_API_KEY", "OPENAI_API_KEY")}
    return {**clean, "NO_COLOR": "1", "COLUMNS": "160", "PYTHONPATH": str(ROOT), **extra}


def harness(*args: str, cwd: Path, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, env=env(**(extra_env or {})),
                          capture_output=True, text=True, timeout=300)


def run_args(suite: Path, server: FakeServer, *extra: str) -> list[str]:
    return ["run", str(suite), "--base-url", server.base_url, "--model", "m", "--no-preflight", "--retries", "0", *extra]


# --- exit codes -------------------------------------------------------------------------------


def test_a_server_that_dies_mid_run_is_an_infra_exit_with_finished_runs_kept(tmp_path):
    suite = make_suite(tmp_path / "sc", 4)
    with FakeServer(models=["m"]) as server:
        server.responder = good_model
        server.die_after(2)  # the first scenario's two requests, then connection refused
        proc = harness(*run_args(suite, server, "--out", str(tmp_path / "out")), cwd=tmp_path)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "infrastructure error" in proc.stdout and "3 of 4 runs" in proc.stdout
    records = read_results(tmp_path / "out" / "results.jsonl").records
    assert sorted((r.scenario_id, r.score.infra_error) for r in records) == [
        ("w00", False), ("w01", True), ("w02", True), ("w03", True)]


def test_thirty_percent_infra_errors_is_an_infra_exit(tmp_path):
    suite = make_suite(tmp_path / "sc", 10)
    flaky = {"w01", "w04", "w07"}

    def respond(request: dict) -> Canned:
        if scenario_of(request) in flaky:
            return Canned(status=503, body={"error": {"message": "upstream overloaded"}})
        return good_model(request)

    with FakeServer(models=["m"]) as server:
        server.responder = respond
        proc = harness(*run_args(suite, server, "--out", str(tmp_path / "out"), "--json"), cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr
    assert "3 of 10 runs (30%)" in proc.stderr
    assert json.loads(proc.stdout)["targets"][0]["overall"]["passed"] == 7  # the summary is still written


def test_ctrl_c_while_the_server_check_hangs_exits_130(tmp_path):
    suite = make_suite(tmp_path / "sc", 1)
    with FakeServer(models=["m"]) as server:
        server.route("/v1/models", Canned(delay_s=60, body={"data": [{"id": "m"}]}))
        proc = subprocess.Popen([sys.executable, "-m", "harness", *run_args(suite, server, "--out", str(tmp_path / "o"))],
                                cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while not any(r.path == "/v1/models" for r in server.requests) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert any(r.path == "/v1/models" for r in server.requests), "the check never started"
        proc.send_signal(signal.SIGINT)
        started = time.monotonic()
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, out + err
    assert time.monotonic() - started < 10
    assert "interrupted" in out + err and "Traceback" not in out + err


def test_ctrl_c_while_loading_exits_130(tmp_path, monkeypatch, capsys):
    from harness import cli

    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_load", interrupted)
    # in-process, the command wraps this test's streams and points logging at them: undo both afterwards
    monkeypatch.setattr(sys, "stdout", sys.stdout)
    monkeypatch.setattr(sys, "stderr", sys.stderr)
    saved = structlog.get_config()
    try:
        with pytest.raises(SystemExit) as exit_:
            cli.main.main(["run", "--base-url", "http://127.0.0.1:9/v1", "--model", "m"], standalone_mode=False)
    finally:
        structlog.configure(**saved)
    assert exit_.value.code == 130
    assert "interrupted" in capsys.readouterr().out


# --- deadlines and bodies ---------------------------------------------------------------------


def test_a_trickling_server_hits_the_timeout_as_an_infra_error(tmp_path):
    suite = make_suite(tmp_path / "sc", 1)
    slow = Canned(trickle_s=0.05, body={"choices": [{"message": {"role": "assistant", "content": "18 " * 100}}]})
    with FakeServer(models=["m"]) as server:
        server.responder = lambda request: slow
        proc = harness(*run_args(suite, server, "--out", str(tmp_path / "out"), "--timeout", "2"), cwd=tmp_path)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    [rec] = read_results(tmp_path / "out" / "results.jsonl").records
    assert rec.score.infra_error and "within 2s (timeout)" in rec.trajectory.steps[0].reply.error
    assert rec.trajectory.duration_ms < 3_000  # ended at the deadline, not after the ~15 s the body takes


def test_a_50_mb_error_page_leaves_bounded_artifacts(tmp_path):
    suite = make_suite(tmp_path / "sc", 1)
    page = huge_page(50)
    with FakeServer(models=["m"]) as server:
        server.responder = lambda request: page
        proc = harness(*run_args(suite, server, "--out", str(tmp_path / "out"), "--retries", "1"), cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr[-2000:]
    sizes = {p.name: p.stat().st_size for p in (tmp_path / "out").iterdir()}
    assert set(sizes) >= {"results.jsonl", "log.jsonl", "report.html", "junit.xml", "summary.json", "summary.md"}
    assert max(sizes.values()) < 500_000 and sum(sizes.values()) < 1_000_000, sizes
    assert len(proc.stdout) + len(proc.stderr) < 100_000
    [rec] = read_results(tmp_path / "out" / "results.jsonl", bodies=True).records
    stored = rec.trajectory.steps[0].reply.response["raw_text"]
    assert stored.startswith("<!doctype html>") and stored.endswith("</html>") and "sha256" in stored


# --- secrets ----------------------------------------------------------------------------------


def test_an_echoed_key_and_a_url_password_appear_in_no_artifact_and_not_on_the_terminal(tmp_path):
    suite = make_suite(tmp_path / "sc", 2)
    key = "sk-proj-TESTKEY-" + "7c1e" * 8
    password = "hunter2-pass-word"
    basic = base64.b64encode(f"ops:{password}".encode()).decode()
    with FakeServer(models=["m"]) as server:
        server.echo_auth = True
        proxied = server.base_url.replace("http://", f"http://ops:{password}@")
        proc = harness("compare", str(suite), "--target", f"keyed={server.base_url}@m", "--target", f"proxied={proxied}@m",
                       "--retries", "1", "--out", str(tmp_path / "out"), "--json", cwd=tmp_path,
                       extra_env={"OPENAI_API_KEY": key})
        got = {v for r in server.requests if r.path.endswith("/chat/completions")
               for k, v in r.headers.items() if k.lower() == "authorization"}
    # the faults happened: OPENAI_API_KEY was sent (as the openai SDK would), the URL's userinfo as Basic
    # auth, and the server echoed both back in its 401s
    assert got == {f"Bearer {key}", f"Basic {basic}"}
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "Incorrect API key provided: [REDACTED]" in (tmp_path / "out" / "results.jsonl").read_text()
    artifacts = {p.name: p.read_text(errors="replace") for p in (tmp_path / "out").iterdir()}
    artifacts["terminal"] = proc.stdout + proc.stderr
    assert len(artifacts) == 7  # results, log, four reports, and the terminal
    for secret in (key, password, basic, key[:24]):
        leaks = {name: text.count(secret) for name, text in artifacts.items() if secret in text}
        assert not leaks, (secret, leaks)


# --- the results file -------------------------------------------------------------------------


def test_torn_line_repair_out_reuse_and_resume_mismatch(tmp_path):
    suite = make_suite(tmp_path / "sc", 3)
    out = tmp_path / "out"
    results = out / "results.jsonl"
    with FakeServer(models=["m"]) as server:
        server.responder = good_model
        first = harness(*run_args(suite, server, "--out", str(out)), cwd=tmp_path)
        assert first.returncode == 0, first.stderr
        # a crash mid-write of a fourth scenario's record
        (suite / "s03.yaml").write_text(SCENARIO.format(id="w03"))
        with results.open("a") as fh:
            fh.write('{"kind": "result", "schema_version": 1, "run_id": "x", "target": "m", "scenario_id": "w0')
        # the suite grew: that is a different run, and the message says which scenario
        grown = harness(*run_args(suite, server, "--resume", str(out)), cwd=tmp_path)
        assert grown.returncode == 2 and "added w03" in grown.stderr, grown.stderr
        assert "torn" in grown.stdout  # repaired before anything else was read
        (suite / "s03.yaml").unlink()
        resumed = harness(*run_args(suite, server, "--resume", str(out)), cwd=tmp_path)
        assert resumed.returncode == 0, resumed.stderr
        assert len(server.chat_requests) == 6  # nothing was run twice
        again = harness(*run_args(suite, server, "--out", str(out)), cwd=tmp_path)
        differ = harness(*run_args(suite, server, "--resume", str(out), "--temperature", "0.7",
                                   "--knob", "distractor_tools=2"), cwd=tmp_path)
    assert again.returncode == 2 and f"--resume {out}" in again.stderr and "already holds" in again.stderr
    assert differ.returncode == 2, differ.stderr
    assert "temperature: 0.0 then, 0.7 now" in differ.stderr and "difficulty knobs" in differ.stderr
    assert "Traceback" not in again.stderr + differ.stderr + grown.stderr
    assert len(read_results(results).records) == 3
    assert any(json.loads(line)["event"] == "results.repaired" for line in (out / "log.jsonl").read_text().splitlines())


# --- SIGKILL at random moments, then resume -------------------------------------------------------


def test_random_sigkills_then_resume_lose_and_duplicate_nothing(tmp_path):
    kills = int(os.environ.get("HARNESS_KILL_TRIALS", "5"))
    rng = random.Random(int(os.environ.get("HARNESS_KILL_SEED", "9")))
    n, epochs = 8, 2
    suite = make_suite(tmp_path / "sc", n)
    out = tmp_path / "out"

    def respond(request: dict) -> Canned:
        reply = good_model(request)
        reply.delay_s = rng.uniform(0.0, 0.08)
        return reply

    killed_with = []
    with FakeServer(models=["m"]) as server:
        server.responder = respond
        for trial in range(kills + 1):
            where = ["--resume", str(out)] if (out / "results.jsonl").exists() else ["--out", str(out)]
            args = run_args(suite, server, *where, "--epochs", str(epochs), "--concurrency", "3", "--json")
            proc = subprocess.Popen([sys.executable, "-m", "harness", *args], cwd=tmp_path, env=env(),
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            if trial < kills:
                # once records are landing, kill at a random moment of the run
                before = _lines(out)
                deadline = time.monotonic() + 60
                while _lines(out) <= before and proc.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.02)
                time.sleep(rng.uniform(0.0, 0.6))
                proc.kill()
                proc.wait()
                killed_with.append(_lines(out))
            else:
                stdout, stderr = proc.communicate(timeout=300)
                assert proc.returncode == 0, stderr[-3000:]
    results = read_results(out / "results.jsonl")
    keys = [r.key for r in results.records]
    assert len(keys) == len(set(keys)), "a finished run was run again"
    assert set(keys) == {("m", f"w{i:02d}", e) for i in range(n) for e in range(epochs)}, "a finished run was lost"
    assert all(r.score.passed for r in results.records)
    assert json.loads(stdout)["targets"][0]["overall"]["passed"] == n * epochs
    print(f"{kills} SIGKILLs at line counts {killed_with}: 0 lost, 0 duplicated")


def _lines(out: Path) -> int:
    path = out / "results.jsonl"
    return path.read_bytes().count(b"\n") if path.exists() else 0


# --- a real llama-server killed mid-run (integration: the lead runs these) ------------------------


@pytest.mark.integration
def test_a_real_llama_server_killed_mid_run_exits_3_and_a_resume_finishes_the_rest(llama_server, tmp_path):
    server = llama_server("Q8_0")
    port = server.port
    out = tmp_path / "out"
    args = ["run", str(ROOT / "scenarios"), "--tag", "smoke", "--base-url", server.base_url, "--model", server.model,
            "--name", "Q8_0", "--max-tokens", "256", "--retries", "1", "--no-preflight"]
    proc = subprocess.Popen([sys.executable, "-m", "harness", *args, "--out", str(out)], cwd=tmp_path, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while _lines(out) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # header, then the first finished scenario
    assert proc.poll() is None, "the run ended before the server could be killed"
    os.kill(server.pid, signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 3, stderr[-3000:]
    first = read_results(out / "results.jsonl")
    finished = {r.key for r in first.records if not r.score.infra_error}
    assert finished and any(r.score.infra_error for r in first.records)
    # the same build back on the same port: the resume reruns only what the crash lost
    llama_server("Q8_0", port=port)
    resumed = harness(*args, "--resume", str(out), cwd=tmp_path)
    assert resumed.returncode in (0, 1), resumed.stderr[-3000:]
    results = read_results(out / "results.jsonl")
    latest = results.latest()
    assert len(latest) == 6 and not any(r.score.infra_error for r in latest)
    kept = [r.key for r in results.records if not r.score.infra_error]
    assert len(kept) == len(set(kept)) and finished <= set(kept)
