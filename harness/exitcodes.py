"""Exit codes a CI job can tell apart; every `harness` command uses these.

A module of its own so that the command line can name them without importing the gate (and with it
the comparison engine and its statistics).
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["ExitCode"]


class ExitCode(IntEnum):
    """Exit codes a CI job can tell apart (every `harness` command uses these)."""

    OK = 0
    REGRESSION = 1
    """A target's pass rate dropped by more than the allowed points against the baseline."""
    BAD_INPUT = 2
    """The baseline (or the current results) cannot be read or compared: a missing file, bad JSON, no shared target."""
    INFRA = 3
    """The server was down or too many runs hit infrastructure errors: the numbers cannot be trusted."""
    MEANINGLESS = 4
    """A preflight finding makes the run meaningless: the server dropped the tools from the prompt and no run
    made a structured tool call, so the model never saw what it was graded on (`--allow-meaningless` to accept)."""
    INTERNAL = 70
    """The harness could not finish: a bug, a library it uses broke, or the machine refused a file operation
    (a full disk). Not a verdict on any model. The traceback is on stderr; finished runs are in results.jsonl
    (sysexits' EX_SOFTWARE)."""
    INTERRUPTED = 130
    """Ctrl-C: finished runs are on disk; `--resume` continues."""
