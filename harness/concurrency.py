"""How many scenarios to keep in flight per target: as many as the server has slots, unless told.

llama.cpp says `total_slots` in `/props` (its `--parallel`); vLLM's `max_num_seqs` shows in a
`/metrics` `*_info` gauge where the build exports its scheduler config; Ollama does not expose
`OLLAMA_NUM_PARALLEL` over its API, so it is read from the environment the harness runs in (the
shell that usually started `ollama serve` too). `--concurrency` overrides all of these.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict

from harness.records import Provenance

__all__ = ["MAX_CONCURRENCY", "Concurrency", "server_slots", "choose_concurrency"]

MAX_CONCURRENCY = 64
"""The most scenarios a target runs at once, whatever the server says."""


class Concurrency(BaseModel):
    """How many scenarios run at once against one target, and why."""

    model_config = ConfigDict()

    target: str
    """The target's name."""
    value: int
    """Scenarios in flight at once."""
    source: str
    """Where the figure came from: `--concurrency`, `llama.cpp total_slots`, `vllm max_num_seqs`,
    `OLLAMA_NUM_PARALLEL`, or `default` (the server said nothing)."""


def _int(value: object) -> int | None:
    try:
        number = int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def server_slots(prov: Provenance, env: Mapping[str, str] | None = None) -> tuple[int, str] | None:
    """The number of requests the server behind `prov` serves in parallel, and where that was read; None when unknown."""
    env = os.environ if env is None else env
    if prov.server == "llama.cpp":
        slots = _int(prov.extra.get("total_slots"))
        return (slots, "llama.cpp total_slots") if slots else None
    if prov.server == "vllm":
        for labels in (prov.extra.get("metrics_info") or {}).values():
            slots = _int(labels.get("max_num_seqs")) if isinstance(labels, dict) else None
            if slots:
                return slots, "vllm max_num_seqs"
        return None
    if prov.server == "ollama":
        slots = _int(prov.extra.get("num_parallel")) or _int(env.get("OLLAMA_NUM_PARALLEL"))
        return (slots, "OLLAMA_NUM_PARALLEL") if slots else None
    return None


def choose_concurrency(target: str, prov: Provenance | None, override: int | None,
                       env: Mapping[str, str] | None = None) -> Concurrency:
    """`override` when given, else the server's slots (capped at `MAX_CONCURRENCY`), else 1."""
    if override is not None:
        return Concurrency(target=target, value=max(1, override), source="--concurrency")
    found = server_slots(prov, env) if prov is not None else None
    if found is None:
        return Concurrency(target=target, value=1, source="default")
    slots, source = found
    return Concurrency(target=target, value=min(slots, MAX_CONCURRENCY), source=source)
