"""One target on its own: pass rates (overall, per stratum, tag and dimension), pass^k, failure kinds, depth.

Every interval is on the effective number of independent runs: the runs of one scenario are pooled and
their worth is set by the design effect (`harness.stats.effective_rate`), so epochs that copy each
other narrow nothing.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from harness.compare.cost import cost_of
from harness.compare.models import DepthPoint, FailureCounts, PassHatK, Rate, TargetSummary
from harness.compare.noise import noise_floor
from harness.outcomes import Dimension
from harness.records import Provenance, RunRecord
from harness.stats import effective_rate, pass_hat_k, wilson_interval

__all__ = ["family_of", "rate_of", "summarize_target"]


def family_of(record: RunRecord) -> str:
    """The unit of evidence a record belongs to: its scenario family where it has one, else its scenario."""
    family = record.family
    return f"family:{family}" if family else f"scenario:{record.scenario_id}"


def rate_of(outcomes: dict[str, list[bool]], clusters: dict[str, str] | None = None) -> Rate:
    """A Rate over runs grouped by scenario (scenario id -> pass/fail of each run), on effective counts."""
    items = [(sid, v) for sid, v in outcomes.items() if v]
    passed = sum(sum(v) for _, v in items)
    n = sum(len(v) for _, v in items)
    if n == 0:
        return Rate(passed=0, n=0, scenarios=0)
    eff = effective_rate([sum(v) for _, v in items], [len(v) for _, v in items],
                         [(clusters or {}).get(sid, sid) for sid, _ in items])
    assert eff is not None
    ci = wilson_interval(eff.effective_passed, eff.effective_n)
    return Rate(
        passed=passed, n=n, rate=passed / n,
        low=ci[0] if ci else None, high=ci[1] if ci else None,
        scenarios=len(items), effective_n=eff.effective_n, design_effect=eff.design_effect, deff_basis=eff.basis,
    )


def _rates(groups: dict[str, dict[str, list[bool]]], clusters: dict[str, str]) -> dict[str, Rate]:
    return {key: rate_of(by_scenario, clusters) for key, by_scenario in sorted(groups.items())}


def summarize_target(name: str, records: list[RunRecord], prov: Provenance) -> TargetSummary:
    """Everything about one target that needs no reference."""
    scored = [r for r in records if not r.score.infra_error]
    clusters = {r.scenario_id: family_of(r) for r in records}
    # a scenario whose every run hit infra errors still gets a row (with no rate)
    by_scenario: dict[str, list[bool]] = {r.scenario_id: [] for r in records}
    strata: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    tags: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    dimensions: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    first_failure: Counter[str] = Counter()
    step_outcomes: Counter[str] = Counter()
    for r in scored:
        passed = r.score.passed
        sid = r.scenario_id
        by_scenario[sid].append(passed)
        for s in r.strata:
            strata[str(s)][sid].append(passed)
        for t in r.tags:
            tags[t][sid].append(passed)
        graded = {c.dimension for s in r.score.steps for c in s.checks} | {c.dimension for c in r.score.final_checks}
        for dim in Dimension:
            if dim in graded:
                dimensions[dim.value][sid].append(r.score.dimension_passed(dim))
        if not passed:
            first_failure[r.score.outcome.value] += 1
        for step in r.score.steps:
            step_outcomes[step.outcome.value] += 1

    trials = [(len(v), sum(v)) for v in by_scenario.values() if v]
    epochs = max((n for n, _ in trials), default=0)
    pass_k = []
    for k in range(1, epochs + 1):
        value, items = pass_hat_k(trials, k)
        pass_k.append(PassHatK(k=k, value=value, items=items))

    return TargetSummary(
        name=name,
        runs=len(records),
        scored=len(scored),
        infra_errors=len(records) - len(scored),
        scenarios=len(trials),
        epochs=epochs,
        overall=rate_of(by_scenario, clusters),
        pass_hat_k=pass_k,
        scenario_rates={sid: rate_of({sid: v}) for sid, v in sorted(by_scenario.items())},
        scenario_hashes={r.scenario_id: r.scenario_hash for r in sorted(records, key=lambda r: r.epoch)},
        strata=_rates(strata, clusters),
        tags=_rates(tags, clusters),
        dimensions=_rates(dimensions, clusters),
        failures=FailureCounts(
            first_failure=dict(first_failure.most_common()),
            step_outcomes=dict(step_outcomes.most_common()),
        ),
        depth=_depth(scored, clusters),
        noise=noise_floor(name, scored),
        cost=cost_of(records, prov),
        size_bytes=prov.file_size_bytes or prov.memory_bytes,
    )


def _depth(scored: list[RunRecord], clusters: dict[str, str]) -> list[DepthPoint]:
    steps = [(r.scenario_id, {s.index: s.passed for s in r.score.steps}) for r in scored]
    deepest = max((i for _, run in steps for i in run), default=-1)
    points: list[DepthPoint] = []
    survival: float | None = 1.0
    for k in range(deepest + 1):
        reaching = [(sid, run) for sid, run in steps if k in run]
        at_risk = [run for _, run in reaching if all(ok for i, ok in run.items() if i < k)]
        failed_here = sum(not run[k] for run in at_risk)
        if not reaching:
            point_survival = None
        else:
            if at_risk and survival is not None:
                survival *= 1.0 - failed_here / len(at_risk)
            point_survival = survival
        grouped: dict[str, list[bool]] = defaultdict(list)
        for sid, run in reaching:
            grouped[sid].append(run[k])
        points.append(DepthPoint(index=k, rate=rate_of(grouped, clusters), at_risk=len(at_risk),
                                 failed_here=failed_here, survival=point_survival))
    return points
