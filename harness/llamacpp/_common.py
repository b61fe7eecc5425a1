"""Constants, errors and cache plumbing shared by the llama.cpp modules: locks, atomic writes, log tails."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import structlog

from harness.paths import cache_home

__all__ = [
    "LLAMA_CPP_PYTHON_VERSION",
    "CMAKE_FLAGS",
    "BUILD_TARGETS",
    "BUILD_JOBS",
    "CHAT_TEMPLATE",
    "TEMPLATE_STOPS",
    "SOURCE_QUANT",
    "DEFAULT_QUANTS",
    "AUDIT_QUANTS",
    "MODEL_STEM",
    "LlamaError",
    "LlamaBuildError",
    "LlamaServerError",
    "cache_root",
]

log = structlog.get_logger("harness.llamacpp")

LLAMA_CPP_PYTHON_VERSION = "0.3.36"
"""The llama-cpp-python sdist whose vendored llama.cpp we build (a pinned, pip-downloadable llama.cpp)."""

# GGML_NATIVE=ON crashes on the CI machines (AMX is advertised but unusable): pin a portable x86-64 set
CMAKE_FLAGS = (
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DCMAKE_BUILD_TYPE=Release",
    "-DGGML_NATIVE=OFF",
    "-DGGML_AVX=ON",
    "-DGGML_AVX2=ON",
    "-DGGML_FMA=ON",
    "-DGGML_F16C=ON",
    "-DGGML_BMI2=ON",
)
BUILD_TARGETS = ("llama-server", "llama-quantize", "llama-imatrix")
BUILD_JOBS = 2

CHAT_TEMPLATE = "Qwen-Qwen2.5-7B-Instruct.jinja"
"""The chat template the ladder is served with: the GGUF has none, and without one llama-server drops `tools`."""

TEMPLATE_STOPS = ("<|im_end|>", "</tool_call>")
"""Server-wide stop strings for the Qwen template on gemma. Gemma's vocabulary has no `<|im_end|>` token, so
the end of a turn is plain text and nothing would stop a reply; and stopping at `</tool_call>` ends a reply
after its first call block instead of letting the grammar chain more blocks. A request's own `stop` replaces these."""

SOURCE_QUANT = "Q4_K_M"
"""The file type of the packaged gemma-3-270m GGUF; every other rung is requantized from it."""
DEFAULT_QUANTS = ("Q8_0", "Q4_K_M", "Q3_K_M", "Q2_K")
"""The embedded ladder's rungs (the demo's): Q8_0, requantized up from the packaged file, is its reference."""
AUDIT_QUANTS = ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q3_K_M", "Q2_K")
"""The rungs `harness audit` makes from a user's high-precision GGUF by default."""
MODEL_STEM = "gemma-3-270m"

_PACKAGE_DATA = Path(__file__).resolve().parent.parent / "data"


class LlamaError(Exception):
    """Something about the local llama.cpp set-up failed; the message says what and where to look."""


class LlamaBuildError(LlamaError):
    """Downloading or building llama.cpp failed."""


class LlamaServerError(LlamaError):
    """llama-server did not start, or died."""


def cache_root(cache_dir: Path | str | None = None) -> Path:
    """The cache folder: `cache_dir`, else `$HARNESS_CACHE_DIR`, else `~/.cache/agentic-harness`."""
    root = Path(cache_dir).expanduser() if cache_dir is not None else cache_home()
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextlib.contextmanager
def _file_lock(path: Path, what: str, progress: Callable[[str], Any] | None = None) -> Iterator[None]:
    """An exclusive advisory lock (flock) held for the block: two processes never build the same thing."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _say(progress, f"waiting for another process that holds {path} ({what})")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _say(progress: Callable[[str], Any] | None, message: str) -> None:
    log.info("llamacpp.progress", message=message)
    if progress is not None:
        progress(message)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_sha_cache: dict[tuple[str, int, int], str] = {}


def _file_sha256(path: Path) -> str:
    """sha256 of a file, remembered per (path, size, mtime) for this process and in the cache folder.

    A user's F16 GGUF is many gigabytes: a second audit of it must not spend a minute hashing it again.
    """
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _sha_cache:
        memo = cache_root() / "hashes" / hashlib.sha256(repr(key).encode()).hexdigest()[:32]
        try:
            known = memo.read_text(encoding="utf-8").strip()
        except OSError:
            known = ""
        if len(known) != 64:
            known = _sha256(path)
            memo.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(OSError):
                tmp = memo.with_name(f".{memo.name}.{os.getpid()}.tmp")
                tmp.write_text(known + "\n", encoding="utf-8")
                os.replace(tmp, memo)
        _sha_cache[key] = known
    return _sha_cache[key]


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
