"""The `harness` command end to end: real process, real HTTP (fake server), real files, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakeserver import FakeServer, free_port, text_reply, tool_call_reply

SCENARIO = """\
id: {id}
description: weather lookup
strata: [tool_selection, argument_validity]
tags: [cli]
tools: [get_weather, get_forecast]
world:
  weather:
    Paris: {{temp_c: 18, conditions: cloudy}}
turns:
  - user: What's the weather in Paris right now?
    expect:
      - call: get_weather
        args: {{city: Paris}}
      - answer: {{contains: "18"}}
"""


def write_suite(tmp_path: Path, count: int) -> Path:
    """`count` copies of SCENARIO (weather-0, weather-1, ...) in tmp_path/scenarios."""
    folder = tmp_path / "scenarios"
    folder.mkdir()
    for i in range(count):
        (folder / f"s{i}.yaml").write_text(SCENARIO.format(id=f"weather-{i}"))
    return folder


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    return write_suite(tmp_path, 3)


def model(wrong_on: set[str] = frozenset()):
    """A scripted model: right tool, then an answer; the wrong tool on the scenarios named."""

    def respond(request: dict) -> object:
        messages = request["messages"]
        if messages[-1]["role"] == "tool":
            return text_reply("It is 18 degrees and cloudy.")
        n = sum(1 for m in messages if m["role"] == "user")
        wrong = any(s in json.dumps(messages) for s in wrong_on) or n in wrong_on
        return tool_call_reply("get_forecast" if wrong else "get_weather", {"city": "Paris"})

    return respond


def _env() -> dict[str, str]:
    # the code of this checkout, whatever is installed (cwd is a temporary folder)
    return {**os.environ, "NO_COLOR": "1", "COLUMNS": "160", "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}


def harness(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=300)


def test_validate_ok_and_broken_files(tmp_path, suite):
    ok = harness("validate", str(suite), cwd=tmp_path)
    assert ok.returncode == 0 and "3 scenarios OK" in ok.stdout
    (suite / "bad.yaml").write_text(SCENARIO.format(id="bad").replace("call: get_weather", "call: get_wether"))
    bad = harness("validate", str(suite), cwd=tmp_path)
    assert bad.returncode == 2
    assert "bad.yaml" in bad.stderr and "get_wether" in bad.stderr and "does not offer" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_run_writes_results_and_reports_and_passes(tmp_path, suite):
    with FakeServer(models=["m"]) as server:
        server.responder = model()
        out = tmp_path / "run"
        proc = harness("run", str(suite), "--base-url", server.base_url, "--model", "m", "--out", str(out),
                       "--no-preflight", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["targets"][0]["overall"]["passed"] == 3
    for name in ("results.jsonl", "report.html", "summary.md", "junit.xml", "summary.json", "log.jsonl"):
        assert (out / name).stat().st_size > 0, name
    lines = (out / "results.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["kind"] == "header" and len(lines) == 4
    # every request carried the sampling parameters explicitly
    assert all(r["temperature"] == 0.0 and r["top_p"] == 1.0 and r["seed"] == 0 for r in server.chat_requests)


def test_unreachable_server_is_an_infra_exit_with_one_paragraph(tmp_path, suite):
    proc = harness("run", str(suite), "--base-url", f"http://127.0.0.1:{free_port()}/v1", "--model", "m",
                   "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert proc.returncode == 3
    assert "127.0.0.1" in proc.stderr and "Traceback" not in proc.stderr


def test_unknown_model_is_named(tmp_path, suite):
    with FakeServer(models=["qwen-a", "qwen-b"]) as server:
        proc = harness("run", str(suite), "--base-url", server.base_url, "--model", "llama-x",
                       "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert proc.returncode != 0
    assert "llama-x" in proc.stderr and "qwen-a" in proc.stderr and "Traceback" not in proc.stderr


def test_bad_flags_are_bad_input(tmp_path, suite):
    proc = harness("compare", str(suite), "--target", "nonsense", "--target", "b=http://x/v1@m", cwd=tmp_path)
    assert proc.returncode == 2 and "NAME=BASE_URL@MODEL" in proc.stderr
    proc = harness("run", str(suite), "--base-url", "http://x/v1", "--model", "m", "--knob", "colour=3", cwd=tmp_path)
    assert proc.returncode == 2 and "distractor_tools" in proc.stderr


def test_compare_finds_the_flip_and_gates_on_a_baseline(tmp_path, suite):
    with FakeServer(models=["ref"]) as ref, FakeServer(models=["q2"]) as q2:
        ref.responder = model()
        q2.responder = model(wrong_on={"weather-1"})
        # the scripted model learns the scenario from nothing but the conversation: make s1 distinguishable
        (suite / "s1.yaml").write_text(SCENARIO.format(id="weather-1").replace("right now?", "right now? (weather-1)"))
        out = tmp_path / "cmp"
        proc = harness("compare", str(suite), "--target", f"ref={ref.base_url}@ref", "--target", f"q2={q2.base_url}@q2",
                       "--reference", "ref", "--out", str(out), "--no-preflight", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    comparison = json.loads(proc.stdout)
    [versus] = [t["vs_reference"] for t in comparison["targets"] if t["name"] == "q2"]
    assert [f["scenario_id"] for f in versus["flips"]] == ["weather-1"]
    assert versus["flips"][0]["direction"] == "regression"
    # rebuilding from the results file alone gives the same flips
    rebuilt = harness("report", str(out / "results.jsonl"), "--json", "--out", str(tmp_path / "rebuilt"), cwd=tmp_path)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert json.loads(rebuilt.stdout)["targets"] == comparison["targets"]


def test_nightly_gate_exit_codes(tmp_path, suite):
    (suite / "s1.yaml").write_text(SCENARIO.format(id="weather-1").replace("right now?", "right now? (weather-1)"))

    def night(name: str, wrong_on: set[str], *extra: str) -> subprocess.CompletedProcess:
        with FakeServer(models=["q4"]) as server:
            server.responder = model(wrong_on=wrong_on)
            return harness("run", str(suite), "--base-url", server.base_url, "--model", "q4", "--no-preflight",
                           "--out", str(tmp_path / name), *extra, cwd=tmp_path)

    first = night("night1", set())
    assert first.returncode == 0, first.stderr
    baseline = str(tmp_path / "night1" / "summary.json")
    same = night("night2", set(), "--baseline", baseline, "--max-drop", "2")
    assert same.returncode == 0, same.stderr + same.stdout
    # one scenario of three breaking cannot be told from noise by the sign test (p = 0.5): it passes by default
    noisy = night("night3a", {"weather-1"}, "--baseline", baseline, "--max-drop", "2")
    assert noisy.returncode == 0 and "too few scenarios moved" in noisy.stdout
    worse = night("night3", {"weather-1"}, "--baseline", baseline, "--max-drop", "2", "--gate-alpha", "1",
                  "--junit", str(tmp_path / "junit.xml"), "--markdown", str(tmp_path / "summary.md"))
    assert worse.returncode == 1, worse.stderr + worse.stdout
    assert "weather-1" in worse.stdout + worse.stderr
    junit = (tmp_path / "junit.xml").read_text()
    assert "wrong_tool" in junit and "weather-1" in junit
    summary = (tmp_path / "summary.md").read_text()
    assert "weather-1" in summary and summary.startswith("### ❌ Nightly gate: REGRESSION")
    page = (tmp_path / "night3" / "report.html").read_text()
    assert page.index('id="gate"') < page.index('id="verdict"') and "Nightly gate: failed" in page
    # a first night, no baseline, fails on an absolute floor
    first_bad = night("night5", {"weather-1"}, "--fail-under", "90")
    assert first_bad.returncode == 1 and "overall 66.7% < 90%" in first_bad.stdout
    assert night("night6", set(), "--fail-under", "tool_selection=90").returncode == 0
    assert night("night7", set(), "--fail-under", "x=high").returncode == 2
    missing = night("night4", set(), "--baseline", str(tmp_path / "nope.json"))
    assert missing.returncode == 2 and "nope.json" in missing.stderr + missing.stdout


def test_report_keeps_two_nights_apart_unless_told_to_merge(tmp_path):
    from tests.factories import record, results as make_results, write_results_file

    for night, steps in (("n1", "ok ok"), ("n2", "ok wrong_tool")):
        res = make_results([record("q4", f"s{i}", steps=steps if i == 0 else "ok ok", run_id=night) for i in range(3)],
                           run_id=night)
        write_results_file(res, tmp_path / night / "results.jsonl")
    files = [str(tmp_path / "n1" / "results.jsonl"), str(tmp_path / "n2" / "results.jsonl")]
    refused = harness("report", *files, "--out", str(tmp_path / "r0"), cwd=tmp_path)
    assert refused.returncode == 2 and "look like separate nights" in refused.stderr + refused.stdout
    merged = harness("report", *files, "--merge", "--out", str(tmp_path / "r1"), "--json", cwd=tmp_path)
    assert merged.returncode == 0, merged.stderr
    notes = json.loads(merged.stdout)["disclosure"]["evidence_notes"]
    assert any("merged 2 sessions" in n and "3 records were replaced" in n for n in notes)
    apart = harness("report", *files, "--apart", "--out", str(tmp_path / "r2"), "--json", cwd=tmp_path)
    assert apart.returncode == 0, apart.stderr
    names = [t["name"] for t in json.loads(apart.stdout)["targets"]]
    assert sorted(names) == ["q4@n1", "q4@n2"]


def test_no_run_record_is_in_memory_while_the_plots_are_drawn(tmp_path, suite, monkeypatch):
    # the report stage's peak is the run's or matplotlib's, not both: `run` and `report` hand their records
    # to the reports, which let them go before the first plot
    import gc

    from harness.records import RunRecord
    from tests.clirun import invoke
    from tests.factories import spy_on_plots

    def records_alive() -> int:
        gc.collect()
        return sum(1 for o in gc.get_objects() if isinstance(o, RunRecord) and o.target.startswith("probe-"))

    alive = spy_on_plots(monkeypatch, records_alive)
    with FakeServer(models=["probe-model"]) as server:
        server.responder = model(wrong_on={"Paris"})  # the wrong tool every time
        ran = invoke(["run", str(suite), "--base-url", server.base_url, "--model", "probe-model", "--name", "probe-q4",
                      "--no-preflight", "--out", str(tmp_path / "run")])
    assert ran.exit_code == 0, ran.output
    assert "weather-" in ran.output and "report:" in ran.output  # the terminal still lists the failed scenario
    rebuilt = invoke(["report", str(tmp_path / "run" / "results.jsonl"), "--out", str(tmp_path / "again")])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert alive and set(alive) == {0}  # every plot of both commands
    page = (tmp_path / "again" / "report.html").read_text(encoding="utf-8")
    assert 'class="traj"' in page and "get_forecast" in page  # the failed run's trajectory is on the page


def test_a_run_whose_tools_never_reached_the_prompt_exits_4(tmp_path):
    from harness.records import Provenance
    from tests.factories import record, results as make_results, write_results_file

    dropped = {"q4": Provenance(preflight={"tools_in_prompt": False})}
    res = make_results([record("q4", f"s{i}") for i in range(3)], provenance=dropped)
    write_results_file(res, tmp_path / "results.jsonl")
    out = harness("report", str(tmp_path / "results.jsonl"), cwd=tmp_path)
    assert out.returncode == 4, out.stderr + out.stdout
    assert "never saw what it was graded on" in out.stdout
    assert "Meaningless run" in (tmp_path / "summary.md").read_text()
    assert harness("report", str(tmp_path / "results.jsonl"), "--allow-meaningless", cwd=tmp_path).returncode == 0
    fine = make_results([record("q4", "s0")], provenance={"q4": Provenance(preflight={"tools_in_prompt": True})})
    write_results_file(fine, tmp_path / "ok" / "results.jsonl")
    assert harness("report", str(tmp_path / "ok" / "results.jsonl"), cwd=tmp_path).returncode == 0


def test_a_server_down_at_the_start_still_writes_summary_and_junit(tmp_path, suite):
    import socket
    import xml.etree.ElementTree as ET

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once closed
    out = harness("run", str(suite), "--base-url", f"http://127.0.0.1:{port}/v1", "--model", "q4", "--no-preflight",
                  "--out", str(tmp_path / "night"), "--junit", str(tmp_path / "ci" / "junit.xml"), cwd=tmp_path)
    assert out.returncode == 3, out.stderr + out.stdout
    summary = (tmp_path / "night" / "summary.md").read_text()
    assert "infrastructure error, nothing was run" in summary
    root = ET.parse(tmp_path / "ci" / "junit.xml").getroot()
    assert root.get("errors") == "1" and root.find(".//error").get("type") == "infra_error"


def patched_harness(patch: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """`harness` with `patch` (Python source) run first in the same process: a fault put where one can happen."""
    code = f"{patch}\nimport sys\nfrom harness.cli import main\nsys.argv = ['harness', *sys.argv[1:]]\nmain()"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300)


def raising(name: str, exc: str) -> str:
    """A patch that makes `harness.report.<name>` raise `exc` (Python source of the exception)."""
    return f"import harness.report\ndef _fault(*a, **k): raise {exc}\nharness.report.{name} = _fault"


def _run_with(patch: str, suite: Path, tmp_path: Path) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path / "run"
    with FakeServer(models=["m"]) as server:
        server.responder = model()
        proc = patched_harness(patch, "run", str(suite), "--base-url", server.base_url, "--model", "m", "--out", str(out),
                               "--no-preflight", cwd=tmp_path)
    return proc, out


def test_a_fault_in_the_harness_exits_70_never_1_which_means_regression(tmp_path, suite):
    patch = raising("render_junit", "RuntimeError('renderer bug')")
    proc, out = _run_with(patch, suite, tmp_path)
    assert proc.returncode == 70, proc.stderr[-2000:]
    assert "Traceback" in proc.stderr and "RuntimeError: renderer bug" in proc.stderr
    assert "internal error: `harness run` failed with RuntimeError: renderer bug" in proc.stderr
    assert "not a result about any model" in proc.stderr
    # the runs that finished are kept, and the report written before the fault too
    assert len((out / "results.jsonl").read_text().splitlines()) == 4
    assert (out / "summary.md").stat().st_size > 0


def test_ctrl_c_exits_130_where_the_command_catches_it_and_where_none_does(tmp_path, suite):
    patch = raising("write_reports", "KeyboardInterrupt")
    # `run` catches it itself and says how to continue
    proc, out = _run_with(patch, suite, tmp_path)
    assert proc.returncode == 130, proc.stderr[-2000:]
    assert "--resume" in proc.stdout and len((out / "results.jsonl").read_text().splitlines()) == 4
    # `report` has no handler of its own: click would exit 1 (a regression, to CI); the group exits 130
    proc = patched_harness(patch, "report", str(out / "results.jsonl"), cwd=tmp_path)
    assert proc.returncode == 130, proc.stderr[-2000:]
    assert "interrupted" in proc.stderr and "Traceback" not in proc.stderr


def test_a_plot_that_cannot_be_drawn_costs_that_plot_only(tmp_path, suite):
    # matplotlib missing or broken: the page is written without its plots, saying why, and the exit code is the run's
    proc, out = _run_with("import sys\nsys.modules['matplotlib'] = None", suite, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    page = (out / "report.html").read_text()
    assert page.count("Plot not drawn (") == 2 and "ModuleNotFoundError" in page
    assert "data:image/svg+xml" not in page and 'id="depth"' in page and 'id="accuracy"' in page
    assert "report.plot_failed" in proc.stderr


@pytest.mark.parametrize("flags, named", [
    (["--out", "/proc/no-such-folder"], "--out /proc/no-such-folder: cannot create this folder"),
    (["--junit", "/proc/none/junit.xml"], "--junit /proc/none/junit.xml: its folder /proc/none: cannot create"),
    (["--markdown", "{tmp}"], "is a directory"),  # click says so first
])
def test_an_output_path_that_cannot_be_written_is_bad_input_before_any_request(tmp_path, suite, flags, named):
    flags = [f.format(tmp=tmp_path) for f in flags]
    if "--out" not in flags:
        flags += ["--out", str(tmp_path / "run")]
    with FakeServer(models=["m"]) as server:
        server.responder = model()
        proc = harness("run", str(suite), "--base-url", server.base_url, "--model", "m", "--no-preflight", *flags, cwd=tmp_path)
        sent = len(server.chat_requests)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert named in proc.stderr and "Traceback" not in proc.stderr
    assert sent == 0


def test_a_server_error_page_with_characters_xml_refuses_still_gives_a_valid_junit(tmp_path, suite):
    import xml.etree.ElementTree as ET

    from tests.fakeserver import Canned

    with FakeServer(models=["m"]) as server:
        server.route("/v1/models", Canned(status=503, text="overloaded \ufffe\x00\x1b[31m <b>&amp; ]]>"))
        out = harness("run", str(suite), "--base-url", server.base_url, "--model", "m", "--no-preflight",
                      "--out", str(tmp_path / "night"), cwd=tmp_path)
    assert out.returncode == 3, out.stderr + out.stdout
    root = ET.parse(tmp_path / "night" / "junit.xml").getroot()
    error = root.find(".//error")
    assert error.get("type") == "infra_error" and "overloaded" in error.text and "\ufffe" not in error.text
