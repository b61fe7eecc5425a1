"""Score types: what a scorer says about one expected step and about one scenario run.

Kept apart from `scoring.py` (which computes them) so that compare and report code can read
scores without importing the scorers.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from harness.outcomes import Dimension, Outcome

__all__ = ["Check", "StepScore", "ScenarioScore"]


class _Score(BaseModel):
    model_config = ConfigDict()


class Check(_Score):
    """One graded aspect of a step or of the end of a run."""

    dimension: Dimension
    outcome: Outcome
    """`ok`, or the failure kind."""
    reason: str = ""
    """What a human should read: `expected get_weather, got send_email`."""
    argument: str | None = None
    """The argument this check is about, for argument and context checks."""

    @property
    def passed(self) -> bool:
        return self.outcome is Outcome.OK

    @classmethod
    def ok(cls, dimension: Dimension, reason: str = "", argument: str | None = None) -> "Check":
        return cls(dimension=dimension, outcome=Outcome.OK, reason=reason, argument=argument)

    @classmethod
    def fail(cls, dimension: Dimension, outcome: Outcome, reason: str, argument: str | None = None) -> "Check":
        return cls(dimension=dimension, outcome=outcome, reason=reason, argument=argument)


class StepScore(_Score):
    """The grade of one expected step."""

    index: int
    """0-based index of the expected step across the scenario (the depth axis of reports)."""
    turn: int
    """1-based user turn."""
    kind: str
    """`call`, `any_order`, `answer` or `ask`."""
    expected: str
    """The expectation in words: `call get_weather(city=Paris)`."""
    actual: str
    """What the model did, in words."""
    model_step: int | None = None
    """Index of the model step (reply) that was graded, when one was."""
    checks: list[Check] = Field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def outcome(self) -> Outcome:
        """The first failing check's outcome, or `ok`."""
        return next((c.outcome for c in self.checks if not c.passed), Outcome.OK)

    def failed(self, dimension: Dimension) -> bool:
        return any(not c.passed for c in self.checks if c.dimension is dimension)


class ScenarioScore(_Score):
    """The grade of one run of a scenario."""

    scenario_id: str
    passed: bool
    """Every step and every end check passed (false for infra errors too; see `infra_error`)."""
    outcome: Outcome
    """`ok`, or the first failure's kind."""
    first_failed_step: int | None = None
    """Index of the first failing expected step, if any."""
    steps: list[StepScore] = Field(default_factory=list)
    final_checks: list[Check] = Field(default_factory=list)
    """Final answer, world end state and forbidden-call checks."""
    infra_error: bool = False
    """The run hit an infrastructure error: excluded from accuracy, never scored as wrong."""
    reason: str = ""
    """One line on why it failed."""

    def dimension_passed(self, dimension: Dimension) -> bool:
        return all(not s.failed(dimension) for s in self.steps) and all(
            c.passed for c in self.final_checks if c.dimension is dimension
        )
