"""The threshold analysis: which builds are within tolerance of the reference, and which is the smallest safe one.

A claim is within, beyond or undecided, never a point estimate. A build is within only when the overall
rate and every counted stratum are; beyond when any of them is (strata's beyond claims Holm-corrected
within the build); otherwise undecided. "Smallest safe build" is said only when that build is within
and every smaller build is beyond; otherwise the verdict names what is open and what would settle it.
"""

from __future__ import annotations

from harness.compare.models import BuildVerdict, Criterion, PairedStats, TargetSummary, Verdict
from harness.stats import holm

__all__ = ["judge_build", "verdict_for"]

_ALPHA = 0.025
"""One-sided error of each claim (the 95% two-sided interval's side)."""


def _ci(ps: PairedStats) -> str:
    if ps.ci_low_pts is None or ps.ci_high_pts is None:
        return "no interval"
    return f"95% CI [{ps.ci_low_pts:+.1f}, {ps.ci_high_pts:+.1f}] pts"


def _line(label: str, ps: PairedStats) -> str:
    return (f"{label} {100 * (ps.target_rate or 0):.1f}% vs {100 * (ps.reference_rate or 0):.1f}% "
            f"({ps.delta_pts:+.1f} pts, {_ci(ps)}, {ps.scenarios} scenarios)")


def _needed(ps: PairedStats) -> str:
    if ps.needed_scenarios is None:
        return "the observed drop sits on the tolerance line, so no feasible number of scenarios settles it"
    disc = 100.0 * (ps.regressions + ps.improvements) / ps.pairs if ps.pairs else 0.0
    return f"about {ps.needed_scenarios} scenarios at the observed {disc:.0f}% discordance (now {ps.scenarios})"


def judge_build(target: TargetSummary, tolerance: float, counted: list[str], shown: list[str],
                undecidable: list[str]) -> BuildVerdict:
    """One build's status from its paired statistics: within, beyond or undecided, with reasons."""
    vs = target.vs_reference
    assert vs is not None
    criteria: list[Criterion] = []
    overall = vs.overall
    criteria.append(Criterion(label="overall", claim=overall.claim if overall.scenarios else "undecided",
                              ci_low_pts=overall.ci_low_pts, ci_high_pts=overall.ci_high_pts,
                              delta_pts=overall.delta_pts, scenarios=overall.scenarios,
                              p_beyond_adjusted=overall.p_beyond,
                              note="" if overall.scenarios else "no paired runs, so it cannot be shown to hold"))
    stats = [(s, vs.strata.get(s)) for s in counted]
    measured = [(s, ps) for s, ps in stats if ps is not None and ps.scenarios]
    adjusted = dict(zip([s for s, _ in measured], holm([ps.p_beyond or 1.0 for _, ps in measured])))
    for s, ps in stats:
        if ps is None or not ps.scenarios:
            criteria.append(Criterion(label=s, claim="undecided", note="no paired runs, so it cannot be shown to hold"))
            continue
        claim = "within" if ps.claim == "within" else "beyond" if adjusted[s] < _ALPHA else "undecided"
        notes = []
        if ps.claim == "beyond" and claim != "beyond":
            notes.append("beyond on its own, but not after the Holm correction over the strata")
        if s in undecidable and claim != "beyond":
            notes.append(f"named critical, but {ps.scenarios} scenarios can never show a drop within {tolerance:g} pts "
                         f"(needs at least {ps.min_scenarios})")
        note = "; ".join(notes)
        criteria.append(Criterion(label=s, claim=claim, ci_low_pts=ps.ci_low_pts, ci_high_pts=ps.ci_high_pts,  # type: ignore[arg-type]
                                  delta_pts=ps.delta_pts, scenarios=ps.scenarios, p_beyond_adjusted=adjusted[s], note=note))
    for s in shown:
        ps = vs.strata.get(s)
        if ps is not None and ps.scenarios:
            criteria.append(Criterion(label=s, claim=ps.claim, counted=False, ci_low_pts=ps.ci_low_pts,
                                      ci_high_pts=ps.ci_high_pts, delta_pts=ps.delta_pts, scenarios=ps.scenarios,
                                      p_beyond_adjusted=ps.p_beyond,
                                      note=f"reported only: {ps.scenarios} scenarios cannot decide {tolerance:g} pts"))
    live = [c for c in criteria if c.counted]
    status = ("beyond" if any(c.claim == "beyond" for c in live) else
              "within" if all(c.claim == "within" for c in live) else "undecided")

    reasons: list[str] = []
    open_parts: list[str] = []
    for c in live:
        ps = overall if c.label == "overall" else vs.strata.get(c.label)
        if c.claim == "within":
            continue
        if ps is None or not ps.scenarios:
            reasons.append(f"{c.label}: {c.note}")
            continue
        what = ("drop beyond tolerance" if c.claim == "beyond" else
                f"undecided: the interval straddles -{tolerance:g} pts")
        reasons.append(f"{_line(c.label, ps)}: {what}" + (f" ({c.note})" if c.note else ""))
        if c.claim == "undecided":
            open_parts.append(f"{c.label}: {_needed(ps)}")
    to_decide = "; ".join(open_parts) if status == "undecided" else ""
    note = f"overall {_ci(overall)} against -{tolerance:g} pts"
    if overall.deff_basis == "worst_case" and overall.pairs > overall.scenarios:
        note += f"; epochs counted as copies ({overall.scenarios} independent scenarios)"
    return BuildVerdict(target=target.name, size_bytes=target.size_bytes, status=status,  # type: ignore[arg-type]
                        criteria=criteria, reasons=reasons, to_decide=to_decide, passes=status == "within",
                        decision_grade=status != "undecided", decision_note=note)


def verdict_for(reference: str, candidates: list[TargetSummary], tolerance: float, counted: list[str],
                shown: list[str], undecidable: list[str], basis: str) -> Verdict:
    """Judge every build (smallest first) and say which is the smallest safe one, only where that is settled."""
    builds = [judge_build(t, tolerance, counted, shown, undecidable) for t in candidates]
    scope = f"overall and on {', '.join(counted)}" if counted else "overall"
    first_within = next((i for i, b in enumerate(builds) if b.status == "within"), None)
    chosen = None
    if first_within is not None and all(b.status == "beyond" for b in builds[:first_within]):
        chosen = builds[first_within].target
    smallest = builds[first_within].target if first_within is not None else None
    undecided = [b for b in builds if b.status == "undecided"]
    if chosen is not None:
        smaller = builds[:first_within]
        summary = (f"{chosen} is the smallest build within {tolerance:g} pts of {reference} {scope}: "
                   + ("decisively within, and every smaller build is decisively beyond" if smaller
                      else "decisively within, and no build is smaller"))
        grade = True
    elif smallest is not None:
        open_smaller = [b.target for b in builds[:first_within] if b.status == "undecided"]
        summary = (f"{smallest} is decisively within {tolerance:g} pts of {reference} {scope}, but the smaller "
                   f"{', '.join(open_smaller)} {'is' if len(open_smaller) == 1 else 'are'} undecided, so the smallest "
                   f"safe build is not settled")
        grade = False
    elif builds and not undecided:
        summary = f"every build drops beyond {tolerance:g} pts of {reference} {scope}: keep {reference}"
        grade = True
    else:
        summary = (f"undecided: no build is shown within {tolerance:g} pts of {reference} {scope}; "
                   f"{', '.join(b.target for b in undecided)} {'is' if len(undecided) == 1 else 'are'} undecided")
        grade = False
    planning: list[str] = []
    for t, b in zip(candidates, builds):
        ps = t.vs_reference.overall if t.vs_reference else None
        if ps is None or not ps.scenarios:
            continue
        ruled = ("no drop at all" if ps.rules_out_drop_pts == 0 else
                 f"drops larger than {ps.rules_out_drop_pts:.1f} pts" if ps.rules_out_drop_pts is not None else "nothing")
        line = f"{b.target}: this run rules out {ruled} overall ({ps.scenarios} scenarios, {ps.effective_pairs:.1f} effective pairs)"
        if b.to_decide:
            line += f"; to decide: {b.to_decide}"
        planning.append(line)
    if shown:
        planning.append(f"reported but not counted (too few scenarios to decide {tolerance:g} pts; name them with "
                        f"--critical to count them): {', '.join(shown)}")
    if undecidable:
        planning.append(f"named critical but too small to ever be shown within {tolerance:g} pts: {', '.join(undecidable)}")
    return Verdict(reference=reference, tolerance=tolerance, critical_strata=counted, reported_strata=shown,
                   undecidable_critical=undecidable, size_basis=basis,  # type: ignore[arg-type]
                   order=[t.name for t in candidates], chosen=chosen, smallest_within=smallest, builds=builds,
                   decision_grade=grade, summary=summary, planning=planning)
