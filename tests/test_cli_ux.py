"""What a new user hits at the command line: exit codes and hints for wrong input, warnings said once,
output that works in a CI log and in a pipe. Real HTTP against the fake servers, in process (CliRunner)
except where the process itself matters (a closed pipe)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import main
from tests.fake_ollama import FakeOllama, OllamaModel
from tests.fakeserver import FakeServer, text_reply, tool_call_reply
from tests.test_cli import SCENARIO, write_suite

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    return write_suite(tmp_path, 2)


def weather_model(*, probe_in_text: bool = False, delay_s: float = 0.0):
    """Right tool, then an answer; with `probe_in_text` it answers the preflight's "Call the X tool now" in text."""

    def respond(request: dict) -> object:
        messages = request["messages"]
        last = messages[-1]
        # prompt tokens grow with what is sent, tools included, as a real template renders them
        prompt = len(json.dumps(messages) + json.dumps(request.get("tools") or [])) // 4
        usage = {"prompt_tokens": prompt, "completion_tokens": 12, "total_tokens": prompt + 12}
        if last["role"] == "tool":
            reply = text_reply("It is 18 degrees and cloudy.", usage=usage)
        elif probe_in_text and "Call the " in str(last.get("content")):
            reply = text_reply("Sure, I can help with that.", usage=usage)
        elif not request.get("tools"):
            reply = text_reply("ready", usage=usage)
        else:
            reply = tool_call_reply("get_weather", {"city": "Paris"}, usage=usage)
        reply.delay_s = delay_s
        return reply

    return respond


def invoke(*args: str, env: dict | None = None):
    return CliRunner().invoke(main, list(args), env={"NO_COLOR": "1", **(env or {})}, catch_exceptions=False)


def out_of(result) -> str:
    return result.stdout + result.stderr


# -- wrong input is exit 2, with the hint that fixes it ------------------------------------------


def test_a_mistyped_ollama_model_is_bad_input_with_the_close_match(tmp_path, suite):
    with FakeOllama([OllamaModel("qwen2.5:7b-instruct")]) as server:
        result = invoke("run", str(suite), "--base-url", server.base_url, "--model", "qwen2.5:7b-instrcut",
                        "--out", str(tmp_path / "o"))
    assert result.exit_code == 2, out_of(result)
    assert "did you mean 'qwen2.5:7b-instruct'" in result.stderr.lower()
    # pulling the typo would not help
    assert "ollama pull" not in result.stderr


def test_an_ollama_url_without_v1_is_bad_input_naming_the_url_to_use(tmp_path, suite):
    with FakeOllama([OllamaModel("qwen2.5:7b")]) as server:
        result = invoke("run", str(suite), "--base-url", server.root_url, "--model", "qwen2.5:7b",
                        "--out", str(tmp_path / "o"))
    assert result.exit_code == 2, out_of(result)
    assert f"--base-url {server.root_url}/v1" in result.stderr


def test_an_unknown_ollama_tag_in_compare_is_bad_input(tmp_path, suite):
    with FakeOllama([OllamaModel("qwen2.5:7b-instruct-q8_0"), OllamaModel("qwen2.5:7b-instruct-q4_K_M")]) as server:
        result = invoke("compare", str(suite), "--ollama", "qwen2.5:7b-instruct-q8_0,qwen2.5:7b-instruct-q4_K_X",
                        "--ollama-host", server.root_url, "--out", str(tmp_path / "o"))
    assert result.exit_code == 2, out_of(result)
    assert "Did you mean 'qwen2.5:7b-instruct-q4_K_M' for 'qwen2.5:7b-instruct-q4_K_X'?" in result.stderr


def test_a_server_down_is_still_infrastructure(tmp_path, suite):
    from tests.fakeserver import free_port

    result = invoke("run", str(suite), "--base-url", f"http://127.0.0.1:{free_port()}/v1", "--model", "m",
                    "--out", str(tmp_path / "o"))
    assert result.exit_code == 3, out_of(result)


def test_mistyped_id_and_tag_are_named_with_a_suggestion(tmp_path, suite):
    by_id = invoke("run", str(suite), "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--id", "weather-7")
    assert by_id.exit_code == 2
    assert "--id weather-7" in by_id.stderr and "'weather-0'" in by_id.stderr
    by_tag = invoke("run", str(suite), "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--tag", "clii")
    assert by_tag.exit_code == 2
    assert "--tag clii" in by_tag.stderr and "did you mean 'cli'" in by_tag.stderr
    # one good id and one typo: the typo is not silently dropped
    mixed = invoke("run", str(suite), "--base-url", "http://127.0.0.1:9/v1", "--model", "m",
                   "--id", "weather-0", "--id", "wether-1")
    assert mixed.exit_code == 2 and "--id wether-1" in mixed.stderr


def test_llama_server_serving_another_model_than_asked_is_named_once(tmp_path, suite):
    with FakeServer() as server:
        server.route("/v1/models", {"object": "list", "data": [
            {"id": "gemma-3-270m-Q4_K_M.gguf", "object": "model", "owned_by": "llamacpp"}]})
        server.responder = weather_model()
        result = invoke("run", str(suite), "--base-url", server.base_url, "--model", "qwen2.5-7b",
                        "--out", str(tmp_path / "o"), "--no-preflight")
    assert result.exit_code == 0, out_of(result)
    assert out_of(result).count("serves 'gemma-3-270m-Q4_K_M.gguf'") == 1
    # asking for the file's name is no mismatch
    with FakeServer() as server:
        server.route("/v1/models", {"object": "list", "data": [
            {"id": "/models/gemma-3-270m-Q4_K_M.gguf", "object": "model", "owned_by": "llamacpp"}]})
        server.responder = weather_model()
        quiet = invoke("run", str(suite), "--base-url", server.base_url, "--model", "gemma-3-270m-Q4_K_M",
                       "--out", str(tmp_path / "o2"), "--no-preflight")
    assert quiet.exit_code == 0 and "serves" not in out_of(quiet)


# -- preflight warnings: once, and not alarming when the run shows calls working -------------------


def test_a_preflight_doubt_is_said_once_and_dropped_when_the_runs_make_calls(tmp_path, suite):
    out = tmp_path / "o"
    with FakeServer(models=["m"]) as server:
        server.responder = weather_model(probe_in_text=True)
        result = invoke("run", str(suite), "--base-url", server.base_url, "--model", "m", "--out", str(out))
    assert result.exit_code == 0, out_of(result)
    text = out_of(result)
    assert text.count("asked outright to call") == 1, text
    summary = json.loads((out / "summary.json").read_text())
    # the runs made structured calls: the report does not carry the doubt as a warning
    assert not any("asked outright" in w for w in summary["disclosure"]["warnings"])
    assert "asked outright" not in (out / "report.html").read_text()


def test_identical_warnings_of_several_targets_print_as_one_line(tmp_path, suite):
    with FakeServer(models=["a"]) as one, FakeServer(models=["b"]) as two:
        one.responder = two.responder = weather_model(probe_in_text=True)
        result = invoke("compare", str(suite), "--target", f"a={one.base_url}@a", "--target", f"b={two.base_url}@b",
                        "--out", str(tmp_path / "o"))
    assert result.exit_code == 0, out_of(result)
    assert out_of(result).count("asked outright to call") == 1
    assert "[a, b] asked outright" in out_of(result)


# -- CI logs: no terminal -------------------------------------------------------------------------


def test_without_a_terminal_tables_are_not_cut_and_progress_comes_as_lines(tmp_path, suite):
    with FakeServer(models=["a-rather-long-build-name"]) as server:
        server.responder = weather_model(delay_s=0.15)
        result = invoke("run", str(suite), "--base-url", server.base_url, "--model", "a-rather-long-build-name",
                        "--out", str(tmp_path / "o"), "--no-preflight", "--epochs", "2",
                        env={"COLUMNS": None, "HARNESS_PROGRESS_INTERVAL": "0.2"})
    assert result.exit_code == 0, out_of(result)
    lines = result.stdout.splitlines()
    progress = [line for line in lines if "a-rather-long-build-name:" in line and " runs" in line]
    # a heartbeat while it runs (4 runs x 2 requests x 0.15 s), and the line that says it finished
    assert len(progress) >= 3, result.stdout
    assert progress[-1].endswith("done") and "4/4 runs" in progress[-1]
    header = next(line for line in lines if "pass@1" in line)
    assert "p50 latency" in header and "infra" in header and "…" not in header
    assert max(len(line) for line in lines) > 80


def test_a_closed_pipe_does_not_turn_into_the_regression_exit_code(tmp_path, suite):
    env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(ROOT)}
    env.pop("COLUMNS", None)

    def with_reader_gone(*args: str) -> subprocess.CompletedProcess:
        read, write = os.pipe()
        os.close(read)  # as `| head` does once it has its lines
        try:
            return subprocess.run([sys.executable, "-m", "harness", *args], stdout=write, stderr=subprocess.PIPE,
                                  text=True, cwd=tmp_path, env=env, timeout=300)
        finally:
            os.close(write)

    listed = with_reader_gone("list", str(suite))
    assert listed.returncode == 0, listed.stderr
    assert "Traceback" not in listed.stderr and "BrokenPipe" not in listed.stderr
    with FakeServer(models=["m"]) as server:
        server.responder = weather_model()
        ran = with_reader_gone("run", str(suite), "--base-url", server.base_url, "--model", "m",
                               "--out", str(tmp_path / "o"), "--no-preflight")
    assert ran.returncode == 0, ran.stderr
    assert "BrokenPipe" not in ran.stderr
    # the run itself was not cut short by the pipe
    assert len((tmp_path / "o" / "results.jsonl").read_text().splitlines()) == 3


def test_tags_that_exist_but_select_nothing_here_are_not_called_typos(tmp_path, suite):
    from tests.fakeserver import free_port

    (suite / "other.yaml").write_text(SCENARIO.format(id="other").replace("tags: [cli]", "tags: [nightly]"))
    down = f"http://127.0.0.1:{free_port()}/v1"
    # --tag is any-of and --id narrows it: `nightly` picks nothing once --id keeps weather-0, and that is fine
    narrowed = invoke("run", str(suite), "--base-url", down, "--model", "m",
                      "--tag", "cli", "--tag", "nightly", "--id", "weather-0", "--out", str(tmp_path / "o"))
    assert narrowed.exit_code == 3, out_of(narrowed)  # past the selection, on to the (down) server
    empty = invoke("run", str(suite), "--base-url", down, "--model", "m", "--tag", "nightly", "--id", "weather-0")
    assert empty.exit_code == 2
    assert "no scenario in" in empty.stderr and "did you mean" not in empty.stderr


def test_ollama_placement_and_capabilities_reach_the_report(tmp_path, suite):
    import re

    tags = ["qwen2.5:7b-instruct-q8_0", "qwen2.5:7b-instruct-q4_K_M"]
    with FakeOllama([OllamaModel(tags[0], quantization="Q8_0", size=8_000_000_000, vram_fraction=0.75),
                     OllamaModel(tags[1])]) as server:
        result = invoke("compare", str(suite), "--ollama", ",".join(tags), "--ollama-host", server.root_url,
                        "--out", str(tmp_path / "o"), "--no-preflight")
    assert result.exit_code in (0, 1), out_of(result)
    page = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", (tmp_path / "o" / "report.html").read_text()))
    assert "6.00 GB VRAM, 75% in VRAM" in page
    assert "completion, tools" in page


@pytest.mark.parametrize("url", ["notaurl", "ftp://host/v1", "http://localhost:abc/v1", "http:///v1", "localhost:11434/v1"])
def test_a_base_url_that_is_no_http_url_is_bad_input_not_a_server_down(tmp_path, suite, url):
    result = invoke("run", str(suite), "--base-url", url, "--model", "m", "--out", str(tmp_path / "run"))
    assert result.exit_code == 2, out_of(result)
    assert "is not an http(s) URL with a host" in out_of(result) and "e.g. http://localhost:11434/v1" in out_of(result)
    assert not (tmp_path / "run").exists()  # refused before anything was made


def test_a_bad_url_in_compare_names_its_target(tmp_path, suite):
    result = invoke("compare", str(suite), "--target", "ref=http://127.0.0.1:1/v1@m", "--target", "q4=nohost@m",
                    "--out", str(tmp_path / "run"))
    assert result.exit_code == 2, out_of(result)
    assert "target 'q4': base URL 'nohost'" in out_of(result)


@pytest.mark.parametrize("flag, value", [("--temperature", "-1"), ("--top-p", "0"), ("--top-p", "1.5"),
                                         ("--max-tokens", "0"), ("--max-drop", "-2")])
def test_sampling_and_gate_values_out_of_range_are_refused(tmp_path, suite, flag, value):
    # a free port: were the value accepted, the run would get as far as the server check and exit 3
    result = invoke("run", str(suite), "--base-url", "http://127.0.0.1:9/v1", "--model", "m", flag, value,
                    "--out", str(tmp_path / "run"))
    assert result.exit_code == 2, out_of(result)
    assert f"Invalid value for '{flag}'" in out_of(result)


def test_a_project_file_is_held_to_the_same_ranges(tmp_path, suite):
    project = tmp_path / "harness.yaml"
    project.write_text("targets:\n  - {name: a, base_url: 'http://127.0.0.1:9/v1', model: m}\ntemperature: -0.5\ntop_p: 0\n")
    result = invoke("run", str(suite), "-c", str(project))
    assert result.exit_code == 2, out_of(result)
    assert "temperature: Input should be greater than or equal to 0" in out_of(result)
    assert "top_p: Input should be greater than 0" in out_of(result)


def test_an_unwritable_cache_folder_and_schema_path_are_bad_input(tmp_path, suite):
    result = invoke("run", str(suite), "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--cache", "/proc/no-cache",
                    "--out", str(tmp_path / "run"))
    assert result.exit_code == 2, out_of(result)
    assert "--cache /proc/no-cache: cannot create this folder" in out_of(result)
    result = invoke("schema", "--out", "/proc/none/scenario.schema.json")
    assert result.exit_code == 2, out_of(result)
    assert "--out /proc/none/scenario.schema.json: cannot write the schema here" in out_of(result)


def test_names_and_paths_with_brackets_are_printed_as_they_are_never_read_as_markup(tmp_path, suite):
    # rich reads `[q4]` as a style (the text vanished) and `[/x]` as a closing tag (MarkupError: exit 70)
    odd = tmp_path / "runs [/x] [q4]"
    with FakeServer(models=["m"]) as server:
        server.responder = weather_model()
        result = invoke("run", str(suite), "--base-url", server.base_url, "--model", "m", "--name", "q4[/x] [red]",
                        "--no-preflight", "--out", str(odd))
    assert result.exit_code == 0, out_of(result)
    text = out_of(result)
    assert "q4[/x] [red]: 2 run(s) to go" in text and f"-> {odd}" in text and str(odd / "results.jsonl") in text
    (suite / "odd.yaml").write_text(SCENARIO.format(id="odd") + "catches: '[/x] closes, [citation needed] stays'\n")
    listed = invoke("list", str(suite))
    assert listed.exit_code == 0, out_of(listed)
    assert "[/x] closes, [citation needed] stays" in " ".join(out_of(listed).split())
