"""harness.stats against published values, against brute force, and on its own edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import minimize_scalar
from scipy.stats import binomtest

from harness.stats import (
    effective_rate,
    effective_table,
    holm,
    mcnemar_midp,
    min_decidable_scenarios,
    noninferiority_power_exact,
    pass_hat_k,
    percentile,
    scenarios_needed,
    tango_interval,
    tango_pvalues,
    tango_z,
    wilson_interval,
)


# Newcombe (1998), "Two-sided confidence intervals for the single proportion", Stat Med 17:857-872,
# Table II, method 3 (score interval without continuity correction).
@pytest.mark.parametrize(
    ("passed", "n", "low", "high"),
    [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718)],
)
def test_wilson_matches_newcombe_1998(passed, n, low, high):
    got = wilson_interval(passed, n)
    assert got == pytest.approx((low, high), abs=5e-5)


def test_wilson_is_none_without_runs_and_reaches_one_at_all_passed():
    assert wilson_interval(0, 0) is None
    low, high = wilson_interval(10, 10)
    assert high == pytest.approx(1.0) and 0.69 < low < 0.73



def test_wilson_accepts_effective_fractional_counts():
    low, high = wilson_interval(5.5, 6.5)
    assert 0.0 < low < 5.5 / 6.5 < high <= 1.0
    assert wilson_interval(12, 12)[0] > wilson_interval(6, 6)[0]


# Fagerland, Lydersen & Laake (2014), "Recommended tests and confidence intervals for paired binomial
# proportions", Stat Med 33:2850-2875, and their R package contingencytables (ch. 8): Tango's asymptotic
# score interval for the Bentur et al. (2009) AHR data (n12 = 1, n21 = 7, N = 21) is -0.517 to -0.026,
# and for Cavo et al. (2012) (n12 = 6, n21 = 16, N = 161) -0.124 to -0.005.
@pytest.mark.parametrize(("regressions", "improvements", "n", "low", "high"),
                         [(7, 1, 21, -0.517, -0.026), (16, 6, 161, -0.124, -0.005)])
def test_tango_matches_published_values(regressions, improvements, n, low, high):
    got = tango_interval(regressions, improvements, n)
    assert got == pytest.approx((low, high), abs=6e-4)


def _tango_by_brute_force(b, c, n, delta):
    # the score statistic from the constrained MLE found numerically (no closed form): an independent check
    d = n - b - c
    def nll(p21):
        p12 = p21 + delta
        p11 = 1 - p12 - p21
        if p21 <= 0 or p12 <= 0 or p11 <= 0:
            return 1e18
        return -(b * math.log(p21) + c * math.log(p12) + d * math.log(p11))
    lo, hi = max(1e-9, -delta + 1e-9), (1 - delta) / 2 - 1e-9
    p21 = minimize_scalar(nll, bounds=(lo, hi), method="bounded", options={"xatol": 1e-12}).x
    return (c - b - n * delta) / math.sqrt(n * (2 * p21 + delta * (1 - delta)))


@pytest.mark.parametrize(("b", "c", "n", "delta"), [(7, 1, 21, -0.2), (3, 9, 60, 0.05), (12, 2, 200, -0.05), (1, 1, 30, 0.1)])
def test_tango_statistic_matches_a_numerical_constrained_mle(b, c, n, delta):
    assert float(tango_z(b, c, n, delta)) == pytest.approx(_tango_by_brute_force(b, c, n, delta), abs=2e-4)


def test_tango_with_no_discordance_has_the_closed_form_width():
    for n in (6, 20, 73, 300):
        z = 1.959963984540054
        assert tango_interval(0, 0, n) == pytest.approx((-z * z / (n + z * z), z * z / (n + z * z)), abs=1e-9)
    assert min_decidable_scenarios(0.05) == 73 and min_decidable_scenarios(0.10) == 35
    assert min_decidable_scenarios(0.0) is None


def test_tango_vectorised_and_scalar_agree():
    b, c, n = np.array([7.0, 0.0, 3.0]), np.array([1.0, 0.0, 3.0]), np.array([21.0, 6.0, 3.0])
    low, high = tango_interval(b, c, n)
    for i in range(3):
        assert (low[i], high[i]) == pytest.approx(tango_interval(float(b[i]), float(c[i]), float(n[i])), abs=1e-9)
    assert tango_interval(3, 0, 3)[0] == -1.0 and tango_interval(0, 3, 3)[1] == 1.0


def test_tango_pvalues_agree_with_the_interval():
    for b, c, n in ((7, 1, 21), (2, 1, 200), (30, 2, 100), (5, 5, 80)):
        low, high = tango_interval(b, c, n)
        p_within, p_beyond = tango_pvalues(b, c, n, 0.05)
        assert (p_within < 0.025) == (low > -0.05)
        assert (p_beyond < 0.025) == (high < -0.05)


# Fagerland, Lydersen & Laake (2013), BMC Med Res Methodol 13:91: mid-p McNemar 0.039 for Bentur
# (n12 = 1, n21 = 7) and 0.035 for Cavo (n12 = 6, n21 = 16); the exact conditional p is 0.070 and 0.052.
@pytest.mark.parametrize(("b", "c", "midp", "exact"), [(1, 7, 0.039, 0.070), (7, 1, 0.039, 0.070), (6, 16, 0.035, 0.052)])
def test_mcnemar_midp_matches_published_values(b, c, midp, exact):
    assert mcnemar_midp(b, c) == pytest.approx(midp, abs=5e-4)
    # mid-p is the exact p less the probability of the observed count
    assert mcnemar_midp(b, c) == pytest.approx(binomtest(min(b, c), b + c, 0.5).pvalue - math.comb(b + c, min(b, c)) / 2 ** (b + c))
    assert binomtest(min(b, c), b + c, 0.5).pvalue == pytest.approx(exact, abs=5e-4)
    assert mcnemar_midp(0, 0) is None


def test_holm_matches_the_textbook_step_down():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5]) == [0.5] and holm([]) == []
    assert holm([0.001, 0.9]) == pytest.approx([0.002, 0.9])


def test_copies_are_worth_one_run_and_independent_runs_are_worth_more():
    # 6 scenarios, 13 identical epochs: exactly 6 independent units
    copies = effective_rate([13, 13, 0, 13, 0, 13], [13] * 6)
    assert copies.effective_n == pytest.approx(6.0) and copies.design_effect == pytest.approx(13.0)
    # all passed: the design effect cannot be estimated, so the worst case (copies) is taken
    allpass = effective_rate([13] * 6, [13] * 6)
    assert allpass.basis == "worst_case" and allpass.effective_n == pytest.approx(6.0)
    # scenarios that each pass about half their epochs at random carry within-scenario information
    rng = np.random.default_rng(3)
    mixed = effective_rate(rng.binomial(10, 0.5, size=40), [10] * 40)
    assert mixed.basis == "estimated" and mixed.design_effect < 3.0 and mixed.effective_n > 130
    assert effective_rate([], []) is None
    assert effective_rate([1, 0], [1, 1]).basis == "single_run"


def test_paired_effective_table_shrinks_copies_to_scenarios_and_pools_unequal_epochs():
    t = effective_table([1, 1, 0, 1], [0, 1, 0, 1], weights=[5, 5, 5, 5])
    assert t.raw.n == 20 and t.effective.n == pytest.approx(4.0) and t.design_effect == pytest.approx(5.0)
    assert t.effective.ref_only == pytest.approx(1.0)
    # a flaky scenario (half its epochs) contributes cross-pairs, not a majority vote
    half = effective_table([0.5], [1.0], weights=[2])
    assert (half.raw.both_pass, half.raw.target_only) == pytest.approx((1.0, 1.0))
    # families: instances of one family that flip together count as one cluster
    fam = effective_table([1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1], clusters=["f1", "f1", "f2", "f2", "f3", "f3"])
    assert fam.clusters == 3 and fam.design_effect > 1.0
    with pytest.raises(ValueError):
        effective_table([1.0], [1.0, 0.0])


def test_scenarios_needed_matches_exact_tango_power():
    # the figures the audit computed with exact Tango: 5-pt non-inferiority, 80% power, true delta 0
    for discordance, exact in ((0.02, 124), (0.05, 205), (0.10, 339)):
        assert scenarios_needed(0.05, discordance, exact=True) == exact
        asymptotic = scenarios_needed(0.05, discordance)
        assert exact <= asymptotic <= exact * 1.15
        p10 = p01 = discordance / 2
        assert noninferiority_power_exact(exact, 0.05, p10, p01) >= 0.8 > noninferiority_power_exact(exact - 1, 0.05, p10, p01)
    # with no discordance the plan is the decidability floor
    assert scenarios_needed(0.05, 0.0) == min_decidable_scenarios(0.05)
    # a drop on the line can never be settled; a drop beyond plans for a beyond claim
    assert scenarios_needed(0.05, 0.1, delta=-0.05) is None
    assert scenarios_needed(0.05, 0.2, delta=-0.15) < scenarios_needed(0.05, 0.2, delta=-0.08)


def test_pass_hat_k_is_the_unbiased_estimator_from_tau_bench():
    # item 1: 3 of 4 trials passed; item 2: 4 of 4
    assert pass_hat_k([(4, 3), (4, 4)], 1) == (pytest.approx((0.75 + 1.0) / 2), 2)
    assert pass_hat_k([(4, 3), (4, 4)], 2) == (pytest.approx((3 / 6 + 1.0) / 2), 2)
    assert pass_hat_k([(4, 3), (2, 2)], 3) == (pytest.approx(0.25), 1)
    assert pass_hat_k([(1, 1)], 2) == (None, 0)
    with pytest.raises(ValueError):
        pass_hat_k([(1, 1)], 0)


def test_percentile_interpolates_like_numpy():
    assert percentile([], 50) is None
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == pytest.approx(2.5)
