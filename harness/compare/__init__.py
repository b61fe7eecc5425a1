"""Compare builds of one model: scenario-level flips first, then rates with honest intervals, then a verdict.

`compare_runs` reads a `Results` and answers "which is the smallest build that still does this task?",
or says that the evidence does not settle it and what would. The scenario (or family) is the unit of
evidence; the statistics are in `harness.stats`. One module per idea:

    summary.py  one target's rates, pass^k, failures, depth     noise.py       each build's own instability
    pairing.py  a target against the reference, flips           verdict.py     within / beyond / undecided
    cost.py     latency, tok/s, size, memory                    confounds.py   what differs besides the quant
    disclosure.py what a reader needs to judge the comparison   models.py      the shapes reports render
"""

from __future__ import annotations

from harness.compare.confounds import provenance_confounds
from harness.compare.disclosure import METRICS, disclose
from harness.compare.models import (
    BuildVerdict,
    Claim,
    Comparison,
    Confound,
    Cost,
    Criterion,
    DepthPoint,
    Disclosure,
    FailureCounts,
    Flip,
    GateRow,
    GateTable,
    NoiseFloor,
    PairedStats,
    PassHatK,
    Rate,
    StepFlip,
    TargetDisclosure,
    TargetSummary,
    Verdict,
    VersusReference,
)
from harness.compare.pairing import versus
from harness.compare.summary import summarize_target
from harness.compare.verdict import verdict_for
from harness.records import Results
from harness.stats import min_decidable_scenarios

__all__ = [
    "METRICS",
    "BuildVerdict",
    "Claim",
    "Comparison",
    "Confound",
    "Cost",
    "Criterion",
    "DepthPoint",
    "Disclosure",
    "FailureCounts",
    "Flip",
    "GateRow",
    "GateTable",
    "NoiseFloor",
    "PairedStats",
    "PassHatK",
    "Rate",
    "StepFlip",
    "TargetDisclosure",
    "TargetSummary",
    "Verdict",
    "VersusReference",
    "compare_runs",
    "provenance_confounds",
    "summarize_run",
]

DEFAULT_TOLERANCE = 5.0


def compare_runs(
    results: Results,
    *,
    reference: str | None,
    tolerance: float | None = DEFAULT_TOLERANCE,
    critical_strata: list[str] | None = None,
    order: list[str] | None = None,
) -> Comparison:
    """Compare every target in `results` with `reference` and judge each build against `tolerance` points.

    `reference` defaults to the run config's, else the first target. `critical_strata` are strata that
    must each be within tolerance; by default every stratum with enough scenarios to be decided counts and
    the rest are reported only. `order` (smallest first) orders builds when sizes are not known for all.
    """
    if tolerance is None:
        tolerance = DEFAULT_TOLERANCE
    if tolerance < 0:
        raise ValueError(f"tolerance must be 0 or more points, got {tolerance:g}")
    names = _target_names(results)
    if not names:
        return Comparison(reference=None, tolerance=tolerance, disclosure=disclose(results, [], None, tolerance, []))
    if reference is None:
        reference = (results.header.config.reference if results.headers else None) or names[0]
    if reference not in names:
        raise ValueError(f"reference {reference!r} is not in the results (targets: {names})")
    if len(names) == 1:
        return summarize_run(results)

    records = {name: results.for_target(name) for name in names}
    summaries = {name: summarize_target(name, records[name], results.provenance(name)) for name in names}
    ref_summary = summaries[reference]
    ref_summary.is_reference = True
    for name in names:
        if name != reference:
            summaries[name].vs_reference = versus(reference, records[reference], records[name], tolerance)

    basis, ordered = _size_order(results, names, order)
    present = sorted(ref_summary.strata)
    minimum = min_decidable_scenarios(tolerance / 100.0) if tolerance > 0 else None
    big_enough = {s for s in present if minimum is not None and ref_summary.strata[s].scenarios >= minimum}
    if critical_strata:
        counted = list(dict.fromkeys(s.strip().lower() for s in critical_strata))
        shown = [s for s in present if s not in counted]
        undecidable = [s for s in counted if s not in big_enough]
    else:
        counted = [s for s in present if s in big_enough]
        shown = [s for s in present if s not in big_enough]
        undecidable = []
    verdict = verdict_for(reference, [summaries[n] for n in ordered if n != reference], tolerance,
                          counted, shown, undecidable, basis)
    return Comparison(
        reference=reference,
        tolerance=tolerance,
        targets=[summaries[n] for n in ordered],
        noise_floor=ref_summary.noise,
        verdict=verdict,
        disclosure=disclose(results, ordered, reference, tolerance, counted),
    )


def summarize_run(results: Results) -> Comparison:
    """The same models for a run with no reference: per-target rates, depth, stability and cost; no verdict."""
    names = _target_names(results)
    summaries = [summarize_target(n, results.for_target(n), results.provenance(n)) for n in names]
    configured = results.header.config.tolerance if results.headers else None
    tolerance = DEFAULT_TOLERANCE if configured is None else configured
    return Comparison(reference=None, tolerance=tolerance, targets=summaries,
                      disclosure=disclose(results, names, None, tolerance, []))


def _target_names(results: Results) -> list[str]:
    with_records = {r.target for r in results.records}
    return [n for n in results.targets() if n in with_records]


def _size_order(results: Results, names: list[str], order: list[str] | None) -> tuple[str, list[str]]:
    given = [n for n in (order or []) if n in names] + [n for n in names if n not in (order or [])]
    provs = {n: results.provenance(n) for n in names}
    for basis in ("file_size_bytes", "memory_bytes"):
        sizes = {n: getattr(provs[n], basis) for n in names}
        if all(v is not None for v in sizes.values()):
            # ties keep the given order (sorted is stable)
            return basis, sorted(given, key=lambda n: sizes[n])
    return "order", given
