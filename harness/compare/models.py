"""The shapes a comparison is made of: every report, the gate and `summary.json` are rendered from these.

Units: every rate is a fraction in [0, 1]; every difference is in percentage points (`*_pts`). Counts
named `effective_*` are what the runs are worth as independent evidence (see `harness.stats`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from harness.outcomes import Outcome
from harness.records import Provenance, Sampling

__all__ = [
    "Claim",
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
    "Criterion",
    "BuildVerdict",
    "Verdict",
    "GateRow",
    "GateTable",
    "Comparison",
]

Claim = Literal["within", "beyond", "undecided"]
"""What the evidence says of a drop against the tolerance: `within` (the 95% interval's lower end is at or
above -tolerance), `beyond` (its upper end is below -tolerance), `undecided` (the interval straddles the line)."""

DeffBasis = Literal["estimated", "worst_case", "single_run"]
ClusterUnit = Literal["scenario", "family"]


class _Model(BaseModel):
    model_config = ConfigDict()


class Rate(_Model):
    """A pass rate with its Wilson 95% interval on the effective number of independent runs."""

    passed: int
    """Runs (or items) that passed."""
    n: int
    """Runs (or items) counted; infra-error runs are never counted."""
    rate: float | None = None
    """passed / n as a fraction in [0, 1]; None when n is 0."""
    low: float | None = None
    """Lower end of the Wilson 95% interval (fraction), computed on `effective_n`; None when n is 0."""
    high: float | None = None
    """Upper end of the Wilson 95% interval (fraction); None when n is 0."""
    scenarios: int = 0
    """Distinct scenarios behind the runs."""
    effective_n: float | None = None
    """What the runs are worth as independent runs: n / design effect (equals `scenarios` when epochs are copies)."""
    design_effect: float = 1.0
    """Variance inflation from several runs of one scenario (or family), clamped to [1, runs per scenario]."""
    deff_basis: DeffBasis = "single_run"
    """`estimated` from the runs; `worst_case` (every run agrees: epochs counted as copies); `single_run`."""

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
    """Kaplan-Meier estimate of the share of runs still on track after this step (no failed step at index
    <= `index`): a scenario with fewer steps leaves the risk set when it ends instead of counting as on track
    or off. None when no run reaches this depth."""


class NoiseFloor(_Model):
    """How unstable one build is on its own: scenarios whose epochs disagree with each other."""

    target: str
    """The build measured against itself."""
    epochs: int
    """Largest number of scored epochs of any scenario."""
    known: bool
    """False when no scenario has two scored epochs: instability cannot be seen at all."""
    repeated_scenarios: int = 0
    """Scenarios with two or more scored epochs: the denominator of `flaky_rate`."""
    flaky: list[str] = Field(default_factory=list)
    """Scenario ids whose epochs disagree (some passed, some failed) on this build."""
    flaky_rate: float | None = None
    """Share of repeated scenarios that are flaky (fraction)."""
    low: float | None = None
    """Lower end of the Wilson 95% interval of `flaky_rate`, over scenarios."""
    high: float | None = None
    """Upper end of that interval: with 0 of 6 flaky this is still 39%, so few scenarios cannot show stability."""
    note: str = ""
    """One line for a reader."""


class PairedStats(_Model):
    """A target against the reference on the same scenarios, for all scenarios or one stratum.

    Each scenario is pooled over its epochs (its pass proportion on each side); the cells are the
    cross-pairs of its epochs, and the `effective_*` cells are those divided by the design effect.
    """

    scenarios: int
    """Scenarios scored on both sides."""
    clusters: int = 0
    """Independent units behind the design effect: families where scenarios have one, else scenarios."""
    pairs: float
    """Paired runs (per scenario the smaller of its two epoch counts), before the design effect."""
    both_pass: float
    regressions: float
    """Reference passed, target failed (pooled over epochs, so possibly fractional)."""
    improvements: float
    """Reference failed, target passed."""
    both_fail: float
    design_effect: float = 1.0
    """Variance inflation of the paired difference from clustering, clamped to [1, pairs per scenario]."""
    deff_basis: DeffBasis = "single_run"
    """`estimated`, `worst_case` (no pair disagrees, or one cluster: epochs counted as copies) or `single_run`."""
    effective_pairs: float = 0.0
    """`pairs` / design effect: the sample size the interval is computed on."""
    reference_rate: float | None = None
    """Reference pass rate on these scenarios (fraction)."""
    target_rate: float | None = None
    """Target pass rate on these scenarios (fraction)."""
    delta_pts: float | None = None
    """Target minus reference, in percentage points."""
    ci_low_pts: float | None = None
    """Lower end of Tango's 95% paired score interval of `delta_pts`, on the effective counts."""
    ci_high_pts: float | None = None
    """Upper end of that interval."""
    claim: Claim = "undecided"
    """The interval against the tolerance line: within, beyond or undecided."""
    p_within: float | None = None
    """One-sided p-value of H0 `drop beyond tolerance` (small: within); < 0.025 exactly when claim is within."""
    p_beyond: float | None = None
    """One-sided p-value of H0 `drop within tolerance` (small: beyond), before any multiplicity correction."""
    decidable: bool = True
    """Enough independent scenarios that a within-tolerance claim is possible at all (0 flips would show it)."""
    min_scenarios: int | None = None
    """The fewest independent scenarios for which a within claim is possible at this tolerance; None for tolerance 0."""
    rules_out_drop_pts: float | None = None
    """The run rules out drops larger than this many points (minus the interval's lower end); None if it rules out none."""
    needed_scenarios: int | None = None
    """About how many independent scenarios would settle the claim at the observed discordance and delta
    (80% power); None when settled, or when the observed drop sits on the tolerance line."""
    stable_regressions: int = 0
    """Scenarios that passed every epoch on the reference and failed every epoch on the target."""
    stable_improvements: int = 0
    """The reverse."""
    mcnemar_p: float | None = None
    """Scenario-level two-sided mid-p McNemar on the stable flips: a test of *equality*, not of tolerance."""


class Flip(_Model):
    """One scenario whose result differs between the reference and a target: the evidence behind the averages."""

    scenario_id: str
    epoch: int | None = None
    """The epoch whose trajectories are shown (the first scored epoch on the reference)."""
    direction: Literal["regression", "improvement"]
    """`regression`: the reference did better; `improvement`: the target did."""
    flaky: bool = False
    """True when either side disagrees with itself across epochs: shown, but not evidence of damage on its own."""
    reference_pass_rate: float = 0.0
    """Reference pass share over its scored epochs (fraction)."""
    target_pass_rate: float = 0.0
    """Target pass share over its scored epochs (fraction)."""
    strata: list[str] = Field(default_factory=list)
    reference_first_failed_step: int | None = None
    """First failing expected step of the reference's shown run (None when it passed or failed only at the end)."""
    reference_outcome: Outcome
    """The reference run's outcome (`ok` or its first failure)."""
    reference_reason: str = ""
    target_first_failed_step: int | None = None
    target_outcome: Outcome
    target_reason: str = ""
    diverged_at_step: int | None = None
    """First expected-step index where the two shown runs' step grades differ; None if only end checks differ."""


class StepFlip(_Model):
    """The first expected step where the two shown runs of a scenario were graded differently."""

    scenario_id: str
    epoch: int | None = None
    """The epoch compared (the first scored epoch of each side)."""
    index: int
    """The expected-step index where the grades first differ."""
    reference_outcome: Outcome
    target_outcome: Outcome
    direction: Literal["regression", "improvement", "changed"]
    """`regression`: reference step passed, target's failed; `improvement`: reverse; `changed`: both failed, differently."""
    scenario_flipped: bool
    """Whether the scenario's result also differs (also listed in `flips`)."""


class VersusReference(_Model):
    """A target paired scenario by scenario with the reference."""

    reference: str
    cluster_unit: ClusterUnit = "scenario"
    """The unit of evidence: `family` when scenarios belong to families (instances are correlated), else `scenario`."""
    overall: PairedStats
    strata: dict[str, PairedStats] = Field(default_factory=dict)
    """Stratum name -> paired statistics on the scenarios in that stratum."""
    flips: list[Flip] = Field(default_factory=list)
    """Every scenario whose result differs, regressions first; flaky ones carry `flaky=True`."""
    step_flips: list[StepFlip] = Field(default_factory=list)
    """For every scenario whose shown runs' step grades differ, the first step where they do."""
    flip_rate: float | None = None
    """Share of paired scenarios with a stable flip (each side agrees with itself across epochs) (fraction)."""
    noise_note: str = ""
    """The line a reader sees about instability: how many flips are on scenarios flaky on either side."""
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
    """Generation speed: the server's own timings where it reports them, else measured here from usage and latency."""
    gen_tokens_per_s_source: Literal["server", "client"] | None = None
    """`server` (e.g. llama.cpp `timings.predicted_per_second`) or `client` (completion tokens / latency, e.g. Ollama)."""
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
    """Everything about one target: sample sizes, accuracy breakdowns, depth, stability, cost, pairing."""

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
    """pass@1: passed scored runs over scored runs; its interval is on the effective number of runs."""
    pass_hat_k: list[PassHatK] = Field(default_factory=list)
    """pass^k for k = 1 .. epochs (pass^1 equals pass@1 when every scenario has the same number of epochs)."""
    scenario_rates: dict[str, Rate] = Field(default_factory=dict)
    """Scenario id -> pass rate over its scored epochs."""
    scenario_hashes: dict[str, str] = Field(default_factory=dict)
    """Scenario id -> content hash of the scenario as run (the gate compares like with like)."""
    strata: dict[str, Rate] = Field(default_factory=dict)
    """Stratum -> pass rate of runs of scenarios in that stratum (a scenario may be in several)."""
    tags: dict[str, Rate] = Field(default_factory=dict)
    """Tag -> pass rate of runs of scenarios with that tag."""
    dimensions: dict[str, Rate] = Field(default_factory=dict)
    """Dimension -> share of runs graded on that dimension with no failed check of it."""
    failures: FailureCounts = Field(default_factory=FailureCounts)
    depth: list[DepthPoint] = Field(default_factory=list)
    """Per expected-step index: pass rate and Kaplan-Meier survival."""
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
    unit_of_evidence: str = ""
    """What one independent unit is in every interval and test, in words."""
    evidence_notes: list[str] = Field(default_factory=list)
    """What the numbers cannot mean: e.g. that temperature-0 epochs add no evidence."""
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


class Criterion(_Model):
    """One thing a build must keep within tolerance: the overall rate or one stratum's."""

    label: str
    """`overall` or the stratum name."""
    claim: Claim
    """The claim after multiplicity correction (strata's beyond claims are Holm-corrected within a build)."""
    counted: bool = True
    """Whether it decides the build's verdict; strata too small to be decided are shown but not counted
    unless named critical."""
    ci_low_pts: float | None = None
    ci_high_pts: float | None = None
    delta_pts: float | None = None
    scenarios: int = 0
    p_beyond_adjusted: float | None = None
    """Holm-adjusted one-sided p of the beyond claim (strata), or the plain one (overall)."""
    note: str = ""
    """Why it is what it is, in a line."""


class BuildVerdict(_Model):
    """What the evidence says of one build against the reference, and what would settle it."""

    target: str
    size_bytes: int | None = None
    status: Claim
    """`within`: overall and every counted stratum decisively within; `beyond`: overall or a counted stratum
    decisively beyond (strata Holm-corrected); otherwise `undecided`."""
    criteria: list[Criterion] = Field(default_factory=list)
    reasons: list[str] = Field(default_factory=list)
    """Each criterion that is not within, in words with its interval."""
    to_decide: str = ""
    """For an undecided build: what would decide it (about how many scenarios)."""
    passes: bool
    """status == within."""
    decision_grade: bool
    """status is within or beyond (not undecided)."""
    decision_note: str = ""
    """The interval behind the status, in a line."""


class Verdict(_Model):
    """The threshold analysis: the smallest build that still does the task, only where the evidence settles it."""

    reference: str
    tolerance: float
    """Allowed drop in percentage points."""
    critical_strata: list[str] = Field(default_factory=list)
    """Strata counted in every build's verdict: those named with --critical, else every stratum large enough to decide."""
    reported_strata: list[str] = Field(default_factory=list)
    """Strata shown but not counted: too few scenarios to decide at this tolerance, and not named critical."""
    undecidable_critical: list[str] = Field(default_factory=list)
    """Strata named critical that have too few scenarios to ever be shown within tolerance."""
    size_basis: Literal["file_size_bytes", "memory_bytes", "order"]
    """What ordered the builds: file size, memory, or the given order when sizes are not known for all."""
    order: list[str] = Field(default_factory=list)
    """Non-reference builds, smallest first."""
    chosen: str | None = None
    """The smallest safe build: decisively within, every smaller build decisively beyond. None when unsettled."""
    smallest_within: str | None = None
    """The smallest build decisively within tolerance, whether or not smaller ones are settled."""
    builds: list[BuildVerdict] = Field(default_factory=list)
    """One per non-reference build, in `order`."""
    decision_grade: bool = False
    """The answer is settled: a chosen build, or every build decisively beyond (keep the reference)."""
    summary: str = ""
    """One sentence a reader can act on."""
    planning: list[str] = Field(default_factory=list)
    """What this run can and cannot rule out, and how many scenarios would decide what is open."""


class GateRow(_Model):
    """One target's numbers for the nightly baseline diff."""

    overall: float | None = None
    """Overall pass rate (fraction)."""
    scored: int = 0
    scenarios: dict[str, float | None] = Field(default_factory=dict)
    """Scenario id -> pass rate over its scored epochs (fraction); None when every run hit infra errors."""
    hashes: dict[str, str] = Field(default_factory=dict)
    """Scenario id -> content hash: a scenario edited since the baseline is not compared."""
    identity: dict[str, str] = Field(default_factory=dict)
    """What build this was: model id, quantization, digest, file size (where known)."""


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
    """The reference's own instability (None without a reference)."""
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
        """Per target: overall and per-scenario pass rates with content hashes and build identity."""
        identities = {d.name: d for d in self.disclosure.targets}
        rows = {}
        for t in self.targets:
            d = identities.get(t.name)
            ident: dict[str, str] = {}
            if d is not None:
                p = d.provenance
                for key, value in (("model", d.model), ("quantization", p.quantization), ("digest", p.digest),
                                   ("file_size_bytes", p.file_size_bytes), ("model_id", p.model_id)):
                    if value not in (None, ""):
                        ident[key] = str(value)
            rows[t.name] = GateRow(
                overall=t.overall.rate, scored=t.scored,
                scenarios={sid: r.rate for sid, r in sorted(t.scenario_rates.items())},
                hashes=dict(sorted(t.scenario_hashes.items())), identity=ident,
            )
        return GateTable(targets=rows)
