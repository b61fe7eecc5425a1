"""Results files: append-only, crash-tolerant, merged across files, with clear errors."""

from __future__ import annotations

import hashlib
import json
import time

import pytest

from harness import scrub
from harness.outcomes import Outcome
from harness.records import (
    SCHEMA_VERSION, ResultsError, ResultsWriter, RunConfig, RunHeader, RunRecord, Target, read_results, repair_results,
    strip_bodies,
)
from harness.scores import ScenarioScore
from harness.trajectory import Reply, Step, Trajectory


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


def test_a_line_that_is_json_but_no_record_object_names_file_and_line(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text(header("a").model_dump_json() + "\n[1, 2]\n" + record().model_dump_json() + "\n")
    with pytest.raises(ResultsError, match=r"results.jsonl:2: a JSON list, not a record object"):
        read_results(path)


def test_bytes_that_are_not_utf8_are_an_error_in_the_middle_and_a_torn_write_at_the_end(tmp_path):
    path = tmp_path / "results.jsonl"
    good = (header("a").model_dump_json() + "\n" + record("a", "s1").model_dump_json() + "\n").encode()
    path.write_bytes(good + b'{"kind": "res\xff\xfe' + b"\n")
    assert [r.scenario_id for r in read_results(path).records] == ["s1"]
    path.write_bytes(good + b'{"kind": "res\xff\xfe\n' + record("a", "s2").model_dump_json().encode() + b"\n")
    with pytest.raises(ResultsError, match=r"results.jsonl:3: not UTF-8 text \(byte 13\)"):
        read_results(path)


def _with_bodies(scenario: str) -> RunRecord:
    rec = record("a", scenario)
    reply = Reply(content="hi", request={"model": "m", "messages": [{"role": "user", "content": "x" * 500}]},
                  response={"choices": [{"message": {"content": "hi"}}]})
    rec.trajectory.steps.append(Step(index=0, turn=1, reply=reply))
    return rec


def test_raw_bodies_stay_in_the_file_unless_asked_for(tmp_path):
    path = tmp_path / "results.jsonl"
    with ResultsWriter(path) as w:
        w.header(header("a"))
        w.record(_with_bodies("s1"))
    light = read_results(path)
    [step] = light.records[0].trajectory.steps
    assert light.bodies is False and step.reply.request == {} and step.reply.response is None
    assert step.reply.content == "hi"  # everything else is read
    full = read_results(path, bodies=True)
    [step] = full.records[0].trajectory.steps
    assert full.bodies is True and step.reply.request["model"] == "m" and step.reply.response["choices"]
    # the file itself is untouched by either read
    assert '"x' in path.read_text() and json.loads(path.read_text().splitlines()[1])["trajectory"]["steps"][0]["reply"]["request"]


def test_strip_bodies_drops_them_from_the_record_and_leaves_the_reply_objects_alone():
    rec = _with_bodies("s1")
    reply = rec.trajectory.steps[0].reply
    assert strip_bodies(rec) is rec
    assert rec.trajectory.steps[0].reply.request == {} and rec.trajectory.steps[0].reply.response is None
    assert rec.trajectory.steps[0].reply.content == "hi"
    assert reply.request["model"] == "m" and reply.response  # a client may hand this object out again


def test_line_and_paragraph_separators_a_model_wrote_stay_inside_their_record(tmp_path):
    # JSON allows U+2028, U+2029 and U+0085 raw in strings and the writer leaves them raw; splitlines() broke
    # such a record in two ("not JSON", or silently dropped when it was the last line)
    path = tmp_path / "results.jsonl"
    odd = "line\u2028sep\u2029para\x85nel\x1cfs\rcr end"
    with ResultsWriter(path) as w:
        w.header(header("a"))
        for sid in ("s1", "s2"):
            rec = record("a", sid)
            rec.trajectory.steps.append(Step(index=0, turn=1, reply=Reply(content=odd)))
            w.record(rec)
    assert "\u2028" in path.read_text(encoding="utf-8")  # raw in the file, not escaped
    got = read_results(path).records
    assert [r.scenario_id for r in got] == ["s1", "s2"]
    assert all(r.trajectory.steps[0].reply.content == odd for r in got)


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


# --- torn lines, caps, secrets, fsync batching --------------------------------------------------


def _file_with(tmp_path, tail: bytes):
    path = tmp_path / "results.jsonl"
    with ResultsWriter(path) as w:
        w.header(header("a"))
        w.record(record("a", "s1"))
    with path.open("ab") as fh:
        fh.write(tail)
    return path


def test_a_torn_last_line_is_truncated_and_the_file_appends_cleanly_again(tmp_path):
    path = _file_with(tmp_path, record("a", "s2").model_dump_json()[:70].encode())
    repair = repair_results(path)
    assert repair is not None and repair.line == 3 and repair.dropped_bytes == 70 and "torn" in repair.message
    assert repair_results(path) is None  # idempotent
    with ResultsWriter(path) as w:  # what a resume does next
        w.header(header("a"))
        w.record(record("a", "s2"))
    results = read_results(path)
    assert [r.scenario_id for r in results.records] == ["s1", "s2"] and len(results.headers) == 2


def test_a_complete_last_record_missing_only_its_newline_is_kept(tmp_path):
    path = _file_with(tmp_path, record("a", "s2").model_dump_json().encode())
    repair = repair_results(path)
    assert repair is not None and repair.added_newline and repair.dropped_bytes == 0
    with ResultsWriter(path) as w:
        w.header(header("a"))
    assert [r.scenario_id for r in read_results(path).records] == ["s1", "s2"]


def test_zero_bytes_a_machine_crash_left_after_the_last_line_are_dropped(tmp_path):
    path = _file_with(tmp_path, b"\0" * 4096)
    repair = repair_results(path)
    assert repair is not None and not path.read_bytes().endswith(b"\0")
    assert path.read_bytes().endswith(b"\n")
    assert [r.scenario_id for r in read_results(path).records] == ["s1"]


def test_an_intact_file_is_left_alone(tmp_path):
    path = _file_with(tmp_path, b"")
    before = path.read_bytes()
    assert repair_results(path) is None and path.read_bytes() == before
    assert repair_results(tmp_path / "absent.jsonl") is None


def test_a_50_mb_body_is_stored_as_head_tail_size_and_hash(tmp_path):
    page = "<html>" + "proxy error " * 4_200_000 + "</html>"
    rec = record("a", "s1", passed=False)
    reply = Reply(outcome=Outcome.INFRA_ERROR, error="HTTP 502: " + page, response={"raw_text": page},
                  content=page)
    rec.trajectory.steps.append(Step(index=0, turn=1, reply=reply))
    path = tmp_path / "results.jsonl"
    with ResultsWriter(path) as w:
        w.record(rec)
    size = path.stat().st_size
    assert size < 200_000, size
    [stored] = read_results(path).records
    err = stored.trajectory.steps[0].reply.error
    assert err.startswith("HTTP 502: <html>proxy error") and err.endswith("</html>")
    assert f"{len(('HTTP 502: ' + page).encode()):,} bytes" in err
    assert hashlib.sha256(("HTTP 502: " + page).encode()).hexdigest() in err


def test_a_raw_body_of_many_small_parts_is_capped_whole(tmp_path):
    rec = record("a", "s1")
    rec.trajectory.steps.append(Step(index=0, turn=1, reply=Reply(response={"choices": list(range(300_000))})))
    path = tmp_path / "results.jsonl"
    with ResultsWriter(path) as w:
        w.record(rec)
    assert path.stat().st_size < 100_000
    [stored] = read_results(path, bodies=True).records
    assert "capped" in stored.trajectory.steps[0].reply.response


def test_a_registered_secret_never_reaches_the_file(tmp_path):
    scrub.clear_secrets()
    scrub.add_secret("sk-test-0123456789")
    try:
        rec = record("a", "s1")
        rec.trajectory.steps.append(Step(index=0, turn=1, reply=Reply(
            error="HTTP 401: Incorrect API key provided: sk-test-0123456789",
            response={"error": {"message": "key sk-test-0123456789"}})))
        path = tmp_path / "results.jsonl"
        with ResultsWriter(path) as w:
            w.header(RunHeader(run_id="r", config=RunConfig(), targets=[
                Target(name="a", base_url="http://u:sk-test-0123456789@h/v1", model="m")]))
            w.record(rec)
        text = path.read_text()
        assert "sk-test-0123456789" not in text and text.count(scrub.REDACTED) >= 3
        assert read_results(path).records[0].trajectory.steps[0].reply.error.endswith(scrub.REDACTED)
    finally:
        scrub.clear_secrets()


def test_fsyncs_are_batched_but_every_line_is_on_disk_at_once(tmp_path):
    path = tmp_path / "results.jsonl"
    w = ResultsWriter(path, fsync_interval_s=0.2)
    w.header(header("a"))
    for i in range(200):
        w.record(record("a", f"s{i}"))
        if i == 0:
            # flushed to the OS before record() returns: a SIGKILL now loses nothing finished
            assert len(read_results(path).records) == 1
    assert w.fsyncs < 20  # the header's, then one per timer tick at most: not one per record
    time.sleep(0.6)
    assert w.fsyncs >= 2  # the timer synced the batch within the interval, no further write needed
    w.close()
    assert len(read_results(path).records) == 200
