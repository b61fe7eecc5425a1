"""A fake Ollama server on localhost, replaying the documented shapes of its native and /v1 APIs.

    with FakeOllama([OllamaModel("qwen2.5:7b-instruct-q4_K_M")]) as server:
        targets = resolve_ollama_targets(["qwen2.5:7b-instruct-q4_K_M"], host=server.root_url)

Native: `/api/version`, `/api/tags`, `/api/show`, `/api/ps`, `/api/pull` (NDJSON progress),
`/api/generate` (an empty prompt loads the model). OpenAI-compatible: `/v1/models` and
`/v1/chat/completions` the way Ollama answers (arguments as a JSON string, content "" next to a
call, tool_choice ignored). Built on `tests.fakeserver.FakeServer`: real HTTP, every request recorded.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from tests.fakeserver import Canned, FakeServer

__all__ = ["OllamaModel", "FakeOllama", "OLLAMA_VERSION"]

OLLAMA_VERSION = "0.6.8"

_TEMPLATE = (
    "{{- if .Messages }}{{- if or .System .Tools }}<|im_start|>system\n{{ .System }}"
    "{{- if .Tools }}\n\n# Tools\n<tools>{{- range .Tools }}\n{{ . }}{{- end }}\n</tools>{{- end }}<|im_end|>\n"
    "{{ end }}{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}{{ end }}"
)
_TEMPLATE_NO_TOOLS = (
    "{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
)
_BEG = re.compile(r"Call the (\S+) tool now with these arguments: (\{.*\})\. Do not", re.DOTALL)


@dataclass
class OllamaModel:
    """One tag the fake knows, with what `/api/show`, `/api/ps` and the chat endpoint say about it."""

    tag: str
    quantization: str = "Q4_K_M"
    family: str = "qwen2"
    parameter_size: str = "7.6B"
    capabilities: list[str] = field(default_factory=lambda: ["completion", "tools"])
    size: int = 4_683_087_332
    """Bytes on disk (`/api/tags`) and, loaded, in memory (`/api/ps`)."""
    vram_fraction: float = 1.0
    """Share of `size` that lands in VRAM when loaded: below 1.0 the model spills to the CPU."""
    context_length: int = 4096
    """What `/api/ps` reports as served context."""
    trained_context: int = 32768
    num_ctx: int | None = None
    """A `num_ctx` PARAMETER in the Modelfile, when set."""
    drop_tools: bool = False
    """The template renders no tools: prompt tokens do not change when tools are offered."""
    leak: bool = False
    """The model's call comes back as text in content (the server's parser missed it)."""

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.tag.encode()).hexdigest()

    @property
    def template(self) -> str:
        return _TEMPLATE_NO_TOOLS if self.drop_tools else _TEMPLATE

    def details(self) -> dict[str, Any]:
        return {"parent_model": "", "format": "gguf", "family": self.family, "families": [self.family],
                "parameter_size": self.parameter_size, "quantization_level": self.quantization}


class FakeOllama(FakeServer):
    """An Ollama server: `models` are local, `registry` can be pulled, `loaded` is what `/api/ps` lists."""

    def __init__(self, models: list[OllamaModel] | None = None, *, registry: list[OllamaModel] | None = None,
                 version: str = OLLAMA_VERSION):
        super().__init__(models=[])
        self.local: dict[str, OllamaModel] = {_full(m.tag): m for m in models or []}
        self.registry: dict[str, OllamaModel] = {_full(m.tag): m for m in registry or []}
        self.loaded: dict[str, dict[str, Any]] = {}
        """Tag -> the keep_alive it was loaded with."""
        self.version = version
        self._state = threading.Lock()
        self.route("/api/version", lambda _: {"version": self.version})
        self.route("/api/tags", lambda _: self._tags())
        self.route("/api/show", self._show, method="POST")
        self.route("/api/ps", lambda _: self._ps())
        self.route("/api/pull", self._pull, method="POST")
        self.route("/api/generate", self._generate, method="POST")
        self.route("/v1/models", lambda _: {"object": "list", "data": [
            {"id": m.tag, "object": "model", "created": 1_700_000_000, "owned_by": "library"} for m in self.local.values()]})
        # Go's mux answers unknown paths with a plain-text 404
        for path in ("/props", "/version", "/models"):
            self.route(path, Canned(status=404, text="404 page not found"))
        self.responder = self._chat

    def requests_to(self, path: str) -> list[Any]:
        """JSON bodies of the requests to one path."""
        return [r.json for r in self.requests if r.path == path]

    # -- native API ---------------------------------------------------------------------------

    def _model(self, name: Any) -> OllamaModel | None:
        return self.local.get(_full(str(name or "")))

    def _not_found(self, name: Any) -> Canned:
        return Canned(status=404, body={"error": f"model '{name}' not found"})

    def _tags(self) -> dict[str, Any]:
        return {"models": [
            {"name": m.tag, "model": m.tag, "modified_at": "2025-05-01T10:00:00.000000+02:00", "size": m.size,
             "digest": m.digest, "details": m.details()} for m in self.local.values()]}

    def _show(self, body: Any) -> Any:
        model = self._model((body or {}).get("model"))
        if model is None:
            return self._not_found((body or {}).get("model"))
        parameters = 'stop                           "<|im_start|>"\nstop                           "<|im_end|>"'
        if model.num_ctx:
            parameters += f"\nnum_ctx                        {model.num_ctx}"
        return {
            "modelfile": f"# Modelfile generated by \"ollama show\"\nFROM {model.tag}\nTEMPLATE \"\"\"{model.template}\"\"\"",
            "parameters": parameters,
            "template": model.template,
            "details": model.details(),
            "model_info": {
                "general.architecture": model.family,
                "general.file_type": 15,
                "general.parameter_count": 7_615_616_512,
                "general.quantization_version": 2,
                f"{model.family}.context_length": model.trained_context,
                f"{model.family}.block_count": 28,
                "tokenizer.ggml.model": "gpt2",
            },
            "capabilities": model.capabilities,
            "modified_at": "2025-05-01T10:00:00.000000+02:00",
        }

    def _ps(self) -> dict[str, Any]:
        with self._state:
            loaded = list(self.loaded)
        out = []
        for tag in loaded:
            m = self.local[tag]
            out.append({"name": m.tag, "model": m.tag, "size": m.size, "digest": m.digest, "details": m.details(),
                        "expires_at": "2099-01-01T00:00:00Z", "size_vram": int(m.size * m.vram_fraction),
                        "context_length": m.context_length})
        return {"models": out}

    def _pull(self, body: Any) -> Canned:
        name = (body or {}).get("model", "")
        model = self.registry.get(_full(name))
        if model is None:
            lines = [{"status": "pulling manifest"}, {"error": "pull model manifest: file does not exist"}]
        else:
            total = model.size
            lines = [{"status": "pulling manifest"}]
            lines += [{"status": f"pulling {model.digest[:12]}", "digest": f"sha256:{model.digest}", "total": total,
                       "completed": done} for done in (0, total // 4, total // 2, 3 * total // 4, total)]
            lines += [{"status": "verifying sha256 digest"}, {"status": "writing manifest"}, {"status": "success"}]
            self.local[_full(name)] = model
        if (body or {}).get("stream") is False:
            return Canned(body=lines[-1])
        return Canned(text="".join(json.dumps(line) + "\n" for line in lines), content_type="application/x-ndjson")

    def _generate(self, body: Any) -> Any:
        body = body or {}
        model = self._model(body.get("model"))
        if model is None:
            return self._not_found(body.get("model"))
        with self._state:
            self.loaded[_full(model.tag)] = {"keep_alive": body.get("keep_alive")}
        if body.get("prompt"):
            return {"model": model.tag, "created_at": "2025-05-01T10:00:00Z", "response": "Hello.", "done": True,
                    "done_reason": "stop", "prompt_eval_count": 10, "eval_count": 2}
        return {"model": model.tag, "created_at": "2025-05-01T10:00:00Z", "response": "", "done": True, "done_reason": "load"}

    # -- OpenAI-compatible chat ---------------------------------------------------------------

    def _chat(self, body: Any) -> Canned:
        model = self._model(body.get("model"))
        if model is None:
            return Canned(status=404, body={"error": {"message": f"model \"{body.get('model')}\" not found, try pulling it first",
                                                      "type": "api_error", "param": None, "code": None}})
        tools = body.get("tools") or []
        if tools and "tools" not in model.capabilities:
            return Canned(status=400, body={"error": {"message": f"registry.ollama.ai/library/{model.tag} does not support tools",
                                                      "type": "api_error", "param": None, "code": None}})
        # a crude tokenizer: four characters a token; the tools count only when the template renders them
        prompt = json.dumps(body.get("messages") or [])
        if tools and not model.drop_tools:
            prompt += json.dumps(tools)
        usage = {"prompt_tokens": len(prompt) // 4, "completion_tokens": 12, "total_tokens": len(prompt) // 4 + 12}
        last = next((m.get("content") or "" for m in reversed(body.get("messages") or []) if m.get("role") == "user"), "")
        beg = _BEG.search(last)
        offered = {(t.get("function") or {}).get("name") for t in tools}
        # tool_choice is ignored, as Ollama's compat layer does
        if beg and beg.group(1) in offered and not model.drop_tools:
            name, args = beg.group(1), json.loads(beg.group(2))
            if model.leak:
                message = {"role": "assistant", "content": f"<tool_call>\n{json.dumps({'name': name, 'arguments': args})}\n</tool_call>"}
                finish = "stop"
            else:
                message = {"role": "assistant", "content": "", "tool_calls": [
                    {"id": "call_x1y2z3", "index": 0, "type": "function",
                     "function": {"name": name, "arguments": json.dumps(args)}}]}
                finish = "tool_calls"
        else:
            message, finish = {"role": "assistant", "content": "ready"}, "stop"
        return Canned(body={"id": "chatcmpl-417", "object": "chat.completion", "created": 1_700_000_000,
                            "model": model.tag, "system_fingerprint": "fp_ollama",
                            "choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": usage})


def _full(tag: str) -> str:
    return tag if ":" in tag.rsplit("/", 1)[-1] else f"{tag}:latest"
