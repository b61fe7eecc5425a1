"""The embedded default target: llama.cpp binaries, a gemma-3-270m quantization ladder, a managed llama-server.

`find_llama_binaries` -> `assemble_base_model` -> `make_ladder` -> `LlamaServer` -> `llama_provenance`.
Everything heavy is cached under `$HARNESS_CACHE_DIR` (default `~/.cache/agentic-harness`) and built
at most once, under a file lock, into a temporary place that is moved in only when complete.
`python -m harness.llamacpp prepare` does all of it ahead of time.
"""

from harness.llamacpp._common import (
    CHAT_TEMPLATE,
    CMAKE_FLAGS,
    DEFAULT_QUANTS,
    LLAMA_CPP_PYTHON_VERSION,
    SOURCE_QUANT,
    TEMPLATE_STOPS,
    LlamaBuildError,
    LlamaError,
    LlamaServerError,
    cache_root,
)
from harness.llamacpp.binaries import LlamaBinaries, find_llama_binaries
from harness.llamacpp.gguf_header import gguf_metadata
from harness.llamacpp.ladder import RungInfo, assemble_base_model, make_ladder, rung_info
from harness.llamacpp.provenance import llama_provenance
from harness.llamacpp.server import LlamaServer

__all__ = [
    "LLAMA_CPP_PYTHON_VERSION",
    "CMAKE_FLAGS",
    "CHAT_TEMPLATE",
    "TEMPLATE_STOPS",
    "DEFAULT_QUANTS",
    "SOURCE_QUANT",
    "LlamaError",
    "LlamaBuildError",
    "LlamaServerError",
    "LlamaBinaries",
    "RungInfo",
    "cache_root",
    "find_llama_binaries",
    "assemble_base_model",
    "make_ladder",
    "rung_info",
    "gguf_metadata",
    "LlamaServer",
    "llama_provenance",
]
