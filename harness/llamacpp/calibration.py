"""Importance matrices: computed with llama-imatrix on calibration text, cached by content.

The key is the model's sha256 and the text's sha256 (and the context the matrix was collected at),
so a second audit with the same model and text reuses the file instead of running the model again.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.llamacpp._common import LlamaBuildError, _file_lock, _file_sha256, _say, _tail, cache_root, log
from harness.llamacpp.binaries import LlamaBinaries, find_llama_imatrix

__all__ = ["imatrix_cache_key", "compute_imatrix"]

# llama-imatrix needs at least two contexts' worth of tokens; 512 is its default
_CONTEXTS = (512, 256, 128, 64, 32)


def imatrix_cache_key(model_sha256: str, text_sha256: str) -> str:
    """The content key of an importance matrix: which model ran over which text."""
    return hashlib.sha256(f"imatrix\n{model_sha256}\n{text_sha256}".encode()).hexdigest()[:20]


def compute_imatrix(
    model: Path,
    text: Path,
    binaries: LlamaBinaries,
    *,
    cache_dir: Path | str | None = None,
    threads: int | None = None,
    progress: Callable[[str], Any] | None = None,
) -> Path:
    """The importance matrix of `model` over the calibration `text` (a GGUF imatrix file), computed once.

    Short texts are collected at a smaller context (llama-imatrix wants two contexts of tokens); a text
    too short even for a 32-token context is an error that says so.
    """
    model, text = Path(model), Path(text)
    key = imatrix_cache_key(_file_sha256(model), _file_sha256(text))
    folder = cache_root(cache_dir) / "imatrix" / key
    target = folder / f"imatrix-{text.stem}.gguf"
    if target.exists() and target.stat().st_size > 0:
        return target
    tool = find_llama_imatrix(binaries, cache_dir, progress=progress)
    folder.mkdir(parents=True, exist_ok=True)
    with _file_lock(folder / ".lock", "computing an importance matrix", progress):
        if target.exists() and target.stat().st_size > 0:
            return target
        logfile = folder / "llama-imatrix.log"
        partial = folder / f".{target.name}.{os.getpid()}.partial.gguf"
        est_tokens = max(1, text.stat().st_size // 4)
        contexts = [c for c in _CONTEXTS if 2 * c <= est_tokens] or [_CONTEXTS[-1]]
        started = time.perf_counter()
        _say(progress, f"computing an importance matrix of {model.name} over {text.name} ({text.stat().st_size} bytes)")
        try:
            for ctx in contexts:
                cmd = [str(tool), "-m", str(model), "-f", str(text), "-o", str(partial), "-c", str(ctx),
                       "--no-ppl", "-t", str(threads or max(1, min(os.cpu_count() or 2, 8)))]  # fmt: skip
                with logfile.open("w", encoding="utf-8") as fh:
                    proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          env=binaries.env())
                if proc.returncode == 0 and partial.exists():
                    os.replace(partial, target)
                    break
                if "you need at least" not in _tail(logfile, 60):
                    raise LlamaBuildError(
                        f"llama-imatrix failed (exit {proc.returncode}); log: {logfile}\n--- last lines ---\n{_tail(logfile)}"
                    )
            else:
                raise LlamaBuildError(f"the calibration text {text} is too short for llama-imatrix (log: {logfile})")
        finally:
            partial.unlink(missing_ok=True)
        log.info("llamacpp.imatrix", model=model.name, text=text.name, ctx=ctx,
                 seconds=round(time.perf_counter() - started, 2))
    return target
