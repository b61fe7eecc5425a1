"""Which server is behind an OpenAI-compatible URL, and what it says about the build it serves.

llama.cpp answers `/props`, Ollama `/api/version`, vLLM `/version` with `owned_by: "vllm"` and
`max_model_len` in `/v1/models`; anything else is a plain OpenAI-compatible server. The answers
fill a `Provenance`, so two targets can be checked for differences other than the quant.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import structlog

from harness.records import Provenance, Target

__all__ = ["ServerKind", "detect_server", "probe_provenance", "quantization_from_name"]

log = structlog.get_logger("harness.servers")

ServerKind = Literal["llama.cpp", "ollama", "vllm", "openai-compatible"]

_TIMEOUT = httpx.Timeout(10.0, connect=5.0)

_OTHER_OWNERS = frozenset({"sglang", "llamacpp"})
"""`owned_by` values other servers write into their model cards."""

# GGUF file types and the usual names of vLLM/HF quantization schemes, as they appear in file and repo names
_QUANT_NAME = re.compile(
    r"(?<![A-Za-z0-9])("
    r"I?Q\d_(?:K_)?[A-Z0-9]+|Q\d_K|Q\d_\d|TQ\d_\d"
    r"|BF16|F16|F32|FP16|FP8(?:[-_]dynamic)?|NVFP4|MXFP4"
    r"|AWQ|GPTQ(?:[-_]Int[48])?|W\d+A\d+|INT[48]|bnb[-_]4bit|EXL2"
    r")(?![A-Za-z0-9])",
    re.IGNORECASE,
)


def quantization_from_name(name: str | None) -> str | None:
    """The quantization a file or repo name announces (`...-Q4_K_M.gguf` -> `Q4_K_M`, `...-AWQ` -> `AWQ`)."""
    if not name:
        return None
    found = _QUANT_NAME.findall(Path(name).name) or _QUANT_NAME.findall(name)
    return found[-1].upper() if found else None


def _root(base_url: str) -> str:
    url = base_url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def _template_id(template: str | None, label: str) -> str | None:
    return f"{label} ({hashlib.sha256(template.encode()).hexdigest()[:12]})" if template else None


@dataclass
class _Answers:
    """What the probed endpoints said (None: no JSON answer)."""

    root: str
    reachable: bool = False
    props: dict[str, Any] | None = None
    ollama_version: dict[str, Any] | None = None
    version: dict[str, Any] | None = None
    models: list[dict[str, Any]] = field(default_factory=list)


def _get_json(http: httpx.Client, url: str, answers: _Answers) -> Any:
    try:
        r = http.get(url)
    except httpx.HTTPError:
        return None
    answers.reachable = True
    if r.status_code != 200:
        return None
    try:
        return r.json()
    except ValueError:
        return None


def _ask(http: httpx.Client, base_url: str) -> tuple[ServerKind, _Answers]:
    answers = _Answers(root=_root(base_url))
    root = answers.root
    props = _get_json(http, f"{root}/props", answers)
    if not answers.reachable:
        return "openai-compatible", answers
    if isinstance(props, dict) and ("default_generation_settings" in props or "build_info" in props):
        answers.props = props
    else:
        version = _get_json(http, f"{root}/api/version", answers)
        if isinstance(version, dict) and "version" in version:
            answers.ollama_version = version
    models = _get_json(http, f"{root}/v1/models", answers)
    if isinstance(models, dict) and isinstance(models.get("data"), list):
        answers.models = [m for m in models["data"] if isinstance(m, dict)]
    if answers.props is not None:
        return "llama.cpp", answers
    if answers.ollama_version is not None:
        return "ollama", answers
    version = _get_json(http, f"{root}/version", answers)
    if isinstance(version, dict) and "version" in version:
        answers.version = version
    owners = {m.get("owned_by") for m in answers.models}
    has_len = any("max_model_len" in m for m in answers.models)
    # SGLang's model cards carry max_model_len too, but name their server in owned_by
    if "vllm" in owners or (has_len and answers.version is not None and not owners & _OTHER_OWNERS):
        return "vllm", answers
    if any(m.get("owned_by") == "llamacpp" for m in answers.models):
        return "llama.cpp", answers
    return "openai-compatible", answers


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def detect_server(base_url: str, *, api_key: str | None = None) -> ServerKind:
    """`llama.cpp`, `ollama`, `vllm`, or `openai-compatible` when the server does not say (or does not answer)."""
    with httpx.Client(timeout=_TIMEOUT, headers=_headers(api_key)) as http:
        kind, _ = _ask(http, base_url)
    return kind


def _entry(models: list[dict[str, Any]], model: str) -> dict[str, Any]:
    return next((m for m in models if m.get("id") == model), models[0] if models else {})


def _llamacpp(target: Target, answers: _Answers) -> Provenance:
    props = answers.props or {}
    settings = props.get("default_generation_settings") or {}
    model_path = props.get("model_path") or settings.get("model")
    # the full picture (GGUF metadata, file hash) needs the file; it is there when the server runs here
    if model_path and Path(model_path).is_file():
        try:
            from harness.llamacpp import llama_provenance

            return llama_provenance(target.base_url, model_path)
        except Exception as exc:  # noqa: BLE001 - fall back to what /props says
            log.warning("servers.llama_provenance_failed", target=target.name, error=str(exc))
    entry = _entry(answers.models, target.model)
    meta = entry.get("meta") or {}
    template = props.get("chat_template_tool_use") or props.get("chat_template")
    caps = props.get("chat_template_caps") or {}
    warnings = []
    if caps and not caps.get("supports_tools", caps.get("supports_tool_calls", True)):
        warnings.append("the chat template does not render tools: llama-server will ignore `tools`")
    n_params = meta.get("n_params")
    return Provenance(
        server="llama.cpp",
        server_version=props.get("build_info"),
        model_id=entry.get("id") or props.get("model_alias"),
        quantization=quantization_from_name(model_path),
        parameter_size=f"{n_params / 1e9:.2g}B" if isinstance(n_params, (int, float)) and n_params else None,
        file_path=model_path,
        file_size_bytes=meta.get("size"),
        context_length=settings.get("n_ctx") or meta.get("n_ctx"),
        chat_template=_template_id(template, "server"),
        capabilities=sorted(k.removeprefix("supports_") for k, v in caps.items() if v is True),
        warnings=warnings,
        extra={"quantization_source": "file name", "n_ctx_train": meta.get("n_ctx_train"),
               "total_slots": props.get("total_slots"), "modalities": props.get("modalities")},
    )


def _ollama(target: Target, answers: _Answers) -> Provenance:
    from harness.ollama import OllamaError, ollama_provenance

    try:
        return ollama_provenance(target.model, answers.root)
    except OllamaError as exc:
        return Provenance(server="ollama", server_version=(answers.ollama_version or {}).get("version"),
                          model_id=target.model, warnings=[f"Ollama could not describe {target.model!r}: {exc}"])


def _metrics_info(http: httpx.Client, root: str) -> dict[str, dict[str, str]]:
    """The `vllm:*_info` gauges of `/metrics`, whose labels carry configuration (cache dtype, block size)."""
    try:
        r = http.get(f"{root}/metrics")
    except httpx.HTTPError:
        return {}
    if r.status_code != 200:
        return {}
    info: dict[str, dict[str, str]] = {}
    for line in r.text.splitlines():
        match = re.match(r"^(vllm:\w+_info)\{(.*)\}\s", line)
        if match and match.group(1) not in info:
            info[match.group(1)] = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2)))
    return info


def _vllm(target: Target, answers: _Answers, http: httpx.Client) -> Provenance:
    entry = _entry(answers.models, target.model)
    source = entry.get("root") or entry.get("id")
    info = _metrics_info(http, answers.root)
    cache = info.get("vllm:cache_config_info", {})
    extra: dict[str, Any] = {"owned_by": entry.get("owned_by"), "root": entry.get("root"), "parent": entry.get("parent")}
    if cache.get("cache_dtype"):
        extra["kv_cache_dtype"] = cache["cache_dtype"]
    if info:
        extra["metrics_info"] = info
    quant = quantization_from_name(source)
    if quant:
        extra["quantization_source"] = "model name"
    return Provenance(
        server="vllm",
        server_version=(answers.version or {}).get("version"),
        model_id=entry.get("id"),
        quantization=quant,
        file_path=entry.get("root"),
        context_length=entry.get("max_model_len"),
        extra=extra,
    )


def _generic(target: Target, answers: _Answers) -> Provenance:
    entry = _entry(answers.models, target.model)
    quant = quantization_from_name(entry.get("id") or target.model)
    return Provenance(
        server="openai-compatible",
        model_id=entry.get("id"),
        quantization=quant,
        warnings=[
            "server kind not recognised (not llama.cpp, Ollama or vLLM): its chat template, build and "
            "context length cannot be read, so differences between targets there cannot be ruled out"
        ],
        extra={"owned_by": entry.get("owned_by"), **({"quantization_source": "model name"} if quant else {})},
    )


def probe_provenance(target: Target) -> Provenance:
    """What the server behind `target` says about itself and the model it serves.

    Never raises for a server that is down or says little: the gaps become warnings.
    """
    with httpx.Client(timeout=_TIMEOUT, headers=_headers(target.api_key)) as http:
        kind, answers = _ask(http, target.base_url)
        if not answers.reachable:
            return Provenance(server="unknown", warnings=[f"nothing answered at {answers.root}: provenance unknown"])
        if kind == "llama.cpp":
            prov = _llamacpp(target, answers)
        elif kind == "ollama":
            prov = _ollama(target, answers)
        elif kind == "vllm":
            prov = _vllm(target, answers, http)
        else:
            prov = _generic(target, answers)
    ids = [m.get("id") for m in answers.models if m.get("id")]
    # llama-server serves one model whatever the request says; elsewhere a wrong id is a 404 on every step
    if ids and kind != "llama.cpp" and target.model not in ids:
        prov.warnings.append(f"the server lists no model {target.model!r}; it serves: {', '.join(ids)}")
    log.info("servers.probed", target=target.name, server=prov.server, version=prov.server_version,
             quantization=prov.quantization, context_length=prov.context_length)
    return prov
