"""What a build costs to run on the same workload: latency, tokens/s, tokens, retries, size and memory."""

from __future__ import annotations

from harness.compare.models import Cost
from harness.outcomes import Outcome
from harness.records import Provenance, RunRecord
from harness.stats import percentile
from harness.throughput import generation_speed

__all__ = ["cost_of"]


def cost_of(records: list[RunRecord], prov: Provenance) -> Cost:
    """The cost figures of one target's runs (infra-error runs counted in requests, not in latency)."""
    replies = [s.reply for r in records for s in r.trajectory.steps]
    latencies = [p.latency_ms for p in replies if p.latency_ms is not None and p.outcome is not Outcome.INFRA_ERROR]
    speed = generation_speed(replies)
    durations = [r.trajectory.duration_ms for r in records if r.trajectory.duration_ms is not None]
    return Cost(
        requests=len(replies),
        latency_p50_ms=percentile(latencies, 50),
        latency_p95_ms=percentile(latencies, 95),
        gen_tokens_per_s=speed.tokens_per_s,
        gen_tokens_per_s_source=speed.source,
        wall_time_s=sum(durations) / 1000.0 if durations else None,
        prompt_tokens=sum(p.usage.prompt_tokens or 0 for p in replies),
        completion_tokens=sum(p.usage.completion_tokens or 0 for p in replies),
        retries=sum(max(0, p.attempts - 1) for p in replies),
        infra_errors=sum(r.score.infra_error for r in records),
        file_size_bytes=prov.file_size_bytes,
        memory_bytes=prov.memory_bytes,
        vram_bytes=prov.vram_bytes,
    )
