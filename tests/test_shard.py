"""`--shard k/n` splits a suite the same way on every machine, and `harness report` merges the shards."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from tests.clirun import invoke

from harness.records import read_results
from harness.scenario import load_scenarios
from harness.shard import Shard, ShardError, parse_shard, select_shard
from tests.fakeserver import FakeServer

SUITE = load_scenarios([str(Path(__file__).resolve().parent.parent / "scenarios")])


@pytest.mark.parametrize("spec", ["0/2", "3/2", "1/0", "1", "a/b", "", "1/2/3"])
def test_a_bad_shard_says_what_was_expected(spec):
    with pytest.raises(ShardError, match="k/n|between 1 and n"):
        parse_shard(spec)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 56])
def test_shards_cover_the_suite_once_and_are_balanced(n):
    parts = [select_shard(SUITE, Shard(index=k, count=n)) for k in range(1, n + 1)]
    ids = [s.id for part in parts for s in part]
    assert sorted(ids) == sorted(s.id for s in SUITE)
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1


def test_the_split_does_not_depend_on_load_order():
    shuffled = list(SUITE)
    random.Random(7).shuffle(shuffled)
    for k in (1, 2, 3):
        shard = Shard(index=k, count=3)
        assert {s.id for s in select_shard(shuffled, shard)} == {s.id for s in select_shard(SUITE, shard)}


def _server() -> FakeServer:
    server = FakeServer(models=["a", "b"])

    def answer(request):
        # build a calls the first tool once per turn, build b only ever answers in text
        last = request["messages"][-1]["role"]
        if request["model"] == "a" and last == "user" and request.get("tools"):
            name = request["tools"][0]["function"]["name"]
            return {"choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": None,
                    "tool_calls": [{"id": "c1", "type": "function", "function": {"name": name, "arguments": "{}"}}]}}]}
        return {"choices": [{"index": 0, "message": {"role": "assistant", "content": "18 degrees"}, "finish_reason": "stop"}]}

    server.responder = answer
    return server


def _compare(server: FakeServer, out: Path, *extra: str) -> None:
    args = ["compare", "--target", f"a={server.base_url}@a", "--target", f"b={server.base_url}@b", "--tag", "smoke",
            "--no-preflight", "--epochs", "1", "--json", "--out", str(out), *extra]
    result = invoke(args)
    assert result.exit_code in (0, 1), result.output


def _summary(report_dir: Path) -> dict:
    data = json.loads((report_dir / "summary.json").read_text())
    return {
        "targets": {t["name"]: (t["overall"]["passed"], t["overall"]["n"], t["scenario_rates"]) for t in data["targets"]},
        "scenarios": sorted(data["disclosure"]["scenario_ids"]),
        "set_hash": data["disclosure"]["scenario_set_hash"],
    }


def test_merged_shards_report_what_one_unsharded_run_reports(tmp_path):
    with _server() as server:
        _compare(server, tmp_path / "whole")
        _compare(server, tmp_path / "s1", "--shard", "1/2")
        _compare(server, tmp_path / "s2", "--shard", "2/2")
    one = read_results(tmp_path / "s1" / "results.jsonl")
    two = read_results(tmp_path / "s2" / "results.jsonl")
    assert one.header.config.shard == "1/2" and two.header.config.shard == "2/2"
    assert not {r.scenario_id for r in one.records} & {r.scenario_id for r in two.records}
    result = invoke(["report", str(tmp_path / "s1" / "results.jsonl"), str(tmp_path / "s2" / "results.jsonl"),
                                       "--out", str(tmp_path / "merged"), "--json"])
    assert result.exit_code in (0, 1), result.output
    merged, whole = _summary(tmp_path / "merged"), _summary(tmp_path / "whole")
    assert merged == whole
    assert len(merged["scenarios"]) == 6 and merged["targets"]["a"][1] == 6


def test_a_merged_report_names_the_files_it_was_built_from_not_a_results_file_it_did_not_write(tmp_path):
    with _server() as server:
        _compare(server, tmp_path / "s1", "--shard", "1/2")
        _compare(server, tmp_path / "s2", "--shard", "2/2")
    files = [str(tmp_path / "s1" / "results.jsonl"), str(tmp_path / "s2" / "results.jsonl")]
    result = invoke(["report", *files, "--out", str(tmp_path / "merged")])
    assert result.exit_code in (0, 1), result.output
    said = "".join(result.output.split())  # however the console wrapped it
    assert f"results:{files[0]},{files[1]}" in said
    assert not (tmp_path / "merged" / "results.jsonl").exists() and str(tmp_path / "merged" / "results.jsonl") not in said
