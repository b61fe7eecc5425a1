"""Simulated paired runs with known truth: how often the verdict claims something false, and how often it covers.

Each setting draws scenarios whose reference/target joint outcome probabilities are known, runs them
for some epochs (copied, as at temperature 0, or independent, as at temperature > 0), and feeds the
pooled scenarios through the same `paired_stats` the comparison uses. `scripts/simulate_verdicts.py`
prints the full figures; tests/test_simulation.py runs small versions and asserts the nominal rates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from harness.compare.pairing import paired_stats

__all__ = ["Setting", "SimPair", "SimulationResult", "SETTINGS", "simulate"]


@dataclass(frozen=True)
class SimPair:
    """A simulated scenario, shaped like `harness.compare.pairing.ScenarioPair` for `paired_stats`."""

    scenario_id: str
    cluster: str
    ref_rate: float
    tgt_rate: float
    weight: int
    strata: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Setting:
    """One simulated layout and truth."""

    name: str
    scenarios: int
    epochs: int
    delta: float
    """True target - reference (fraction), the population mean over scenarios."""
    discordance: float = 0.10
    """True share of scenario draws that disagree between the builds."""
    copied_epochs: bool = True
    """True: one draw per scenario copied to every epoch (temperature 0); False: independent epochs."""
    tolerance_pts: float = 5.0
    heterogeneity: float = 0.0
    """0: every scenario has the same cell probabilities; up to 1: scenario-level probabilities vary
    (Dirichlet with concentration 1/heterogeneity around the mean), so independent epochs are clustered."""


@dataclass
class SimulationResult:
    """Figures of one setting over `reps` simulated runs."""

    setting: Setting
    reps: int
    within: int = 0
    beyond: int = 0
    undecided: int = 0
    covered: int = 0
    widths: list[float] = field(default_factory=list)

    @property
    def truth(self) -> str:
        tol = self.setting.tolerance_pts / 100
        return "within" if self.setting.delta >= -tol else "beyond"

    @property
    def false_claim_rate(self) -> float:
        """Share of runs claiming the opposite of the truth (within when it is beyond, or the reverse)."""
        wrong = self.beyond if self.truth == "within" else self.within
        return wrong / self.reps

    @property
    def coverage(self) -> float:
        return self.covered / self.reps

    @property
    def mean_width_pts(self) -> float:
        return float(np.mean(self.widths)) if self.widths else math.nan


def _cells(delta: float, discordance: float) -> np.ndarray:
    reg, imp = (discordance - delta) / 2, (discordance + delta) / 2
    if reg < 0 or imp < 0:
        raise ValueError("discordance must be at least |delta|")
    rest = 1 - discordance
    return np.array([rest * 0.75, reg, imp, rest * 0.25])  # both pass, regression, improvement, both fail


def simulate(setting: Setting, reps: int, seed: int = 0) -> SimulationResult:
    """Run `reps` simulated comparisons of one setting through `paired_stats`."""
    rng = np.random.default_rng(seed)
    mean = _cells(setting.delta, setting.discordance)
    out = SimulationResult(setting=setting, reps=reps)
    ref_pass = np.array([1, 1, 0, 0], dtype=bool)
    tgt_pass = np.array([1, 0, 1, 0], dtype=bool)
    for _ in range(reps):
        if setting.heterogeneity > 0:
            probs = rng.dirichlet(mean / setting.heterogeneity + 1e-9, size=setting.scenarios)
        else:
            probs = np.tile(mean, (setting.scenarios, 1))
        draws = 1 if setting.copied_epochs else setting.epochs
        cells = np.array([rng.choice(4, size=draws, p=p / p.sum()) for p in probs])
        pairs = [SimPair(scenario_id=f"s{i}", cluster=f"s{i}", ref_rate=float(ref_pass[c].mean()),
                         tgt_rate=float(tgt_pass[c].mean()), weight=setting.epochs)
                 for i, c in enumerate(cells)]
        ps = paired_stats(pairs, setting.tolerance_pts)  # type: ignore[arg-type]
        if ps.claim == "within":
            out.within += 1
        elif ps.claim == "beyond":
            out.beyond += 1
        else:
            out.undecided += 1
        assert ps.ci_low_pts is not None and ps.ci_high_pts is not None
        out.covered += ps.ci_low_pts <= 100 * setting.delta <= ps.ci_high_pts
        out.widths.append(ps.ci_high_pts - ps.ci_low_pts)
    return out


SETTINGS: list[Setting] = [
    Setting("equal build, smoke layout 6 x 2 copied", 6, 2, 0.0),
    Setting("equal build, built-in layout 56 x 2 copied", 56, 2, 0.0),
    Setting("equal build, 300 x 1", 300, 1, 0.0, discordance=0.04),
    Setting("-10 pt build, 6 x 13 copied", 6, 13, -0.10, discordance=0.14),
    Setting("-10 pt build, 20 x 5 copied", 20, 5, -0.10, discordance=0.14),
    Setting("-10 pt build, 300 x 1", 300, 1, -0.10, discordance=0.14),
    Setting("-6 pt build (just beyond), 200 x 2 copied", 200, 2, -0.06, discordance=0.10),
    Setting("-4 pt build (just within), 200 x 2 copied", 200, 2, -0.04, discordance=0.10),
    Setting("equal build, 40 x 5 independent epochs", 40, 5, 0.0, discordance=0.3, copied_epochs=False),
    Setting("equal build, 40 x 5 independent, heterogeneous", 40, 5, 0.0, discordance=0.3, copied_epochs=False,
            heterogeneity=0.5),
    Setting("equal build, 40 x 5 copied (same truth as above)", 40, 5, 0.0, discordance=0.3),
]
"""The layouts the issue names: equal, -10 pts, near the line, copied vs independent epochs."""
