"""Project files: one committed YAML for a nightly job or an audit; checked like scenarios; flags win."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.project import ProjectError, load_project
from tests.fakeserver import FakeServer
from tests.test_cli import SCENARIO, model, write_suite


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    return write_suite(tmp_path, 2)


def write(tmp_path: Path, text: str, name: str = "nightly.yaml") -> Path:
    path = tmp_path / "ci" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), env={"NO_COLOR": "1"}, catch_exceptions=False)


# -- the file -------------------------------------------------------------------------------------


def test_a_valid_file_reads_with_paths_relative_to_it(tmp_path):
    path = write(tmp_path, """\
scenarios: [../scenarios]
targets:
  - {name: nightly, base_url: "http://127.0.0.1:8080/v1", model: qwen2.5-1.5b-q4_k_m}
epochs: 3
critical: [tool_selection]
baseline: ../last-night/summary.json
max_drop: 2
gate_alpha: 0.05
fail_under: {overall: 80, tool_selection: 90}
knobs: {distractor_tools: 4}
preflight: false
""")
    project = load_project(path)
    assert project.scenarios == [str(path.parent / "../scenarios")]
    assert project.baseline == str(path.parent / "../last-night/summary.json")
    options = project.options()
    assert options["paths"] == (str(path.parent / "../scenarios"),)
    assert options["epochs"] == 3 and options["max_drop"] == 2 and options["gate_alpha"] == 0.05
    assert options["fail_under"] == ("80", "tool_selection=90")
    assert options["knobs"] == ("distractor_tools=4",)
    assert options["no_preflight"] is True
    # what the file leaves out stays the command's default
    assert "tolerance" not in options and "seed" not in options


def test_a_bare_fail_under_is_the_overall_floor(tmp_path):
    assert load_project(write(tmp_path, "fail_under: 75\n")).options()["fail_under"] == ("75",)


def test_every_problem_is_named_with_file_line_and_key_at_once(tmp_path):
    path = write(tmp_path, """\
targets:
  - name: ref
    base_url: http://127.0.0.1:8081/v1
    modle: gemma-q8_0
tolerence: 5
fail_under: {overall: 80, tool_selecton: 90}
epochs: 0
""")
    with pytest.raises(ProjectError) as caught:
        load_project(path)
    problems = {p.field: p for p in caught.value.problems}
    assert problems["tolerence"].line == 5
    assert "did you mean 'tolerance'" in problems["tolerence"].message
    assert problems["targets.0.modle"].line == 4 and "did you mean 'model'" in problems["targets.0.modle"].message
    assert problems["targets.0.model"].message == "required key is missing"
    assert "did you mean 'tool_selection'" in problems["fail_under"].message and problems["fail_under"].line == 6
    assert problems["epochs"].line == 7
    assert str(caught.value).splitlines()[0].startswith(f"{path}:")


def test_a_reference_that_is_no_target_is_named(tmp_path):
    path = write(tmp_path, """\
targets:
  - {name: ref, base_url: "http://a/v1", model: a}
  - {name: q4, base_url: "http://b/v1", model: b}
reference: q8
""")
    with pytest.raises(ProjectError) as caught:
        load_project(path)
    [problem] = caught.value.problems
    assert problem.line == 4 and "'q8' is not one of the targets (ref, q4)" in problem.message


# -- the commands ---------------------------------------------------------------------------------


def test_run_takes_target_scenarios_and_epochs_from_the_file_and_flags_win(tmp_path, suite):
    with FakeServer(models=["m"]) as server:
        server.responder = model()
        path = write(tmp_path, f"""\
scenarios: [../scenarios]
targets:
  - {{name: nightly, base_url: "{server.base_url}", model: m}}
epochs: 2
preflight: false
out: ../out
""")
        from_file = invoke("run", "-c", str(path), "--json")
        overridden = invoke("run", "-c", str(path), "--epochs", "1", "--out", str(tmp_path / "flag-out"), "--json")
    assert from_file.exit_code == 0, from_file.stderr
    summary = json.loads(from_file.stdout)
    [target] = summary["targets"]
    assert target["name"] == "nightly" and target["overall"]["n"] == 4  # 2 scenarios x 2 epochs
    assert (tmp_path / "out" / "results.jsonl").exists()
    assert overridden.exit_code == 0, overridden.stderr
    assert json.loads(overridden.stdout)["targets"][0]["overall"]["n"] == 2
    assert (tmp_path / "flag-out" / "results.jsonl").exists()


def test_compare_takes_targets_reference_and_tolerance_from_the_file(tmp_path, suite):
    with FakeServer(models=["a"]) as a, FakeServer(models=["b"]) as b:
        a.responder = model()
        b.responder = model(wrong_on={"weather-1"})
        (suite / "s1.yaml").write_text(SCENARIO.format(id="weather-1").replace("right now?", "right now? (weather-1)"))
        path = write(tmp_path, f"""\
scenarios: [../scenarios]
targets:
  - {{name: q8, base_url: "{a.base_url}", model: a}}
  - {{name: q2, base_url: "{b.base_url}", model: b}}
reference: q8
tolerance: 60
preflight: false
out: ../audit
""")
        result = invoke("compare", "-c", str(path), "--json")
    assert result.exit_code == 0, result.stderr
    comparison = json.loads(result.stdout)
    assert comparison["reference"] == "q8" and comparison["tolerance"] == 60
    assert [t["name"] for t in comparison["targets"]] == ["q8", "q2"]


def test_a_broken_project_file_is_bad_input_naming_the_line(tmp_path, suite):
    path = write(tmp_path, "scenarios: [../scenarios]\nepochz: 3\n")
    result = invoke("run", "-c", str(path))
    assert result.exit_code == 2
    assert f"{path}:2 at epochz: unknown key 'epochz'; did you mean 'epochs'?" in result.stderr


def test_run_with_a_file_of_several_targets_points_to_compare(tmp_path, suite):
    path = write(tmp_path, """\
targets:
  - {name: a, base_url: "http://a/v1", model: a}
  - {name: b, base_url: "http://b/v1", model: b}
""")
    result = invoke("run", "-c", str(path))
    assert result.exit_code == 2 and "harness compare -c" in result.stderr


def test_a_floor_in_the_file_fails_a_first_night(tmp_path, suite):
    """`fail_under` in the file is the gate's --fail-under: a night below it fails without any baseline."""
    with FakeServer(models=["m"]) as server:
        server.responder = model(wrong_on={1})  # the wrong tool everywhere: 0% passed
        path = write(tmp_path, f"""\
scenarios: [../scenarios]
targets:
  - {{name: nightly, base_url: "{server.base_url}", model: m}}
preflight: false
out: ../out
fail_under: 80
""")
        result = invoke("run", "-c", str(path))
    assert result.exit_code == 1, result.stdout + result.stderr
    assert "--fail-under" in result.stdout and "80" in result.stdout


def test_validate_checks_the_project_file_and_its_scenarios(tmp_path, suite):
    good = write(tmp_path, "scenarios: [../scenarios]\nepochs: 3\nfail_under: 80\n")
    result = invoke("validate", "-c", str(good))
    assert result.exit_code == 0, result.stderr
    assert f"{good} OK" in result.stdout and "2 scenarios OK" in result.stdout
    bad = write(tmp_path, "scenarios: [../scenarios]\nmax_dorp: 3\n", name="bad.yaml")
    result = invoke("validate", "-c", str(bad))
    assert result.exit_code == 2 and f"{bad}:2 at max_dorp" in result.stderr and "'max_drop'" in result.stderr
