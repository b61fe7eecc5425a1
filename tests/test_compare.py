"""compare_runs on hand-made runs: scenario-level flips, effective counts, claims, verdict rules, depth, cost, confounds."""

from __future__ import annotations

import pytest

from harness.compare import Comparison, compare_runs, summarize_run
from harness.outcomes import Outcome
from harness.records import Provenance, RunConfig, Target

from tests.factories import record, results

OK3 = "ok ok ok"
GB = 1_000_000_000


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


def test_infra_errors_are_excluded_from_accuracy_and_pairing_but_counted():
    res = results([
        record("ref", "a"), record("ref", "b"), record("ref", "c", steps="wrong_tool"),
        record("q4", "a"), record("q4", "b", infra=True, attempts=3), record("q4", "c", steps="wrong_tool"),
    ])
    q4 = compare_runs(res, reference="ref").target("q4")
    assert (q4.runs, q4.scored, q4.infra_errors) == (3, 2, 1)
    assert (q4.overall.passed, q4.overall.n) == (1, 2)
    assert q4.cost.infra_errors == 1 and q4.cost.retries == 4  # two replies with 3 attempts each
    assert q4.vs_reference.overall.scenarios == 2 and q4.vs_reference.flips == []
    assert "infra_error" not in q4.failures.first_failure
    assert q4.scenario_rates["b"].rate is None


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


def test_flips_are_found_in_both_directions_with_first_failing_steps():
    res = results([
        record("ref", "a", steps=OK3), record("q4", "a", steps="ok wrong_tool not_reached"),
        record("ref", "b", steps="ok context_lost not_reached"), record("q4", "b", steps=OK3),
        record("ref", "c", steps=OK3), record("q4", "c", steps=OK3),
        record("ref", "d", steps="missing_call not_reached not_reached"),
        record("q4", "d", steps="ok type_error not_reached"),
    ])
    vs = compare_runs(res, reference="ref").target("q4").vs_reference
    assert [(f.scenario_id, f.direction, f.flaky) for f in vs.flips] == [("a", "regression", False),
                                                                          ("b", "improvement", False)]
    regression, improvement = vs.flips
    assert regression.reference_outcome is Outcome.OK and regression.reference_first_failed_step is None
    assert regression.target_outcome is Outcome.WRONG_TOOL and regression.target_first_failed_step == 1
    assert regression.diverged_at_step == 1 and regression.epoch == 0
    assert improvement.reference_outcome is Outcome.CONTEXT_LOST and improvement.reference_first_failed_step == 1
    steps = {s.scenario_id: s for s in vs.step_flips}
    assert set(steps) == {"a", "b", "d"}
    assert (steps["d"].index, steps["d"].direction, steps["d"].scenario_flipped) == (0, "improvement", False)
    assert vs.overall.regressions == 1 and vs.overall.improvements == 1 and vs.flip_rate == pytest.approx(0.5)
    assert (vs.overall.stable_regressions, vs.overall.stable_improvements) == (1, 1)


def _copies(target, scenario, passed, epochs, **kw):
    return _epochs(target, scenario, [passed] * epochs, **kw)


def test_copied_epochs_add_exactly_nothing():
    # 6 scenarios, one lost; 13 identical epochs must give the very interval 1 epoch gives
    def run(epochs):
        recs = []
        for i in range(6):
            recs += _copies("ref", f"s{i}", True, epochs) + _copies("q4", f"s{i}", i != 0, epochs)
        return compare_runs(results(recs), reference="ref").target("q4")
    one, many = run(1), run(13)
    for attr in ("ci_low_pts", "ci_high_pts", "delta_pts", "p_beyond"):
        assert getattr(many.vs_reference.overall, attr) == pytest.approx(getattr(one.vs_reference.overall, attr))
    assert many.vs_reference.overall.effective_pairs == pytest.approx(6.0)
    assert many.vs_reference.overall.design_effect == pytest.approx(13.0)
    assert many.vs_reference.overall.mcnemar_p == one.vs_reference.overall.mcnemar_p == pytest.approx(0.5)  # mid-p of 1 vs 0
    # the issue's figure: 6 scenarios with no flip are about +-39 points wide, never +-4.7
    assert (many.overall.low, many.overall.high) == pytest.approx((one.overall.low, one.overall.high))
    assert many.overall.effective_n == pytest.approx(6.0) and many.overall.deff_basis == "estimated"
    equal = compare_runs(results([r for i in range(6) for r in _copies("ref", f"s{i}", True, 13)
                                  + _copies("q4", f"s{i}", True, 13)]), reference="ref")
    ps = equal.target("q4").vs_reference.overall
    assert ps.deff_basis == "worst_case" and ps.ci_low_pts == pytest.approx(-39.0, abs=0.1)
    assert ps.claim == "undecided" and equal.verdict.chosen is None
    # 12/12 runs of 6 scenarios are [61.0, 100] (6 scenarios), not [75.8, 100] (12 runs)
    assert 100 * equal.target("ref").overall.low == pytest.approx(61.0, abs=0.1)


def test_independent_epochs_still_add_power():
    # the same per-scenario pass shares, once from 1 epoch and once from 4 disagreeing epochs
    recs = []
    for i in range(30):
        recs += _epochs("ref", f"s{i}", [True, i % 2 == 0, True, i % 3 == 0])
        recs += _epochs("q4", f"s{i}", [i % 2 == 1, True, i % 3 == 1, True])
    ps = compare_runs(results(recs), reference="ref").target("q4").vs_reference.overall
    assert ps.deff_basis == "estimated" and ps.design_effect < 4.0
    assert ps.effective_pairs > 30


def test_unequal_epochs_are_pooled_without_majority_bias():
    # the same 60% model run with 2 and with 3 epochs: no spurious delta from a tie counted as a fail
    shares = [1, 1, 1, 0, 0]
    recs = []
    for i, p in enumerate(shares):
        recs += _epochs("ref", f"s{i}", [True, bool(p)] if i < 3 else [bool(p), bool(p)])
        recs += _epochs("q4", f"s{i}", ([True, bool(p), bool(p)] if i < 3 else [bool(p)] * 3))
    ps = compare_runs(results(recs), reference="ref").target("q4").vs_reference.overall
    assert abs(ps.delta_pts) < 7.0  # pooled shares: 0.5/1/1 vs 0.67/1/1, never +29.7
    # dropping one record of an identical build creates no drop at all
    same = []
    for i in range(6):
        same += _copies("ref", f"s{i}", i % 2 == 0, 3) + _copies("q4", f"s{i}", i % 2 == 0, 3 if i else 2)
    assert compare_runs(results(same), reference="ref").target("q4").vs_reference.overall.delta_pts == pytest.approx(0.0)


def test_flaky_scenarios_are_flagged_per_build_and_not_counted_as_stable_flips():
    recs = (_epochs("ref", "a", [True, True, True]) + _epochs("ref", "b", [True, True, True])
            + _epochs("q4", "a", [True, False, True]) + _epochs("q4", "b", [False, False, False]))
    cmp = compare_runs(results(recs), reference="ref")
    q4 = cmp.target("q4")
    assert q4.noise.known and q4.noise.flaky == ["a"] and q4.noise.repeated_scenarios == 2
    assert q4.noise.low < 0.5 < q4.noise.high
    assert cmp.noise_floor.flaky == [] and cmp.noise_floor.high > 0.6  # 0 of 2 says little
    flips = {f.scenario_id: f for f in q4.vs_reference.flips}
    assert flips["a"].flaky and not flips["b"].flaky
    assert flips["a"].target_pass_rate == pytest.approx(2 / 3)
    assert q4.vs_reference.flip_rate == pytest.approx(0.5)
    assert "flaky on one side" in q4.vs_reference.noise_note
    one = compare_runs(results([record("ref", "a"), record("q4", "a", steps="wrong_tool")]), reference="ref")
    assert not one.noise_floor.known and "unknown" in one.noise_floor.note
    assert "one epoch per side" in one.target("q4").vs_reference.noise_note


def _big_ladder(n=100, q8_lost=0, q4_lost=30, q2_lost=100):
    recs = []
    for i in range(n):
        stratum = "context_retention" if i % 2 else "tool_selection"
        recs.append(record("f16", f"s{i}", steps=OK3, strata=[stratum]))
        recs.append(record("q8", f"s{i}", steps=OK3 if i >= q8_lost else "ok ok wrong_tool", strata=[stratum]))
        recs.append(record("q4", f"s{i}", steps=OK3 if i >= q4_lost else "ok context_lost not_reached", strata=[stratum]))
        recs.append(record("q2", f"s{i}", steps=OK3 if i >= q2_lost else "wrong_tool not_reached not_reached",
                           strata=[stratum]))
    prov = {name: Provenance(quantization=name.upper(), file_size_bytes=size * GB)
            for name, size in (("f16", 16), ("q8", 8), ("q4", 4), ("q2", 2))}
    return results(recs, provenance=prov)


def test_smallest_safe_build_needs_within_and_every_smaller_beyond():
    cmp = compare_runs(_big_ladder(200, q8_lost=0, q4_lost=60, q2_lost=200), reference="f16", tolerance=5.0)
    v = cmp.verdict
    assert v.order == ["q2", "q4", "q8"] and v.size_basis == "file_size_bytes"
    status = {b.target: b.status for b in v.builds}
    assert status == {"q2": "beyond", "q4": "beyond", "q8": "within"}
    assert v.chosen == "q8" and v.decision_grade
    assert "every smaller build is decisively beyond" in v.summary
    assert v.critical_strata == ["context_retention", "tool_selection"]  # 100 scenarios each: decidable
    q4 = next(b for b in v.builds if b.target == "q4")
    assert q4.reasons[0].startswith("overall 70.0% vs 100.0% (-30.0 pts, 95% CI [")
    assert "drop beyond tolerance" in q4.reasons[0]


def test_an_undecided_smaller_build_blocks_the_smallest_safe_claim():
    # q4 loses 5 of 200: its interval straddles -5, so q8 cannot be called the smallest safe build
    cmp = compare_runs(_big_ladder(200, q8_lost=0, q4_lost=5, q2_lost=200), reference="f16", tolerance=5.0)
    v = cmp.verdict
    status = {b.target: b.status for b in v.builds}
    assert status["q4"] == "undecided" and status["q8"] == "within" and status["q2"] == "beyond"
    assert v.chosen is None and v.smallest_within == "q8" and not v.decision_grade
    assert "q4 is undecided" in v.summary
    q4 = next(b for b in v.builds if b.target == "q4")
    assert "about" in q4.to_decide and "scenarios at the observed" in q4.to_decide
    assert any(line.startswith("q4: this run rules out drops larger than") for line in v.planning)


def test_small_strata_are_reported_not_counted_unless_named_critical():
    recs = []
    for i in range(100):
        stratum = "multi_call" if i < 10 else "tool_selection"
        recs.append(record("ref", f"s{i}", strata=[stratum]))
        recs.append(record("q4", f"s{i}", strata=[stratum]))
    res = results(recs)
    v = compare_runs(res, reference="ref", tolerance=5.0).verdict
    assert v.critical_strata == ["tool_selection"] and v.reported_strata == ["multi_call"]
    assert v.builds[0].status == "within" and v.chosen == "q4"
    named = compare_runs(res, reference="ref", tolerance=5.0, critical_strata=["multi_call"]).verdict
    assert named.undecidable_critical == ["multi_call"] and named.builds[0].status == "undecided"
    assert "can never show a drop within 5 pts" in " ".join(named.builds[0].reasons)
    unknown = compare_runs(res, reference="ref", critical_strata=["nope"]).verdict
    assert "nope: no paired runs" in unknown.builds[0].reasons[-1]


def test_one_lost_small_stratum_is_never_a_decisive_fail():
    # a 1-scenario stratum lost (in both epochs) used to read [-100, -7.0], "wholly below -5"
    recs = []
    for i in range(6):
        stratum = "irrelevance" if i == 0 else "tool_selection"
        recs += _copies("ref", f"s{i}", True, 2, strata=[stratum]) + _copies("q4", f"s{i}", i != 0, 2, strata=[stratum])
    v = compare_runs(results(recs), reference="ref").verdict
    assert v.builds[0].status == "undecided" and not v.decision_grade
    crit = {c.label: c for c in v.builds[0].criteria}
    assert crit["irrelevance"].counted is False


def test_holm_keeps_several_strata_from_manufacturing_a_fail():
    # each of 4 strata loses 7 of 100 at tolerance 2: p = 0.013 alone (beyond), 0.054 after Holm (not)
    recs = []
    for i in range(400):
        lost = (i // 4) < 7
        recs.append(record("ref", f"s{i}", strata=[f"st{i % 4}"]))
        recs.append(record("q4", f"s{i}", strata=[f"st{i % 4}"], steps="wrong_tool" if lost else "ok"))
    named = ["st0", "st1", "st2", "st3"]
    cmp = compare_runs(results(recs), reference="ref", tolerance=2.0, critical_strata=named)
    vs = cmp.target("q4").vs_reference
    assert all(vs.strata[s].claim == "beyond" for s in named)  # each interval alone is wholly below -2
    crit = {c.label: c for c in cmp.verdict.builds[0].criteria}
    assert all(crit[s].p_beyond_adjusted == pytest.approx(4 * vs.strata[s].p_beyond) for s in named)
    assert all(crit[s].claim == "undecided" and "Holm" in crit[s].note for s in named)
    # the overall rate (400 scenarios, -7 pts) is itself decisively beyond: the build still fails on it
    assert crit["overall"].claim == "beyond" and cmp.verdict.builds[0].status == "beyond"


def test_tolerance_zero_is_kept_and_can_never_be_shown_within():
    recs = [r for i in range(100) for r in (record("ref", f"s{i}"), record("q4", f"s{i}"))]
    cmp = compare_runs(results(recs), reference="ref", tolerance=0.0)
    assert cmp.tolerance == 0.0 and cmp.verdict.tolerance == 0.0
    assert cmp.verdict.builds[0].status == "undecided"
    assert cmp.target("q4").vs_reference.overall.min_scenarios is None
    with pytest.raises(ValueError, match="tolerance"):
        compare_runs(results(recs), reference="ref", tolerance=-1.0)


def test_headline_mark_table_interval_and_verdict_agree():
    from harness.report._format import delta_ci_text, headline, headline_mark

    cmp = compare_runs(_big_ladder(200, q8_lost=0, q4_lost=5, q2_lost=200), reference="f16", tolerance=5.0)
    assert headline_mark(cmp) == "?" and "not settled" in headline(cmp)
    q4 = cmp.target("q4").vs_reference.overall
    note = next(b for b in cmp.verdict.builds if b.target == "q4").reasons[0]
    assert delta_ci_text(q4).strip("[]").split(", ")[0] in note
    settled = compare_runs(_big_ladder(200, q8_lost=0, q4_lost=60, q2_lost=200), reference="f16", tolerance=5.0)
    assert headline_mark(settled) == "✔" and "smallest safe build" in headline(settled)


def test_family_instances_are_clustered_as_one_unit_when_they_flip_together():
    def run(family):
        recs = []
        for f in range(10):
            for k in range(4):
                sid = f"f{f}-{k}"
                lost = f < 2  # two whole families break together
                for target, ok in (("ref", True), ("q4", not lost)):
                    r = record(target, sid, steps="ok" if ok else "wrong_tool")
                    recs.append(r.model_copy(update={"family": f"fam{f}" if family else None}))
        return compare_runs(results(recs), reference="ref").target("q4").vs_reference
    clustered, flat = run(True), run(False)
    assert clustered.cluster_unit == "family" and flat.cluster_unit == "scenario"
    assert clustered.overall.design_effect > 2.0 and flat.overall.design_effect == 1.0
    assert clustered.overall.ci_low_pts < flat.overall.ci_low_pts  # fewer independent units, wider interval


def test_one_file_on_two_kv_caches_is_not_called_the_same_build():
    recs = [record("f16kv", "a"), record("q8kv", "a")]
    prov = {"f16kv": Provenance(digest="sha256:aa", extra={"kv_cache_dtype": "f16"}),
            "q8kv": Provenance(digest="sha256:aa", extra={"kv_cache_dtype": "q8_0"})}
    fields = [c.field for c in compare_runs(results(recs, provenance=prov), reference="f16kv").disclosure.confounds]
    assert "digest" not in fields and "kv_cache_dtype" in fields
    same = {"f16kv": Provenance(digest="sha256:aa"), "q8kv": Provenance(digest="sha256:aa")}
    assert [c.field for c in compare_runs(results(recs, provenance=same), reference="f16kv").disclosure.confounds] == ["digest"]
