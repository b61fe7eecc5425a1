"""agentic-harness: multi-step tool-calling evals that expose agentic collapse in quantized models.

    scenarios/*.yaml --load--> Scenario --run--> Trajectory --score--> ScenarioScore --compare--> Report

The names below are imported on first use (PEP 562), so `harness --help` does not pay for the loop,
the scorers and their schemas.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_WHERE = {
    "Check": "harness.scores",
    "Dimension": "harness.outcomes",
    "Outcome": "harness.outcomes",
    "Provenance": "harness.records",
    "Reply": "harness.trajectory",
    "Results": "harness.records",
    "RunRecord": "harness.records",
    "Sampling": "harness.records",
    "Scenario": "harness.scenario",
    "ScenarioError": "harness.scenario",
    "ScenarioScore": "harness.scores",
    "Step": "harness.trajectory",
    "StepScore": "harness.scores",
    "Stratum": "harness.outcomes",
    "Target": "harness.records",
    "ToolCall": "harness.trajectory",
    "ToolExecution": "harness.trajectory",
    "Trajectory": "harness.trajectory",
    "load_scenarios": "harness.scenario",
    "read_results": "harness.records",
    "run_scenario": "harness.loop",
    "score_scenario": "harness.scoring",
}

__all__ = sorted(_WHERE)

if TYPE_CHECKING:  # pragma: no cover
    from harness.loop import run_scenario
    from harness.outcomes import Dimension, Outcome, Stratum
    from harness.records import Provenance, Results, RunRecord, Sampling, Target, read_results
    from harness.scenario import Scenario, ScenarioError, load_scenarios
    from harness.scores import Check, ScenarioScore, StepScore
    from harness.scoring import score_scenario
    from harness.trajectory import Reply, Step, ToolCall, ToolExecution, Trajectory


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'harness' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
