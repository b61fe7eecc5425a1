"""What to audit: a GGUF, several, a folder, `ollama:MODEL` or the embedded ladder, as an `AuditPlan`."""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.audit.models import AuditError, AuditPlan, BuildSpec, Calibration
from harness.scenario import Scenario

__all__ = ["split_arguments", "resolve_source", "calibration_text", "resolve_calibration"]

_FLOAT_CACHE = {"f32", "f16", "bf16"}

# -- resolving the source -----------------------------------------------------------------------


def _is_gguf_folder(path: Path) -> bool:
    return path.is_dir() and any(path.glob("*.gguf"))


def split_arguments(args: list[str] | tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(sources, scenario paths) from `harness audit`'s arguments: leading GGUFs, GGUF folders or `ollama:MODEL`
    are the source; the rest are scenario files and folders. No source means the embedded ladder."""
    sources: list[str] = []
    rest = list(args)
    while rest:
        head = rest[0]
        path = Path(head)
        if head.startswith("ollama:") or head.lower().endswith(".gguf") or _is_gguf_folder(path):
            sources.append(rest.pop(0))
        else:
            break
    return sources, rest


def _bits(quant: str | None) -> float:
    from harness.llamacpp.ladder import quant_bits

    q = (quant or "").upper().replace("FP16", "F16")
    return quant_bits(q) or 0.0


def _axes(kv_cache: list[str], ctx: list[int]) -> list[tuple[str | None, int | None]]:
    return list(itertools.product(kv_cache or [None], ctx or [None]))


def _suffix(kv: str | None, ctx: int | None, kv_axis: bool, ctx_axis: bool) -> str:
    parts = []
    if kv_axis and kv:
        parts.append(f"kv={kv}")
    if ctx_axis and ctx:
        parts.append(f"ctx={ctx}")
    return (" " + " ".join(parts)) if parts else ""


def _expand(rungs: list[BuildSpec], kv_cache: list[str], ctx: list[int]) -> list[BuildSpec]:
    """Every rung x KV-cache type x context is a build; a suffix names the axes that vary."""
    kv_axis, ctx_axis = len(kv_cache) > 1, len(ctx) > 1
    out = []
    for rung in rungs:
        for kv, c in _axes(kv_cache, ctx):
            out.append(rung.model_copy(update={"name": rung.name + _suffix(kv, c, kv_axis, ctx_axis), "kv_cache": kv,
                                               "ctx": c}))
    return out


def _unique_names(builds: list[BuildSpec], notes: list[str]) -> list[BuildSpec]:
    seen: dict[str, int] = {}
    out = []
    for b in builds:
        n = seen.get(b.name, 0)
        seen[b.name] = n + 1
        if n:
            stem = Path(b.gguf or "").stem
            new = stem if stem and stem not in seen else f"{b.name}-{n + 1}"
            notes.append(f"two builds are {b.name}: {b.gguf} is called {new}")
            b = b.model_copy(update={"name": new})
            seen[new] = 1
        out.append(b)
    return out


def _gguf_files(sources: list[str]) -> list[Path]:
    files: list[Path] = []
    for s in sources:
        path = Path(s).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.glob("*.gguf") if not p.name.startswith(("mmproj", "imatrix")))
            if not found:
                raise AuditError(f"{path}: no .gguf files in this folder")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise AuditError(f"{path}: no such GGUF file or folder")
    return files


def _header(path: Path) -> dict[str, Any]:
    from harness.llamacpp import LlamaError, gguf_metadata

    try:
        return gguf_metadata(path)
    except LlamaError as exc:
        raise AuditError(f"{path}: {exc}") from None


def _one_model(headers: dict[Path, dict[str, Any]]) -> None:
    """Refuse files that are not builds of one model: architecture, vocabulary and parameter count must agree."""
    for field, label in (("architecture", "architecture"), ("vocab_size", "vocabulary size"), ("parameters", "parameter count")):
        values = {p.name: h.get(field) for p, h in headers.items()}
        if len({v for v in values.values() if v is not None}) > 1:
            listed = ", ".join(f"{n}={v}" for n, v in values.items())
            raise AuditError(f"these GGUF files are not one model: the {label} differs ({listed}); "
                             "an audit compares quants of one model")


def _pick_reference(builds: list[BuildSpec], reference: str | None) -> str:
    if reference:
        for b in builds:
            if reference in (b.name, b.quant, b.gguf, Path(b.gguf or "").name, b.ollama_tag):
                return b.name
        raise AuditError(f"--reference {reference!r} is none of the builds ({', '.join(b.name for b in builds)})")
    return builds[0].name


def _ladder_from_gguf(source: Path, quants: list[str] | None, *, explicit: bool, notes: list[str]) -> list[BuildSpec]:
    from harness.llamacpp import AUDIT_QUANTS

    meta = _header(source)
    own = (meta.get("file_type") or "source").upper()
    rungs = [BuildSpec(name=own, quant=own, origin="source", gguf=str(source))]
    wanted = [q.strip().upper() for q in (quants if quants is not None else AUDIT_QUANTS) if q.strip()]
    for q in dict.fromkeys(wanted):
        if q == own:
            continue
        if _bits(q) > _bits(own) and not explicit:
            notes.append(f"{q} left out: the source is {own}, and a rung above it keeps its rounding error")
            continue
        if _bits(q) > _bits(own):
            notes.append(f"{q} is requantized up from the {own} source: a format reference, not a higher-precision one")
        rungs.append(BuildSpec(name=q, quant=q, origin="quantize", gguf=str(source)))
    if own not in {"F32", "F16", "BF16", "Q8_0"}:
        notes.append(f"the source is {own}, not a high-precision file (F16, BF16 or Q8_0): every rung is a requantization")
    return sorted(rungs, key=lambda b: -_bits(b.quant))


def _ollama_tag_name(model: str, quant: str) -> str:
    q = quant.strip()
    q = "fp16" if q.upper() == "F16" else q[0].lower() + q[1:] if q[:1] in "QF" else q
    return f"{model}-{q}"


def _ollama_builds(model: str, host: str, quants: list[str] | None, pull: bool,
                   progress: Callable[[str], Any] | None) -> list[BuildSpec]:
    from harness.ollama import OllamaError, model_tags, resolve_ollama_targets

    try:
        tags = model_tags(model, host=host)
        if quants:
            tags = list(dict.fromkeys(tags + [_ollama_tag_name(model, q) for q in quants]))
        if not tags:
            raise AuditError(f"Ollama at {host} has no tags of {model!r}; pull some (`ollama pull {model}`), or name "
                             "them with --quants and pass --pull")
        resolved = resolve_ollama_targets(tags, host=host, pull=pull, progress=progress)
    except OllamaError as exc:
        raise AuditError(str(exc)) from None
    builds = [BuildSpec(name=target.name, quant=(prov.quantization or "").upper() or None, origin="ollama",
                        ollama_tag=target.model) for target, prov in resolved]
    return sorted(builds, key=lambda b: -_bits(b.quant))


def resolve_source(
    sources: list[str] | None = None,
    *,
    quants: list[str] | None = None,
    reference: str | None = None,
    kv_cache: list[str] | None = None,
    ctx: list[int] | None = None,
    pull: bool = False,
    ollama_host: str | None = None,
    progress: Callable[[str], Any] | None = None,
) -> AuditPlan:
    """What to audit, as builds in ladder order with a reference; raises `AuditError` for a source that is not one model.

    - nothing: the embedded gemma-3-270m ladder (Q8_0, Q4_K_M, Q3_K_M, Q2_K; Q8_0 requantized up is the reference);
    - one GGUF: it is the reference, and each of `quants` below its precision is made from it;
    - several GGUFs or a folder: audited as they are, the most precise (or `reference`) as reference;
    - `ollama:MODEL`: the local tags of MODEL (`quants` names more, pulled with `pull`), the most precise as reference.
    """
    kv_cache = [k.strip().lower() for k in (kv_cache or []) if k.strip()]
    ctx = list(ctx or [])
    notes: list[str] = []
    host = None
    sources = list(sources or [])
    if not sources:
        from harness import llamacpp

        base = llamacpp.assemble_base_model()
        wanted = [q.upper() for q in (quants or llamacpp.DEFAULT_QUANTS)]
        rungs = [b for b in _ladder_from_gguf(base, wanted, explicit=True, notes=notes) if b.quant in wanted]
        notes[:] = [n for n in notes if "not a high-precision file" not in n]
        notes.append(f"the packaged model is {llamacpp.SOURCE_QUANT}: every other rung is requantized from it")
        kind, label = "embedded", f"embedded {llamacpp.MODEL_STEM} ({base.name})"
        reference = reference or rungs[0].name
    elif sources[0].startswith("ollama:"):
        if len(sources) > 1:
            raise AuditError("an Ollama source is one model: `ollama:MODEL` alone")
        if kv_cache or ctx:
            raise AuditError("--kv-cache and --ctx set llama-server flags; Ollama tags are served by Ollama")
        from harness.ollama import DEFAULT_HOST, normalise_host

        host = normalise_host(ollama_host or DEFAULT_HOST)
        model = sources[0].removeprefix("ollama:")
        rungs = _ollama_builds(model, host, quants, pull, progress)
        kind, label = "ollama", sources[0]
    else:
        files = _gguf_files(sources)
        if len(files) == 1:
            rungs = _ladder_from_gguf(files[0], quants, explicit=quants is not None, notes=notes)
            kind, label = "gguf", str(files[0])
            reference = reference or next(b.name for b in rungs if b.origin == "source")
        else:
            if quants:
                notes.append("--quants is ignored: several GGUF files are audited as they are")
            headers = {f: _header(f) for f in files}
            _one_model(headers)
            rungs = [BuildSpec(name=(h.get("file_type") or f.stem).upper(), quant=h.get("file_type"), origin="file",
                               gguf=str(f)) for f, h in headers.items()]
            rungs = _unique_names(sorted(rungs, key=lambda b: -_bits(b.quant)), notes)
            kind, label = "files", ", ".join(sources)
    builds = _unique_names(_expand(rungs, kv_cache, ctx), notes)
    ref_rung = _pick_reference(rungs, reference)
    # the reference build is the reference rung on the first cache type and context given
    ref_name = next(b.name for b in builds if b.name.split(" ")[0] == ref_rung)
    builds.sort(key=lambda b: b.name != ref_name)  # stable: the reference first, then ladder order
    flash = any(k not in _FLOAT_CACHE for k in kv_cache)
    return AuditPlan(source=label, kind=kind, reference=ref_name, builds=builds, ollama_host=host, flash_attn=flash,
                     notes=notes)


def calibration_text(scenarios: list[Scenario], out: Path) -> Path:
    """The scenarios' own prompts as calibration text: system prompts, few-shot exchanges and user turns."""
    from harness.loop import build_toolset

    parts: list[str] = []
    for sc in scenarios:
        parts.append(sc.system or "")
        parts.append(json.dumps(build_toolset(sc).schemas, ensure_ascii=False))
        for shot in sc.few_shot:
            parts.append(shot.content or "")
            parts += [f"<tool_call>{json.dumps({'name': c.name, 'arguments': c.arguments})}</tool_call>"
                      for c in shot.tool_calls]
        parts += [t.user for t in sc.turns]
    text = "\n\n".join(p for p in parts if p)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n", encoding="utf-8")
    return out


def resolve_calibration(imatrix: str | None, calibrate: str | None, plan: AuditPlan, scenarios: list[Scenario],
                        binaries: Any, progress: Callable[[str], Any] | None, *, threads: int | None = None) -> tuple[Calibration, Path | None]:
    """The calibration the quantized rungs are made with: a given matrix, one computed on a text, or none."""
    from harness.llamacpp._common import _file_sha256, cache_root
    from harness.llamacpp.calibration import compute_imatrix

    if imatrix and calibrate:
        raise AuditError("--imatrix and --calibrate both name the calibration: give one")
    if imatrix:
        path = Path(imatrix).expanduser()
        if not path.is_file():
            raise AuditError(f"--imatrix {imatrix}: no such file")
        return Calibration(kind="file", imatrix_file=str(path), imatrix_sha256=_file_sha256(path),
                           imatrix_bytes=path.stat().st_size), path
    if not calibrate:
        return Calibration(), None
    if calibrate == "scenarios":
        digest = hashlib.sha256("\n".join(sorted(f"{s.id}:{s.content_hash}" for s in scenarios)).encode()).hexdigest()[:16]
        text = calibration_text(scenarios, cache_root() / "calibration" / f"scenarios-{digest}.txt")
    else:
        text = Path(calibrate).expanduser()
        if not text.is_file():
            raise AuditError(f"--calibrate {calibrate}: no such text file (or `scenarios` for the scenarios' own prompts)")
    # the matrix is collected on the most precise GGUF the audit makes rungs from
    source = next((Path(b.gguf) for b in plan.builds if b.origin == "source" and b.gguf), None)
    if source is None:
        raise AuditError("--calibrate needs a GGUF source to quantize from (not several files or Ollama tags)")
    path = compute_imatrix(source, text, binaries, threads=threads, progress=progress)
    return Calibration(kind="computed", text=calibrate, text_sha256=_file_sha256(text), text_bytes=text.stat().st_size,
                       imatrix_file=str(path), imatrix_sha256=_file_sha256(path), imatrix_bytes=path.stat().st_size), path
