"""Results files: append-only, crash-tolerant, merged across files, with clear errors."""

from __future__ import annotations

import json

import pytest

from harness.outcomes import Outcome
from harness.records import (
    SCHEMA_VERSION, ResultsError, ResultsWriter, RunConfig, RunHeader, RunRecord, Target, read_results,
)
from harness.scores import ScenarioScore
from harness.trajectory import Trajectory


def record(target="t", scenario="s", epoch=0, passed=True) -> RunRecord:
    return RunRecord(
        run_id="r", target=target, scenario_id=scenario, scenario_hash="h", strata=["tool_selection"], epoch=epoch,
        trajectory=Trajectory(scenario_id=scenario, target=target, epoch=epoch),
        score=ScenarioScore(scenario_id=scenario, passed=passed, outcome=Outcome.OK if passed else Outcome.WRONG_TOOL),
    )


def header(*targets: str) -> RunHeader:
    return RunHeader(run_id="r", config=RunConfig(), targets=[Target(name=t, base_url="http://x/v1", model=t, api_key="secret") for t in targets])


def test_round_trip_and_api_key_never_written(tmp_path):
    path = tmp_path / "results.jsonl"
    with ResultsWriter(path) as w:
        w.header(header("a"))
        w.record(record("a", "s1"))
        w.record(record("a", "s2", passed=False))
    assert "secret" not in path.read_text()
    results = read_results(path)
    assert [r.scenario_id for r in results.records] == ["s1", "s2"]
    assert results.targets() == ["a"]
    assert json.loads(path.read_text().splitlines()[0])["schema_version"] == SCHEMA_VERSION


def test_truncated_last_line_from_a_crash_keeps_every_finished_run(tmp_path):
    path = tmp_path / "results.jsonl"
    with ResultsWriter(path) as w:
        w.header(header("a"))
        w.record(record("a", "s1"))
    with path.open("a") as fh:
        fh.write(record("a", "s2").model_dump_json()[:50])
    assert [r.scenario_id for r in read_results(path).records] == ["s1"]


def test_bad_line_in_the_middle_names_file_and_line(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text(header("a").model_dump_json() + "\n{oops\n" + record().model_dump_json() + "\n")
    with pytest.raises(ResultsError, match=r"results.jsonl:2: not JSON"):
        read_results(path)


def test_other_schema_version_is_refused(tmp_path):
    path = tmp_path / "results.jsonl"
    data = json.loads(header("a").model_dump_json())
    data["schema_version"] = 99
    path.write_text(json.dumps(data) + "\n")
    with pytest.raises(ResultsError, match="schema_version 99"):
        read_results(path)


def test_several_files_merge_and_the_last_record_per_key_wins(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    with ResultsWriter(a) as w:
        w.header(header("ref"))
        w.record(record("ref", "s1", passed=False))
    with ResultsWriter(b) as w:
        w.header(header("q4"))
        w.record(record("q4", "s1"))
        w.record(record("ref", "s1", passed=True))
    results = read_results([a, b])
    assert results.targets() == ["ref", "q4"]
    assert [r.score.passed for r in results.for_target("ref")] == [True]
    assert len(read_results(tmp_path).records) == 3  # a folder reads every .jsonl in it


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ResultsError, match="no such file"):
        read_results(tmp_path / "nope.jsonl")
