"""The audit's data: the plan of builds, what each build cost and how it fared, and the answer."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from harness.compare import Comparison, Rate, Verdict

__all__ = ["AuditError", "Calibration", "BuildSpec", "AuditPlan", "BuildCost", "BuildResult", "StratumBreak",
           "AuditRow", "AuditReport"]


class AuditError(Exception):
    """The audit cannot start: a source that is not one model, a missing file, a bad flag. The message says which."""


class _Model(BaseModel):
    model_config = ConfigDict()


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
    """Decisively within tolerance of the reference (None for the reference and builds with no runs)."""
    claim: str | None = None
    """The engine's status for the build: `within`, `beyond` or `undecided` (the interval straddles the line)."""
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
