"""Where the command line writes: a terminal, or a CI log that is not one.

Without a terminal, tables get a width that fits them (not rich's 80 columns), progress is plain
lines at a steady rate instead of a bar drawn once at the end, and a reader that goes away
(`harness list | head`) ends the output quietly instead of the command.
"""

from __future__ import annotations

import io
import os
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, TextIO

from rich.console import Console
from rich.text import Text

__all__ = ["LOG_WIDTH", "PlainProgress", "make_console", "progress_for", "protect_stdout"]

LOG_WIDTH = 200
"""Columns for tables when the output is not a terminal and COLUMNS is not set."""

_INTERVAL_ENV = "HARNESS_PROGRESS_INTERVAL"
_DEFAULT_INTERVAL_S = 15.0


def _is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def make_console(*, stderr: bool = False) -> Console:
    """A rich console on stdout (or stderr): as wide as the terminal, or `LOG_WIDTH` in a log."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if _is_tty(stream) or os.environ.get("COLUMNS") else LOG_WIDTH
    return Console(stderr=stderr, highlight=False, width=width)


# -- progress without a terminal ----------------------------------------------------------------


@dataclass
class _Task:
    description: str
    total: int
    done: int = 0
    status: str = ""
    started: float = 0.0
    finished: bool = False


def _clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class PlainProgress:
    """Progress as one plain line per target every `interval_s` seconds, and when a target finishes.

    Speaks the part of `rich.progress.Progress` the runner uses (`add_task`, `update`, a context
    manager), so it can stand in for the bar when nobody watches a terminal.
    """

    def __init__(self, console: Console, *, interval_s: float | None = None):
        self.console = console
        if interval_s is None:
            try:
                interval_s = float(os.environ.get(_INTERVAL_ENV, _DEFAULT_INTERVAL_S))
            except ValueError:
                interval_s = _DEFAULT_INTERVAL_S
        self.interval_s = max(0.05, interval_s)
        self._tasks: dict[int, _Task] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PlainProgress:
        self._thread = threading.Thread(target=self._beat, name="plain-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def add_task(self, description: str, total: int | None = None, **fields: Any) -> int:
        with self._lock:
            task_id = len(self._tasks)
            task = _Task(description=description, total=int(total or 0), status=str(fields.get("status") or ""),
                         started=time.monotonic())
            self._tasks[task_id] = task
        self._say(f"{description}: {task.total} run(s) to go" if task.total else f"{description}: nothing left to run")
        if not task.total:
            task.finished = True
        return task_id

    def update(self, task_id: int, *, advance: int = 0, status: str | None = None, **_: Any) -> None:
        with self._lock:
            task = self._tasks[task_id]
            task.done += advance
            if status is not None:
                task.status = status
            just_finished = not task.finished and task.total and task.done >= task.total
            if just_finished:
                task.finished = True
        if just_finished:
            self._say(self._line(task))

    def _line(self, task: _Task) -> str:
        elapsed = time.monotonic() - task.started
        status = Text.from_markup(task.status).plain if task.status else ""
        line = f"{task.description}: {task.done}/{task.total} runs"
        if status:
            line += f", {status}"
        line += f", {_clock(elapsed)} elapsed"
        if task.finished:
            return line + ", done"
        if task.done:
            line += f", about {_clock(elapsed / task.done * (task.total - task.done))} left"
        return line

    def _beat(self) -> None:
        while not self._stop.wait(self.interval_s):
            with self._lock:
                lines = [self._line(t) for t in self._tasks.values() if not t.finished]
            for line in lines:
                self._say(line)

    def _say(self, line: str) -> None:
        self.console.print(Text(f"[{time.strftime('%H:%M:%S')}] {line}"), soft_wrap=True)


def progress_for(console: Console, *, disable: bool = False) -> Any:
    """The live bars on a terminal, plain lines in a log."""
    if console.is_terminal:
        from harness.runner import make_progress

        return make_progress(console, disable=disable)
    return PlainProgress(console)


# -- a reader that goes away --------------------------------------------------------------------


class _PipeSafe(io.TextIOBase):
    """stdout that, once its reader has gone (EPIPE), drops the rest instead of raising."""

    def __init__(self, stream: TextIO):
        self._stream = stream
        self.broken = False

    def _gone(self) -> None:
        self.broken = True
        # the interpreter flushes the real stdout at exit; pointed at /dev/null that flush cannot fail
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError, io.UnsupportedOperation):
            pass

    def write(self, text: str) -> int:
        if self.broken:
            return len(text)
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._gone()
            return len(text)

    def flush(self) -> None:
        if self.broken:
            return
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._gone()

    def isatty(self) -> bool:
        return _is_tty(self._stream)

    def fileno(self) -> int:
        return self._stream.fileno()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._stream, "encoding", "utf-8")

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return getattr(self._stream, "errors", None)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def protect_stdout() -> None:
    """Make a closed pipe on stdout end the output, not the command (whose exit code then still counts)."""
    if not isinstance(sys.stdout, _PipeSafe) and sys.stdout is not None:
        sys.stdout = _PipeSafe(sys.stdout)
