"""A target against the reference, scenario by scenario: pooled paired tables, Tango intervals and flips.

Each scenario is pooled over its epochs on each side (its pass share), so epochs need not line up or
be equal in number, and neither a tie nor a dropped record biases anything. The statistics are on the
effective counts (`harness.stats.effective_table`); the flips list every scenario whose share differs.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from harness.compare.models import Flip, PairedStats, StepFlip, VersusReference
from harness.compare.summary import family_of
from harness.outcomes import Outcome
from harness.records import RunRecord
from harness.stats import (
    effective_table,
    mcnemar_midp,
    min_decidable_scenarios,
    scenarios_needed,
    tango_interval,
    tango_pvalues,
)

__all__ = ["ScenarioPair", "pair_scenarios", "paired_stats", "versus"]


@dataclass(frozen=True)
class ScenarioPair:
    """One scenario's scored runs on both sides."""

    scenario_id: str
    cluster: str
    strata: list[str]
    ref_runs: list[RunRecord]
    tgt_runs: list[RunRecord]

    @property
    def ref_rate(self) -> float:
        return sum(r.score.passed for r in self.ref_runs) / len(self.ref_runs)

    @property
    def tgt_rate(self) -> float:
        return sum(r.score.passed for r in self.tgt_runs) / len(self.tgt_runs)

    @property
    def weight(self) -> int:
        return min(len(self.ref_runs), len(self.tgt_runs))

    @property
    def flaky(self) -> bool:
        return any(0 < sum(r.score.passed for r in runs) < len(runs) for runs in (self.ref_runs, self.tgt_runs))


def pair_scenarios(ref_records: list[RunRecord], tgt_records: list[RunRecord]) -> tuple[list[ScenarioPair], list[str]]:
    """Scenarios scored on both sides (infra-error runs left out), and the ids scored on only one."""
    def by_scenario(records: list[RunRecord]) -> dict[str, list[RunRecord]]:
        out: dict[str, list[RunRecord]] = defaultdict(list)
        for r in sorted(records, key=lambda r: r.epoch):
            if not r.score.infra_error:
                out[r.scenario_id].append(r)
        return out

    ref, tgt = by_scenario(ref_records), by_scenario(tgt_records)
    seen = {r.scenario_id for r in ref_records} | {r.scenario_id for r in tgt_records}
    shared = sorted(set(ref) & set(tgt))
    pairs = [ScenarioPair(scenario_id=sid, cluster=family_of(ref[sid][0]), strata=[str(s) for s in ref[sid][0].strata],
                          ref_runs=ref[sid], tgt_runs=tgt[sid]) for sid in shared]
    return pairs, sorted(seen - set(shared))


def _claim(low: float, high: float, tolerance: float) -> str:
    if low >= -tolerance:
        return "within"
    if high < -tolerance:
        return "beyond"
    return "undecided"


def paired_stats(pairs: list[ScenarioPair], tolerance_pts: float) -> PairedStats:
    """Pooled paired table, design effect, Tango interval and the claim at the tolerance, for these scenarios."""
    table = effective_table([p.ref_rate for p in pairs], [p.tgt_rate for p in pairs],
                            [p.weight for p in pairs], [p.cluster for p in pairs])
    minimum = min_decidable_scenarios(tolerance_pts / 100.0) if tolerance_pts > 0 else None
    if table is None:
        return PairedStats(scenarios=0, pairs=0, both_pass=0, regressions=0, improvements=0, both_fail=0,
                           decidable=False, min_scenarios=minimum)
    raw, eff = table.raw, table.effective
    tol = tolerance_pts / 100.0
    low, high = tango_interval(eff.ref_only, eff.target_only, eff.n)
    p_within, p_beyond = tango_pvalues(eff.ref_only, eff.target_only, eff.n, tol)
    claim = _claim(low, high, tol)
    delta = raw.delta or 0.0
    needed = None
    if claim == "undecided" and tol > 0:
        needed = scenarios_needed(tol, raw.discordance or 0.0, delta=delta)
    stable_reg = sum(p.ref_rate == 1.0 and p.tgt_rate == 0.0 for p in pairs)
    stable_imp = sum(p.ref_rate == 0.0 and p.tgt_rate == 1.0 for p in pairs)
    ref_rate = (raw.both_pass + raw.ref_only) / raw.n
    return PairedStats(
        scenarios=table.scenarios, clusters=table.clusters, pairs=raw.n,
        both_pass=raw.both_pass, regressions=raw.ref_only, improvements=raw.target_only, both_fail=raw.both_fail,
        design_effect=table.design_effect, deff_basis=table.basis, effective_pairs=eff.n,
        reference_rate=ref_rate, target_rate=ref_rate + delta, delta_pts=100.0 * delta,
        ci_low_pts=100.0 * low, ci_high_pts=100.0 * high, claim=claim,  # type: ignore[arg-type]
        p_within=p_within, p_beyond=p_beyond,
        decidable=minimum is not None and table.scenarios >= minimum, min_scenarios=minimum,
        rules_out_drop_pts=max(0.0, -100.0 * low) if low > -1.0 + 1e-9 else None,
        needed_scenarios=needed,
        stable_regressions=stable_reg, stable_improvements=stable_imp,
        mcnemar_p=mcnemar_midp(stable_reg, stable_imp),
    )


def _step_divergence(ref: RunRecord, tgt: RunRecord) -> tuple[int, Outcome, Outcome] | None:
    ref_steps = {s.index: s for s in ref.score.steps}
    tgt_steps = {s.index: s for s in tgt.score.steps}
    for index in sorted(set(ref_steps) & set(tgt_steps)):
        a, b = ref_steps[index], tgt_steps[index]
        if a.passed != b.passed or a.outcome is not b.outcome:
            return index, a.outcome, b.outcome
    return None


def _shown(runs: list[RunRecord], passed: bool) -> RunRecord:
    return next((r for r in runs if r.score.passed == passed), runs[0])


def versus(reference: str, ref_records: list[RunRecord], tgt_records: list[RunRecord], tolerance_pts: float) -> VersusReference:
    """The target paired with the reference: overall and per-stratum statistics, flips and step flips."""
    pairs, unpaired = pair_scenarios(ref_records, tgt_records)
    strata = sorted({s for p in pairs for s in p.strata})
    flips: list[Flip] = []
    step_flips: list[StepFlip] = []
    for p in pairs:
        r_rate, t_rate = p.ref_rate, p.tgt_rate
        flipped = r_rate != t_rate
        regression = r_rate > t_rate
        # show a run that did what the side did: the better side's pass against the worse side's fail
        ref_run = _shown(p.ref_runs, regression) if flipped else p.ref_runs[0]
        tgt_run = _shown(p.tgt_runs, not regression) if flipped else p.tgt_runs[0]
        divergence = _step_divergence(ref_run, tgt_run)
        if flipped:
            flips.append(Flip(
                scenario_id=p.scenario_id,
                epoch=ref_run.epoch if ref_run.epoch == tgt_run.epoch else None,
                direction="regression" if regression else "improvement",
                flaky=p.flaky, reference_pass_rate=r_rate, target_pass_rate=t_rate,
                strata=p.strata,
                reference_first_failed_step=ref_run.score.first_failed_step,
                reference_outcome=ref_run.score.outcome, reference_reason=ref_run.score.reason,
                target_first_failed_step=tgt_run.score.first_failed_step,
                target_outcome=tgt_run.score.outcome, target_reason=tgt_run.score.reason,
                diverged_at_step=divergence[0] if divergence else None,
            ))
        if divergence is not None:
            index, ref_out, tgt_out = divergence
            direction = ("regression" if ref_out is Outcome.OK else
                         "improvement" if tgt_out is Outcome.OK else "changed")
            step_flips.append(StepFlip(scenario_id=p.scenario_id,
                                       epoch=ref_run.epoch if ref_run.epoch == tgt_run.epoch else None,
                                       index=index, reference_outcome=ref_out, target_outcome=tgt_out,
                                       direction=direction, scenario_flipped=flipped))
    flips.sort(key=lambda f: (f.direction != "regression", f.flaky, f.scenario_id))
    stable = [f for f in flips if not f.flaky]
    flaky = [f for f in flips if f.flaky]
    flip_rate = len(stable) / len(pairs) if pairs else None
    if not pairs:
        note = "no paired scenarios"
    else:
        note = f"{len(stable)} stable flip(s) in {len(pairs)} paired scenarios"
        if flaky:
            note += (f"; {len(flaky)} more differ only on scenarios flaky on one side "
                     f"({', '.join(f.scenario_id for f in flaky[:5])}{', ...' if len(flaky) > 5 else ''}): "
                     "not evidence of damage on their own")
        if all(len(p.ref_runs) == 1 and len(p.tgt_runs) == 1 for p in pairs):
            note += "; one epoch per side, so flaky scenarios cannot be told from real flips"
    return VersusReference(
        reference=reference,
        cluster_unit="family" if any(p.cluster.startswith("family:") for p in pairs) else "scenario",
        overall=paired_stats(pairs, tolerance_pts),
        strata={s: paired_stats([p for p in pairs if s in p.strata], tolerance_pts) for s in strata},
        flips=flips,
        step_flips=step_flips,
        flip_rate=flip_rate,
        noise_note=note,
        unpaired=unpaired,
    )
