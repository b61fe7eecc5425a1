"""What a reader needs to judge or reproduce a comparison: builds, scenarios, sampling, metrics, confounds."""

from __future__ import annotations

import hashlib

from harness.compare.confounds import run_confounds
from harness.compare.models import Disclosure, TargetDisclosure
from harness.records import Results

__all__ = ["METRICS", "disclose", "evidence_notes"]

METRICS: dict[str, str] = {
    "unit": "the scenario (or its family when scenarios have one) is the unit of evidence, not the run",
    "pass@1": "passed runs / scored runs, every epoch counted; infra-error runs are excluded",
    "pass^k": "mean over scenarios of C(c,k)/C(n,k): the chance that k trials of a scenario all pass (tau-bench)",
    "design_effect": "variance inflation from several runs of one scenario (Rao-Scott), clamped to [1, runs per "
                     "scenario]; where no run disagrees it cannot be estimated and epochs are taken as copies",
    "effective_n": "runs / design effect: what the runs are worth as independent runs; every interval uses it",
    "wilson_ci": "95% Wilson score interval of a pass rate, on the effective number of runs",
    "pairing": "each scenario is pooled over its epochs on each side (its pass share); its paired cells are the "
               "cross-pairs of its epochs, so epochs need not line up or be equal in number",
    "flip": "a scenario whose pass share differs between the reference and the target; `flaky` when either side "
            "disagrees with itself across epochs (shown, but not evidence of damage on its own)",
    "delta_pts": "target minus reference pass rate on the paired scenarios, in percentage points",
    "tango_ci": "Tango (1998) paired score 95% interval of delta_pts, on the effective counts",
    "claim": "within: the interval's lower end is at or above -tolerance; beyond: its upper end is below "
             "-tolerance; undecided: otherwise. Never judged on a point estimate",
    "holm": "a build's strata beyond-claims are Holm-corrected over its counted strata (one-sided 2.5% each)",
    "decidable": "a stratum with fewer scenarios than z^2(1-t)/t (73 at 5 pts) cannot be shown within tolerance "
                 "even with no flip: it is reported, not counted, unless named with --critical",
    "mcnemar_p": "scenario-level two-sided mid-p McNemar on stable flips: a test of equality, not of tolerance",
    "noise_floor": "per build, the share of repeated scenarios whose epochs disagree, with a Wilson interval",
    "needed_scenarios": "about how many independent scenarios settle an open claim at the observed discordance "
                        "and delta with 80% power (Tango's test, asymptotic; `harness plan --exact` enumerates)",
    "verdict": "the smallest safe build is named only when it is within and every smaller build is beyond",
}


def evidence_notes(results: Results) -> list[str]:
    """What the numbers of these runs cannot mean, in words (epochs at temperature 0, a single epoch)."""
    notes: list[str] = []
    config = results.header.config if results.headers else None
    epochs = max((r.epoch + 1 for r in results.records), default=1)
    temperature = config.sampling.temperature if config else None
    if temperature == 0 and epochs > 1:
        notes.append(f"{epochs} epochs at temperature 0 are near-copies: they add no evidence about the builds, only a "
                     "check of each build's own stability (flaky scenarios). For more evidence add scenarios; to "
                     "measure run-to-run variability sample at temperature > 0 with epochs")
    overlap = results.overlapping_runs()
    if overlap:
        kept = len(results.latest())
        notes.append(f"merged {len(results.headers)} sessions that ran the same scenarios ({', '.join(sorted(overlap))}): "
                     f"{len(results.records) - kept} records were replaced by a later run's, {kept} kept")
    if epochs == 1:
        notes.append("one epoch per scenario: a build's flaky scenarios cannot be told from real flips; "
                     "--epochs 2 or more shows them")
    return notes

def disclose(results: Results, names: list[str], reference: str | None, tolerance: float,
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
    confounds, unverified = run_confounds(results, names)
    run_ids = list(dict.fromkeys([h.run_id for h in results.headers] + [r.run_id for r in latest]))
    families = any(r.family for r in latest)
    return Disclosure(
        unit_of_evidence=("the scenario family: instances of one family are correlated, so each family counts "
                          "as one cluster" if families else "the scenario: its epochs are pooled into one pass share"),
        evidence_notes=evidence_notes(results),
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
