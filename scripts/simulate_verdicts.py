"""Print the verdict's error rates by simulation with known truth, for every layout in harness.simulation.SETTINGS.

    python scripts/simulate_verdicts.py [--reps 2000] [--seed 0]

For each setting: the share of runs claiming within / beyond / undecided, the false-claim rate (the
opposite of the truth; nominal at most 2.5%), the coverage of the true delta by Tango's 95% interval
(nominal 95%) with its Monte-Carlo standard error, and the mean interval width. Not a test: it takes
minutes; tests/test_simulation.py runs a small version of the same.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.simulation import SETTINGS, simulate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"{'setting':<52} {'truth':>7} {'within':>7} {'beyond':>7} {'undec.':>7} {'false':>7} {'cover':>7} {'±':>5} {'width':>7}")
    started = time.perf_counter()
    for i, setting in enumerate(SETTINGS):
        r = simulate(setting, args.reps, seed=args.seed + i)
        se = math.sqrt(max(r.coverage * (1 - r.coverage), 1e-9) / r.reps)
        print(f"{setting.name:<52} {r.truth:>7} {r.within / r.reps:7.3f} {r.beyond / r.reps:7.3f} "
              f"{r.undecided / r.reps:7.3f} {r.false_claim_rate:7.3f} {r.coverage:7.3f} {se:5.3f} {r.mean_width_pts:6.1f}p",
              flush=True)
    print(f"\n{args.reps} runs per setting, {time.perf_counter() - started:.0f} s. Nominal: false claims <= 0.025, coverage 0.95.")


if __name__ == "__main__":
    main()
