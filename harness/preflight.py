"""Probes run before a comparison, to tell failures of the serving stack from failures of the quant.

A chat template that drops the tools, a server that ignores `tool_choice` or cannot parse the
model's call format makes every quant look broken alike. `preflight` asks each server a few
cheap questions; `confounds` names what differs between targets besides the quantization.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field

from harness.loop import ChatClientLike
from harness.outcomes import Outcome
from harness.records import Provenance, Sampling, Target
from harness.trajectory import Reply

__all__ = ["ProbeReply", "Preflight", "preflight", "confounds", "parameter_count", "served_model_warning", "group_warnings",
           "settle_warnings", "meaningless_targets", "NO_CALL_WARNING"]

log = structlog.get_logger("harness.preflight")

CallMode = Literal["structured", "leaked_text", "no_call", "server_parse_error", "error"]

# a probe call fits in 64 tokens; the prompt-size probes need none at all (a tiny base model on a busy
# CPU can spend minutes generating 256 tokens of nothing)
_SAMPLING = Sampling(temperature=0.0, top_p=1.0, seed=0, max_tokens=64)
_COUNT_SAMPLING = Sampling(temperature=0.0, top_p=1.0, seed=0, max_tokens=8)
# below this many extra prompt tokens the tools did not reach the model (a nonce differs by a token or two)
_DROPPED_MIN_TOKENS = 8
_DROPPED_FRACTION = 0.1
_PARTIAL_FRACTION = 0.25

NO_CALL_WARNING = "asked outright to call"
"""How the warning of a probe call answered in text begins (`settle_warnings` finds it by this)."""


class _Model(BaseModel):
    model_config = ConfigDict()


class ProbeReply(_Model):
    """One probe request and what came back, in brief."""

    probe: str
    """`no_tools`, `with_tools`, `call_auto`, `call_none`, `call_required`."""
    tool_choice: str | None = None
    outcome: str
    """The reply's outcome (`ok`, `leaked_text_call`, `infra_error`, ...)."""
    calls: list[str] = Field(default_factory=list)
    """`name (source)` of every call the reply made."""
    content: str | None = None
    """The reply text, cut to 200 characters."""
    prompt_tokens: int | None = None
    finish_reason: str | None = None
    error: str | None = None


class Preflight(_Model):
    """What the probes found about one target's server; stored in `Provenance.preflight`."""

    tools_in_prompt: bool | None = None
    """Whether the tools reach the model (prompt tokens with tools well above without); None: not measurable."""
    prompt_tokens_with_tools: int | None = None
    prompt_tokens_without_tools: int | None = None
    tool_prompt_tokens: int | None = None
    """The difference: what the rendered tools cost."""
    expected_tool_tokens: int = 0
    """A rough estimate from the schemas' JSON length (4 characters a token)."""
    structured_calls: CallMode | None = None
    """Asked outright to call a tool: `structured` tool_calls, a call `leaked_text` into content, `no_call`, ..."""
    arguments_wire: Literal["string", "object"] | None = None
    """How the server sent the call's arguments: a JSON string (OpenAI) or an object."""
    honours_tool_choice_none: bool | None = None
    """False: a call came back despite tool_choice "none"; None: inconclusive (the model would not call anyway)."""
    honours_tool_choice_required: bool | None = None
    """False: text came back despite tool_choice "required"; None: the probe failed."""
    server: str | None = None
    server_version: str | None = None
    chat_template: str | None = None
    context_length: int | None = None
    probes: list[ProbeReply] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    """Findings that change what a run measures (tools dropped, calls leaked as text)."""
    notes: list[str] = Field(default_factory=list)
    """Findings that do not, since runs send tool_choice "auto" (tool_choice "none"/"required" ignored)."""


def _example_value(schema: dict[str, Any]) -> Any:
    if "default" in schema:
        return schema["default"]
    if schema.get("enum"):
        return schema["enum"][0]
    if schema.get("examples"):
        return schema["examples"][0]
    kind = schema.get("type")
    kind = next((k for k in kind if k != "null"), "string") if isinstance(kind, list) else kind
    return {"integer": 1, "number": 1, "boolean": True, "array": [], "object": {}}.get(kind, "example")


def _pick_tool(tools: list[dict[str, Any]]) -> tuple[str, dict[str, Any]] | None:
    """The tool with the fewest required parameters (the easiest call to make), and arguments for it."""
    best: tuple[int, str, dict[str, Any]] | None = None
    for tool in tools:
        fn = tool.get("function") or {}
        if not fn.get("name"):
            continue
        params = fn.get("parameters") or {}
        required = [r for r in params.get("required", []) if isinstance(r, str)]
        if best is None or len(required) < best[0]:
            props = params.get("properties") or {}
            args = {r: _example_value(props.get(r) or {}) for r in required}
            best = (len(required), fn["name"], args)
    return (best[1], best[2]) if best else None


def _system(nonce: str) -> dict[str, Any]:
    # the nonce comes first so no server can reuse a cached prompt prefix and under-report prompt tokens
    return {"role": "system", "content": f"Probe {nonce}. You are a helpful assistant that uses tools when asked."}


def _call_mode(reply: Reply) -> CallMode:
    if reply.outcome is Outcome.INFRA_ERROR:
        return "error"
    if reply.outcome is Outcome.SERVER_PARSE_ERROR:
        return "server_parse_error"
    if any(c.source == "tool_calls" for c in reply.tool_calls):
        return "structured"
    if reply.outcome is Outcome.LEAKED_TEXT_CALL or any(c.source == "text" for c in reply.tool_calls):
        return "leaked_text"
    if reply.error is not None and reply.response is None:
        return "error"
    return "no_call"


async def _ask(client: ChatClientLike, found: Preflight, probe: str, messages: list[dict[str, Any]],
               tools: list[dict[str, Any]], tool_choice: str | None, sampling: Sampling = _SAMPLING) -> Reply | None:
    try:
        reply = await client.chat(messages, tools, sampling, tool_choice=tool_choice)
    except Exception as exc:  # noqa: BLE001 - a probe that cannot run must not stop the comparison
        found.probes.append(ProbeReply(probe=probe, tool_choice=tool_choice, outcome="error", error=f"{type(exc).__name__}: {exc}"))
        found.warnings.append(f"preflight probe {probe} failed: {type(exc).__name__}: {exc}")
        return None
    content = reply.content[:200] if reply.content else None
    found.probes.append(ProbeReply(
        probe=probe, tool_choice=tool_choice, outcome=str(reply.outcome), content=content,
        calls=[f"{c.name} ({c.source})" for c in reply.tool_calls], prompt_tokens=reply.usage.prompt_tokens,
        finish_reason=reply.finish_reason, error=reply.error,
    ))
    if reply.outcome is Outcome.INFRA_ERROR:
        found.warnings.append(f"preflight probe {probe} got no answer: {reply.error or 'infrastructure error'}")
        return None
    return reply


async def _tools_in_prompt(client: ChatClientLike, found: Preflight, tools: list[dict[str, Any]]) -> None:
    user = {"role": "user", "content": "Reply with the single word: ready."}
    found.expected_tool_tokens = len(json.dumps(tools)) // 4
    # without tools first: a prefix cache can then only shrink the count of the request with tools
    bare = await _ask(client, found, "no_tools", [_system("A"), user], [], None, _COUNT_SAMPLING)
    full = await _ask(client, found, "with_tools", [_system("B"), user], tools, "auto", _COUNT_SAMPLING)
    if full is not None and full.outcome is not Outcome.OK and full.error and not full.tool_calls and full.content is None:
        found.warnings.append(f"the server refused a request that offers tools: {full.error}")
    without = bare.usage.prompt_tokens if bare is not None else None
    with_ = full.usage.prompt_tokens if full is not None else None
    found.prompt_tokens_without_tools, found.prompt_tokens_with_tools = without, with_
    if without is None or with_ is None:
        return
    delta = with_ - without
    found.tool_prompt_tokens = delta
    expected = found.expected_tool_tokens
    if delta < max(_DROPPED_MIN_TOKENS, _DROPPED_FRACTION * expected):
        found.tools_in_prompt = False
        found.warnings.append(
            f"the server's chat template dropped the tools: a request offering {len(tools)} tools used {with_} prompt "
            f"tokens, the same request without them {without}; the model never sees the tools, so no quant can call them"
        )
        return
    found.tools_in_prompt = True
    if delta < _PARTIAL_FRACTION * expected:
        found.warnings.append(
            f"the tools add only {delta} prompt tokens (about {expected} expected from their schemas): "
            "the chat template may render them only in part (names without parameters?)"
        )


async def _tool_choice(client: ChatClientLike, found: Preflight, tools: list[dict[str, Any]]) -> None:
    picked = _pick_tool(tools)
    if picked is None:
        return
    name, args = picked
    beg = {"role": "user", "content": f"Call the {name} tool now with these arguments: {json.dumps(args)}. Do not answer in text."}
    auto = await _ask(client, found, "call_auto", [_system("C"), beg], tools, "auto")
    if auto is not None:
        found.structured_calls = _call_mode(auto)
        structured = [c for c in auto.tool_calls if c.source == "tool_calls"]
        if structured:
            found.arguments_wire = "object" if isinstance(structured[0].raw_arguments, (dict, list)) else "string"
        if found.structured_calls == "leaked_text":
            found.warnings.append(
                "the tool call came back as plain text, not as `tool_calls`: either the server's tool-call parser does "
                "not match this model's output format (then every build on this server scores leaked_text_call), "
                "or this build writes its calls malformed"
            )
        elif found.structured_calls == "server_parse_error":
            found.warnings.append(f"the server failed to parse the model's tool call (HTTP 500): {auto.error}")
        elif found.structured_calls == "no_call" and found.tools_in_prompt is not False:
            found.warnings.append(
                f"{NO_CALL_WARNING} {name}, the model answered in text instead. If the runs below fail with "
                "missing_call on every build, check the server's tool-call support (llama-server needs --jinja); "
                "if they make calls, this probe was only a weak model ignoring one request"
            )

    none = await _ask(client, found, "call_none", [_system("D"), beg], tools, "none")
    if none is not None:
        called = any(c.source == "tool_calls" for c in none.tool_calls)
        if called:
            found.honours_tool_choice_none = False
            found.notes.append('the server ignores tool_choice "none": the model called a tool anyway')
        elif found.structured_calls == "structured":
            found.honours_tool_choice_none = True

    chat = {"role": "user", "content": "Hi! Just say hello back."}
    required = await _ask(client, found, "call_required", [_system("E"), chat], tools, "required")
    if required is not None and _call_mode(required) != "error":
        found.honours_tool_choice_required = any(c.source == "tool_calls" for c in required.tool_calls)
        if not found.honours_tool_choice_required:
            found.notes.append('tool_choice "required" is not enforced: the model answered in text')


async def preflight(
    target: Target, client: ChatClientLike, tools_sample: list[dict[str, Any]], *, provenance: Provenance | None = None
) -> dict[str, Any]:
    """Probe one target's server: do the tools reach the prompt, are calls structured, is tool_choice honoured.

    `tools_sample` is a list of OpenAI `tools` entries (a scenario's). The server facts (kind, build,
    template, context) come from `provenance`, probed here when not given. Returns `Preflight` as a dict.
    """
    found = Preflight()
    if provenance is None:
        from harness.servers import probe_provenance

        try:
            provenance = await asyncio.to_thread(probe_provenance, target)
        except Exception as exc:  # noqa: BLE001 - server facts are a nicety; the probes below still run
            found.warnings.append(f"could not read what the server says about itself: {exc}")
    if provenance is not None:
        found.server, found.server_version = provenance.server, provenance.server_version
        found.chat_template, found.context_length = provenance.chat_template, provenance.context_length
    if tools_sample:
        await _tools_in_prompt(client, found, tools_sample)
        await _tool_choice(client, found, tools_sample)
    # the caller shows the warnings to people; the log keeps them with the target bound
    for warning in found.warnings:
        log.info("preflight.warning", target=target.name, warning=warning)
    log.info("preflight.done", target=target.name, tools_in_prompt=found.tools_in_prompt,
             structured_calls=found.structured_calls, tool_choice_none=found.honours_tool_choice_none,
             tool_choice_required=found.honours_tool_choice_required)
    return found.model_dump(mode="json")


# -- confounds ----------------------------------------------------------------------------------

def confounds(provenances: dict[str, Provenance]) -> list[str]:
    """What differs between targets besides the quantization, each as one loud line.

    Only known values are compared (an unknown is not a difference); identical builds are named too.
    """
    from harness.compare import provenance_confounds

    return [c.message for c in provenance_confounds(provenances)[0]]


# -- what a person is told ------------------------------------------------------------------------

def served_model_warning(target: Target, served: list[str]) -> str | None:
    """A server that accepted `target.model` but serves something else (llama-server answers any name).

    `served` is what `GET /models` listed. None when the model is among them.
    """
    if target.provider == "litellm" or not served:
        return None
    wanted = target.model.lower()
    forms = set()
    for ident in served:
        base = ident.replace("\\", "/").rsplit("/", 1)[-1].lower()
        forms |= {ident.lower(), base, base.removesuffix(".gguf"), ident.lower().removesuffix(":latest")}
    if wanted in forms:
        return None
    which = served[0] if len(served) == 1 else ", ".join(served)
    return (f"you asked for model {target.model!r}, but the server at {target.base_url} serves {which!r} and answers "
            f"every request with it whatever the name; reports call it {target.name!r}. If that is not the build "
            "you meant, point --base-url at the right server")


def group_warnings(by_target: dict[str, list[str]]) -> list[tuple[str, list[str]]]:
    """Each distinct warning once, with the targets it applies to, in first-seen order."""
    grouped: dict[str, list[str]] = {}
    for name, warnings in by_target.items():
        for warning in warnings:
            names = grouped.setdefault(warning, [])
            if name not in names:
                names.append(name)
    return list(grouped.items())


# warnings about whether tool calls can work at all, which a run full of structured calls answers
_SETTLED_BY_CALLS = (NO_CALL_WARNING, "the GGUF carries no chat template", "the server's chat template dropped the tools")


def _structured_calls(records: list[Any]) -> int:
    return sum(1 for r in records for step in r.trajectory.steps for c in step.reply.tool_calls if c.source == "tool_calls")


def meaningless_targets(results: Any) -> list[str]:
    """Targets whose server dropped the tools from the prompt (preflight) and whose runs made no structured call.

    Such a run grades a model that never saw the tools: every number in it says nothing about the model.
    """
    out = []
    for name in results.targets():
        prov = results.provenance(name)
        if prov.preflight.get("tools_in_prompt") is False and not _structured_calls(results.for_target(name)):
            out.append(name)
    return out


def settle_warnings(results: Any) -> int:
    """Soften the preflight's "answered in text" warning of each target whose runs did make tool calls.

    One probe is one request; a run with structured calls shows the server parses them. Changes the
    provenance in `results` in place (the file keeps what the probe said); returns how many it softened.
    """
    softened = 0
    for name in results.targets():
        prov = results.provenance(name)
        calls = _structured_calls(results.for_target(name))
        if not calls:
            continue
        kept = []
        for warning in prov.warnings:
            if warning.startswith(_SETTLED_BY_CALLS):
                softened += 1
                continue
            kept.append(warning)
        if len(kept) != len(prov.warnings):
            prov.warnings = kept
            note = (f"a preflight doubt about tool calling was dropped: the runs made {calls} structured tool "
                    "call(s), so tool calling works on this server")
            notes = prov.preflight.setdefault("notes", [])
            if note not in notes:
                notes.append(note)
    return softened


_SCALE = {"": 1.0, "K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12}


def parameter_count(provenance: Provenance) -> str | None:
    """The parameter count as one comparable label, so two servers' labels of one model agree.

    llama.cpp's GGUF says `270M` (general.size_label) where Ollama says `268.10M`: the exact count
    both also report (GGUF tensors, Ollama's general.parameter_count) is used first, else the label;
    either way shown at two significant figures (`270M`). Labels that are not a count (`8x7B`) stay.
    """
    import math
    import re

    gguf = provenance.extra.get("gguf") if isinstance(provenance.extra.get("gguf"), dict) else {}
    exact = next((v for v in (provenance.extra.get("parameter_count"), gguf.get("parameters"))
                  if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0), None)
    label = provenance.parameter_size
    count: float | None = float(exact) if exact is not None else None
    if count is None and label:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMBGT]?)\s*", label, re.IGNORECASE)
        if match is None:
            return label
        count = float(match.group(1)) * _SCALE[match.group(2).upper()]
    if not count:
        return label or None
    rounded = round(count, -int(math.floor(math.log10(count))) + 1)
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if rounded >= scale:
            return f"{rounded / scale:g}{unit}"
    return f"{rounded:g}"
