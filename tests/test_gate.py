"""The nightly gate: a drop beyond --max-drop fails, a missing baseline is bad input, a dead server is infra."""

from __future__ import annotations

import pytest

from harness import cli
from harness.compare import Comparison, GateRow, GateTable, summarize_run
from harness.gate import ExitCode, gate, load_baseline
from harness.report import write_reports
from tests.factories import record, results


def night(*, failing: int = 0, scenarios: int = 50, target: str = "q4", infra: int = 0, extra: tuple[str, ...] = ()) -> Comparison:
    """One night of `scenarios` single-epoch scenarios; the first `failing` fail, the last `infra` hit infra errors."""
    recs = [record(target, f"s{i:02d}", steps="ok wrong_tool" if i < failing else "ok ok", infra=i >= scenarios - infra)
            for i in range(scenarios)]
    recs += [record(target, sid) for sid in extra]
    return summarize_run(results(recs))


@pytest.fixture
def baseline(tmp_path):
    """Last night's summary.json, written the way `harness run` writes it: 50 scenarios, 2 failing (96%)."""
    comparison = night(failing=2)
    res = results([record("q4", "s00")])
    return write_reports(res, comparison, tmp_path / "last-night")["summary.json"]


def test_same_results_pass(baseline):
    result = gate(night(failing=2), baseline, max_drop=2)
    assert result.passed and result.exit_code is ExitCode.OK
    assert result.overall_drop_pts == 0 and result.regressions == []
    assert "no regression beyond 2 pts at false-alarm rate 0.05" in result.message


def test_a_drop_beyond_max_drop_is_a_regression_naming_the_scenarios(baseline):
    # five more scenarios fail: 96% -> 86%, a 10-point drop; 5 worse, 0 better: sign test p = 1/32
    result = gate(night(failing=7), baseline, max_drop=2)
    assert not result.passed and result.exit_code is ExitCode.REGRESSION
    assert result.overall_drop_pts == pytest.approx(10.0)
    assert [c.scenario_id for c in result.regressions] == ["s02", "s03", "s04", "s05", "s06"]
    assert result.targets[0].p_value == pytest.approx(1 / 32)
    assert "q4 86.0% vs 96.0% (-10.0 pts" in result.message and "s02 (q4: 100% -> 0%)" in result.message
    assert "5 worse / 0 better, sign test p=0.031" in result.message


def test_a_drop_too_small_to_tell_from_noise_passes_and_says_so(baseline):
    # two scenarios fail (-4 pts > max_drop) but 2 of 2 moving down happens by chance 25% of the time
    result = gate(night(failing=4), baseline, max_drop=2)
    assert result.passed and result.targets[0].p_value == pytest.approx(0.25)
    assert "too few scenarios moved to tell it from noise" in result.message
    # a team that trusts its deterministic model can gate on the points alone
    strict = gate(night(failing=4), baseline, max_drop=2, alpha=1.0)
    assert strict.exit_code is ExitCode.REGRESSION


def test_an_unchanged_model_with_flaky_scenarios_rarely_trips_the_gate():
    # 50 scenarios, 10% flaky (each passes half the time), 1 epoch a night: the audit saw 17.6% false alarms
    rng = __import__("random").Random(7)
    nights = 400
    alarms = 0
    for _ in range(nights):
        def one():
            rates = {f"s{i:02d}": (1.0 if i >= 5 else float(rng.random() < 0.5)) for i in range(50)}
            return GateTable(targets={"q4": GateRow(overall=sum(rates.values()) / 50, scored=50, scenarios=rates)})
        before, now = one(), one()
        import tempfile, os
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
            fh.write(before.model_dump_json())
        try:
            alarms += gate(now, fh.name, max_drop=2).exit_code is ExitCode.REGRESSION
        finally:
            os.unlink(fh.name)
    assert alarms / nights <= 0.05 + 3 * (0.05 * 0.95 / nights) ** 0.5


def test_edited_scenarios_are_not_compared_and_are_listed(tmp_path):
    rows = {"s00": 1.0, "s01": 1.0, "s02": 1.0, "s03": 1.0, "s04": 1.0, "s05": 1.0}
    before = GateTable(targets={"q4": GateRow(overall=1.0, scored=6, scenarios=rows,
                                               hashes={s: f"h-{s}" for s in rows})})
    path = tmp_path / "b.json"
    path.write_text(before.model_dump_json())
    # five scenarios regressed, but all five were edited: the gate must not call that a regression, nor hide it
    now_rates = {s: (0.0 if s != "s00" else 1.0) for s in rows}
    now = GateTable(targets={"q4": GateRow(overall=1 / 6, scored=6, scenarios=now_rates,
                                            hashes={s: (f"h-{s}" if s == "s00" else f"new-{s}") for s in rows})})
    result = gate(now, path, max_drop=2)
    assert result.passed and result.targets[0].edited_scenarios == ["s01", "s02", "s03", "s04", "s05"]
    assert result.targets[0].shared_scenarios == 1
    assert any("5 scenario(s) edited since the baseline" in n for n in result.notes)


def test_another_build_under_the_same_name_is_named(tmp_path):
    rows = {"s00": 1.0}
    before = GateTable(targets={"q4": GateRow(overall=1.0, scored=1, scenarios=rows, identity={"quantization": "Q4_K_M"})})
    path = tmp_path / "b.json"
    path.write_text(before.model_dump_json())
    now = GateTable(targets={"q4": GateRow(overall=1.0, scored=1, scenarios=rows, identity={"quantization": "Q2_K"})})
    result = gate(now, path, max_drop=2)
    assert result.targets[0].identity_changes == ["quantization: Q4_K_M -> Q2_K"]
    assert any("another build than in the baseline" in n for n in result.notes)


def test_absolute_floors_fail_a_first_night_without_a_baseline():
    from harness.gate import parse_thresholds, thresholds

    floors = parse_thresholds(["80", "tool_selection=90"])
    assert floors == {"overall": 80.0, "tool_selection": 90.0}
    failures = thresholds(night(failing=2, scenarios=6), floors)
    assert failures == ["q4 overall 66.7% < 80% (4/6 runs)", "q4 tool_selection 66.7% < 90% (4/6 runs)"]
    assert thresholds(night(failing=0, scenarios=6), floors) == []
    assert "no scored runs" in thresholds(night(scenarios=2), {"multi_call": 50})[0]
    with pytest.raises(ValueError, match="STRATUM=PERCENT"):
        parse_thresholds(["tool_selection=high"])


def test_a_drop_of_exactly_max_drop_passes(baseline):
    result = gate(night(failing=3), baseline, max_drop=2)  # 96% -> 94%
    assert result.passed and result.overall_drop_pts == pytest.approx(2.0)
    assert [c.scenario_id for c in result.regressions] == ["s02"]


def test_improvements_are_listed_and_pass(baseline):
    result = gate(night(failing=0), baseline, max_drop=0)
    assert result.passed and [c.scenario_id for c in result.improvements] == ["s00", "s01"]


def test_new_and_removed_scenarios_are_noted_not_counted(baseline):
    current = summarize_run(results([record("q4", f"s{i:02d}", steps="ok wrong_tool" if i < 2 else "ok ok")
                                     for i in range(40)] + [record("q4", "brand_new", steps="ok wrong_tool")]))
    result = gate(current, baseline, max_drop=0)
    assert result.passed, result.message
    drop = result.targets[0]
    assert drop.shared_scenarios == 40 and drop.new_scenarios == ["brand_new"] and len(drop.missing_scenarios) == 10


def test_missing_baseline_is_bad_input_with_a_clear_message(tmp_path):
    result = gate(night(), tmp_path / "nope" / "summary.json", max_drop=2)
    assert result.exit_code is ExitCode.BAD_INPUT and not result.passed
    assert "nope/summary.json does not exist" in result.message


@pytest.mark.parametrize("content, words", [
    ("{not json", "is not JSON (line 1"),
    ("[1, 2]", "is not a summary.json object"),
    ('{"targets": [{"name": 3}]}', "is not a summary.json this harness wrote: targets.0"),
])
def test_unreadable_baseline_is_bad_input(tmp_path, content, words):
    path = tmp_path / "summary.json"
    path.write_text(content)
    result = gate(night(), path, max_drop=2)
    assert result.exit_code is ExitCode.BAD_INPUT and words in result.message


def test_no_target_in_common_is_bad_input(baseline):
    result = gate(night(target="renamed"), baseline, max_drop=2)
    assert result.exit_code is ExitCode.BAD_INPUT
    assert "no target in common" in result.message and "renamed" in result.message


def test_a_dead_server_is_infra_not_a_regression(baseline):
    result = gate(night(infra=50), baseline, max_drop=2)
    assert result.exit_code is ExitCode.INFRA and "50 of 50 runs hit infrastructure errors" in result.message


def test_too_many_infra_errors_is_infra(baseline):
    assert gate(night(infra=5), baseline, max_drop=2).exit_code is ExitCode.OK  # 10%: tolerated, the rest is compared
    result = gate(night(infra=15), baseline, max_drop=2)  # 30% > 20%
    assert result.exit_code is ExitCode.INFRA and "15 of 50" in result.message


def test_a_bare_gate_table_is_a_baseline_too(tmp_path):
    path = tmp_path / "table.json"
    path.write_text(GateTable(targets={"q4": GateRow(overall=1.0, scored=2, scenarios={"s00": 1.0, "s01": 1.0})}).model_dump_json())
    table, set_hash = load_baseline(path)
    assert set_hash is None and table.targets["q4"].scenarios == {"s00": 1.0, "s01": 1.0}
    result = gate(night(failing=1, scenarios=2), path, max_drop=10, alpha=0.5)
    assert result.exit_code is ExitCode.REGRESSION and result.overall_drop_pts == pytest.approx(50.0)


def test_gate_result_as_markdown_names_the_verdict_and_the_scenarios(baseline):
    text = gate(night(failing=7), baseline, max_drop=2).to_markdown()
    assert text.startswith("### ❌ Nightly gate: REGRESSION (max drop 2 pts")
    assert "| q4 | 96.0% | 86.0% | -10.0 pts | 50 | 5 / 0 | 0.031 |" in text and "| s02 | q4 | 100% | 0% |" in text
    assert gate(night(failing=2), baseline, max_drop=2).to_markdown().startswith("### ✅ Nightly gate: OK")


def test_gate_result_round_trips_as_json(baseline):
    result = gate(night(failing=4), baseline, max_drop=2)
    assert type(result).model_validate_json(result.model_dump_json()) == result


def test_exit_codes_are_the_documented_contract_and_the_cli_uses_them():
    # CI scripts branch on these numbers: changing one breaks users' pipelines
    assert [(c.name, c.value) for c in ExitCode] == [
        ("OK", 0), ("REGRESSION", 1), ("BAD_INPUT", 2), ("INFRA", 3), ("MEANINGLESS", 4), ("INTERNAL", 70),
        ("INTERRUPTED", 130)]
    assert cli.ExitCode is ExitCode
    # and docs/ci.md's table names every one of them
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "ci.md").read_text()
    assert all(f"| {c.value} | `{c.name}` |" in doc for c in ExitCode), [c for c in ExitCode if f"| {c.value} | `{c.name}` |" not in doc]


def test_the_example_workflow_uses_only_flags_harness_run_has():
    import re
    from pathlib import Path

    import yaml

    workflow = yaml.safe_load((Path(__file__).resolve().parents[1] / "docs" / "nightly-workflow.yml").read_text())
    steps = workflow["jobs"]["eval"]["steps"]
    command = next(s["run"] for s in steps if "harness run" in s.get("run", ""))
    baseline = next(s["run"] for s in steps if s.get("id") == "baseline")
    used = set(re.findall(r"(?<![\w-])--[a-z][a-z-]+", command.split("harness run", 1)[1]))
    used |= set(re.findall(r"(?<![\w-])--[a-z][a-z-]+", baseline.split("args=", 1)[1].splitlines()[0]))
    known = {opt for p in cli.run.params for opt in p.opts}
    assert {"--baseline", "--max-drop", "--junit", "--html", "--out"} <= used
    assert used <= known, f"the workflow passes flags `harness run` lacks: {sorted(used - known)}"
