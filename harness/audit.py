"""The quant audit: from one model to the rung where tool calling breaks, with cost beside accuracy.

`resolve_source` turns what the user names (a GGUF, several, a folder, `ollama:MODEL`, or nothing: the
embedded gemma-3-270m ladder) into an `AuditPlan` of builds; `run_audit` makes, serves, probes, runs and
stops each build in turn, writing every run to one results file as it goes; `audit_report` reads it back
into the comparison engine's verdict, the rung where each stratum first breaks, and one cost table.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from harness.compare import Comparison, Rate, Verdict, compare_runs
from harness.records import Provenance, Results, RunConfig, Target, read_results
from harness.scenario import Scenario

__all__ = [
    "AuditError",
    "Calibration",
    "BuildSpec",
    "AuditPlan",
    "BuildCost",
    "BuildResult",
    "StratumBreak",
    "AuditRow",
    "AuditReport",
    "split_arguments",
    "resolve_source",
    "calibration_text",
    "run_audit",
    "audit_report",
    "table_rows",
    "to_markdown",
    "write_plot",
    "write_audit",
    "print_audit",
    "TABLE_HEAD",
    "AUDIT_STATE",
]

log = structlog.get_logger("harness.audit")

AUDIT_STATE = "audit.json"
"""The audit's own record next to `results.jsonl`: the plan and each build's status and cost."""

_FLOAT_CACHE = {"f32", "f16", "bf16"}


class AuditError(Exception):
    """The audit cannot start: a source that is not one model, a missing file, a bad flag. The message says which."""


class _Model(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)


# -- the plan -----------------------------------------------------------------------------------


class Calibration(_Model):
    """The importance matrix the quantized rungs were made with, or none: a quant claim must disclose it."""

    kind: Literal["none", "file", "computed"] = "none"
    """`none`: plain quantization; `file`: `--imatrix FILE`; `computed`: llama-imatrix over `--calibrate TEXT`."""
    text: str | None = None
    """The calibration text: a file path, or `scenarios` (the selected scenarios' own prompts)."""
    text_sha256: str | None = None
    """sha256 of the calibration text (computed only)."""
    text_bytes: int | None = None
    """Size of the calibration text in bytes (computed only)."""
    imatrix_file: str | None = None
    """Path of the importance matrix used."""
    imatrix_sha256: str | None = None
    """sha256 of the importance matrix."""
    imatrix_bytes: int | None = None
    """Its size in bytes."""

    def label(self) -> str:
        """One line for tables and the disclosure: `none`, or the matrix and text by hash and size."""
        if self.kind == "none":
            return "none"
        matrix = f"imatrix sha256:{(self.imatrix_sha256 or '?')[:12]} ({self.imatrix_bytes or 0:,} bytes)"
        if self.kind == "file":
            return f"{matrix} from {Path(self.imatrix_file or '').name}"
        return f"{matrix} computed on {self.text} (sha256:{(self.text_sha256 or '?')[:12]}, {self.text_bytes or 0:,} bytes)"


class BuildSpec(_Model):
    """One build of the model the audit serves and runs: a rung, with its KV-cache type and context."""

    name: str
    """Its label in every report, e.g. `Q4_K_M` or `Q4_K_M kv=q8_0`."""
    quant: str | None = None
    """GGUF file type or Ollama quantization level, e.g. `Q4_K_M`."""
    origin: Literal["source", "quantize", "file", "ollama"]
    """`source`: the audit's source GGUF as is; `quantize`: made from it with llama-quantize; `file`: a given
    GGUF as is; `ollama`: a tag served by Ollama."""
    gguf: str | None = None
    """The GGUF to serve (`source`, `file`) or to quantize from (`quantize`)."""
    calibrated: bool = False
    """Quantized with the audit's importance matrix."""
    kv_cache: str | None = None
    """llama-server `--cache-type-k/--cache-type-v`; None: the server's default (f16)."""
    ctx: int | None = None
    """Context size the server is started with; None: the harness default (4096)."""
    ollama_tag: str | None = None
    """The Ollama tag (origin `ollama`)."""


class AuditPlan(_Model):
    """What will be audited: every build in ladder order (most precise first), and which one is the reference."""

    source: str
    """What the user named: a path, several, `ollama:MODEL`, or `embedded gemma-3-270m`."""
    kind: Literal["gguf", "files", "ollama", "embedded"]
    reference: str
    """Name of the reference build."""
    builds: list[BuildSpec]
    calibration: Calibration = Field(default_factory=Calibration)
    ollama_host: str | None = None
    """Where the Ollama tags are served (kind `ollama`)."""
    flash_attn: bool = False
    """Every build runs with `--flash-attn on` (needed where a V cache is quantized; on for all, so only the cache differs)."""
    notes: list[str] = Field(default_factory=list)
    """What the plan left out or assumed (rungs above the source's precision, names made unique)."""

    def build(self, name: str) -> BuildSpec:
        """The build called `name`."""
        for b in self.builds:
            if b.name == name:
                return b
        raise KeyError(name)


# -- what came out ------------------------------------------------------------------------------


class BuildCost(_Model):
    """What one build costs on the audit's workload, beside what it scores."""

    file_size_bytes: int | None = None
    """Size of the GGUF (Ollama: of the tag)."""
    rss_bytes: int | None = None
    """llama-server's resident memory after loading and the probes (`/proc/<pid>/status` VmRSS); Ollama: `/api/ps` size."""
    peak_rss_bytes: int | None = None
    """Its peak resident memory over the whole run (VmHWM)."""
    server_memory: dict[str, int] = Field(default_factory=dict)
    """What the server's log says it allocated: `model_buffer_bytes`, `kv_buffer_bytes`, `compute_buffer_bytes`."""
    prompt_tok_s: float | None = None
    """Mean prompt-processing speed from the server's own timings."""
    gen_tok_s: float | None = None
    """Mean generation speed from the server's own timings."""
    latency_p50_ms: float | None = None
    """Median per-request latency."""
    latency_p95_ms: float | None = None
    """95th percentile per-request latency."""
    requests: int = 0
    """Model requests made."""
    start_s: float | None = None
    """Seconds from spawning the server to a healthy `/health`."""


class BuildResult(_Model):
    """How one build fared: made and served, or why not. A build that fails is reported; the audit goes on."""

    name: str
    status: Literal["done", "not_made", "not_served", "failed", "pending"] = "pending"
    """`not_made`: quantizing failed; `not_served`: the server did not start or died; `failed`: the run broke."""
    error: str | None = None
    """What went wrong, with where to look (the log)."""
    gguf: str | None = None
    """The GGUF served."""
    server_log: str | None = None
    cost: BuildCost = Field(default_factory=BuildCost)
    seconds: float | None = None
    """Wall time for the build: make, serve, run, stop."""


class StratumBreak(_Model):
    """Where one stratum first drops beyond tolerance going down the ladder."""

    stratum: str
    """A stratum, or `overall`."""
    series: str = ""
    """The KV-cache / context series the ladder was walked in (empty when there is one)."""
    build: str | None = None
    """The first build (most precise first) more than `tolerance` points below the reference; None: it holds."""
    delta_pts: float | None = None
    """That build's paired difference to the reference, in points."""
    rate: float | None = None
    """That build's pass rate on the stratum (fraction)."""
    reference_rate: float | None = None
    """The reference's pass rate on the stratum (fraction)."""


class AuditRow(_Model):
    """One line of the cost-beside-accuracy table."""

    build: str
    quant: str | None = None
    kv_cache: str | None = None
    ctx: int | None = None
    calibration: str = "none"
    status: str
    is_reference: bool = False
    chosen: bool = False
    """The verdict's smallest build within tolerance."""
    passes: bool | None = None
    """Within tolerance of the reference (None for the reference and builds with no runs)."""
    overall: Rate | None = None
    """Pass rate with its Wilson 95% interval."""
    cost: BuildCost = Field(default_factory=BuildCost)


class AuditReport(_Model):
    """The audit's answer: the plan, each build's fate, the verdict, where each stratum breaks, the table."""

    plan: AuditPlan
    builds: list[BuildResult] = Field(default_factory=list)
    verdict: Verdict | None = None
    """From the comparison engine: the smallest build within tolerance, with the honest-verdict rules."""
    breaks: list[StratumBreak] = Field(default_factory=list)
    rows: list[AuditRow] = Field(default_factory=list)
    confounds: list[str] = Field(default_factory=list)
    """Differences between builds other than the audited axes (the engine's confounds, less the KV cache, context
    and same-file differences the audit made on purpose)."""
    tolerance: float = 5.0
    run_dir: str | None = None
    plot: str | None = None
    """The pass-rate-against-size-and-speed plot, when matplotlib could draw it."""
    _comparison: Comparison | None = PrivateAttr(default=None)

    @property
    def comparison(self) -> Comparison | None:
        """The full comparison the verdict came from (for the standard reports); not serialised."""
        return self._comparison


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


def _calibration(imatrix: str | None, calibrate: str | None, plan: AuditPlan, scenarios: list[Scenario],
                 binaries: Any, progress: Callable[[str], Any] | None) -> tuple[Calibration, Path | None]:
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
    path = compute_imatrix(source, text, binaries, progress=progress)
    return Calibration(kind="computed", text=calibrate, text_sha256=_file_sha256(text), text_bytes=text.stat().st_size,
                       imatrix_file=str(path), imatrix_sha256=_file_sha256(path), imatrix_bytes=path.stat().st_size), path


# -- running ------------------------------------------------------------------------------------


def _load_state(path: Path) -> dict[str, BuildResult]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {b["name"]: BuildResult.model_validate(b) for b in data.get("builds", [])}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _save_state(path: Path, plan: AuditPlan, results: dict[str, BuildResult]) -> None:
    data = {"plan": json.loads(plan.model_dump_json()),
            "builds": [json.loads(results[b.name].model_dump_json()) for b in plan.builds if b.name in results]}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _todo(results_path: Path, name: str, scenarios: list[Scenario], epochs: int) -> int:
    """Runs of build `name` still missing from the results file (infra errors count as missing)."""
    if not results_path.exists() or results_path.stat().st_size == 0:
        return len(scenarios) * epochs
    done = {(r.scenario_id, r.epoch, r.scenario_hash) for r in read_results(results_path).for_target(name)
            if not r.score.infra_error}
    return sum((sc.id, e, sc.content_hash) not in done for sc in scenarios for e in range(epochs))


def _server_flags(spec: BuildSpec, plan: AuditPlan, gpu_layers: str | None, server_args: list[str]) -> list[str]:
    flags: list[str] = []
    if spec.kv_cache:
        flags += ["--cache-type-k", spec.kv_cache, "--cache-type-v", spec.kv_cache]
    if plan.flash_attn:
        flags += ["--flash-attn", "on"]
    if gpu_layers is not None:
        flags += ["--gpu-layers", str(gpu_layers)]
    return flags + list(server_args)


def _gguf_for(spec: BuildSpec, binaries: Any, imatrix: Path | None, progress: Callable[[str], Any] | None) -> Path:
    from harness.llamacpp import quantize_gguf

    assert spec.gguf is not None
    if spec.origin != "quantize":
        return Path(spec.gguf)
    return quantize_gguf(Path(spec.gguf), spec.quant or "", binaries, imatrix=imatrix if spec.calibrated else None,
                         progress=progress)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip()


def run_audit(
    plan: AuditPlan,
    scenarios: list[Scenario],
    config: RunConfig,
    run_dir: Path,
    *,
    imatrix: str | None = None,
    calibrate: str | None = None,
    gpu_layers: str | None = None,
    server_args: list[str] | None = None,
    threads: int | None = None,
    timeout_s: float = 300.0,
    preflight: Callable[[Target, Provenance], Any] | None = None,
    progress: Any = None,
    say: Callable[[str], Any] | None = None,
) -> AuditReport:
    """Make, serve, run and stop every build of `plan` in turn; return the report (also in `run_dir/audit.json`).

    Builds already complete in `run_dir/results.jsonl` are skipped (an interrupted audit resumes at the build it
    was on). A build that cannot be made or served is recorded with its error and the audit goes on.
    `preflight(target, provenance)` probes each server before its runs (it may add warnings to the provenance).
    """
    from harness import llamacpp
    from harness.runner import run_suite

    run_dir.mkdir(parents=True, exist_ok=True)
    results_path = run_dir / "results.jsonl"
    state_path = run_dir / AUDIT_STATE
    previous = _load_state(state_path)
    binaries = None
    needs_llama = plan.kind != "ollama"
    if needs_llama:
        binaries = llamacpp.find_llama_binaries(progress=say)
    imatrix_path: Path | None = None
    if (imatrix or calibrate) and not any(b.origin == "quantize" for b in plan.builds):
        raise AuditError("--imatrix and --calibrate apply to rungs the audit quantizes, and this audit quantizes none")
    if imatrix or calibrate:
        plan.calibration, imatrix_path = _calibration(imatrix, calibrate, plan, scenarios, binaries, say)
        for b in plan.builds:
            b.calibrated = b.origin == "quantize"
    states: dict[str, BuildResult] = {}
    for spec in plan.builds:
        todo = _todo(results_path, spec.name, scenarios, config.epochs)
        old = previous.get(spec.name)
        if todo == 0 and old is not None and old.status == "done":
            states[spec.name] = old
            _say(say, f"{spec.name}: already done, kept from the earlier session")
            continue
        started = time.perf_counter()
        state = BuildResult(name=spec.name)
        states[spec.name] = state
        try:
            if spec.origin == "ollama":
                _run_ollama_build(spec, plan, scenarios, config, results_path, state, preflight, progress, timeout_s)
            else:
                _run_llama_build(spec, plan, scenarios, config, results_path, state, binaries, imatrix_path,
                                 _server_flags(spec, plan, gpu_layers, server_args or []), threads, preflight,
                                 progress, say, run_suite, timeout_s)
        except KeyboardInterrupt:
            state.status, state.error = "pending", "interrupted"
            _save_state(state_path, plan, states)
            raise
        state.seconds = round(time.perf_counter() - started, 2)
        log.info("audit.build", build=spec.name, status=state.status, seconds=state.seconds, error=state.error)
        _save_state(state_path, plan, states)
    report = audit_report(plan, states, read_results(results_path) if results_path.exists() else Results(),
                          tolerance=config.tolerance or 5.0, critical_strata=config.critical_strata)
    report.run_dir = str(run_dir)
    return report


def _say(say: Callable[[str], Any] | None, message: str) -> None:
    log.info("audit.progress", message=message)
    if say is not None:
        say(message)


def _run_llama_build(spec: BuildSpec, plan: AuditPlan, scenarios: list[Scenario], config: RunConfig, results_path: Path,
                     state: BuildResult, binaries: Any, imatrix: Path | None, flags: list[str], threads: int | None,
                     preflight: Any, progress: Any, say: Any, run_suite: Any, timeout_s: float) -> None:
    from harness import llamacpp
    from harness.client import make_client

    try:
        path = _gguf_for(spec, binaries, imatrix, say)
    except llamacpp.LlamaError as exc:
        state.status, state.error = "not_made", _first_line(exc)
        _say(say, f"{spec.name}: could not be made: {state.error.splitlines()[0]}")
        return
    state.gguf = str(path)
    state.cost.file_size_bytes = path.stat().st_size
    alias = f"{llamacpp.model_stem(path)}-{spec.name.replace(' ', '-').replace('=', '-')}".lower()
    kwargs: dict[str, Any] = {"alias": alias, "extra_args": flags, "threads": threads}
    if spec.ctx:
        kwargs["ctx_size"] = spec.ctx
    server = llamacpp.LlamaServer(path, binaries, log_dir=results_path.parent / "servers", **kwargs)
    _say(say, f"{spec.name}: serving {path.name}" + (f" ({' '.join(flags)})" if flags else ""))
    try:
        try:
            server.start()
        except llamacpp.LlamaError as exc:
            state.status, state.error = "not_served", _first_line(exc)
            state.server_log = str(server.log_path) if server.log_path else None
            _say(say, f"{spec.name}: could not be served: {state.error.splitlines()[0]}")
            return
        state.server_log = str(server.log_path)
        state.cost.start_s = round(server.start_seconds or 0.0, 2)
        target = Target(name=spec.name, base_url=server.base_url, model=server.model)
        prov = llamacpp.llama_provenance(server.url, path, binaries)
        _annotate(prov, spec, plan)
        if not _probed(preflight, target, prov, state, say):
            return
        mem = server.memory()
        state.cost.rss_bytes = mem.get("rss_bytes")
        prov.memory_bytes = state.cost.rss_bytes
        state.cost.server_memory = server.reported_memory()
        prov.extra["server_memory"] = state.cost.server_memory

        def factory(t: Target) -> Any:
            return make_client(t, timeout_s=timeout_s)

        asyncio.run(run_suite(scenarios, [target], out=results_path, config=config, provenance={spec.name: prov},
                              client_factory=factory, progress=progress))
        state.cost.peak_rss_bytes = server.memory().get("peak_rss_bytes")
        if not server.running:
            state.status, state.error = "failed", f"llama-server died during the runs; log: {server.log_path}"
        else:
            state.status = "done"
    finally:
        server.stop()


def _run_ollama_build(spec: BuildSpec, plan: AuditPlan, scenarios: list[Scenario], config: RunConfig,
                      results_path: Path, state: BuildResult, preflight: Any, progress: Any, timeout_s: float) -> None:
    from harness.client import make_client
    from harness.ollama import OllamaError, ollama_provenance
    from harness.runner import run_suite

    assert spec.ollama_tag and plan.ollama_host
    try:
        prov = ollama_provenance(spec.ollama_tag, host=plan.ollama_host)
    except OllamaError as exc:
        state.status, state.error = "not_served", str(exc)
        return
    _annotate(prov, spec, plan)
    target = Target(name=spec.name, base_url=f"{plan.ollama_host}/v1", model=spec.ollama_tag)
    if not _probed(preflight, target, prov, state, None):
        return
    state.cost.file_size_bytes = prov.file_size_bytes
    asyncio.run(run_suite(scenarios, [target], out=results_path, config=config, provenance={spec.name: prov},
                          client_factory=lambda t: make_client(t, timeout_s=timeout_s), progress=progress))
    try:
        after = ollama_provenance(spec.ollama_tag, host=plan.ollama_host)
        state.cost.rss_bytes = after.memory_bytes
    except OllamaError:
        pass
    state.status = "done"


def _probed(preflight: Any, target: Target, prov: Provenance, state: BuildResult, say: Any) -> bool:
    """Run the caller's probes; a server that fails them is a build that could not be served, not a crash."""
    if preflight is None:
        return True
    try:
        preflight(target, prov)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # the CLI's probe raises its own user-facing error type
        message = getattr(exc, "message", None) or str(exc)
        state.status, state.error = "not_served", f"the server failed its checks: {message}"
        _say(say, f"{target.name}: {state.error}")
        return False
    return True


def _annotate(prov: Provenance, spec: BuildSpec, plan: AuditPlan) -> None:
    """What the audit knows about the build beyond what the server says: axes, origin and calibration."""
    prov.extra["audit_build"] = json.loads(spec.model_dump_json())
    prov.extra["kv_cache_dtype"] = spec.kv_cache or "f16"
    prov.extra["flash_attn"] = plan.flash_attn
    prov.extra["calibration"] = json.loads(plan.calibration.model_dump_json()) if spec.calibrated else {"kind": "none"}
    if spec.origin != "ollama":
        # named for every llama.cpp build, so "none" is a disclosed value, not an unknown
        prov.imatrix = plan.calibration.label() if spec.calibrated else (prov.imatrix or "none")


# -- the answer ---------------------------------------------------------------------------------


def _timing_means(results: Results, name: str) -> tuple[float | None, float | None]:
    prompt, gen = [], []
    for r in results.for_target(name):
        for step in r.trajectory.steps:
            t = step.reply.timings
            if t is None:
                continue
            if t.prompt_per_second:
                prompt.append(t.prompt_per_second)
            if t.predicted_per_second:
                gen.append(t.predicted_per_second)
    mean = lambda xs: round(sum(xs) / len(xs), 1) if xs else None  # noqa: E731
    return mean(prompt), mean(gen)


def _series(spec: BuildSpec) -> str:
    parts = [f"kv={spec.kv_cache}" if spec.kv_cache else "", f"ctx={spec.ctx}" if spec.ctx else ""]
    return " ".join(p for p in parts if p)


def _breaks(plan: AuditPlan, comparison: Comparison, tolerance: float) -> list[StratumBreak]:
    """Per series (KV cache, context) and stratum: the first build down the ladder beyond tolerance."""
    if comparison.reference is None:
        return []
    names = {t.name for t in comparison.targets}
    ref = comparison.target(comparison.reference)
    strata = ["overall", *sorted(ref.strata)]
    series_of = {b.name: _series(b) for b in plan.builds}
    all_series = list(dict.fromkeys(series_of.values()))
    out = []
    for series in all_series:
        ladder = [b.name for b in plan.builds if series_of[b.name] == series and b.name in names
                  and b.name != comparison.reference]
        for stratum in strata:
            hit = StratumBreak(stratum=stratum, series=series if len(all_series) > 1 else "")
            for name in ladder:
                vs = comparison.target(name).vs_reference
                ps = None if vs is None else (vs.overall if stratum == "overall" else vs.strata.get(stratum))
                if ps is not None and ps.delta_pts is not None and ps.delta_pts < -tolerance:
                    hit.build, hit.delta_pts = name, ps.delta_pts
                    hit.rate, hit.reference_rate = ps.target_rate, ps.reference_rate
                    break
            out.append(hit)
    return out


def _confounds(plan: AuditPlan, comparison: Comparison) -> list[str]:
    axes = set()
    if len({b.kv_cache for b in plan.builds}) > 1:
        axes |= {"kv_cache_dtype", "digest"}  # one file on several caches is the point, not "the same build"
    if len({b.ctx for b in plan.builds}) > 1:
        axes |= {"context_length", "digest"}
    return [c.message for c in comparison.disclosure.confounds if c.field not in axes]


def audit_report(plan: AuditPlan, builds: dict[str, BuildResult], results: Results, *, tolerance: float = 5.0,
                 critical_strata: list[str] | None = None) -> AuditReport:
    """The verdict (from `compare_runs`), where each stratum breaks, and the cost-beside-accuracy table."""
    names_with_runs = {r.target for r in results.records}
    comparison: Comparison | None = None
    if plan.reference in names_with_runs and len(names_with_runs) > 1:
        order = [b.name for b in reversed(plan.builds) if b.name in names_with_runs]  # smallest first
        comparison = compare_runs(results, reference=plan.reference, tolerance=tolerance,
                                  critical_strata=critical_strata or None, order=order)
    summaries = {t.name: t for t in comparison.targets} if comparison else {}
    verdict = comparison.verdict if comparison else None
    judged = {b.target: b.passes for b in verdict.builds} if verdict else {}
    rows = []
    for spec in plan.builds:
        state = builds.get(spec.name, BuildResult(name=spec.name))
        cost = state.cost.model_copy()
        summary = summaries.get(spec.name)
        overall = summary.overall if summary else None
        if summary is not None:
            cost.latency_p50_ms = summary.cost.latency_p50_ms
            cost.latency_p95_ms = summary.cost.latency_p95_ms
            cost.requests = summary.cost.requests
        elif spec.name in names_with_runs:
            from harness.compare import summarize_run

            only = summarize_run(Results(headers=results.headers, records=results.for_target(spec.name)))
            overall = only.targets[0].overall if only.targets else None
            if only.targets:
                cost.latency_p50_ms = only.targets[0].cost.latency_p50_ms
                cost.latency_p95_ms = only.targets[0].cost.latency_p95_ms
                cost.requests = only.targets[0].cost.requests
        cost.prompt_tok_s, cost.gen_tok_s = _timing_means(results, spec.name)
        rows.append(AuditRow(
            build=spec.name, quant=spec.quant, kv_cache=spec.kv_cache, ctx=spec.ctx,
            calibration=plan.calibration.label() if spec.calibrated else "none", status=state.status,
            is_reference=spec.name == plan.reference, chosen=bool(verdict and verdict.chosen == spec.name),
            passes=judged.get(spec.name), overall=overall, cost=cost,
        ))
    report = AuditReport(plan=plan, builds=[builds[b.name] for b in plan.builds if b.name in builds], verdict=verdict,
                         breaks=_breaks(plan, comparison, tolerance) if comparison else [], rows=rows, tolerance=tolerance,
                         confounds=_confounds(plan, comparison) if comparison else [])
    report._comparison = comparison
    return report


# -- writing ------------------------------------------------------------------------------------


def _mb(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:.1f}"


def _num(v: float | None, digits: int = 0) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _pass(rate: Rate | None) -> str:
    if rate is None or rate.rate is None:
        return "-"
    return f"{100 * rate.rate:.0f}% [{100 * (rate.low or 0):.0f}-{100 * (rate.high or 0):.0f}] ({rate.passed}/{rate.n})"


TABLE_HEAD = ["build", "pass rate [95% CI]", "file MB", "RSS MB", "prompt tok/s", "gen tok/s", "p50 ms", "p95 ms", "verdict"]


def table_rows(report: AuditReport) -> list[list[str]]:
    """The cost-beside-accuracy table as text cells, one row per build (header: `TABLE_HEAD`)."""
    out = []
    for row in report.rows:
        c = row.cost
        if row.status != "done" and row.overall is None:
            mark = row.status.replace("_", " ")
        elif row.is_reference:
            mark = "reference"
        elif row.chosen:
            mark = "chosen"
        elif row.passes is True:
            mark = "within"
        elif row.passes is False:
            mark = "beyond"
        else:
            mark = row.status
        out.append([row.build, _pass(row.overall), _mb(c.file_size_bytes), _mb(c.rss_bytes), _num(c.prompt_tok_s),
                    _num(c.gen_tok_s), _num(c.latency_p50_ms), _num(c.latency_p95_ms), mark])
    return out


def to_markdown(report: AuditReport) -> str:
    """The audit as Markdown: the table, the verdict, where each stratum breaks, calibration, failed builds."""
    lines = [f"# Audit of {report.plan.source}", "", "| " + " | ".join(TABLE_HEAD) + " |",
             "|" + "---|" * len(TABLE_HEAD)]
    lines += ["| " + " | ".join(cells) + " |" for cells in table_rows(report)]
    lines += ["", f"**Verdict:** {report.verdict.summary if report.verdict else 'none (fewer than two builds ran)'}", ""]
    if report.breaks:
        lines.append(f"**Where each stratum first breaks** (more than {report.tolerance:g} pts below {report.plan.reference}):")
        lines.append("")
        for b in report.breaks:
            where = f" [{b.series}]" if b.series else ""
            if b.build:
                lines.append(f"- {b.stratum}{where}: {b.build} ({b.delta_pts:+.1f} pts, "
                             f"{100 * (b.rate or 0):.0f}% vs {100 * (b.reference_rate or 0):.0f}%)")
            else:
                lines.append(f"- {b.stratum}{where}: holds at every rung")
        lines.append("")
    lines.append(f"**Calibration:** {report.plan.calibration.label()}")
    if report.plan.flash_attn:
        lines.append("**Flash attention:** on for every build (a quantized V cache needs it)")
    for line in report.confounds:
        lines.append(f"- confound: {line}")
    for note in report.plan.notes:
        lines.append(f"- note: {note}")
    for b in report.builds:
        if b.error:
            lines.append(f"- {b.name} {b.status.replace('_', ' ')}: {b.error.splitlines()[0]}")
    return "\n".join(lines) + "\n"


def write_plot(report: AuditReport, path: Path) -> Path | None:
    """Pass rate (Wilson interval) against file size and against generation tok/s, as a PNG; None without data."""
    points = [r for r in report.rows if r.overall is not None and r.overall.rate is not None]
    if not points:
        return None
    os.environ.setdefault("MPLCONFIGDIR", tempfile.gettempdir())
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, (label, get) in zip(axes, (("file size (MB)", lambda r: r.cost.file_size_bytes and r.cost.file_size_bytes / 1e6),
                                       ("generation tok/s", lambda r: r.cost.gen_tok_s))):
        for r in points:
            x = get(r)
            if x is None:
                continue
            y = 100 * r.overall.rate
            err = [[y - 100 * (r.overall.low or 0)], [100 * (r.overall.high or 0) - y]]
            colour = "black" if r.is_reference else ("tab:green" if r.chosen or r.passes else "tab:red")
            ax.errorbar([x], [y], yerr=err, fmt="o", color=colour, capsize=3)
            ax.annotate(r.build, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("pass rate (%), Wilson 95% CI")
    axes[0].set_ylim(-5, 105)
    fig.suptitle(f"{report.plan.source}: accuracy against size and speed", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_audit(report: AuditReport, run_dir: Path) -> dict[str, Path]:
    """`audit.json` (the report), `audit.md` (the table and verdict) and `audit.png` (the plot) in `run_dir`."""
    run_dir.mkdir(parents=True, exist_ok=True)
    written = {"audit.md": run_dir / "audit.md"}
    written["audit.md"].write_text(to_markdown(report), encoding="utf-8")
    try:
        plot = write_plot(report, run_dir / "audit.png")
    except Exception as exc:  # a plot is a nicety: a broken matplotlib must not lose the audit
        log.warning("audit.plot_failed", error=repr(exc))
        plot = None
    if plot is not None:
        report.plot = str(plot)
        written["audit.png"] = plot
    state = json.loads((run_dir / AUDIT_STATE).read_text(encoding="utf-8")) if (run_dir / AUDIT_STATE).exists() else {}
    state["report"] = json.loads(report.model_dump_json())
    state["plan"] = state["report"]["plan"]
    state["builds"] = state["report"]["builds"]
    (run_dir / AUDIT_STATE).write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    written[AUDIT_STATE] = run_dir / AUDIT_STATE
    return written


def print_audit(report: AuditReport, console: Any) -> None:
    """The table, the verdict and the breaks on a rich console (strings as `Text`, never markup)."""
    from rich.table import Table
    from rich.text import Text

    table = Table(*TABLE_HEAD, title=f"audit of {report.plan.source}", title_justify="left")
    styles = {"reference": "bold", "chosen": "bold green", "within": "green", "beyond": "red"}
    for cells in table_rows(report):
        table.add_row(*(Text(c) for c in cells), style=styles.get(cells[-1], "yellow"))
    console.print(table)
    if report.verdict is not None:
        console.print(Text("verdict: ", style="bold") + Text(report.verdict.summary))
    for b in report.breaks:
        if b.build:
            where = f" [{b.series}]" if b.series else ""
            console.print(Text(f"  {b.stratum}{where} first breaks at {b.build} ({b.delta_pts:+.1f} pts)"))
    console.print(Text(f"calibration: {report.plan.calibration.label()}"))
    for line in report.confounds:
        console.print(Text("confound: ", style="bold yellow") + Text(line))
    for note in report.plan.notes:
        console.print(Text(f"note: {note}", style="dim"))
    for b in report.builds:
        if b.error:
            console.print(Text(f"{b.name} {b.status.replace('_', ' ')}: {b.error.splitlines()[0]}", style="red"))
