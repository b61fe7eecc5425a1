"""compare_runs on hand-made runs: flips, statistics, depth, noise floor, verdict, cost and confounds."""

from __future__ import annotations

import pytest
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.proportion import proportion_confint

from harness.compare import Comparison, compare_runs, summarize_run
from harness.outcomes import Outcome
from harness.records import Provenance, RunConfig, Target

from tests.factories import record, results

OK3 = "ok ok ok"
GB = 1_000_000_000


def test_flips_are_found_in_both_directions_with_first_failing_steps():
    res = results([
        record("ref", "a", steps=OK3), record("q4", "a", steps="ok wrong_tool not_reached"),
        record("ref", "b", steps="ok context_lost not_reached"), record("q4", "b", steps=OK3),
        record("ref", "c", steps=OK3), record("q4", "c", steps=OK3),
        record("ref", "d", steps="missing_call not_reached not_reached"),
        record("q4", "d", steps="ok type_error not_reached"),
    ])
    vs = compare_runs(res, reference="ref").target("q4").vs_reference
    assert vs.pairing == "epoch"
    assert [(f.scenario_id, f.direction) for f in vs.flips] == [("a", "regression"), ("b", "improvement")]
    regression, improvement = vs.flips
    assert regression.reference_outcome is Outcome.OK and regression.reference_first_failed_step is None
    assert regression.target_outcome is Outcome.WRONG_TOOL and regression.target_first_failed_step == 1
    assert regression.diverged_at_step == 1
    assert improvement.reference_outcome is Outcome.CONTEXT_LOST and improvement.reference_first_failed_step == 1
    # step-level: both failed `d`, but at different steps; `c` did not diverge
    steps = {s.scenario_id: s for s in vs.step_flips}
    assert set(steps) == {"a", "b", "d"}
    assert (steps["d"].index, steps["d"].direction, steps["d"].scenario_flipped) == (0, "improvement", False)
    assert (steps["a"].reference_outcome, steps["a"].target_outcome) == (Outcome.OK, Outcome.WRONG_TOOL)
    assert vs.overall.regressions == 1 and vs.overall.improvements == 1 and vs.flip_rate == pytest.approx(0.5)


def test_mcnemar_and_wilson_match_statsmodels_on_the_same_runs():
    # 6 regressions, 1 improvement, 10 both pass, 3 both fail
    plan = [(True, False)] * 6 + [(False, True)] + [(True, True)] * 10 + [(False, False)] * 3
    recs = []
    for i, (r, t) in enumerate(plan):
        recs.append(record("ref", f"s{i}", steps="ok" if r else "wrong_tool"))
        recs.append(record("q4", f"s{i}", steps="ok" if t else "wrong_tool"))
    cmp = compare_runs(results(recs), reference="ref")
    paired = cmp.target("q4").vs_reference.overall
    assert (paired.both_pass, paired.regressions, paired.improvements, paired.both_fail) == (10, 6, 1, 3)
    assert paired.mcnemar_p == pytest.approx(mcnemar([[10, 6], [1, 3]], exact=True).pvalue)
    assert paired.delta_pts == pytest.approx(-25.0)
    assert paired.ci_low_pts < -25.0 < paired.ci_high_pts
    assert paired.newcombe_low_pts < -25.0 < paired.newcombe_high_pts
    overall = cmp.target("q4").overall
    assert (overall.passed, overall.n) == (11, 20)
    assert (overall.low, overall.high) == pytest.approx(proportion_confint(11, 20, method="wilson"))


def test_survival_curve_and_depth_on_a_hand_made_case():
    res = results([
        record("m", "all", steps=OK3),
        record("m", "f0", steps="wrong_tool not_reached not_reached"),
        record("m", "f1", steps="ok context_lost not_reached"),
        record("m", "f2", steps="ok ok value_error"),
    ])
    depth = summarize_run(res).target("m").depth
    assert [p.survival for p in depth] == pytest.approx([0.75, 0.5, 0.25])
    assert [p.at_risk for p in depth] == [4, 3, 2]
    assert [p.failed_here for p in depth] == [1, 1, 1]
    assert [(p.rate.passed, p.rate.n) for p in depth] == [(3, 4), (2, 4), (1, 4)]


def test_survival_censors_shorter_scenarios_instead_of_counting_them_on_track():
    res = results([
        record("m", "all", steps=OK3),
        record("m", "f0", steps="wrong_tool not_reached not_reached"),
        record("m", "f1", steps="ok context_lost not_reached"),
        record("m", "f2", steps="ok ok value_error"),
        record("m", "short", steps="ok"),
    ])
    depth = summarize_run(res).target("m").depth
    assert depth[0].survival == pytest.approx(4 / 5)
    assert depth[1].at_risk == 3  # `short` has no step 1: it leaves the risk set
    assert depth[1].survival == pytest.approx(4 / 5 * 2 / 3)
    assert depth[2].survival == pytest.approx(4 / 5 * 2 / 3 * 1 / 2)


def _epochs(target, scenario, passes, **kw):
    return [record(target, scenario, epoch=e, steps="ok" if p else "wrong_tool", **kw) for e, p in enumerate(passes)]


def test_noise_floor_with_three_epochs_labels_a_target_within_it():
    recs = (
        _epochs("ref", "a", [True, True, False]) + _epochs("ref", "b", [True, True, True])
        # q4 flips once against the reference: 1 of 6 pairs
        + _epochs("q4", "a", [True, True, False]) + _epochs("q4", "b", [True, False, True])
    )
    cmp = compare_runs(results(recs), reference="ref")
    noise = cmp.noise_floor
    assert noise.known and noise.target == "ref" and noise.epochs == 3
    assert (noise.pairs, noise.flip_rate) == (6, pytest.approx(2 / 6))
    vs = cmp.target("q4").vs_reference
    assert vs.flip_rate == pytest.approx(1 / 6)
    assert vs.within_noise is True and "within the noise floor" in vs.noise_note
    assert cmp.target("q4").pass_hat_k[2].value == pytest.approx((0 + 0) / 2)
    assert cmp.target("ref").pass_hat_k[2].value == pytest.approx((0 + 1) / 2)


def test_noise_floor_is_unknown_with_one_epoch():
    cmp = compare_runs(results([record("ref", "a"), record("q4", "a", steps="wrong_tool")]), reference="ref")
    assert cmp.noise_floor.known is False and "unknown" in cmp.noise_floor.note
    vs = cmp.target("q4").vs_reference
    assert vs.within_noise is None and "noise floor unknown" in vs.noise_note


def _ladder():
    """ref passes everything; q8 loses one; q4 loses context_retention; q2 loses everything deep."""
    recs = []
    for i in range(20):
        stratum = "context_retention" if i < 10 else "tool_selection"
        recs.append(record("f16", f"s{i}", steps=OK3, strata=[stratum]))
        # q8: one tool_selection scenario lost: -5 pts overall, -10 pts on tool_selection
        recs.append(record("q8", f"s{i}", steps=OK3 if i != 19 else "ok ok wrong_tool", strata=[stratum]))
        # q4: 4 of 10 context scenarios kept vs all 10: 40% vs 100%
        recs.append(record("q4", f"s{i}", strata=[stratum],
                           steps=OK3 if i >= 6 else "ok context_lost not_reached"))
        recs.append(record("q2", f"s{i}", strata=[stratum], steps="ok wrong_tool not_reached"))
    prov = {
        "f16": Provenance(quantization="F16", file_size_bytes=16 * GB),
        "q8": Provenance(quantization="Q8_0", file_size_bytes=8 * GB),
        "q4": Provenance(quantization="Q4_K_M", file_size_bytes=4 * GB),
        "q2": Provenance(quantization="Q2_K", file_size_bytes=2 * GB),
    }
    return recs, prov


def test_verdict_picks_the_smallest_passing_build_and_says_why_the_others_fail():
    recs, prov = _ladder()
    # q8 drops 10 pts on tool_selection: within a 10-point tolerance, not within 5
    cmp = compare_runs(results(recs, provenance=prov), reference="f16", tolerance=10.0)
    v = cmp.verdict
    assert v.size_basis == "file_size_bytes" and v.order == ["q2", "q4", "q8"]
    assert [t.name for t in cmp.targets] == ["q2", "q4", "q8", "f16"]
    assert v.critical_strata == ["context_retention", "tool_selection"]
    assert v.chosen == "q8" and "q8 is the smallest build within 10 pts of f16" in v.summary
    builds = {b.target: b for b in v.builds}
    assert builds["q8"].passes and builds["q8"].reasons == []
    assert not builds["q4"].passes
    assert builds["q4"].reasons[0].startswith("overall 70.0% vs 100.0% (-30.0 pts > 10), McNemar p=")
    assert builds["q4"].reasons[1].startswith("context_retention 40.0% vs 100.0% (-60.0 pts > 10), McNemar p=")
    assert len(builds["q4"].reasons) == 2  # tool_selection held
    assert not builds["q2"].passes and any(r.startswith("tool_selection 0.0% vs 100.0%") for r in builds["q2"].reasons)

    strict = compare_runs(results(recs, provenance=prov), reference="f16", tolerance=5.0).verdict
    assert strict.chosen is None and "keep f16" in strict.summary
    # -5 pts overall is within a 5-point tolerance; -10 on a critical stratum is not
    assert [b.target for b in strict.builds][-1] == "q8"
    assert len(strict.builds[-1].reasons) == 1
    assert strict.builds[-1].reasons[0].startswith("tool_selection 90.0% vs 100.0% (-10.0 pts > 5), McNemar p=1")


def test_verdict_respects_critical_strata_and_falls_back_to_given_order():
    recs, _ = _ladder()
    # only tool_selection is critical and sizes are unknown: q4 (tool_selection intact) still fails overall
    cmp = compare_runs(results(recs), reference="f16", tolerance=35.0, critical_strata=["tool_selection"],
                       order=["q2", "q4", "q8", "f16"])
    assert cmp.verdict.size_basis == "order"
    assert cmp.verdict.chosen == "q4"
    unknown = compare_runs(results(recs), reference="f16", critical_strata=["multi_call"]).verdict
    assert unknown.chosen is None
    assert "multi_call: no paired runs" in unknown.builds[0].reasons[-1]


def test_decision_grade_needs_the_ci_on_one_side_of_the_tolerance():
    recs, prov = _ladder()
    v = compare_runs(results(recs, provenance=prov), reference="f16", tolerance=10.0).verdict
    builds = {b.target: b for b in v.builds}
    # q2 lost every scenario: the whole CI is far below -10
    assert builds["q2"].decision_grade and "wholly below" in builds["q2"].decision_note
    # q8 passes, but one loss in ten tool_selection scenarios cannot rule out a drop beyond 10 pts
    assert not builds["q8"].decision_grade and "not ruled out" in builds["q8"].decision_note
    assert not v.decision_grade and "not decision-grade" in v.summary


def test_infra_errors_are_excluded_from_accuracy_and_pairing_but_counted():
    res = results([
        record("ref", "a"), record("ref", "b"), record("ref", "c", steps="wrong_tool"),
        record("q4", "a"), record("q4", "b", infra=True, attempts=3), record("q4", "c", steps="wrong_tool"),
    ])
    q4 = compare_runs(res, reference="ref").target("q4")
    assert (q4.runs, q4.scored, q4.infra_errors) == (3, 2, 1)
    assert (q4.overall.passed, q4.overall.n) == (1, 2)
    assert q4.cost.infra_errors == 1 and q4.cost.retries == 4  # two replies with 3 attempts each
    assert q4.vs_reference.overall.pairs == 2 and q4.vs_reference.flips == []
    assert "infra_error" not in q4.failures.first_failure
    assert q4.scenario_rates["b"].rate is None


def test_epochs_that_differ_are_paired_per_scenario_by_majority():
    recs = (
        _epochs("ref", "a", [True, True, False]) + _epochs("ref", "b", [True, False, False])
        + [record("q4", "a", steps="wrong_tool"), record("q4", "b")]
    )
    vs = compare_runs(results(recs), reference="ref").target("q4").vs_reference
    assert vs.pairing == "majority" and vs.overall.pairs == 2
    assert {(f.scenario_id, f.direction, f.epoch) for f in vs.flips} == {("a", "regression", None),
                                                                          ("b", "improvement", None)}


def test_confounds_are_listed_when_chat_templates_differ():
    recs = [record("ref", "a"), record("q4", "a")]
    same = {"ref": Provenance(chat_template="chatml", server="llama.cpp"),
            "q4": Provenance(chat_template="chatml", server="llama.cpp")}
    assert compare_runs(results(recs, provenance=same), reference="ref").disclosure.confounds == []
    differ = {"ref": Provenance(chat_template="chatml", context_length=8192),
              "q4": Provenance(chat_template="llama3", context_length=8192, warnings=["spills to CPU"])}
    disclosure = compare_runs(results(recs, provenance=differ), reference="ref").disclosure
    assert [c.field for c in disclosure.confounds] == ["chat_template"]
    assert disclosure.confounds[0].values == {"ref": "chatml", "q4": "llama3"}
    assert "ref=chatml, q4=llama3" in disclosure.confounds[0].message
    assert disclosure.warnings == ["[q4] spills to CPU"]


def test_a_changed_scenario_and_unknown_fields_are_disclosed():
    recs = [record("ref", "a", scenario_hash="h1"), record("q4", "a", scenario_hash="h2")]
    prov = {"ref": Provenance(server_version="b4000"), "q4": Provenance()}
    d = compare_runs(results(recs, provenance=prov), reference="ref").disclosure
    assert [c.field for c in d.confounds] == ["scenario_hash"]
    assert any(u.startswith("server version unknown for q4") for u in d.unverified)


def test_disclosure_carries_task_builds_and_sample_sizes():
    recs = [record("ref", "a"), record("ref", "b"), record("q4", "a"), record("q4", "b", infra=True)]
    prov = {"ref": Provenance(quantization="F16", digest="sha256:aa"),
            "q4": Provenance(quantization="Q4_K_M", extra={"requantized_from": "Q8_0"})}
    d = compare_runs(results(recs, provenance=prov, config=RunConfig(epochs=1)), reference="ref").disclosure
    assert d.scenario_ids == ["a", "b"] and d.scenario_set_hash_source == "computed" and d.scenario_set_hash
    assert d.sample_sizes == {"ref": 2, "q4": 1}
    by_name = {t.name: t for t in d.targets}
    assert by_name["q4"].requantized_from == "Q8_0" and by_name["ref"].provenance.digest == "sha256:aa"
    assert d.sampling is not None and "mcnemar_p" in d.metrics
    header = compare_runs(results(recs, config=RunConfig(scenario_set_hash="abc")), reference="ref").disclosure
    assert (header.scenario_set_hash, header.scenario_set_hash_source) == ("abc", "header")


def test_breakdowns_by_stratum_tag_dimension_and_failure_kind():
    res = results([
        record("m", "a", strata=["tool_selection"], tags=["smoke"], steps="ok wrong_tool"),
        record("m", "b", strata=["context_retention", "multi_call"], steps="ok context_lost"),
        record("m", "c", strata=["multi_call"], tags=["smoke"], steps="ok ok", end="end_state_mismatch"),
        record("m", "d", strata=["tool_selection"], steps="ok ok", end="ok"),
    ])
    m = summarize_run(res).target("m")
    assert {k: (r.passed, r.n) for k, r in m.strata.items()} == {
        "context_retention": (0, 1), "multi_call": (0, 2), "tool_selection": (1, 2)}
    assert {k: (r.passed, r.n) for k, r in m.tags.items()} == {"smoke": (0, 2)}
    assert m.failures.first_failure == {"wrong_tool": 1, "context_lost": 1, "end_state_mismatch": 1}
    assert m.failures.step_outcomes["ok"] == 6
    # only runs graded on a dimension count towards it
    assert (m.dimensions["end_state"].passed, m.dimensions["end_state"].n) == (0, 1)
    assert (m.dimensions["context_retention"].passed, m.dimensions["context_retention"].n) == (0, 1)
    assert m.dimensions["tool_selection"].n == 4


def test_cost_sits_beside_accuracy():
    res = results([
        record("m", "a", steps="ok ok", latency_ms=100.0, tokens_per_s=40.0, attempts=2),
        record("m", "b", steps="ok ok", latency_ms=300.0, tokens_per_s=60.0, duration_ms=1500.0),
    ], provenance={"m": Provenance(file_size_bytes=4 * GB, memory_bytes=5 * GB, vram_bytes=5 * GB)})
    cost = summarize_run(res).target("m").cost
    assert cost.requests == 4
    assert cost.latency_p50_ms == pytest.approx(200.0) and cost.latency_p95_ms == pytest.approx(300.0)
    assert cost.gen_tokens_per_s == pytest.approx(50.0)
    assert cost.wall_time_s == pytest.approx(0.2 + 1.5)
    assert (cost.prompt_tokens, cost.completion_tokens, cost.retries) == (40, 20, 2)
    assert cost.file_size_bytes == 4 * GB and cost.vram_bytes == 5 * GB


def test_single_target_summary_has_no_pairing_or_verdict():
    cmp = summarize_run(results(_epochs("m", "a", [True, False]) + _epochs("m", "b", [True, True])))
    assert cmp.reference is None and cmp.verdict is None
    m = cmp.target("m")
    assert m.vs_reference is None and m.noise.known
    assert [k.value for k in m.pass_hat_k] == pytest.approx([0.75, 0.5])
    # compare_runs with only one target says the same
    assert compare_runs(results([record("m", "a")]), reference=None).verdict is None


def test_reference_defaults_to_the_run_config_and_must_exist():
    recs = [record("a", "s"), record("b", "s")]
    assert compare_runs(results(recs, config=RunConfig(reference="b")), reference=None).reference == "b"
    assert compare_runs(results(recs), reference=None).reference == "a"
    with pytest.raises(ValueError, match="not in the results"):
        compare_runs(results(recs), reference="nope")


def test_gate_table_and_json_round_trip():
    recs = _epochs("ref", "a", [True, False]) + _epochs("q4", "a", [False, False]) + [
        record("ref", "b"), record("q4", "b", infra=True)]
    cmp = compare_runs(results(recs), reference="ref")
    gate = cmp.for_gate()
    assert gate.targets["ref"].overall == pytest.approx(2 / 3)
    assert gate.targets["ref"].scenarios == {"a": 0.5, "b": 1.0}
    assert gate.targets["q4"].scenarios == {"a": 0.0, "b": None}
    again = Comparison.model_validate_json(cmp.model_dump_json())
    assert again == cmp


def test_one_lost_scenario_is_never_decision_grade():
    # the bootstrap of a single regression is [-100, -100]; Newcombe's interval keeps it honest
    v = compare_runs(results([record("ref", "a"), record("q4", "a", steps="wrong_tool")]), reference="ref").verdict
    build = v.builds[0]
    assert not build.passes and not build.decision_grade
    assert "may be within tolerance" in build.decision_note


def test_a_target_with_only_infra_errors_fails_the_verdict_without_crashing():
    recs = [record("ref", "a"), record("ref", "b"), record("q4", "a", infra=True), record("q4", "b", infra=True)]
    cmp = compare_runs(results(recs), reference="ref")
    q4 = cmp.target("q4")
    assert q4.overall.rate is None and q4.infra_errors == 2 and q4.vs_reference.overall.pairs == 0
    assert cmp.verdict.chosen is None
    assert cmp.verdict.builds[0].reasons[0] == "overall: no paired runs, so it cannot be shown to hold"


def test_a_configured_target_without_results_is_disclosed():
    res = results([record("ref", "a"), record("q4", "a")])
    res.headers[0].targets.append(Target(name="q2", base_url="http://127.0.0.1:9/v1", model="q2"))
    cmp = compare_runs(res, reference="ref")
    assert [t.name for t in cmp.targets] == ["ref", "q4"]
    assert cmp.disclosure.warnings == ["[q2] no results: every run of it is missing from the results files"]
