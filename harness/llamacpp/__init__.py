"""The embedded default target: llama.cpp binaries, a gemma-3-270m quantization ladder, a managed llama-server.

`find_llama_binaries` -> `assemble_base_model` -> `make_ladder` / `quantize_gguf` (+ `compute_imatrix`) ->
`LlamaServer` -> `llama_provenance`.
Everything heavy is cached under `$HARNESS_CACHE_DIR` (default `~/.cache/agentic-harness`) and built
at most once, under a file lock, into a temporary place that is moved in only when complete.
`python -m harness.llamacpp prepare` does all of it ahead of time.
"""

from harness.llamacpp._common import (
    CHAT_TEMPLATE,
    AUDIT_QUANTS,
    CMAKE_FLAGS,
    DEFAULT_QUANTS,
    MODEL_STEM,
    LLAMA_CPP_PYTHON_VERSION,
    SOURCE_QUANT,
    TEMPLATE_STOPS,
    LlamaBuildError,
    LlamaError,
    LlamaServerError,
    cache_root,
)
from harness.llamacpp.binaries import LlamaBinaries, find_llama_binaries, find_llama_imatrix
from harness.llamacpp.calibration import compute_imatrix, imatrix_cache_key
from harness.llamacpp.gguf_header import gguf_metadata
from harness.llamacpp.ladder import (
    RungInfo,
    assemble_base_model,
    make_ladder,
    model_stem,
    quant_bits,
    quantize_gguf,
    rung_cache_key,
    rung_info,
)
from harness.llamacpp.provenance import llama_provenance
from harness.llamacpp.server import LlamaServer

__all__ = [
    "LLAMA_CPP_PYTHON_VERSION",
    "CMAKE_FLAGS",
    "CHAT_TEMPLATE",
    "TEMPLATE_STOPS",
    "DEFAULT_QUANTS",
    "AUDIT_QUANTS",
    "MODEL_STEM",
    "SOURCE_QUANT",
    "LlamaError",
    "LlamaBuildError",
    "LlamaServerError",
    "LlamaBinaries",
    "RungInfo",
    "cache_root",
    "find_llama_binaries",
    "find_llama_imatrix",
    "assemble_base_model",
    "make_ladder",
    "rung_info",
    "quant_bits",
    "model_stem",
    "rung_cache_key",
    "quantize_gguf",
    "imatrix_cache_key",
    "compute_imatrix",
    "gguf_metadata",
    "LlamaServer",
    "llama_provenance",
]
