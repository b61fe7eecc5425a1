"""Shared fixtures for the integration tests: the llama.cpp binaries, the gemma-3-270m ladder, servers on it.

`make test` (or `python -m harness.llamacpp prepare`) builds the binaries and the ladder first; a test
session never compiles llama.cpp itself. Without them the integration tests skip, except under
CI=true, where they fail: CI must run them.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from harness import llamacpp

# scenario loads are cached in the user's cache folder; a test session (and the CLI processes it starts)
# keeps its own, so no test reads what another session or the user left there
_SCENARIO_CACHE = tempfile.mkdtemp(prefix="harness-test-scenario-cache-")
os.environ.setdefault("HARNESS_SCENARIO_CACHE", _SCENARIO_CACHE)
atexit.register(shutil.rmtree, _SCENARIO_CACHE, ignore_errors=True)


class LlamaLadder(BaseModel):
    """The binaries and one GGUF per rung, as `llama_ladder` hands them to tests."""

    model_config = ConfigDict(frozen=True)

    binaries: llamacpp.LlamaBinaries
    rungs: dict[str, Path]
    """Quant name (`Q8_0`, `Q4_K_M`, `Q3_K_M`, `Q2_K`) -> GGUF path."""


@pytest.fixture(scope="session")
def llama_ladder() -> LlamaLadder:
    """The prepared ladder (quantizing a missing rung takes seconds; building llama.cpp is left to `prepare`)."""
    try:
        binaries = llamacpp.find_llama_binaries(build=False)
        rungs = llamacpp.make_ladder(llamacpp.assemble_base_model(), llamacpp.DEFAULT_QUANTS, binaries)
    except llamacpp.LlamaError as exc:
        message = f"llama.cpp ladder not prepared ({exc}); run `python -m harness.llamacpp prepare`"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(message)
        pytest.skip(message)
    return LlamaLadder(binaries=binaries, rungs=rungs)


@pytest.fixture
def llama_server(llama_ladder: LlamaLadder, tmp_path: Path) -> Iterator[Callable[..., llamacpp.LlamaServer]]:
    """A factory: `llama_server("Q2_K", **kwargs)` starts a server on that rung, stopped after the test."""
    started: list[llamacpp.LlamaServer] = []

    def start(rung: str = "Q8_0", **kwargs: object) -> llamacpp.LlamaServer:
        kwargs.setdefault("alias", f"gemma-3-270m-{rung.lower()}")
        kwargs.setdefault("log_dir", tmp_path / "logs")
        server = llamacpp.LlamaServer(llama_ladder.rungs[rung], llama_ladder.binaries, **kwargs)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


@pytest.fixture(autouse=True)
def _logging_back_to_default():
    """An in-process CLI run (CliRunner) points structlog at its run's log.jsonl and its own stderr; put it back."""
    yield
    from harness import logs

    # a test that closed the log itself leaves nothing to close
    if logs._file is not None and logs._file.closed:
        logs._file = None
    import sys

    if not getattr(sys.stderr, "closed", False):
        logs.configure_logging()
