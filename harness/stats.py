"""The statistics every verdict rests on, in one file a reviewer can read end to end.

The unit of evidence is the scenario (or its family), not the run. Epochs of one scenario are pooled
into its pass proportion and the paired 2x2 table is shrunk by a design effect estimated from the
scenario-clustered variance (Rao & Scott 1992), so temperature-0 copies add exactly nothing and truly
independent epochs still add power. The delta interval is Tango's (1998) paired score interval on the
effective counts, and a claim is one of three: within tolerance (lower bound >= -tolerance), beyond
tolerance (upper bound < -tolerance) or undecided. Rates are fractions in [0, 1]; counts may be
fractional (effective counts). Only numpy here; scipy is imported inside the exact power search alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

import numpy as np

__all__ = [
    "EffectiveRate",
    "EffectiveTable",
    "PairedTable",
    "effective_rate",
    "effective_table",
    "holm",
    "mcnemar_midp",
    "min_decidable_scenarios",
    "noninferiority_power_exact",
    "pass_hat_k",
    "percentile",
    "scenarios_needed",
    "tango_interval",
    "tango_pvalues",
    "tango_z",
    "wilson_interval",
    "z_value",
]


def z_value(confidence: float = 0.95) -> float:
    """The two-sided normal quantile for `confidence` (1.95996... for 0.95)."""
    return NormalDist().inv_cdf(1.0 - (1.0 - confidence) / 2.0)


# -- one proportion -------------------------------------------------------------------------------


def wilson_interval(passed: float, n: float, confidence: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval for passed/n; counts may be effective (fractional). None when n is 0."""
    if n <= 0:
        return None
    z = z_value(confidence)
    p = min(1.0, max(0.0, passed / n))
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


# -- design effect: how many independent units the runs are worth --------------------------------


DeffBasis = Literal["estimated", "worst_case", "single_run"]


@dataclass(frozen=True)
class EffectiveRate:
    """A pass rate over clustered runs: the raw counts, and what they are worth as independent runs."""

    passed: float
    """Passed runs."""
    runs: float
    """Scored runs (pairs of scenario weight, see `effective_rate`)."""
    scenarios: int
    clusters: int
    """Independent units: families where scenarios have one, else scenarios."""
    design_effect: float
    """Variance inflation from clustering, clamped to [1, runs per scenario] (or per cluster)."""
    basis: DeffBasis
    """`estimated` from the clustered variance; `worst_case` when it cannot be (every run agrees, or one
    cluster): epochs are taken as copies; `single_run` when every scenario ran once."""

    @property
    def effective_n(self) -> float:
        return self.runs / self.design_effect

    @property
    def effective_passed(self) -> float:
        return self.passed / self.design_effect


def _deff(cluster_dev: np.ndarray, naive_var: float, n: float, clusters: int, scenarios: int) -> tuple[float, DeffBasis]:
    """Rao-Scott design effect from cluster totals of (y - m * estimate); the worst case where it is undefined."""
    per_scenario = n / scenarios
    if per_scenario <= 1.0 + 1e-12 and clusters == scenarios:
        return 1.0, "single_run"
    worst = max(1.0, per_scenario)
    if clusters < 2 or naive_var <= 1e-15:
        return worst, "worst_case"
    clustered = clusters / (clusters - 1) * float(np.sum(cluster_dev ** 2)) / (n * n)
    ceiling = max(1.0, n / clusters)
    return float(min(ceiling, max(1.0, clustered / naive_var))), "estimated"


def _cluster_index(keys: Sequence[str]) -> tuple[np.ndarray, int]:
    groups: dict[str, int] = {}
    idx = np.array([groups.setdefault(k, len(groups)) for k in keys], dtype=int)
    return idx, len(groups)


def effective_rate(passes: Sequence[float], runs: Sequence[float], clusters: Sequence[str] | None = None) -> EffectiveRate | None:
    """Pool each scenario's runs (passes[i] of runs[i]) and say what they are worth as independent runs.

    `clusters` gives each scenario's family (or None: each scenario is its own cluster). None with no runs.
    """
    y = np.asarray(passes, dtype=float)
    m = np.asarray(runs, dtype=float)
    keep = m > 0
    y, m = y[keep], m[keep]
    if m.size == 0:
        return None
    keys = [k for k, ok in zip(clusters, keep) if ok] if clusters is not None else [str(i) for i in range(m.size)]
    idx, k = _cluster_index(keys)
    n = float(m.sum())
    p = float(y.sum()) / n
    dev = np.bincount(idx, weights=y - m * p, minlength=k)
    deff, basis = _deff(dev, p * (1 - p) / n, n, k, int(m.size))
    return EffectiveRate(passed=float(y.sum()), runs=n, scenarios=int(m.size), clusters=k, design_effect=deff, basis=basis)


@dataclass(frozen=True)
class PairedTable:
    """A paired 2x2 table, reference by target; counts may be fractional (pooled epochs, effective counts)."""

    both_pass: float
    ref_only: float
    """Reference passed, target failed (regressions)."""
    target_only: float
    """Reference failed, target passed (improvements)."""
    both_fail: float

    @property
    def n(self) -> float:
        return self.both_pass + self.ref_only + self.target_only + self.both_fail

    @property
    def delta(self) -> float | None:
        """Target minus reference pass rate (fraction); None with no pairs."""
        return (self.target_only - self.ref_only) / self.n if self.n > 0 else None

    @property
    def discordance(self) -> float | None:
        """Share of pairs that disagree."""
        return (self.target_only + self.ref_only) / self.n if self.n > 0 else None

    def scaled(self, factor: float) -> PairedTable:
        return PairedTable(self.both_pass * factor, self.ref_only * factor, self.target_only * factor, self.both_fail * factor)


@dataclass(frozen=True)
class EffectiveTable:
    """The paired table of pooled scenario proportions, and the same table in effective (independent) pairs."""

    raw: PairedTable
    """Cells summed over scenarios, each scenario weighted by its paired runs (cross-pairs of its epochs)."""
    effective: PairedTable
    """`raw` divided by the design effect: what the statistics use."""
    scenarios: int
    clusters: int
    design_effect: float
    basis: DeffBasis


def effective_table(
    ref_rates: Sequence[float],
    target_rates: Sequence[float],
    weights: Sequence[float] | None = None,
    clusters: Sequence[str] | None = None,
) -> EffectiveTable | None:
    """The paired table of scenarios given as pass proportions on each side.

    Scenario i contributes weights[i] pairs (default 1) split as the cross-pairs of its epochs:
    both pass r*t, regression r*(1-t), improvement (1-r)*t, both fail (1-r)*(1-t). Epochs need not be
    aligned or equal in number. The design effect comes from the variance of the per-cluster totals of
    weight * (t - r); where no pair disagrees it cannot be estimated and the worst case (epochs are
    copies) is taken. None with no scenarios.
    """
    r = np.asarray(ref_rates, dtype=float)
    t = np.asarray(target_rates, dtype=float)
    if r.shape != t.shape:
        raise ValueError(f"paired rates differ in length: {r.size} vs {t.size}")
    if r.size == 0:
        return None
    m = np.ones_like(r) if weights is None else np.asarray(weights, dtype=float)
    keys = list(clusters) if clusters is not None else [str(i) for i in range(r.size)]
    if len(keys) != r.size or m.shape != r.shape:
        raise ValueError("weights and clusters must give one value per scenario")
    raw = PairedTable(
        both_pass=float(np.sum(m * r * t)),
        ref_only=float(np.sum(m * r * (1 - t))),
        target_only=float(np.sum(m * (1 - r) * t)),
        both_fail=float(np.sum(m * (1 - r) * (1 - t))),
    )
    n = raw.n
    d = raw.delta or 0.0
    idx, k = _cluster_index(keys)
    dev = np.bincount(idx, weights=m * (t - r) - m * d, minlength=k)
    naive = ((raw.discordance or 0.0) - d * d) / n
    deff, basis = _deff(dev, naive, n, k, int(r.size))
    return EffectiveTable(raw=raw, effective=raw.scaled(1.0 / deff), scenarios=int(r.size), clusters=k,
                          design_effect=deff, basis=basis)


# -- Tango's paired score interval and test ------------------------------------------------------


def tango_z(regressions, improvements, n, delta):
    """Tango's (1998) score statistic for H0: target - reference = delta on a paired table.

    `regressions` (reference pass, target fail) and `improvements` are Tango's x21 and x12; arrays
    broadcast. Positive values mean the data favour a difference above `delta`.
    """
    b = np.asarray(regressions, dtype=float)
    c = np.asarray(improvements, dtype=float)
    n = np.asarray(n, dtype=float)
    delta = np.asarray(delta, dtype=float)
    a_ = 2.0 * n
    b_ = -c - b + (2.0 * n - c + b) * delta
    c_ = -b * delta * (1.0 - delta)
    disc = np.maximum(b_ * b_ - 4.0 * a_ * c_, 0.0)
    # the root taken in a cancellation-free form: where b_ > 0 the textbook (sqrt - b_) loses digits
    q21 = np.where(b_ <= 0, (np.sqrt(disc) - b_) / (2.0 * a_), (2.0 * -c_) / (np.sqrt(disc) + b_ + 1e-300))
    q21 = np.maximum(q21, 0.0)
    var = n * (2.0 * q21 + delta * (1.0 - delta))
    num = c - b - n * delta
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(var > 1e-300, num / np.sqrt(np.maximum(var, 1e-300)), np.sign(num) * np.inf)
    return np.where((num == 0) & (var <= 1e-300), 0.0, z)


def _tango_z_scalar(b: float, c: float, n: float, delta: float) -> float:
    """`tango_z` for one table in plain floats (the verdict path bisects it a hundred times per interval)."""
    a_ = 2.0 * n
    b_ = -c - b + (2.0 * n - c + b) * delta
    c_ = -b * delta * (1.0 - delta)
    root = math.sqrt(max(b_ * b_ - 4.0 * a_ * c_, 0.0))
    q21 = (root - b_) / (2.0 * a_) if b_ <= 0 else (2.0 * -c_) / (root + b_ + 1e-300)
    var = n * (2.0 * max(q21, 0.0) + delta * (1.0 - delta))
    num = c - b - n * delta
    if var <= 1e-300:
        return 0.0 if num == 0 else math.copysign(math.inf, num)
    return num / math.sqrt(var)


def tango_interval(regressions, improvements, n, confidence: float = 0.95):
    """Tango's score interval for target - reference (fractions): all delta whose score test is not rejected.

    Arrays broadcast (the simulations call it on thousands of tables at once); returns (low, high).
    """
    z = z_value(confidence)
    if all(isinstance(v, (int, float)) for v in (regressions, improvements, n)):
        return _tango_interval_scalar(float(regressions), float(improvements), float(n), z)
    b = np.asarray(regressions, dtype=float)
    c = np.asarray(improvements, dtype=float)
    n = np.asarray(n, dtype=float)
    b, c, n = np.broadcast_arrays(b, c, n)
    est = np.where(n > 0, (c - b) / np.where(n > 0, n, 1), 0.0)
    eps = 1e-12

    def solve(target: float, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        # tango_z falls as delta grows: bisect for tango_z == target between lo and hi
        lo, hi = lo.copy(), hi.copy()
        for _ in range(60):
            mid = (lo + hi) / 2
            above = tango_z(b, c, n, mid) > target
            lo = np.where(above, mid, lo)
            hi = np.where(above, hi, mid)
        return (lo + hi) / 2

    low = np.where(est <= -1 + eps, -1.0, solve(z, np.full(est.shape, -1 + eps), est))
    high = np.where(est >= 1 - eps, 1.0, solve(-z, est, np.full(est.shape, 1 - eps)))
    if low.ndim == 0:
        return float(low), float(high)
    return low, high


def _tango_interval_scalar(b: float, c: float, n: float, z: float) -> tuple[float, float]:
    if n <= 0:
        return -1.0, 1.0
    est, eps = (c - b) / n, 1e-12

    def solve(target: float, lo: float, hi: float) -> float:
        for _ in range(60):
            mid = (lo + hi) / 2
            if _tango_z_scalar(b, c, n, mid) > target:
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2

    low = -1.0 if est <= -1 + eps else solve(z, -1 + eps, est)
    high = 1.0 if est >= 1 - eps else solve(-z, est, 1 - eps)
    return low, high


def tango_pvalues(regressions: float, improvements: float, n: float, margin: float) -> tuple[float, float]:
    """One-sided p-values at the tolerance line delta0 = -margin: (within, beyond).

    `within` tests H0: delta <= -margin (small p: the drop is within tolerance); `beyond` tests
    H0: delta >= -margin (small p: the drop is beyond it). Each is below 0.025 exactly when the 95%
    interval lies wholly on that side of the line.
    """
    z = _tango_z_scalar(float(regressions), float(improvements), float(n), -margin)
    nd = NormalDist()
    if math.isinf(z):
        return (0.0, 1.0) if z > 0 else (1.0, 0.0)
    return 1.0 - nd.cdf(z), nd.cdf(z)


def mcnemar_midp(regressions: int, improvements: int) -> float | None:
    """Two-sided mid-p McNemar test of equality (Fagerland et al. 2013); None with no discordant pair.

    Exact binomial on the discordant pairs, minus half the probability of the observed count.
    """
    b, c = int(round(regressions)), int(round(improvements))
    total = b + c
    if total == 0:
        return None
    k = min(b, c)
    pmf = [math.comb(total, i) / 2.0 ** total for i in range(k + 1)]
    return min(1.0, 2.0 * (sum(pmf[:-1]) + 0.5 * pmf[-1]))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order (family-wise error control)."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


# -- planning: how many scenarios a claim needs --------------------------------------------------


def min_decidable_scenarios(tolerance: float, confidence: float = 0.95) -> int | None:
    """Fewest independent scenarios for which a within-tolerance claim is possible at all.

    With no discordant pair Tango's lower bound is -z^2 / (n + z^2); it clears -tolerance (a fraction)
    only when n >= z^2 (1 - tolerance) / tolerance (73 scenarios for 5 points at 95%). None for a
    tolerance of 0: no finite number of scenarios shows "no drop at all".
    """
    if tolerance <= 0:
        return None
    z = z_value(confidence)
    return math.ceil(z * z * (1.0 - tolerance) / tolerance - 1e-9)


def _constrained_q21(p10: float, p01: float, delta0: float) -> float:
    a = 2.0
    b = -p01 - p10 + (2.0 - p01 + p10) * delta0
    c = -p10 * delta0 * (1.0 - delta0)
    return max(0.0, (math.sqrt(max(b * b - 4 * a * c, 0.0)) - b) / (2 * a))


def scenarios_needed(tolerance: float, discordance: float, *, delta: float = 0.0, power: float = 0.8,
                     alpha: float = 0.025, exact: bool = False) -> int | None:
    """Independent scenarios for Tango's test to settle the tolerance claim with `power`.

    `tolerance` and `delta` (the assumed true target - reference) are fractions; `discordance` is the
    share of scenarios that flip either way. A true delta above -tolerance plans for a within claim, below
    it for a beyond claim. Asymptotic (Nam 1997 style) unless `exact`, which searches the smallest n whose
    exact trinomial power reaches `power`. None when the claim cannot be made (delta on the line).
    """
    margin = -tolerance
    gap = delta - margin
    if abs(gap) < 1e-12 or tolerance <= 0:
        return None
    discordance = max(discordance, abs(delta))
    p10, p01 = (discordance - delta) / 2, (discordance + delta) / 2
    q21 = _constrained_q21(p10, p01, margin)
    sd0 = math.sqrt(max(2 * q21 + margin * (1 - margin), 1e-15))
    sd1 = math.sqrt(max(discordance - delta * delta, 0.0))
    za, zb = NormalDist().inv_cdf(1 - alpha), NormalDist().inv_cdf(power)
    n = math.ceil(((za * sd0 + zb * sd1) / gap) ** 2)
    if not exact:
        return max(n, 1)
    lo = max(1, int(n * 0.6))
    for size in range(lo, int(n * 1.5) + 50):
        if noninferiority_power_exact(size, tolerance, p10, p01, alpha=alpha, beyond=gap < 0) >= power:
            return size
    return None


def noninferiority_power_exact(n: int, tolerance: float, p10: float, p01: float, *, alpha: float = 0.025,
                               beyond: bool = False) -> float:
    """Exact power of Tango's one-sided test at the line -tolerance, over every trinomial table of n pairs.

    `p10` is the true regression share, `p01` the improvement share. `beyond=False` is the power to show
    within tolerance (reject delta <= -tolerance), `beyond=True` the power to show a drop beyond it.
    """
    from scipy.special import gammaln  # only this search needs it

    b, c = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    ok = b + c <= n
    b, c = b[ok].astype(float), c[ok].astype(float)
    rest = n - b - c
    p_rest = max(0.0, 1.0 - p10 - p01)
    with np.errstate(divide="ignore"):
        logp = (gammaln(n + 1) - gammaln(b + 1) - gammaln(c + 1) - gammaln(rest + 1)
                + b * np.log(p10 if p10 > 0 else 1e-300) + c * np.log(p01 if p01 > 0 else 1e-300)
                + rest * np.log(p_rest if p_rest > 0 else 1e-300))
    z = tango_z(b, c, float(n), -tolerance)
    crit = NormalDist().inv_cdf(1 - alpha)
    reject = z < -crit if beyond else z > crit
    return float(np.exp(logp[reject]).sum())


# -- small helpers --------------------------------------------------------------------------------


def pass_hat_k(trials: Sequence[tuple[int, int]], k: int) -> tuple[float | None, int]:
    """tau-bench's pass^k over items given as (trials n, passes c): mean of C(c, k) / C(n, k).

    Items with fewer than k trials are left out; returns (value, items averaged).
    """
    if k < 1:
        raise ValueError("k must be at least 1")
    values = [math.comb(c, k) / math.comb(n, k) for n, c in trials if n >= k]
    if not values:
        return None, 0
    return sum(values) / len(values), len(values)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100, linear interpolation as numpy does it); None for no values."""
    if not values:
        return None
    return float(np.percentile(np.asarray(values, dtype=float), q))
