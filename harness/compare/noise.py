"""Each build against itself: which scenarios disagree with themselves across epochs (flaky on that build).

Temperature 0 is not deterministic in practice (prompt-cache reuse and batching change the logits), so
instability is measured per build, at scenario level, with an interval; a flip on a scenario that is
flaky on either side is shown but not taken as evidence of damage.
"""

from __future__ import annotations

from collections import defaultdict

from harness.compare.models import NoiseFloor
from harness.records import RunRecord
from harness.stats import wilson_interval

__all__ = ["noise_floor"]


def noise_floor(name: str, scored: list[RunRecord]) -> NoiseFloor:
    """The share of scenarios (with two or more scored epochs) whose epochs disagree, with its Wilson interval."""
    by_scenario: dict[str, list[bool]] = defaultdict(list)
    for r in scored:
        by_scenario[r.scenario_id].append(r.score.passed)
    epochs = max((len(v) for v in by_scenario.values()), default=0)
    repeated = {sid: v for sid, v in by_scenario.items() if len(v) >= 2}
    if not repeated:
        return NoiseFloor(
            target=name, epochs=epochs, known=False,
            note=f"instability of {name} unknown: one epoch per scenario; run --epochs 2 or more to see flaky scenarios",
        )
    flaky = sorted(sid for sid, v in repeated.items() if 0 < sum(v) < len(v))
    low, high = wilson_interval(len(flaky), len(repeated))  # type: ignore[misc]
    rate = len(flaky) / len(repeated)
    note = (f"{name}: {len(flaky)} of {len(repeated)} repeated scenarios disagree with themselves across epochs "
            f"({100 * rate:.0f}%, 95% CI {100 * low:.0f}-{100 * high:.0f}%)")
    return NoiseFloor(target=name, epochs=epochs, known=True, repeated_scenarios=len(repeated), flaky=flaky,
                      flaky_rate=rate, low=low, high=high, note=note)
