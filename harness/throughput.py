"""Generation speed of a build: the server's own timings where it sends them, else measured here.

llama.cpp sends `timings.predicted_per_second`; Ollama's OpenAI layer and most other servers send
none, so the speed is measured client-side as generated tokens over request latency. That includes
prompt processing and the network, so it reads lower than a server's figure: the source says which.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, ConfigDict

from harness.outcomes import Outcome
from harness.trajectory import Reply

__all__ = ["Throughput", "generation_speed"]


class Throughput(BaseModel):
    """Tokens per second of one build's replies, and where the number comes from."""

    model_config = ConfigDict()

    tokens_per_s: float | None = None
    """Mean of the server's per-reply figures, or total generated tokens over total latency; None: nothing to go on."""
    source: Literal["server", "client"] | None = None
    """`server`: the server's timings; `client`: usage.completion_tokens / latency, measured by the harness."""
    replies: int = 0
    """Replies the figure is based on."""


def generation_speed(replies: Iterable[Reply]) -> Throughput:
    """The build's generation speed: server timings when any reply has them, else client-side."""
    replies = [r for r in replies if r.outcome is not Outcome.INFRA_ERROR]
    reported = [r.timings.predicted_per_second for r in replies
                if r.timings is not None and r.timings.predicted_per_second is not None]
    if reported:
        return Throughput(tokens_per_s=sum(reported) / len(reported), source="server", replies=len(reported))
    timed = [r for r in replies if r.latency_ms and r.usage.completion_tokens]
    if not timed:
        return Throughput()
    tokens = sum(r.usage.completion_tokens or 0 for r in timed)
    seconds = sum(r.latency_ms or 0.0 for r in timed) / 1000.0
    return Throughput(tokens_per_s=tokens / seconds, source="client", replies=len(timed))
