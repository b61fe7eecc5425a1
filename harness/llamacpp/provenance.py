"""What a running llama-server and its GGUF say about themselves, as a `Provenance` record."""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path
from typing import Any

import httpx

from harness.llamacpp._common import CHAT_TEMPLATE, LlamaError, _file_sha256
from harness.llamacpp.binaries import LlamaBinaries
from harness.llamacpp.gguf_header import _param_label, gguf_metadata
from harness.llamacpp.ladder import rung_info
from harness.records import Provenance

__all__ = ["llama_provenance"]


def _root_url(server_url: str) -> str:
    url = server_url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def llama_provenance(server_url: str, model_path: Path | str, binaries: LlamaBinaries | None = None) -> Provenance:
    """What the running llama-server and its GGUF say about themselves, for the disclosure block."""
    root = _root_url(server_url)
    model_path = Path(model_path)
    warnings: list[str] = []
    props: dict[str, Any] = {}
    model_info: dict[str, Any] = {}
    try:
        with httpx.Client(timeout=10.0) as client:
            props = client.get(root + "/props").raise_for_status().json()
            models = client.get(root + "/v1/models").raise_for_status().json()
            model_info = (models.get("data") or [{}])[0]
    except (httpx.HTTPError, ValueError) as exc:
        warnings.append(f"could not read /props or /v1/models from {root}: {exc}")
    meta = gguf_metadata(model_path)
    info = rung_info(model_path)

    template = props.get("chat_template_tool_use") or props.get("chat_template") or ""
    template_hash = hashlib.sha256(template.encode()).hexdigest()[:12] if template else None
    template_name = None
    if binaries is not None and template:
        with contextlib.suppress(LlamaError, OSError):
            if binaries.chat_template().read_text(encoding="utf-8").strip() == template.strip():
                template_name = CHAT_TEMPLATE.removesuffix(".jinja")
    caps = props.get("chat_template_caps") or {}
    capabilities = sorted(k.removeprefix("supports_") for k, v in caps.items() if v is True)
    if caps and not caps.get("supports_tools", caps.get("supports_tool_calls", True)):
        warnings.append("the chat template does not render tools: llama-server will ignore `tools`")
    if not meta["has_chat_template"] and not template_name:
        warnings.append("the GGUF carries no chat template of its own, so llama-server used one from its command line "
                        "(--chat-template-file) or its built-in default, and the harness could not tell which; if tool "
                        "calls fail on every build alike, start llama-server with --jinja --chat-template-file <template>")

    extra: dict[str, Any] = {"gguf": meta, "model_ftype": props.get("model_ftype"), "total_slots": props.get("total_slots")}
    if binaries is not None:
        extra["binaries"] = {"built_from": binaries.built_from, "server": str(binaries.server), "source": binaries.source}
    if info is not None:
        extra["made_from"] = {"file": info.source_file, "sha256": info.source_sha256, "quant": info.quant}
        if info.imatrix_sha256:
            extra["imatrix_sha256"] = info.imatrix_sha256
    if info is not None and info.requantized_from:
        extra["requantized_from"] = info.requantized_from
        extra["requantized_direction"] = info.direction
        extra["source_sha256"] = info.source_sha256
        if info.direction == "up":
            warnings.append(
                f"{info.quant} was requantized up from a {info.requantized_from} file: it keeps {info.requantized_from}'s "
                "rounding error, so it is a format reference, not a higher-precision one"
            )
        else:
            warnings.append(f"{info.quant} was requantized from a {info.requantized_from} file, not from the original weights")
    if meta["imatrix"]:
        extra["imatrix"] = meta["imatrix"]

    n_ctx = (props.get("default_generation_settings") or {}).get("n_ctx") or (model_info.get("meta") or {}).get("n_ctx")
    return Provenance(
        server="llama.cpp",
        server_version=props.get("build_info") or (binaries.version if binaries else None),
        model_id=model_info.get("id") or props.get("model_alias"),
        quantization=meta["file_type"],
        parameter_size=meta["size_label"] or _param_label(meta["parameters"]),
        family=meta["architecture"],
        digest=_file_sha256(model_path),
        file_path=str(model_path.resolve()),
        file_size_bytes=model_path.stat().st_size,
        context_length=n_ctx,
        chat_template=f"{template_name or 'custom'} ({template_hash})" if template_hash else None,
        capabilities=capabilities,
        imatrix=meta["imatrix"].get("dataset") or meta["imatrix"].get("file") if meta["imatrix"] else None,
        warnings=warnings,
        extra=extra,
    )
