"""agentic-harness: multi-step tool-calling evals that expose agentic collapse in quantized models.

    scenarios/*.yaml --load--> Scenario --run--> Trajectory --score--> ScenarioScore --compare--> Report
"""

from harness.loop import run_scenario
from harness.outcomes import Dimension, Outcome, Stratum
from harness.records import Provenance, Results, RunRecord, Sampling, Target, read_results
from harness.scenario import Scenario, ScenarioError, load_scenarios
from harness.scores import Check, ScenarioScore, StepScore
from harness.scoring import score_scenario
from harness.trajectory import Reply, Step, ToolCall, ToolExecution, Trajectory

__version__ = "0.1.0"

__all__ = [
    "Check",
    "Dimension",
    "Outcome",
    "Provenance",
    "Reply",
    "Results",
    "RunRecord",
    "Sampling",
    "Scenario",
    "ScenarioError",
    "ScenarioScore",
    "Step",
    "StepScore",
    "Stratum",
    "Target",
    "ToolCall",
    "ToolExecution",
    "Trajectory",
    "load_scenarios",
    "read_results",
    "run_scenario",
    "score_scenario",
]
