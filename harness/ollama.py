"""Ollama tags as comparison targets: resolve each tag to a `Target` on Ollama's OpenAI-compatible
endpoint and a `Provenance` from its native API (digest, quantization, capabilities, placement).

Runs before any timing: optionally pulls missing tags, then preloads each one with `keep_alive` so
the first scenario does not pay the load, and reads `/api/ps` to see whether it spilled to the CPU.
"""

from __future__ import annotations

import difflib
import hashlib
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import ollama
import structlog

from harness.records import Provenance, Target

__all__ = [
    "DEFAULT_HOST",
    "OPENAI_COMPAT_NOTES",
    "OllamaError",
    "OllamaUnreachable",
    "OllamaModelError",
    "normalise_host",
    "tag_labels",
    "ollama_provenance",
    "model_tags",
    "resolve_ollama_targets",
]

log = structlog.get_logger("harness.ollama")

DEFAULT_HOST = "http://localhost:11434"

OPENAI_COMPAT_NOTES = (
    "Ollama's /v1 layer ignores tool_choice: `none` and `required` act like `auto`",
    "temperature and top_p default to 1.0 there when omitted (the harness always sends them)",
    "tool-call arguments come back as a JSON string, and content as \"\" (not null) next to a call",
)
"""What Ollama's OpenAI-compatible layer does differently; recorded with every Ollama target."""

_META_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
# pulls and cold loads of big models take minutes; only the connect must be quick
_SLOW_TIMEOUT = httpx.Timeout(900.0, connect=5.0)


class OllamaError(Exception):
    """Ollama could not give the harness what it needs; the message says what to do."""

    exit_code: int = 3
    """The CLI's exit code (3 = infrastructure, as `harness.cli.ExitCode.INFRA`)."""


class OllamaUnreachable(OllamaError):
    """Nothing that speaks Ollama's API answers at the host."""

    exit_code = 3


class OllamaModelError(OllamaError):
    """A tag is not there (and was not pulled), or could not be pulled or shown."""

    exit_code = 2
    """Bad input (as `harness.cli.ExitCode.BAD_INPUT`)."""


def normalise_host(host: str | None = None) -> str:
    """`localhost`, `0.0.0.0:11434`, `http://box:11434/`, `http://box:11434/v1` -> `http://host:port`.

    A host without a scheme gets `http://` and, without a port, Ollama's 11434 (as OLLAMA_HOST does).
    """
    raw = (host or DEFAULT_HOST).strip()
    had_scheme = "://" in raw
    parts = urlsplit(raw if had_scheme else f"http://{raw}")
    netloc = parts.netloc or "localhost"
    if parts.port is None and not had_scheme:
        netloc = f"{netloc}:11434"
    path = parts.path.rstrip("/")
    path = path[: -len("/v1")] if path.endswith("/v1") else path
    return f"{parts.scheme}://{netloc}{path}"


def _canonical(tag: str) -> str:
    """Ollama's default tag is `latest`: `llama3.2` and `llama3.2:latest` are one model."""
    last = tag.rsplit("/", 1)[-1]
    return tag if ":" in last else f"{tag}:latest"


def _say(progress: Callable[[str], Any] | None, message: str) -> None:
    log.debug("ollama.progress", message=message)
    if progress is not None:
        progress(message)


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def tag_labels(tags: list[str], quantizations: dict[str, str | None] | None = None) -> dict[str, str]:
    """Short, unique report labels for tags of one model.

    `qwen2.5:7b-instruct-q4_K_M` -> `q4_K_M` (the part after the last `-`); a tag with no `-`
    (`llama3.2:3b`, `:latest`) gets its quantization level; clashes fall back to the whole tag.
    """
    quantizations = quantizations or {}
    wanted: dict[str, str] = {}
    for tag in tags:
        name = _canonical(tag).rsplit(":", 1)[-1]
        label = name.rsplit("-", 1)[-1] if "-" in name else ""
        if not label or label == "latest":
            label = quantizations.get(tag) or name
        wanted[tag] = label
    counts: dict[str, int] = {}
    for label in wanted.values():
        counts[label] = counts.get(label, 0) + 1
    labels = {tag: (label if counts[label] == 1 else tag) for tag, label in wanted.items()}
    # a short label can still equal another tag's whole name: number the later one
    seen: dict[str, int] = {}
    for tag, label in labels.items():
        n = seen.get(label, 0)
        seen[label] = n + 1
        if n:
            labels[tag] = f"{label}-{n + 1}"
    return labels


def _num_ctx(parameters: str | None) -> int | None:
    match = re.search(r"^\s*num_ctx\s+(\d+)", parameters or "", re.MULTILINE)
    return int(match.group(1)) if match else None


def _trained_context(model_info: dict[str, Any] | None) -> int | None:
    info = model_info or {}
    arch = info.get("general.architecture")
    value = info.get(f"{arch}.context_length") if arch else None
    if value is None:
        value = next((v for k, v in info.items() if k.endswith(".context_length")), None)
    return int(value) if isinstance(value, (int, float)) else None


class _Ollama:
    """One host: the `ollama` client for the native API, with its errors turned into `OllamaError`s."""

    def __init__(self, host: str):
        self.host = host
        self.meta = ollama.Client(host=host, timeout=_META_TIMEOUT)
        self.slow = ollama.Client(host=host, timeout=_SLOW_TIMEOUT)

    def close(self) -> None:
        self.meta.close()
        self.slow.close()

    def _call(self, what: str, fn: Callable[[], Any], tag: str | None = None) -> Any:
        try:
            return fn()
        except ConnectionError as exc:  # the ollama client's own, raised on connect failure
            raise OllamaUnreachable(
                f"cannot reach Ollama at {self.host} ({what}): is `ollama serve` running there? "
                "Set --ollama-host or OLLAMA_HOST to where it listens."
            ) from exc
        except httpx.TimeoutException as exc:
            raise OllamaUnreachable(f"Ollama at {self.host} did not answer {what} in time ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise OllamaUnreachable(f"cannot talk to Ollama at {self.host} ({what}): {exc}") from exc
        except ollama.ResponseError as exc:
            if tag is not None and exc.status_code == 404:
                raise OllamaModelError(f"Ollama at {self.host} has no model {tag!r} ({exc.error})") from exc
            if exc.status_code == 404:
                raise OllamaUnreachable(
                    f"{self.host} answered 404 to {what}: this does not look like an Ollama server "
                    "(for llama.cpp or vLLM use --target NAME=URL@MODEL instead)"
                ) from exc
            who = f" for {tag!r}" if tag else ""
            status = f" (HTTP {exc.status_code})" if exc.status_code > 0 else ""
            raise OllamaModelError(f"Ollama at {self.host} refused {what}{who}: {exc.error}{status}") from exc

    def version(self) -> str | None:
        # the python client has no version call; /api/version is documented and tiny
        try:
            r = httpx.get(f"{self.host}/api/version", timeout=_META_TIMEOUT)
            return r.json().get("version") if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError, AttributeError):
            return None

    def list(self) -> dict[str, Any]:
        listed = self._call("GET /api/tags", self.meta.list)
        return {_canonical(m.model): m for m in listed.models if m.model}

    def show(self, tag: str) -> Any:
        return self._call("POST /api/show", lambda: self.meta.show(tag), tag=tag)

    def running(self, tag: str) -> Any | None:
        ps = self._call("GET /api/ps", self.meta.ps)
        key = _canonical(tag)
        return next((m for m in ps.models if _canonical(m.model or m.name or "") == key), None)

    def pull(self, tag: str, progress: Callable[[str], Any] | None) -> None:
        def run() -> None:
            last_status, last_decile = None, -1
            for part in self.slow.pull(tag, stream=True):
                status = part.status or ""
                decile = int(10 * part.completed / part.total) if part.total and part.completed is not None else -1
                if status != last_status or decile > last_decile:
                    pct = f" {100 * part.completed / part.total:.0f}%" if decile >= 0 else ""
                    _say(progress, f"pull {tag}: {status}{pct}")
                last_status, last_decile = status, decile

        self._call("POST /api/pull", run, tag=tag)

    def preload(self, tag: str, keep_alive: str | int) -> None:
        # an empty prompt only loads the model (done_reason "load"), and keep_alive holds it there
        self._call("POST /api/generate (preload)", lambda: self.slow.generate(model=tag, prompt="", keep_alive=keep_alive), tag=tag)


def _provenance(tag: str, listed: Any, shown: Any, version: str | None) -> Provenance:
    details = shown.details or (listed.details if listed is not None else None)
    model_info = dict(shown.modelinfo or {})
    capabilities = list(shown.capabilities or [])
    template = shown.template or ""
    num_ctx = _num_ctx(shown.parameters)
    trained = _trained_context(model_info)
    warnings: list[str] = []
    if shown.capabilities is not None and "tools" not in capabilities:
        warnings.append(
            f"{tag}: Ollama lists no `tools` capability ({', '.join(capabilities) or 'none'}): it rejects requests "
            "that offer tools (HTTP 400 'does not support tools'), so every step will fail"
        )
    return Provenance(
        server="ollama",
        server_version=version,
        model_id=tag,
        quantization=details.quantization_level if details else None,
        parameter_size=details.parameter_size if details else None,
        family=details.family if details else None,
        digest=listed.digest if listed is not None else None,
        file_size_bytes=int(listed.size) if listed is not None and listed.size is not None else None,
        context_length=num_ctx,
        chat_template=f"ollama ({hashlib.sha256(template.encode()).hexdigest()[:12]})" if template else None,
        capabilities=capabilities,
        warnings=warnings,
        extra={
            "ollama_tag": tag,
            "format": details.format if details else None,
            "num_ctx": num_ctx,
            "context_length_trained": trained,
            "parameter_count": model_info.get("general.parameter_count"),
            "parameters": shown.parameters,
            "openai_compat_notes": list(OPENAI_COMPAT_NOTES),
        },
    )


def _placement(prov: Provenance, tag: str, running: Any | None) -> None:
    """Fill memory, VRAM and the served context from `/api/ps`; warn when the model spills to the CPU."""
    if running is None:
        return
    size = int(running.size) if running.size is not None else None
    vram = int(running.size_vram) if running.size_vram is not None else None
    prov.memory_bytes, prov.vram_bytes = size, vram
    if running.context_length:
        prov.context_length = running.context_length
    if size and vram is not None and vram < size:
        on_cpu = 100 * (size - vram) / size
        where = "runs entirely on the CPU" if vram == 0 else f"does not fit on the GPU: {on_cpu:.0f}% of it runs on the CPU"
        prov.warnings.append(
            f"{tag} {where} ({_gib(vram)} of {_gib(size)} in VRAM): it is slow, and its latency "
            "is not comparable with a tag that is fully on the GPU"
        )
        log.info("ollama.spill", tag=tag, size=size, size_vram=vram)


def ollama_provenance(tag: str, host: str = DEFAULT_HOST) -> Provenance:
    """What Ollama says about one tag it has, without pulling or loading anything."""
    api = _Ollama(normalise_host(host))
    try:
        listed = api.list().get(_canonical(tag))
        prov = _provenance(tag, listed, api.show(tag), api.version())
        _placement(prov, tag, api.running(tag))
        return prov
    finally:
        api.close()


def model_tags(model: str, host: str = DEFAULT_HOST) -> list[str]:
    """The local tags of one model: `qwen2.5:7b` -> `qwen2.5:7b`, `qwen2.5:7b-instruct-q4_K_M`, ...; `qwen2.5` -> all of it."""
    name, _, variant = model.partition(":")
    api = _Ollama(normalise_host(host))
    try:
        local = api.list()
    finally:
        api.close()
    found = []
    for tag in local:
        tag_name, _, tag_variant = tag.partition(":")
        if tag_name == name and (not variant or tag_variant == variant or tag_variant.startswith(variant + "-")):
            found.append(tag)
    return sorted(found)


def resolve_ollama_targets(
    tags: list[str],
    host: str = DEFAULT_HOST,
    *,
    pull: bool = False,
    preload: bool = True,
    keep_alive: str | int = "30m",
    progress: Callable[[str], Any] | None = None,
) -> list[tuple[Target, Provenance]]:
    """Turn Ollama tags into targets on `{host}/v1`, each with what Ollama says about its build.

    Missing tags are pulled with `pull=True` (progress goes to `progress`), else they are an error
    that lists the tags the server has. With `preload`, each tag is loaded before any timing and
    held for `keep_alive`; `/api/ps` then tells whether it spilled to the CPU.
    """
    if not tags:
        raise OllamaModelError("no Ollama tags given")
    twice = sorted({t for t in tags if [_canonical(u) for u in tags].count(_canonical(t)) > 1})
    if twice:
        raise OllamaModelError(f"Ollama tag(s) given more than once: {', '.join(twice)}")
    base = normalise_host(host)
    api = _Ollama(base)
    try:
        local = api.list()
        missing = [t for t in tags if _canonical(t) not in local]
        if missing and not pull:
            names = sorted(m.model for m in local.values())
            have = ", ".join(names) or "none"
            # a near miss is a typo, and pulling the typo would not help
            close = [(t, difflib.get_close_matches(t, names, n=1, cutoff=0.8)) for t in missing]
            typos = "; ".join(f"did you mean {c[0]!r} for {t!r}?" for t, c in close if c)
            raise OllamaModelError(
                f"Ollama at {base} does not have {', '.join(repr(t) for t in missing)}; "
                f"it has: {have}. " + (f"{typos[0].upper()}{typos[1:]} " if typos else "")
                + "Pull with `ollama pull <tag>` or pass --pull."
            )
        for tag in missing:
            _say(progress, f"pulling {tag} ...")
            api.pull(tag, progress)
        if missing:
            local = api.list()
        version = api.version()

        provs: dict[str, Provenance] = {}
        for tag in tags:
            prov = _provenance(tag, local.get(_canonical(tag)), api.show(tag), version)
            if preload:
                _say(progress, f"loading {tag} (keep_alive {keep_alive}) ...")
                started = time.perf_counter()
                try:
                    api.preload(tag, keep_alive)
                except OllamaModelError as exc:
                    prov.warnings.append(f"{tag} could not be preloaded: {exc}")
                else:
                    prov.extra["load_s"] = round(time.perf_counter() - started, 2)
                    # read placement right away: loading the next tag may evict this one
                    _placement(prov, tag, api.running(tag))
            provs[tag] = prov
            log.info("ollama.resolved", tag=tag, quantization=prov.quantization, digest=(prov.digest or "")[:12],
                     capabilities=prov.capabilities, warnings=len(prov.warnings))
    finally:
        api.close()

    labels = tag_labels(tags, {t: p.quantization for t, p in provs.items()})
    return [(Target(name=labels[tag], base_url=f"{base}/v1", model=tag), provs[tag]) for tag in tags]
