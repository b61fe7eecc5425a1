"""The verdict's error rates by simulation with known truth (small versions of scripts/simulate_verdicts.py).

Each assertion allows three Monte-Carlo standard errors around the nominal rate.
"""

from __future__ import annotations

import math

import pytest

from harness.simulation import Setting, simulate

REPS = 300


def _limit(rate: float, reps: int = REPS) -> float:
    return rate + 3 * math.sqrt(rate * (1 - rate) / reps)


@pytest.mark.parametrize("setting", [
    Setting("equal, smoke 6 x 2 copied", 6, 2, 0.0),
    Setting("equal, 56 x 2 copied", 56, 2, 0.0),
    Setting("equal, 150 x 1", 150, 1, 0.0, discordance=0.06),
], ids=lambda s: s.name)
def test_an_equal_build_is_rarely_called_beyond(setting):
    r = simulate(setting, REPS, seed=11)
    assert r.false_claim_rate <= _limit(0.025)
    assert r.coverage >= 0.95 - 3 * math.sqrt(0.95 * 0.05 / REPS)


@pytest.mark.parametrize("setting", [
    # the cases: 6 x 13 copies was a 53% false pass, 20 x 5 copies 12.5%
    Setting("-10 pts, 6 x 13 copied", 6, 13, -0.10, discordance=0.14),
    Setting("-10 pts, 20 x 5 copied", 20, 5, -0.10, discordance=0.14),
    Setting("-6 pts, 150 x 2 copied", 150, 2, -0.06, discordance=0.10),
], ids=lambda s: s.name)
def test_a_build_beyond_tolerance_is_rarely_called_within(setting):
    r = simulate(setting, REPS, seed=12)
    assert r.false_claim_rate <= _limit(0.025)
    assert r.coverage >= 0.95 - 3 * math.sqrt(0.95 * 0.05 / REPS)


def test_independent_epochs_narrow_the_interval_and_copies_do_not():
    independent = simulate(Setting("indep", 30, 4, 0.0, discordance=0.3, copied_epochs=False), 150, seed=13)
    copied = simulate(Setting("copied", 30, 4, 0.0, discordance=0.3), 150, seed=13)
    single = simulate(Setting("single", 30, 1, 0.0, discordance=0.3), 150, seed=13)
    assert independent.mean_width_pts < 0.75 * copied.mean_width_pts
    assert copied.mean_width_pts == pytest.approx(single.mean_width_pts, rel=0.08)
    assert independent.false_claim_rate <= _limit(0.025, 150)


def test_a_large_suite_decides_a_truly_equal_build():
    r = simulate(Setting("equal, 300 x 1", 300, 1, 0.0, discordance=0.04), 100, seed=14)
    assert r.within / r.reps > 0.8  # power: the point of a 300-scenario suite
