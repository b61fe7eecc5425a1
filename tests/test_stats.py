"""harness.stats against published values and against the libraries it wraps."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest, bootstrap
from statsmodels.stats.contingency_tables import mcnemar

from harness.stats import (
    PairedTable,
    mcnemar_exact,
    newcombe_paired_interval,
    paired_bootstrap_diff,
    paired_table,
    pass_hat_k,
    percentile,
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


def test_paired_table_counts_each_cell():
    t = paired_table([True, True, False, False, True], [True, False, True, False, False])
    assert (t.both_pass, t.ref_only, t.target_only, t.both_fail, t.n) == (1, 2, 1, 1, 5)
    with pytest.raises(ValueError):
        paired_table([True], [True, False])


# Fagerland, Lydersen & Laake (2013), BMC Med Res Methodol 13:91, and "Statistical Analysis of
# Contingency Tables" (2017) ch. 8: exact conditional McNemar p = 0.070 for Bentur et al. (n12=1,
# n21=7) and 0.052 for Cavo et al. (n12=6, n21=16).
@pytest.mark.parametrize(("b", "c", "p"), [(1, 7, 0.070), (7, 1, 0.070), (6, 16, 0.052)])
def test_mcnemar_exact_matches_published_values(b, c, p):
    table = PairedTable(both_pass=10, ref_only=b, target_only=c, both_fail=12)
    got = mcnemar_exact(table)
    assert got == pytest.approx(p, abs=5e-4)
    assert got == pytest.approx(mcnemar(table.as_array(), exact=True).pvalue)
    assert got == pytest.approx(binomtest(min(b, c), b + c, 0.5).pvalue)


def test_mcnemar_without_discordant_pairs_is_one_and_without_pairs_is_none():
    assert mcnemar_exact(PairedTable(5, 0, 0, 3)) == 1.0
    assert mcnemar_exact(PairedTable(0, 0, 0, 0)) is None


# Fagerland et al. (2017) ch. 8, Cavo et al. (2012): Newcombe square-and-add interval for the paired
# difference, estimate -0.0621 (95% CI -0.1186 to -0.0046). In their table the first proportion is
# (59 + 6) / 161, the second (59 + 16) / 161; here the first is the target's.
def test_newcombe_paired_matches_published_value():
    table = PairedTable(both_pass=59, ref_only=16, target_only=6, both_fail=80)
    assert newcombe_paired_interval(table) == pytest.approx((-0.1186, -0.0046), abs=5e-5)
    # the other direction mirrors it
    mirrored = PairedTable(both_pass=59, ref_only=6, target_only=16, both_fail=80)
    assert newcombe_paired_interval(mirrored) == pytest.approx((0.0046, 0.1186), abs=5e-5)
    assert newcombe_paired_interval(PairedTable(0, 0, 0, 0)) is None


def test_bootstrap_is_reproducible_and_brackets_the_difference():
    ref = [True] * 30 + [False] * 10
    tgt = [True] * 20 + [False] * 20
    first = paired_bootstrap_diff(ref, tgt, seed=0)
    assert first == paired_bootstrap_diff(ref, tgt, seed=0)
    low, high = first
    assert low < -0.25 < high
    assert high < 0  # ten regressions, no improvements: the drop is real


def test_bootstrap_agrees_with_scipy_percentile_bootstrap():
    rng = np.random.default_rng(7)
    ref = rng.random(60) < 0.8
    tgt = ref & (rng.random(60) < 0.85)
    ours = paired_bootstrap_diff(list(ref), list(tgt), seed=1)
    theirs = bootstrap(
        (ref.astype(float), tgt.astype(float)),
        lambda r, t, axis: t.mean(axis=axis) - r.mean(axis=axis),
        paired=True, vectorized=True, method="percentile", n_resamples=10_000,
    ).confidence_interval
    # different random streams; the endpoints sit on a 1/60 grid
    assert ours[0] == pytest.approx(theirs.low, abs=0.02)
    assert ours[1] == pytest.approx(theirs.high, abs=0.02)


def test_bootstrap_resamples_clusters_not_epochs():
    # three epochs of each scenario are copies: treating them as independent would narrow the interval
    ref = [True, False, True, True, False] * 3
    tgt = [False, False, True, False, True] * 3
    clusters = [f"s{i}" for i in range(5)] * 3
    naive = paired_bootstrap_diff(ref, tgt, seed=0)
    clustered = paired_bootstrap_diff(ref, tgt, clusters, seed=0)
    assert clustered[1] - clustered[0] > naive[1] - naive[0]


def test_bootstrap_with_only_concordant_pairs_has_zero_width():
    assert paired_bootstrap_diff([True, False, True], [True, False, True]) == (0.0, 0.0)
    assert paired_bootstrap_diff([], []) is None


def test_pass_hat_k_follows_tau_bench():
    # one item, 4 trials, 2 passes: pass^1 = 2/4, pass^2 = C(2,2)/C(4,2) = 1/6, pass^3 = 0
    assert pass_hat_k([(4, 2)], 1) == (pytest.approx(0.5), 1)
    assert pass_hat_k([(4, 2)], 2) == (pytest.approx(1 / 6), 1)
    assert pass_hat_k([(4, 2)], 3) == (0.0, 1)
    # averaged over items; an item with too few trials is left out
    assert pass_hat_k([(3, 3), (3, 0), (1, 1)], 2) == (pytest.approx(0.5), 2)
    assert pass_hat_k([(1, 1)], 2) == (None, 0)


def test_percentile():
    assert percentile([], 50) is None
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile(list(range(1, 101)), 95) == pytest.approx(95.05)
