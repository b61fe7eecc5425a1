"""Several endpoints serving the same build, used as one target through LiteLLM's Router.

The Router balances requests over the endpoints (simple shuffle, weighted by nothing), retries a
failed request on another one, and cools an endpoint down after it fails, so a replica that dies
mid-run costs retries, not results. Failures that reach the harness are classified as for any
litellm target (`harness.client.LiteLLMChatClient`) and retried with the same backoff.
"""

from __future__ import annotations

from typing import Any

from harness.client import LiteLLMChatClient
from harness.records import Target

__all__ = ["RouterChatClient", "router_model_list"]

ROUTER_RETRIES = 3
"""Retries inside the Router (each may go to another endpoint) before the harness's own backoff."""
COOLDOWN_S = 30.0
"""How long the Router leaves an endpoint alone after it failed."""


def router_model_list(target: Target, *, timeout_s: float) -> list[dict[str, Any]]:
    """One Router deployment per endpoint, all under the target's name."""
    model = target.model if target.provider == "litellm" and "/" in target.model else f"openai/{target.model}"
    return [
        {"model_name": target.name,
         "litellm_params": {"model": model, "api_base": url, "api_key": target.api_key or "sk-none",
                            "timeout": timeout_s, "max_retries": 0}}
        for url in [target.base_url, *target.endpoints]
    ]


class RouterChatClient(LiteLLMChatClient):
    """litellm's `Router.acompletion` over every endpoint of the target."""

    def __init__(self, target: Target, **kwargs: Any):
        super().__init__(target, **kwargs)
        self._router: Any = None

    async def _complete(self, litellm: Any, body: dict[str, Any]) -> Any:
        if self._router is None:
            from litellm import Router

            # one failure cools an endpoint down: a dead replica should not get every other request
            self._router = Router(model_list=router_model_list(self.target, timeout_s=self.timeout_s),
                                  num_retries=ROUTER_RETRIES, allowed_fails=0, cooldown_time=COOLDOWN_S,
                                  retry_after=0, timeout=self.timeout_s)
        request = {k: v for k, v in body.items() if k != "model"}
        return await self._router.acompletion(model=self.target.name, **request)
