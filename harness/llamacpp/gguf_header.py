"""Read a GGUF file's header (key/values, tensor shapes) quickly, for the disclosure block."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from harness.llamacpp._common import LlamaError

__all__ = ["gguf_metadata"]


_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


class _Header:
    """A streaming reader of a GGUF header: key/values and tensor shapes, no tensor data.

    gguf's `GGUFReader` builds numpy views of every tokenizer entry (10 s for gemma's 262k-token
    vocabulary); this reads the same header in a fraction of a second and skips big arrays.
    """

    def __init__(self, fh: Any):
        self.fh = fh

    def _unpack(self, fmt: str) -> Any:

        size = struct.calcsize(fmt)
        data = self.fh.read(size)
        if len(data) != size:
            raise LlamaError("truncated GGUF header")
        return struct.unpack(fmt, data)[0]

    def string(self) -> str:
        return self.fh.read(self._unpack("<Q")).decode("utf-8", errors="replace")

    def value(self, vtype: int) -> Any:
        import gguf

        if vtype == gguf.GGUFValueType.STRING:
            return self.string()
        if vtype == gguf.GGUFValueType.ARRAY:
            etype, count = self._unpack("<I"), self._unpack("<Q")
            if etype in _SCALARS:
                width = struct.calcsize(_SCALARS[etype])
                if count > 64:
                    self.fh.seek(width * count, 1)
                    return f"<array of {count}>"
                return [self._unpack(_SCALARS[etype]) for _ in range(count)]
            items = [self.value(etype) for _ in range(count)]
            return items if count <= 64 else f"<array of {count}>"
        if vtype in _SCALARS:
            return self._unpack(_SCALARS[vtype])
        raise LlamaError(f"unknown GGUF value type {vtype}")


def _read_gguf_header(path: Path) -> tuple[dict[str, Any], int, int]:
    """(key/values, tensor count, parameter count) from a GGUF file's header."""
    import gguf

    with path.open("rb") as fh:
        head = _Header(fh)
        if head._unpack("<I") != gguf.GGUF_MAGIC:
            raise LlamaError(f"{path} is not a GGUF file")
        version = head._unpack("<I")
        if version not in gguf.READER_SUPPORTED_VERSIONS:
            raise LlamaError(f"{path}: GGUF version {version} is not supported by the gguf package")
        n_tensors, n_kv = head._unpack("<Q"), head._unpack("<Q")
        fields = {}
        for _ in range(n_kv):
            key = head.string()
            fields[key] = head.value(head._unpack("<I"))
        n_params = 0
        for _ in range(n_tensors):
            head.string()
            dims = [head._unpack("<Q") for _ in range(head._unpack("<I"))]
            head._unpack("<I"), head._unpack("<Q")  # type, offset
            count = 1
            for d in dims:
                count *= d
            n_params += count
    return fields, n_tensors, n_params


def _file_type_name(code: int) -> str:
    import gguf

    try:
        name = gguf.LlamaFileType(code).name
    except ValueError:
        return f"file_type {code}"
    return name.removeprefix("MOSTLY_").replace("ALL_", "")


def gguf_metadata(path: Path | str) -> dict[str, Any]:
    """The GGUF header facts a disclosure needs: architecture, file type by name, parameters, imatrix."""
    fields, n_tensors, n_params = _read_gguf_header(Path(path))
    file_type = fields.get("general.file_type")
    arch = fields.get("general.architecture")
    return {
        "architecture": arch,
        "name": fields.get("general.name"),
        "size_label": fields.get("general.size_label"),
        "file_type": _file_type_name(int(file_type)) if file_type is not None else None,
        "file_type_code": file_type,
        "quantization_version": fields.get("general.quantization_version"),
        "parameters": n_params,
        "tensors": n_tensors,
        "context_length": fields.get(f"{arch}.context_length"),
        "has_chat_template": "tokenizer.chat_template" in fields,
        "vocab_size": _array_length(fields.get("tokenizer.ggml.tokens")),
        "tokenizer": fields.get("tokenizer.ggml.model"),
        "imatrix": {k.removeprefix("quantize.imatrix."): v for k, v in fields.items() if k.startswith("quantize.imatrix.")},
    }


def _array_length(value: Any) -> int | None:
    """How many entries an array field has (big arrays are read as `<array of N>`)."""
    if isinstance(value, list):
        return len(value)
    if isinstance(value, str) and value.startswith("<array of "):
        return int(value.removeprefix("<array of ").rstrip(">"))
    return None


def _param_label(n: int) -> str:
    return f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.0f}M"
