"""The statistics a comparison rests on, each a thin call into scipy / statsmodels / numpy.

Rates are fractions in [0, 1]. Every function takes plain counts or booleans, so each can be
checked against a published value (see tests/test_stats.py) without building a run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import comb
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.proportion import proportion_confint

__all__ = [
    "PairedTable",
    "wilson_interval",
    "paired_table",
    "mcnemar_exact",
    "newcombe_paired_interval",
    "paired_bootstrap_diff",
    "pass_hat_k",
    "percentile",
]


@dataclass(frozen=True)
class PairedTable:
    """A paired 2x2 table: reference (rows) by target (columns), pass first."""

    both_pass: int
    ref_only: int
    """Reference passed, target failed (regressions)."""
    target_only: int
    """Reference failed, target passed (improvements)."""
    both_fail: int

    @property
    def n(self) -> int:
        return self.both_pass + self.ref_only + self.target_only + self.both_fail

    def as_array(self) -> list[list[int]]:
        return [[self.both_pass, self.ref_only], [self.target_only, self.both_fail]]


def wilson_interval(passed: int, n: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval for passed/n (statsmodels `proportion_confint(method="wilson")`); None when n is 0."""
    if n <= 0:
        return None
    low, high = proportion_confint(passed, n, alpha=1.0 - confidence, method="wilson")
    return float(low), float(high)


def paired_table(reference: Sequence[bool], target: Sequence[bool]) -> PairedTable:
    """Count the paired outcomes of two equally long pass/fail sequences."""
    if len(reference) != len(target):
        raise ValueError(f"paired sequences differ in length: {len(reference)} vs {len(target)}")
    pairs = list(zip(map(bool, reference), map(bool, target)))
    return PairedTable(
        both_pass=sum(r and t for r, t in pairs),
        ref_only=sum(r and not t for r, t in pairs),
        target_only=sum(t and not r for r, t in pairs),
        both_fail=sum(not r and not t for r, t in pairs),
    )


def mcnemar_exact(table: PairedTable) -> float | None:
    """Exact (conditional binomial) McNemar p-value, two-sided; 1.0 with no discordant pairs, None with no pairs."""
    if table.n == 0:
        return None
    if table.ref_only + table.target_only == 0:
        # no discordant pair: no evidence of any difference (statsmodels would divide by zero here)
        return 1.0
    return float(mcnemar(table.as_array(), exact=True).pvalue)


def newcombe_paired_interval(table: PairedTable, confidence: float = 0.95) -> tuple[float, float] | None:
    """Newcombe's (1998, method 10) hybrid-score interval for target rate minus reference rate on paired data.

    Built from the two marginal Wilson intervals with a correlation correction; closed form, so a
    cross-check on the bootstrap. None with no pairs.
    """
    n = table.n
    if n == 0:
        return None
    a, b, c, d = table.both_pass, table.target_only, table.ref_only, table.both_fail
    # in Newcombe's notation the first proportion is the target's (a + b) / n, the second the reference's (a + c) / n
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = wilson_interval(a + b, n, confidence)  # type: ignore[misc]
    l2, u2 = wilson_interval(a + c, n, confidence)  # type: ignore[misc]
    denom = (a + b) * (c + d) * (a + c) * (b + d)
    cross = a * d - b * c
    if denom == 0:
        phi = 0.0
    elif cross > n / 2:
        phi = (cross - n / 2) / math.sqrt(denom)
    elif cross >= 0:
        phi = 0.0
    else:
        phi = cross / math.sqrt(denom)
    theta = p1 - p2
    lower = theta - math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    upper = theta + math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return max(-1.0, lower), min(1.0, upper)


def paired_bootstrap_diff(
    reference: Sequence[bool],
    target: Sequence[bool],
    clusters: Sequence[str] | None = None,
    *,
    n_resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float] | None:
    """Percentile bootstrap CI for mean(target) - mean(reference) over paired items.

    Items are resampled as pairs; with `clusters` (the scenario id of each pair) whole clusters are
    resampled, so several epochs of one scenario are not counted as independent evidence. Fixed seed:
    the same results give the same interval. None with no pairs.
    """
    if len(reference) != len(target):
        raise ValueError(f"paired sequences differ in length: {len(reference)} vs {len(target)}")
    if not reference:
        return None
    ref = np.asarray(reference, dtype=float)
    tgt = np.asarray(target, dtype=float)
    keys = list(clusters) if clusters is not None else list(range(len(ref)))
    if len(keys) != len(ref):
        raise ValueError("clusters must give one key per pair")
    groups = {k: i for i, k in enumerate(dict.fromkeys(keys))}
    idx = np.array([groups[k] for k in keys])
    diff_sum = np.bincount(idx, weights=tgt - ref, minlength=len(groups))
    size = np.bincount(idx, minlength=len(groups)).astype(float)

    rng = np.random.default_rng(seed)
    k = len(groups)
    estimates = np.empty(n_resamples)
    # chunked so a large suite does not allocate n_resamples x clusters at once
    chunk = max(1, 2_000_000 // max(k, 1))
    for start in range(0, n_resamples, chunk):
        stop = min(n_resamples, start + chunk)
        draw = rng.integers(0, k, size=(stop - start, k))
        estimates[start:stop] = diff_sum[draw].sum(axis=1) / size[draw].sum(axis=1)
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(estimates, [tail, 100 - tail])
    return float(low), float(high)


def pass_hat_k(trials: Sequence[tuple[int, int]], k: int) -> tuple[float | None, int]:
    """tau-bench's pass^k over items given as (trials n, passes c): mean of C(c, k) / C(n, k).

    Items with fewer than k trials are left out; returns (value, items averaged). pass^1 is the mean
    per-item pass rate.
    """
    if k < 1:
        raise ValueError("k must be at least 1")
    values = [comb(c, k, exact=True) / comb(n, k, exact=True) for n, c in trials if n >= k]
    if not values:
        return None, 0
    return float(np.mean(values)), len(values)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100, linear interpolation as numpy does it); None for no values."""
    if not values:
        return None
    return float(np.percentile(np.asarray(values, dtype=float), q))
