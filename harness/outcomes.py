"""The one list of outcome and failure kinds, used by scores, reports and logs alike.

Named once here (as BFCL's checker names `wrong_func_name`, `missing_required`, ...) so that a
report, a JUnit failure and a log line all say the same word for the same thing.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Outcome", "Dimension", "Stratum", "INFRA_OUTCOMES", "FATAL_REPLY_OUTCOMES"]


class Outcome(StrEnum):
    """What happened at a step or a check. `ok` is the only success."""

    OK = "ok"

    # tool selection
    WRONG_TOOL = "wrong_tool"
    """An offered tool was called, but not the one the step expects."""
    UNKNOWN_TOOL = "unknown_tool"
    """The model called a tool that was not offered."""
    MISSING_CALL = "missing_call"
    """A call was expected; the model answered in text instead."""
    UNEXPECTED_CALL = "unexpected_call"
    """The model called a tool where it should have answered or asked."""
    SPURIOUS_CALL = "spurious_call"
    """A call beyond the ones the turn expects (a repeat, an extra lookup)."""
    LEAKED_TEXT_CALL = "leaked_text_call"
    """The call was written as plain text in `content`, not as a structured tool call."""
    FORBIDDEN_CALL = "forbidden_call"
    """A call the scenario forbids (a minefield) was made."""

    # argument validity
    MALFORMED_ARGUMENTS = "malformed_arguments"
    """The arguments were not parseable JSON."""
    TRUNCATED_CALL = "truncated_call"
    """The call was cut off by max_tokens: partial JSON with finish_reason `length`."""
    MISSING_REQUIRED = "missing_required"
    """A required parameter (by schema or by the step) is absent."""
    UNEXPECTED_PARAM = "unexpected_param"
    """A parameter the schema does not define, or one the step says must be absent."""
    TYPE_ERROR = "type_error"
    """A parameter has the wrong JSON type."""
    VALUE_ERROR = "value_error"
    """A parameter has the right type but a wrong value (enum, pattern, expectation)."""

    # context retention
    CONTEXT_LOST = "context_lost"
    """An argument does not carry a value given earlier (by the user, or by a tool result)."""

    # answers and end state
    ANSWER_MISMATCH = "answer_mismatch"
    """The text answer misses what it must say (or says what it must not)."""
    EMPTY_REPLY = "empty_reply"
    """The model returned neither text nor a call."""
    END_STATE_MISMATCH = "end_state_mismatch"
    """The mock world does not end in the expected state."""

    # the run as a whole
    LOOP = "loop"
    """The step cap was hit: the model kept calling tools without answering."""
    SERVER_PARSE_ERROR = "server_parse_error"
    """The server answered HTTP 500 because it could not parse the model's tool call: a model failure."""
    NOT_REACHED = "not_reached"
    """The run ended before this step (an earlier fatal failure)."""

    INFRA_ERROR = "infra_error"
    """Connection refused, 502/503/504, timeout: retried, then excluded from accuracy, never a wrong answer."""

    @property
    def is_failure(self) -> bool:
        return self is not Outcome.OK


class Dimension(StrEnum):
    """What a check grades."""

    TOOL_SELECTION = "tool_selection"
    ARGUMENT_VALIDITY = "argument_validity"
    CONTEXT_RETENTION = "context_retention"
    ANSWER = "answer"
    END_STATE = "end_state"


class Stratum(StrEnum):
    """The capability a scenario stresses; reports break results down by these."""

    TOOL_SELECTION = "tool_selection"
    ARGUMENT_VALIDITY = "argument_validity"
    CONTEXT_RETENTION = "context_retention"
    IRRELEVANCE = "irrelevance"
    MISSING_INFO = "missing_info"
    ERROR_RECOVERY = "error_recovery"
    MULTI_CALL = "multi_call"


INFRA_OUTCOMES = frozenset({Outcome.INFRA_ERROR})
"""Outcomes that say nothing about the model and are excluded from accuracy."""

FATAL_REPLY_OUTCOMES = frozenset({Outcome.SERVER_PARSE_ERROR, Outcome.LOOP, Outcome.INFRA_ERROR})
"""Reply outcomes after which a scenario cannot go on."""
