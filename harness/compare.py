"""Compare builds of one model: per-item flips first, then rates with intervals, then a verdict.

`compare_runs` reads a `Results` and answers "which is the smallest build that still does this task?",
with the evidence a reviewer asks for (paired flips, exact McNemar, bootstrap CIs, noise floor, cost,
confounds). `summarize_run` gives the same models for a single target, with no reference.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from collections import Counter, defaultdict
from itertools import combinations
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from harness.outcomes import Dimension, Outcome
from harness.records import Provenance, Results, RunRecord, Sampling
from harness.stats import (
    mcnemar_exact,
    newcombe_paired_interval,
    paired_bootstrap_diff,
    paired_table,
    pass_hat_k,
    percentile,
    wilson_interval,
)

__all__ = [
    "provenance_confounds",
    "METRICS",
    "Rate",
    "PassHatK",
    "FailureCounts",
    "DepthPoint",
    "NoiseFloor",
    "PairedStats",
    "Flip",
    "StepFlip",
    "VersusReference",
    "Cost",
    "TargetSummary",
    "Confound",
    "TargetDisclosure",
    "Disclosure",
    "BuildVerdict",
    "Verdict",
    "GateRow",
    "GateTable",
    "Comparison",
    "compare_runs",
    "summarize_run",
]


class _Model(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)


# -- output models ------------------------------------------------------------------------------
# units: every rate is a fraction in [0, 1]; every difference is in percentage points (`*_pts`).


class Rate(_Model):
    """A pass rate with its Wilson 95% interval."""

    passed: int
    """Runs (or items) that passed."""
    n: int
    """Runs (or items) counted; infra-error runs are never counted."""
    rate: float | None = None
    """passed / n as a fraction in [0, 1]; None when n is 0."""
    low: float | None = None
    """Lower end of the Wilson 95% interval (fraction); None when n is 0."""
    high: float | None = None
    """Upper end of the Wilson 95% interval (fraction); None when n is 0."""

    @property
    def pct(self) -> float | None:
        """The rate in percent, or None."""
        return None if self.rate is None else 100.0 * self.rate


class PassHatK(_Model):
    """tau-bench's pass^k: the chance that k independent trials of an item all pass, averaged over items."""

    k: int
    """Number of trials that must all pass."""
    value: float | None = None
    """Mean over items of C(c, k) / C(n, k) (fraction); None when no item has k scored trials."""
    items: int = 0
    """Items (scenarios) with at least k scored trials, i.e. those averaged."""


class FailureCounts(_Model):
    """How runs failed, by the names in `harness.outcomes.Outcome`."""

    first_failure: dict[str, int] = Field(default_factory=dict)
    """Outcome name -> number of failed runs whose first failure was that outcome (scored runs only)."""
    step_outcomes: dict[str, int] = Field(default_factory=dict)
    """Outcome name -> number of expected steps graded with that outcome, `ok` included (scored runs only)."""


class DepthPoint(_Model):
    """Accuracy at one expected-step index: where along the task does the build break?"""

    index: int
    """0-based expected-step index across the scenario."""
    rate: Rate
    """Pass rate of step `index` among scored runs whose scenario has that step (not_reached counts as failed)."""
    at_risk: int
    """Runs still on track before this step (no failed step at a lower index) whose scenario has this step."""
    failed_here: int
    """Of `at_risk`, runs whose first failed step is this one."""
    survival: float | None = None
    """Share of runs still on track after this step (no failed step at index <= `index`). Kaplan-Meier:
    a scenario with fewer steps leaves the risk set when it ends instead of counting as on track or off;
    with equal-length scenarios this is the plain share. None when no run reaches this depth."""


class NoiseFloor(_Model):
    """How often one build disagrees with itself across epochs of the same scenario."""

    target: str
    """The build measured against itself (normally the reference)."""
    epochs: int
    """Largest number of scored epochs of any scenario."""
    known: bool
    """False with a single epoch: there is nothing to measure the noise from."""
    flip_rate: float | None = None
    """Share of epoch pairs (same scenario, two different epochs) whose pass/fail differ (fraction)."""
    pairs: int = 0
    """Epoch pairs compared."""
    note: str = ""
    """One line for a reader, e.g. `noise floor unknown: 1 epoch; run --epochs 3 to measure it`."""


class PairedStats(_Model):
    """A target against the reference on the same items (paired), for all items or one stratum."""

    pairs: int
    """Paired items: (scenario, epoch) pairs, or scenarios when paired by majority."""
    both_pass: int
    regressions: int
    """Reference passed, target failed."""
    improvements: int
    """Reference failed, target passed."""
    both_fail: int
    reference_rate: float | None = None
    """Reference pass rate on the paired items (fraction)."""
    target_rate: float | None = None
    """Target pass rate on the paired items (fraction)."""
    delta_pts: float | None = None
    """Target minus reference, in percentage points."""
    ci_low_pts: float | None = None
    """Lower end of the paired bootstrap 95% CI of `delta_pts` (scenarios resampled as clusters, fixed seed)."""
    ci_high_pts: float | None = None
    """Upper end of the paired bootstrap 95% CI of `delta_pts`."""
    newcombe_low_pts: float | None = None
    """Lower end of Newcombe's hybrid-score 95% interval for a paired difference (closed form, cross-check)."""
    newcombe_high_pts: float | None = None
    """Upper end of Newcombe's paired interval."""
    mcnemar_p: float | None = None
    """Exact (binomial) McNemar p-value on the discordant pairs; 1.0 with no discordant pairs; None with no pairs."""


class Flip(_Model):
    """One item whose pass/fail differs between the reference and a target: the evidence behind the averages."""

    scenario_id: str
    epoch: int | None = None
    """The epoch paired; None when paired per scenario by majority."""
    direction: Literal["regression", "improvement"]
    """`regression`: reference passed, target failed; `improvement`: the other way round."""
    strata: list[str] = Field(default_factory=list)
    reference_first_failed_step: int | None = None
    """First failing expected step of the reference's run (None when it passed or failed only at the end)."""
    reference_outcome: Outcome
    """The reference run's outcome (`ok` or its first failure)."""
    reference_reason: str = ""
    target_first_failed_step: int | None = None
    target_outcome: Outcome
    target_reason: str = ""
    diverged_at_step: int | None = None
    """First expected-step index where the two runs' step grades differ; None if they differ only in end checks."""


class StepFlip(_Model):
    """The first expected step where the two runs of a paired item were graded differently."""

    scenario_id: str
    epoch: int | None = None
    """None when paired per scenario by majority (the first epoch of each side is compared)."""
    index: int
    """The expected-step index where the grades first differ."""
    reference_outcome: Outcome
    target_outcome: Outcome
    direction: Literal["regression", "improvement", "changed"]
    """`regression`: reference step passed, target's failed; `improvement`: reverse; `changed`: both failed, differently."""
    scenario_flipped: bool
    """Whether the whole scenario's pass/fail also differs (also listed in `flips`)."""


class VersusReference(_Model):
    """A target paired item by item with the reference."""

    reference: str
    pairing: Literal["epoch", "majority"]
    """`epoch`: pairs are (scenario, epoch); `majority`: epochs differ, so each scenario is paired once on its
    majority result (more than half of its scored epochs passed; a tie counts as failed)."""
    overall: PairedStats
    strata: dict[str, PairedStats] = Field(default_factory=dict)
    """Stratum name -> paired statistics on the items in that stratum."""
    flips: list[Flip] = Field(default_factory=list)
    """Every paired item that flipped, regressions first, then by scenario and epoch."""
    step_flips: list[StepFlip] = Field(default_factory=list)
    """For every paired item whose step grades differ, the first step where they do."""
    flip_rate: float | None = None
    """Share of paired items whose pass/fail differs (fraction)."""
    within_noise: bool | None = None
    """flip_rate <= the reference's own epoch-to-epoch flip rate; None when the noise floor is unknown."""
    noise_note: str = ""
    """The line a reader sees, e.g. `flip rate 6.7% is within the noise floor (8.3%)`."""
    unpaired: list[str] = Field(default_factory=list)
    """Scenario ids scored on only one side (not in any statistic here)."""


class Cost(_Model):
    """What the build costs to run, beside what it scores."""

    requests: int = 0
    """Model requests made (trajectory steps), infra-error runs included."""
    latency_p50_ms: float | None = None
    """Median per-request latency of successful replies."""
    latency_p95_ms: float | None = None
    """95th percentile per-request latency."""
    gen_tokens_per_s: float | None = None
    """Mean generation speed the server reported (`timings.predicted_per_second`), where it did."""
    wall_time_s: float | None = None
    """Sum of the runs' durations (not elapsed time: runs may have overlapped)."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0
    """Extra attempts (attempts - 1, summed over replies)."""
    infra_errors: int = 0
    """Runs excluded from accuracy for an infrastructure error."""
    file_size_bytes: int | None = None
    memory_bytes: int | None = None
    vram_bytes: int | None = None


class TargetSummary(_Model):
    """Everything about one target: sample sizes, accuracy breakdowns, depth, noise, cost, pairing."""

    name: str
    is_reference: bool = False
    runs: int
    """Records for this target (latest per scenario x epoch), infra-error runs included."""
    scored: int
    """Runs counted in accuracy (runs minus infra errors)."""
    infra_errors: int
    scenarios: int
    """Distinct scenarios with at least one scored run."""
    epochs: int
    """Largest number of scored epochs of any scenario."""
    overall: Rate
    """pass@1: passed scored runs over scored runs, every epoch counted."""
    pass_hat_k: list[PassHatK] = Field(default_factory=list)
    """pass^k for k = 1 .. epochs (pass^1 equals pass@1 when every scenario has the same number of epochs)."""
    scenario_rates: dict[str, Rate] = Field(default_factory=dict)
    """Scenario id -> pass rate over its scored epochs."""
    strata: dict[str, Rate] = Field(default_factory=dict)
    """Stratum -> pass rate of runs of scenarios in that stratum (a scenario may be in several)."""
    tags: dict[str, Rate] = Field(default_factory=dict)
    """Tag -> pass rate of runs of scenarios with that tag."""
    dimensions: dict[str, Rate] = Field(default_factory=dict)
    """Dimension -> share of runs graded on that dimension with no failed check of it."""
    failures: FailureCounts = Field(default_factory=FailureCounts)
    depth: list[DepthPoint] = Field(default_factory=list)
    """Per expected-step index: pass rate and survival."""
    noise: NoiseFloor
    """This target against itself across epochs."""
    vs_reference: VersusReference | None = None
    """Paired with the reference; None for the reference itself and in a single-target summary."""
    cost: Cost = Field(default_factory=Cost)
    size_bytes: int | None = None
    """The size used to order builds (file size, else memory), when known."""


class Confound(_Model):
    """A difference between targets other than the quantization: it, not the quant, may explain a gap."""

    field: str
    """What differs: `chat_template`, `context_length`, `server`, `server_version`, `sampling`, `scenario_hash`, ..."""
    values: dict[str, str | None] = Field(default_factory=dict)
    """Target name (or header / scenario) -> the value it has."""
    message: str
    """The line to print loudly."""


class TargetDisclosure(_Model):
    """Which model and build a target was."""

    name: str
    model: str | None = None
    """The model id requested."""
    base_url: str | None = None
    provenance: Provenance = Field(default_factory=Provenance)
    """Quantization, digest, server version, chat template, imatrix, sizes, warnings (`extra.requantized_from`)."""
    requantized_from: str | None = None
    """Copied out of `provenance.extra` so it is not missed: a build requantized from another quant."""


class Disclosure(_Model):
    """What a reader needs to judge or reproduce the comparison."""

    run_ids: list[str] = Field(default_factory=list)
    scenario_ids: list[str] = Field(default_factory=list)
    """Scenarios in the results, sorted."""
    scenario_set_hash: str | None = None
    scenario_set_hash_source: Literal["header", "computed", "none"] = "none"
    """`header`: as the run config recorded it; `computed`: sha256 over sorted (scenario id, scenario hash)."""
    reference: str | None = None
    tolerance: float | None = None
    """Allowed drop in points versus the reference."""
    critical_strata: list[str] = Field(default_factory=list)
    sampling: Sampling | None = None
    """Sampling settings of the (newest) run config."""
    epochs: int = 1
    """Epochs in the run config."""
    harness_version: str | None = None
    targets: list[TargetDisclosure] = Field(default_factory=list)
    sample_sizes: dict[str, int] = Field(default_factory=dict)
    """Target -> scored runs."""
    metrics: dict[str, str] = Field(default_factory=dict)
    """Metric name -> a short definition."""
    confounds: list[Confound] = Field(default_factory=list)
    """Differences other than the quant; print these loudly."""
    unverified: list[str] = Field(default_factory=list)
    """Fields known for some targets and unknown for others, so a confound cannot be ruled out."""
    warnings: list[str] = Field(default_factory=list)
    """Provenance warnings, each prefixed with `[target]`."""


class BuildVerdict(_Model):
    """Whether one build stays within tolerance of the reference, and why not."""

    target: str
    size_bytes: int | None = None
    passes: bool
    """Overall and every critical stratum within `tolerance` points of the reference."""
    reasons: list[str] = Field(default_factory=list)
    """Each criterion that failed: `context_retention 40.0% vs 80.0% (-40.0 pts > 5), McNemar p=0.03`."""
    decision_grade: bool
    """The 95% intervals (the wider end of bootstrap and Newcombe) lie wholly on one side of the tolerance line
    for the claim made (within for a pass, beyond for a fail); otherwise more scenarios or epochs are needed."""
    decision_note: str = ""
    """Why it is or is not decision-grade, with the interval."""


class Verdict(_Model):
    """The threshold analysis: the smallest build that still does the task."""

    reference: str
    tolerance: float
    """Allowed drop in percentage points."""
    critical_strata: list[str] = Field(default_factory=list)
    """Strata that must each stay within tolerance (default: all strata present)."""
    size_basis: Literal["file_size_bytes", "memory_bytes", "order"]
    """What ordered the builds: file size, memory, or the given order when sizes are not known for all."""
    order: list[str] = Field(default_factory=list)
    """Non-reference builds, smallest first."""
    chosen: str | None = None
    """The smallest build that passes; None when none does (stay on the reference)."""
    builds: list[BuildVerdict] = Field(default_factory=list)
    """One per non-reference build, in `order`."""
    decision_grade: bool = False
    """The chosen build's pass (or, with none chosen, every build's failure) is decision-grade."""
    summary: str = ""
    """One sentence: `q4_k_m is the smallest build within 5 pts of f16 (decision-grade)`."""


class GateRow(_Model):
    """One target's numbers for the nightly baseline diff."""

    overall: float | None = None
    """Overall pass rate (fraction)."""
    scored: int = 0
    scenarios: dict[str, float | None] = Field(default_factory=dict)
    """Scenario id -> pass rate over its scored epochs (fraction); None when every run hit infra errors."""


class GateTable(_Model):
    """Compact per-target, per-scenario pass rates: what a baseline gate diffs night against night."""

    targets: dict[str, GateRow] = Field(default_factory=dict)
    """Target name -> its row."""


class Comparison(_Model):
    """The whole comparison (or single-run summary): what every report is rendered from."""

    reference: str | None = None
    """Reference target; None in a single-target summary."""
    tolerance: float = 5.0
    targets: list[TargetSummary] = Field(default_factory=list)
    """Smallest build first where sizes are known, else the given order; the reference is included."""
    noise_floor: NoiseFloor | None = None
    """The reference's own epoch-to-epoch flip rate (None without a reference)."""
    verdict: Verdict | None = None
    """None in a single-target summary."""
    disclosure: Disclosure = Field(default_factory=Disclosure)

    def target(self, name: str) -> TargetSummary:
        """The summary of one target by name."""
        for t in self.targets:
            if t.name == name:
                return t
        raise KeyError(f"no target {name!r} (have {[t.name for t in self.targets]})")

    def for_gate(self) -> GateTable:
        """Per target: overall and per-scenario pass rates, for diffing against last night's."""
        return GateTable(
            targets={
                t.name: GateRow(
                    overall=t.overall.rate,
                    scored=t.scored,
                    scenarios={sid: r.rate for sid, r in sorted(t.scenario_rates.items())},
                )
                for t in self.targets
            }
        )


# -- computing ----------------------------------------------------------------------------------

_BOOTSTRAP_RESAMPLES = 10_000
_BOOTSTRAP_SEED = 0

METRICS: dict[str, str] = {
    "pass@1": "passed runs / scored runs, every epoch counted; infra-error runs are excluded",
    "pass^k": "mean over scenarios of C(c,k)/C(n,k): the chance that k trials of a scenario all pass (tau-bench)",
    "wilson_ci": "95% Wilson score interval of a pass rate",
    "dimension": "share of runs graded on a dimension with no failed check of that dimension",
    "depth": "pass rate of expected step k among runs whose scenario has a step k (not_reached counts as failed)",
    "survival": "share of runs with no failed step at index <= k (Kaplan-Meier; shorter scenarios leave the risk set)",
    "pairing": "items are paired by (scenario, epoch); if the epochs differ, once per scenario on its majority result",
    "flip": "a paired item that passed on one side and failed on the other",
    "delta_pts": "target minus reference pass rate on the paired items, in percentage points",
    "bootstrap_ci": f"95% percentile bootstrap of delta_pts; scenarios resampled as clusters "
                    f"({_BOOTSTRAP_RESAMPLES:,} resamples, seed {_BOOTSTRAP_SEED})",
    "newcombe_ci": "Newcombe (1998) method 10 hybrid-score 95% interval for a paired difference",
    "mcnemar_p": "exact two-sided McNemar test (binomial on the discordant pairs)",
    "noise_floor": "the reference's flip rate between two epochs of the same scenario",
    "tolerance": "a build passes if overall and every critical stratum are at most `tolerance` points below the reference",
    "decision_grade": "the 95% interval (the wider end of bootstrap and Newcombe) lies wholly on the claimed side "
                      "of the tolerance line: above -tolerance for a pass, below it for a fail",
}


def compare_runs(
    results: Results,
    *,
    reference: str | None,
    tolerance: float = 5.0,
    critical_strata: list[str] | None = None,
    order: list[str] | None = None,
) -> Comparison:
    """Compare every target in `results` with `reference` and pick the smallest build within `tolerance` points.

    `reference` defaults to the run config's, else the first target. `critical_strata` defaults to every
    stratum present. `order` (smallest first) orders the builds when sizes are not known for all of them.
    """
    names = _target_names(results)
    if not names:
        return Comparison(reference=None, tolerance=tolerance, disclosure=_disclosure(results, [], None, tolerance, []))
    if reference is None:
        reference = (results.header.config.reference if results.headers else None) or names[0]
    if reference not in names:
        raise ValueError(f"reference {reference!r} is not in the results (targets: {names})")
    if len(names) == 1:
        return summarize_run(results)

    records = {name: results.for_target(name) for name in names}
    summaries = {name: _summarize_target(name, records[name], results.provenance(name)) for name in names}
    ref_summary = summaries[reference]
    ref_summary.is_reference = True
    noise = ref_summary.noise
    for name in names:
        if name != reference:
            summaries[name].vs_reference = _versus(reference, records[reference], records[name], noise)

    basis, ordered = _size_order(results, names, order)
    strata = sorted({s for r in records[reference] if not r.score.infra_error for s in r.strata})
    critical = list(dict.fromkeys(s.strip().lower() for s in critical_strata)) if critical_strata else strata
    verdict = _verdict(reference, [summaries[n] for n in ordered if n != reference], tolerance, critical, basis)
    return Comparison(
        reference=reference,
        tolerance=tolerance,
        targets=[summaries[n] for n in ordered],
        noise_floor=noise,
        verdict=verdict,
        disclosure=_disclosure(results, ordered, reference, tolerance, critical),
    )


def summarize_run(results: Results) -> Comparison:
    """The same models for a run with no reference: per-target rates, depth, noise and cost; no pairing, no verdict."""
    names = _target_names(results)
    summaries = [_summarize_target(n, results.for_target(n), results.provenance(n)) for n in names]
    tolerance = (results.header.config.tolerance if results.headers else None) or 5.0
    return Comparison(
        reference=None,
        tolerance=tolerance,
        targets=summaries,
        disclosure=_disclosure(results, names, None, tolerance, []),
    )


# -- one target ---------------------------------------------------------------------------------


def _target_names(results: Results) -> list[str]:
    with_records = {r.target for r in results.records}
    return [n for n in results.targets() if n in with_records]


def _rate(passed: int, n: int) -> Rate:
    ci = wilson_interval(passed, n)
    return Rate(
        passed=passed,
        n=n,
        rate=passed / n if n else None,
        low=ci[0] if ci else None,
        high=ci[1] if ci else None,
    )


def _rates(groups: dict[str, list[bool]]) -> dict[str, Rate]:
    return {key: _rate(sum(v), len(v)) for key, v in sorted(groups.items())}


def _summarize_target(name: str, records: list[RunRecord], prov: Provenance) -> TargetSummary:
    scored = [r for r in records if not r.score.infra_error]
    # a scenario whose every run hit infra errors still gets a row (with no rate)
    by_scenario: dict[str, list[bool]] = {r.scenario_id: [] for r in records}
    strata: dict[str, list[bool]] = defaultdict(list)
    tags: dict[str, list[bool]] = defaultdict(list)
    dimensions: dict[str, list[bool]] = defaultdict(list)
    first_failure: Counter[str] = Counter()
    step_outcomes: Counter[str] = Counter()
    for r in scored:
        passed = r.score.passed
        by_scenario[r.scenario_id].append(passed)
        for s in r.strata:
            strata[str(s)].append(passed)
        for t in r.tags:
            tags[t].append(passed)
        graded = {c.dimension for s in r.score.steps for c in s.checks} | {c.dimension for c in r.score.final_checks}
        for dim in Dimension:
            if dim in graded:
                dimensions[dim.value].append(r.score.dimension_passed(dim))
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
        overall=_rate(sum(r.score.passed for r in scored), len(scored)),
        pass_hat_k=pass_k,
        scenario_rates=_rates(by_scenario),
        strata=_rates(strata),
        tags=_rates(tags),
        dimensions=_rates(dimensions),
        failures=FailureCounts(
            first_failure=dict(first_failure.most_common()),
            step_outcomes=dict(step_outcomes.most_common()),
        ),
        depth=_depth(scored),
        noise=_noise_floor(name, scored),
        cost=_cost(records, prov),
        size_bytes=prov.file_size_bytes or prov.memory_bytes,
    )


def _depth(scored: list[RunRecord]) -> list[DepthPoint]:
    steps = [{s.index: s.passed for s in r.score.steps} for r in scored]
    deepest = max((i for run in steps for i in run), default=-1)
    points: list[DepthPoint] = []
    survival: float | None = 1.0
    for k in range(deepest + 1):
        reaching = [run for run in steps if k in run]
        at_risk = [run for run in reaching if all(ok for i, ok in run.items() if i < k)]
        failed_here = sum(not run[k] for run in at_risk)
        if not reaching:
            point_survival = None
        else:
            if at_risk and survival is not None:
                survival *= 1.0 - failed_here / len(at_risk)
            point_survival = survival
        points.append(DepthPoint(
            index=k,
            rate=_rate(sum(run[k] for run in reaching), len(reaching)),
            at_risk=len(at_risk),
            failed_here=failed_here,
            survival=point_survival,
        ))
    return points


def _noise_floor(name: str, scored: list[RunRecord]) -> NoiseFloor:
    by_scenario: dict[str, list[bool]] = defaultdict(list)
    for r in sorted(scored, key=lambda r: r.epoch):
        by_scenario[r.scenario_id].append(r.score.passed)
    epochs = max((len(v) for v in by_scenario.values()), default=0)
    pairs = disagree = 0
    for outcomes in by_scenario.values():
        for a, b in combinations(outcomes, 2):
            pairs += 1
            disagree += a != b
    if pairs == 0:
        return NoiseFloor(
            target=name, epochs=epochs, known=False,
            note=f"noise floor unknown: {epochs} epoch per scenario; run with --epochs 3 or more to measure it",
        )
    rate = disagree / pairs
    return NoiseFloor(
        target=name, epochs=epochs, known=True, flip_rate=rate, pairs=pairs,
        note=f"{name} disagrees with itself on {rate:.1%} of epoch pairs ({disagree}/{pairs})",
    )


def _cost(records: list[RunRecord], prov: Provenance) -> Cost:
    replies = [s.reply for r in records for s in r.trajectory.steps]
    latencies = [p.latency_ms for p in replies if p.latency_ms is not None and p.outcome is not Outcome.INFRA_ERROR]
    speeds = [p.timings.predicted_per_second for p in replies
              if p.timings is not None and p.timings.predicted_per_second is not None]
    durations = [r.trajectory.duration_ms for r in records if r.trajectory.duration_ms is not None]
    return Cost(
        requests=len(replies),
        latency_p50_ms=percentile(latencies, 50),
        latency_p95_ms=percentile(latencies, 95),
        gen_tokens_per_s=sum(speeds) / len(speeds) if speeds else None,
        wall_time_s=sum(durations) / 1000.0 if durations else None,
        prompt_tokens=sum(p.usage.prompt_tokens or 0 for p in replies),
        completion_tokens=sum(p.usage.completion_tokens or 0 for p in replies),
        retries=sum(max(0, p.attempts - 1) for p in replies),
        infra_errors=sum(r.score.infra_error for r in records),
        file_size_bytes=prov.file_size_bytes,
        memory_bytes=prov.memory_bytes,
        vram_bytes=prov.vram_bytes,
    )


# -- pairing with the reference -----------------------------------------------------------------


@dataclass(frozen=True)
class _Pair:
    scenario_id: str
    epoch: int | None
    strata: list[str]
    ref: RunRecord
    tgt: RunRecord
    ref_passed: bool
    tgt_passed: bool


def _majority(runs: list[RunRecord]) -> tuple[bool, RunRecord]:
    """More than half of the scored epochs passed (a tie fails); the first run that agrees represents it."""
    passed = sum(r.score.passed for r in runs) * 2 > len(runs)
    runs = sorted(runs, key=lambda r: r.epoch)
    return passed, next(r for r in runs if r.score.passed == passed)


def _pairs(ref_records: list[RunRecord], tgt_records: list[RunRecord]) -> tuple[str, list[_Pair], list[str]]:
    def by_scenario(records: list[RunRecord]) -> dict[str, dict[int, RunRecord]]:
        out: dict[str, dict[int, RunRecord]] = defaultdict(dict)
        for r in records:
            out[r.scenario_id][r.epoch] = r
        return out

    ref, tgt = by_scenario(ref_records), by_scenario(tgt_records)
    shared = sorted(set(ref) & set(tgt))
    # epochs are compared as the run planned them (infra errors included); a mismatch means a different plan
    mode = "epoch" if all(set(ref[s]) == set(tgt[s]) for s in shared) else "majority"
    pairs: list[_Pair] = []
    paired_scenarios: set[str] = set()
    for sid in shared:
        if mode == "epoch":
            for epoch in sorted(ref[sid]):
                r, t = ref[sid][epoch], tgt[sid][epoch]
                if r.score.infra_error or t.score.infra_error:
                    continue
                pairs.append(_Pair(scenario_id=sid, epoch=epoch, strata=[str(s) for s in r.strata], ref=r, tgt=t,
                                   ref_passed=r.score.passed, tgt_passed=t.score.passed))
                paired_scenarios.add(sid)
        else:
            r_runs = [r for r in ref[sid].values() if not r.score.infra_error]
            t_runs = [t for t in tgt[sid].values() if not t.score.infra_error]
            if not r_runs or not t_runs:
                continue
            (rp, r), (tp, t) = _majority(r_runs), _majority(t_runs)
            pairs.append(_Pair(scenario_id=sid, epoch=None, strata=[str(s) for s in r.strata], ref=r, tgt=t,
                               ref_passed=rp, tgt_passed=tp))
            paired_scenarios.add(sid)
    unpaired = sorted((set(ref) | set(tgt)) - paired_scenarios)
    return mode, pairs, unpaired


def _paired_stats(pairs: list[_Pair]) -> PairedStats:
    ref = [p.ref_passed for p in pairs]
    tgt = [p.tgt_passed for p in pairs]
    table = paired_table(ref, tgt)
    n = table.n
    boot = paired_bootstrap_diff(ref, tgt, [p.scenario_id for p in pairs],
                                 n_resamples=_BOOTSTRAP_RESAMPLES, seed=_BOOTSTRAP_SEED)
    newcombe = newcombe_paired_interval(table)
    ref_rate = sum(ref) / n if n else None
    tgt_rate = sum(tgt) / n if n else None
    return PairedStats(
        pairs=n,
        both_pass=table.both_pass,
        regressions=table.ref_only,
        improvements=table.target_only,
        both_fail=table.both_fail,
        reference_rate=ref_rate,
        target_rate=tgt_rate,
        delta_pts=_pts(tgt_rate - ref_rate) if n else None,  # type: ignore[operator]
        ci_low_pts=_pts(boot[0]) if boot else None,
        ci_high_pts=_pts(boot[1]) if boot else None,
        newcombe_low_pts=_pts(newcombe[0]) if newcombe else None,
        newcombe_high_pts=_pts(newcombe[1]) if newcombe else None,
        mcnemar_p=mcnemar_exact(table),
    )


def _pts(fraction: float) -> float:
    # rounded so that -5.000000000001 does not fail a 5-point tolerance
    return round(100.0 * fraction, 9)


def _step_divergence(ref: RunRecord, tgt: RunRecord) -> tuple[int, Outcome, Outcome] | None:
    ref_steps = {s.index: s for s in ref.score.steps}
    tgt_steps = {s.index: s for s in tgt.score.steps}
    for index in sorted(set(ref_steps) & set(tgt_steps)):
        a, b = ref_steps[index], tgt_steps[index]
        if a.passed != b.passed or a.outcome is not b.outcome:
            return index, a.outcome, b.outcome
    return None


def _versus(reference: str, ref_records: list[RunRecord], tgt_records: list[RunRecord],
            noise: NoiseFloor) -> VersusReference:
    mode, pairs, unpaired = _pairs(ref_records, tgt_records)
    strata = sorted({s for p in pairs for s in p.strata})
    flips: list[Flip] = []
    step_flips: list[StepFlip] = []
    for p in pairs:
        divergence = _step_divergence(p.ref, p.tgt)
        flipped = p.ref_passed != p.tgt_passed
        if flipped:
            flips.append(Flip(
                scenario_id=p.scenario_id,
                epoch=p.epoch,
                direction="regression" if p.ref_passed else "improvement",
                strata=p.strata,
                reference_first_failed_step=p.ref.score.first_failed_step,
                reference_outcome=p.ref.score.outcome,
                reference_reason=p.ref.score.reason,
                target_first_failed_step=p.tgt.score.first_failed_step,
                target_outcome=p.tgt.score.outcome,
                target_reason=p.tgt.score.reason,
                diverged_at_step=divergence[0] if divergence else None,
            ))
        if divergence is not None:
            index, ref_out, tgt_out = divergence
            direction = ("regression" if ref_out is Outcome.OK else
                         "improvement" if tgt_out is Outcome.OK else "changed")
            step_flips.append(StepFlip(scenario_id=p.scenario_id, epoch=p.epoch, index=index,
                                       reference_outcome=ref_out, target_outcome=tgt_out,
                                       direction=direction, scenario_flipped=flipped))
    flips.sort(key=lambda f: (f.direction != "regression", f.scenario_id, f.epoch or 0))
    flip_rate = len(flips) / len(pairs) if pairs else None
    within: bool | None = None
    if flip_rate is None:
        note = "no paired runs"
    elif not noise.known or noise.flip_rate is None:
        note = f"flip rate {flip_rate:.1%}; noise floor unknown (1 epoch of {reference})"
    else:
        within = flip_rate <= noise.flip_rate
        where = "within" if within else "above"
        note = f"flip rate {flip_rate:.1%} is {where} the noise floor ({noise.flip_rate:.1%}, {reference} vs itself)"
        if mode == "majority":
            note += "; majority pairing, so the two rates are not strictly comparable"
    return VersusReference(
        reference=reference,
        pairing=mode,  # type: ignore[arg-type]
        overall=_paired_stats(pairs),
        strata={s: _paired_stats([p for p in pairs if s in p.strata]) for s in strata},
        flips=flips,
        step_flips=step_flips,
        flip_rate=flip_rate,
        within_noise=within,
        noise_note=note,
        unpaired=unpaired,
    )


# -- verdict ------------------------------------------------------------------------------------


def _size_order(results: Results, names: list[str], order: list[str] | None) -> tuple[str, list[str]]:
    given = [n for n in (order or []) if n in names] + [n for n in names if n not in (order or [])]
    provs = {n: results.provenance(n) for n in names}
    for basis in ("file_size_bytes", "memory_bytes"):
        sizes = {n: getattr(provs[n], basis) for n in names}
        if all(v is not None for v in sizes.values()):
            # ties keep the given order (sorted is stable)
            return basis, sorted(given, key=lambda n: sizes[n])
    return "order", given


def _fmt_p(p: float | None) -> str:
    return "n/a" if p is None else f"{p:.2g}"


def _interval(ps: PairedStats) -> tuple[float, float]:
    """The wider of the bootstrap and Newcombe intervals at each end.

    A percentile bootstrap has zero width when every pair agrees (three of three lost gives [-100, -100]);
    Newcombe's interval does not, so taking the wider end keeps a tiny sample from looking decisive.
    """
    lows = [v for v in (ps.ci_low_pts, ps.newcombe_low_pts) if v is not None]
    highs = [v for v in (ps.ci_high_pts, ps.newcombe_high_pts) if v is not None]
    return min(lows), max(highs)


def _judge(target: TargetSummary, tolerance: float, critical: list[str]) -> BuildVerdict:
    vs = target.vs_reference
    assert vs is not None
    criteria: list[tuple[str, PairedStats | None]] = [("overall", vs.overall)]
    criteria += [(s, vs.strata.get(s)) for s in critical]
    reasons: list[str] = []
    failing: list[tuple[str, PairedStats]] = []
    for label, ps in criteria:
        if ps is None or ps.pairs == 0 or ps.delta_pts is None:
            reasons.append(f"{label}: no paired runs, so it cannot be shown to hold")
            continue
        if ps.delta_pts < -tolerance:
            reasons.append(
                f"{label} {100 * ps.target_rate:.1f}% vs {100 * ps.reference_rate:.1f}% "  # type: ignore[operator]
                f"({ps.delta_pts:.1f} pts > {tolerance:g}), McNemar p={_fmt_p(ps.mcnemar_p)}"
            )
            failing.append((label, ps))
    passes = not reasons

    def ci(ps: PairedStats) -> str:
        low, high = _interval(ps)
        return f"[{low:+.1f}, {high:+.1f}] pts"

    measured = [(label, ps) for label, ps in criteria if ps is not None and ps.ci_low_pts is not None]
    if passes:
        loose = [(label, ps) for label, ps in measured if _interval(ps)[0] < -tolerance]
        grade = not loose
        note = (f"every CI lies above -{tolerance:g} pts (overall {ci(vs.overall)})" if grade else
                "; ".join(f"{label} CI {ci(ps)} reaches below -{tolerance:g}: a drop beyond tolerance is not ruled out"
                          for label, ps in loose))
    else:
        firm = [(label, ps) for label, ps in failing if _interval(ps)[1] < -tolerance]
        grade = bool(firm)
        if grade:
            note = "; ".join(f"{label} CI {ci(ps)} lies wholly below -{tolerance:g}" for label, ps in firm)
        elif failing:
            note = "; ".join(f"{label} CI {ci(ps)} reaches above -{tolerance:g}: the drop may be within tolerance"
                             for label, ps in failing)
        else:
            note = "missing data, not a measured drop"
    if grade is False:
        note += "; more scenarios or epochs are needed to decide"
    return BuildVerdict(target=target.name, size_bytes=target.size_bytes, passes=passes, reasons=reasons,
                        decision_grade=grade, decision_note=note)


def _verdict(reference: str, candidates: list[TargetSummary], tolerance: float, critical: list[str],
             basis: str) -> Verdict:
    builds = [_judge(t, tolerance, critical) for t in candidates]
    chosen = next((b for b in builds if b.passes), None)
    scope = f"overall and on {', '.join(critical)}" if critical else "overall"
    if chosen is not None:
        grade = chosen.decision_grade
        summary = (f"{chosen.target} is the smallest build within {tolerance:g} pts of {reference} {scope}"
                   + (" (decision-grade)" if grade else f" (not decision-grade: {chosen.decision_note})"))
    else:
        grade = bool(builds) and all(b.decision_grade for b in builds)
        summary = (f"no build stays within {tolerance:g} pts of {reference} {scope}; keep {reference}"
                   + (" (decision-grade)" if grade else " (not decision-grade: some drops could be within tolerance)"))
    return Verdict(
        reference=reference,
        tolerance=tolerance,
        critical_strata=critical,
        size_basis=basis,  # type: ignore[arg-type]
        order=[t.name for t in candidates],
        chosen=chosen.target if chosen else None,
        builds=builds,
        decision_grade=grade,
        summary=summary,
    )


# -- disclosure ---------------------------------------------------------------------------------

# provenance fields where two builds of "the same model, another quant" must agree
# what may differ between builds besides the quant; one table for the preflight warning and the report
_CONFOUND_FIELDS: list[tuple[str, str, Any]] = [
    ("server", "server kind", lambda p: p.server),
    ("server_version", "server version", lambda p: p.server_version),
    ("chat_template", "chat template", lambda p: p.chat_template),
    ("context_length", "context length", lambda p: p.context_length),
    ("family", "model family", lambda p: p.family),
    ("parameter_size", "parameter count", lambda p: p.parameter_size),
    ("imatrix", "imatrix calibration data", lambda p: p.imatrix),
    ("requantized_from", "source the quant was made from", lambda p: p.extra.get("requantized_from")),
    ("kv_cache_dtype", "KV cache dtype", lambda p: p.extra.get("kv_cache_dtype")),
    ("tools_in_prompt", "tools in the prompt", lambda p: p.preflight.get("tools_in_prompt")),
    # not the tool-call format: on one server and template, a build that leaks its calls is the quant's doing;
    # nor tool_choice handling: runs send "auto", which every server honours
]


def _shown(value: Any) -> str | None:
    if value is None or value == "" or value == "unknown":
        return None
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def provenance_confounds(provenances: dict[str, Provenance]) -> tuple[list[Confound], list[str]]:
    """What differs between targets besides the quantization, and what could not be checked.

    Only known values are compared (an unknown is listed as unverified, not as a difference).
    """
    confounds: list[Confound] = []
    unverified: list[str] = []
    if len(provenances) < 2:
        return confounds, unverified
    for field, label, get in _CONFOUND_FIELDS:
        values = {n: _shown(get(p)) for n, p in provenances.items()}
        known = {v for v in values.values() if v is not None}
        if len(known) > 1:
            listed = ", ".join(f"{n}={v}" for n, v in values.items() if v is not None)
            confounds.append(Confound(
                field=field, values=values,
                message=f"{label} differs ({listed}): a gap between these targets may come from this, not from the quantization",
            ))
        elif known and any(v is None for v in values.values()):
            missing = [n for n, v in values.items() if v is None]
            unverified.append(f"{label} unknown for {', '.join(missing)}; cannot rule out a difference")
    placed = {n: p for n, p in provenances.items() if p.memory_bytes and p.vram_bytes is not None}
    spilled = [n for n, p in placed.items() if p.vram_bytes < p.memory_bytes]
    if spilled and len(spilled) < len(placed):
        confounds.append(Confound(
            field="cpu_spill", values={n: "yes" if n in spilled else "no" for n in placed},
            message=f"{', '.join(spilled)} partly run on the CPU and the others do not: latencies are not comparable",
        ))
    by_digest: dict[str, list[str]] = defaultdict(list)
    for name, p in provenances.items():
        if p.digest:
            by_digest[p.digest].append(name)
    for digest, names in by_digest.items():
        if len(names) > 1:
            confounds.append(Confound(
                field="digest", values={n: digest for n in names},
                message=f"{' and '.join(names)} are the same build (digest {digest[:12]}): any gap between them is noise",
            ))
    return confounds, unverified


def _confounds(results: Results, names: list[str]) -> tuple[list[Confound], list[str]]:
    confounds, unverified = provenance_confounds({n: results.provenance(n) for n in names})
    samplings = {h.config.sampling.model_dump_json() for h in results.headers}
    if len(samplings) > 1:
        confounds.append(Confound(
            field="sampling",
            values={h.run_id: h.config.sampling.model_dump_json() for h in results.headers},
            message="sampling settings differ between the merged sessions",
        ))
    hashes: dict[str, set[str]] = defaultdict(set)
    for r in results.latest():
        hashes[r.scenario_id].add(r.scenario_hash)
    changed = sorted(sid for sid, hs in hashes.items() if len(hs) > 1)
    if changed:
        confounds.append(Confound(
            field="scenario_hash",
            values={sid: ", ".join(sorted(hashes[sid])) for sid in changed},
            message=f"scenario content differs between runs for {', '.join(changed)}: targets did not face the same task",
        ))
    return confounds, unverified


def _disclosure(results: Results, names: list[str], reference: str | None, tolerance: float,
                critical: list[str]) -> Disclosure:
    latest = results.latest()
    config = results.header.config if results.headers else None
    configured = {t.name: t for h in results.headers for t in h.targets}
    scenario_ids = sorted({r.scenario_id for r in latest})
    set_hash, source = None, "none"
    if config is not None and config.scenario_set_hash:
        set_hash, source = config.scenario_set_hash, "header"
    elif latest:
        lines = sorted({f"{r.scenario_id}:{r.scenario_hash}" for r in latest})
        set_hash, source = hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16], "computed"
    targets = []
    for n in names:
        prov = results.provenance(n)
        t = configured.get(n)
        src = prov.extra.get("requantized_from")
        targets.append(TargetDisclosure(name=n, model=t.model if t else None, base_url=t.base_url if t else None,
                                        provenance=prov, requantized_from=str(src) if src is not None else None))
    confounds, unverified = _confounds(results, names)
    run_ids = list(dict.fromkeys([h.run_id for h in results.headers] + [r.run_id for r in latest]))
    return Disclosure(
        run_ids=run_ids,
        scenario_ids=scenario_ids,
        scenario_set_hash=set_hash,
        scenario_set_hash_source=source,  # type: ignore[arg-type]
        reference=reference,
        tolerance=tolerance if reference else None,
        critical_strata=critical,
        sampling=config.sampling if config else None,
        epochs=config.epochs if config else max((r.epoch + 1 for r in latest), default=1),
        harness_version=config.harness_version if config else None,
        targets=targets,
        sample_sizes={n: sum(1 for r in latest if r.target == n and not r.score.infra_error) for n in names},
        metrics=dict(METRICS),
        confounds=confounds,
        unverified=unverified,
        warnings=[f"[{n}] no results: every run of it is missing from the results files"
                  for n in results.targets() if n not in names]
        + [f"[{n}] {w}" for n in names for w in results.provenance(n).warnings],
    )
