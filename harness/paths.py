"""Where the harness keeps what it builds and caches (a module with no imports of its own, so the
scenario loader can ask without pulling in the llama.cpp tooling)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_home"]


def cache_home() -> Path:
    """`$HARNESS_CACHE_DIR`, else `~/.cache/agentic-harness`: the llama.cpp build, the model ladder,
    imatrix files and the scenario load cache live under it. Not created here."""
    return Path(os.environ.get("HARNESS_CACHE_DIR") or Path.home() / ".cache" / "agentic-harness").expanduser()
