"""Run the `harness` command in-process, leaving this process's streams and logging as they were.

The command wraps sys.stdout/sys.stderr (secret scrubbing) and points structlog at them; CliRunner
closes its streams afterwards, so without this later tests would log into closed files.
"""

from __future__ import annotations

import sys

import structlog
from click.testing import CliRunner, Result

from harness.cli import main

__all__ = ["invoke"]


def invoke(args: list[str]) -> Result:
    """`harness ARGS` in-process; the result has exit_code, output and stdout."""
    saved = structlog.get_config()
    streams = sys.stdout, sys.stderr
    try:
        return CliRunner().invoke(main, args)
    finally:
        sys.stdout, sys.stderr = streams
        structlog.configure(**saved)
