"""End to end with real components: the `harness` CLI against real llama-servers serving real GGUF rungs.

These assert on what the harness records (structured calls parsed, steps scored, server timings and
provenance captured, servers gone afterwards), not on the tiny base model being smart.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import llamacpp
from harness.records import read_results

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
RUNGS = ("Q8_0", "Q2_K")


@pytest.fixture(scope="module")
def rungs() -> dict[str, Path]:
    binaries = llamacpp.find_llama_binaries()
    return llamacpp.make_ladder(llamacpp.assemble_base_model(), quants=RUNGS, binaries=binaries)


@pytest.fixture(scope="module")
def servers(rungs):
    started = {}
    try:
        for rung in RUNGS:
            started[rung] = llamacpp.LlamaServer(rungs[rung], alias=f"gemma-{rung.lower()}").start()
        yield started
    finally:
        for server in started.values():
            server.stop()


def harness(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "160"}
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)


def test_run_records_real_calls_scores_and_server_timings(servers, tmp_path):
    server = servers["Q8_0"]
    out = tmp_path / "run"
    proc = harness("run", str(ROOT / "scenarios"), "--tag", "smoke", "--base-url", server.base_url,
                   "--model", server.model, "--name", "Q8_0", "--max-tokens", "256", "--out", str(out), cwd=tmp_path)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    results = read_results(out / "results.jsonl", bodies=True)
    assert results.records and not any(r.score.infra_error for r in results.records)
    replies = [s.reply for r in results.records for s in r.trajectory.steps]
    structured = [c for rep in replies for c in rep.tool_calls if c.source == "tool_calls"]
    assert structured, "the few-shot prefix should make the base model emit structured tool calls"
    assert all(c.name and c.id for c in structured)
    # every expected step was graded, and the server's own timings were captured
    for record in results.records:
        assert record.score.steps and all(s.checks for s in record.score.steps)
    timed = [rep.timings for rep in replies if rep.timings is not None]
    assert timed and all(t.predicted_per_second and t.predicted_per_second > 0 for t in timed)
    assert all(rep.request.get("temperature") == 0.0 and rep.request.get("seed") == 0 for rep in replies)
    # provenance and preflight: the rung's file type, and the tools really reach the prompt
    prov = results.provenance("Q8_0")
    assert prov.server == "llama.cpp" and prov.quantization == "Q8_0"
    assert prov.preflight.get("tools_in_prompt") is True
    assert (out / "report.html").stat().st_size > 10_000


def test_compare_two_rungs_discloses_builds_and_reaches_a_verdict(servers, tmp_path):
    out = tmp_path / "cmp"
    targets = [f"--target={r}={servers[r].base_url}@{servers[r].model}" for r in RUNGS]
    proc = harness("compare", str(ROOT / "scenarios"), "--tag", "smoke", *targets, "--reference", "Q8_0",
                   "--max-tokens", "256", "--out", str(out), "--json", cwd=tmp_path)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    comparison = json.loads(proc.stdout)
    names = {t["name"] for t in comparison["targets"]}
    assert names == set(RUNGS)
    assert comparison["verdict"] is not None and comparison["verdict"]["builds"]
    q2 = next(t for t in comparison["targets"] if t["name"] == "Q2_K")
    assert q2["vs_reference"]["overall"]["pairs"] > 0
    assert q2["cost"]["gen_tokens_per_s"] and q2["cost"]["file_size_bytes"] < next(
        t for t in comparison["targets"] if t["name"] == "Q8_0")["cost"]["file_size_bytes"]
    # the disclosure names each build's quant and that both rungs were requantized from the packaged Q4_K_M
    builds = json.dumps(comparison["disclosure"])
    assert "Q8_0" in builds and "Q2_K" in builds and "requantized" in builds.lower()


def test_servers_are_gone_after_stop(rungs):
    import httpx

    server = llamacpp.LlamaServer(rungs["Q2_K"]).start()
    url, pid = server.url, server.pid
    assert httpx.get(url + "/health", timeout=5).status_code == 200
    server.stop()
    with pytest.raises(httpx.TransportError):
        httpx.get(url + "/health", timeout=2)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
