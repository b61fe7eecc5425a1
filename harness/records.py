"""The results file: an append-only JSONL record of a run, written as it goes, read back by reports.

Line 1 (and the first line of every resumed session) is a `RunHeader` with the config and each
target's provenance; every further line is a `RunRecord` for one scenario x target x epoch.
Reports, comparisons and gates are built from these files alone.

Durability: each line is written and flushed to the operating system as soon as its scenario finishes,
so a crash of the harness (SIGKILL, OOM, Ctrl-C, a bug) loses no finished scenario. `fsync` runs at
most once per `FSYNC_INTERVAL_S` (and on close), from a background thread: a crash of the whole
machine (power loss, kernel panic) can lose the records finished in the last second at most.
A crash mid-write leaves a torn last line; `repair_results` truncates it before a resume appends.
Every line is capped (`harness.scrub.cap_text`) and redacted of known secrets before it is written.

Memory: the raw request and reply bodies (`Reply.request`, `Reply.response`) stay in the file. A request
repeats the whole conversation and every tool schema, so they are nearly half of a record read back
(12.5 of 28 MB for the built-in suite's 398 records) and nothing after the run reads them: records a run
keeps for its reports, and records `read_results` returns, hold `{}` and None there (`Results.bodies` is
False); `read_results(..., bodies=True)` loads them. Reading streams the file line by line. The CLI then
hands its records to the reports (`write_reports(..., release_records=True)`), which let them go before
the plots are drawn, so matplotlib's memory comes in place of the records', not on top of it.
"""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness import scrub
from harness.scores import ScenarioScore
from harness.trajectory import Trajectory

__all__ = [
    "SCHEMA_VERSION",
    "Sampling",
    "Target",
    "Provenance",
    "RunConfig",
    "RunHeader",
    "RunRecord",
    "FSYNC_INTERVAL_S",
    "Repair",
    "Results",
    "ResultsError",
    "ResultsWriter",
    "read_results",
    "repair_results",
    "strip_bodies",
]

SCHEMA_VERSION = 1


class _Model(BaseModel):
    # the fields' docstrings document them in the code; pydantic is not asked to read them
    # (`use_attribute_docstrings` parses each class's source at import, about 5 ms a class): only the
    # scenario models, whose JSON Schema is published, carry them into descriptions
    model_config = ConfigDict()


class Sampling(_Model):
    """Sampling parameters, sent explicitly on every request because servers' defaults differ."""

    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = 0
    max_tokens: int = 512


class Target(_Model):
    """One model build behind one endpoint."""

    name: str
    """Short label used in reports (`ref`, `q4`)."""
    base_url: str
    """OpenAI-compatible base URL, e.g. `http://127.0.0.1:8080/v1`."""
    model: str
    """Model id sent in requests."""
    provider: Literal["openai", "litellm"] = "openai"
    """`openai`: the plain OpenAI-compatible client; `litellm`: route through litellm."""
    api_key: str | None = Field(default=None, exclude=True)
    """Never written to disk."""
    endpoints: list[str] = Field(default_factory=list)
    """Further base URLs serving the same build: with any, requests are spread over `base_url` and
    these by LiteLLM's Router (load balancing, retries, cooldowns of failing endpoints)."""


class Provenance(_Model):
    """What is known about a target's build and server: the disclosure block is built from this."""

    server: Literal["llama.cpp", "ollama", "vllm", "openai-compatible", "unknown"] = "unknown"
    server_version: str | None = None
    """Server build or version string."""
    model_id: str | None = None
    """The model id the server reports."""
    quantization: str | None = None
    """E.g. `Q4_K_M` (GGUF file type, Ollama quantization_level)."""
    parameter_size: str | None = None
    family: str | None = None
    digest: str | None = None
    """Ollama digest or GGUF file sha256."""
    file_path: str | None = None
    file_size_bytes: int | None = None
    memory_bytes: int | None = None
    """Memory the loaded model takes, where the server tells (Ollama `size`)."""
    vram_bytes: int | None = None
    """Of that, on the accelerator (Ollama `size_vram`)."""
    context_length: int | None = None
    chat_template: str | None = None
    """The chat template's name or a hash of it."""
    capabilities: list[str] = Field(default_factory=list)
    imatrix: str | None = None
    """Calibration data, where the GGUF metadata names it."""
    preflight: dict[str, Any] = Field(default_factory=dict)
    """Probe answers: tools_in_prompt, honours_tool_choice, structured_calls, ..."""
    warnings: list[str] = Field(default_factory=list)
    """Things a reader must know (tag lacks tools, model spills to CPU, template drops tools)."""
    extra: dict[str, Any] = Field(default_factory=dict)


class RunConfig(_Model):
    """How the run was set up."""

    scenario_paths: list[str] = Field(default_factory=list)
    scenario_set_hash: str | None = None
    """Hash over the selected scenarios' content hashes."""
    scenario_ids: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    epochs: int = 1
    sampling: Sampling = Field(default_factory=Sampling)
    concurrency: int = 1
    reference: str | None = None
    """Name of the reference target in a comparison."""
    tolerance: float | None = None
    """Allowed drop in pass-rate points versus the reference."""
    critical_strata: list[str] = Field(default_factory=list)
    difficulty: dict[str, Any] = Field(default_factory=dict)
    """Difficulty knobs set on the command line."""
    shard: str | None = None
    """`k/n` when this run is one shard of the suite (`scenario_set_hash` is then the whole suite's)."""
    harness_version: str | None = None


class RunHeader(_Model):
    """The first line of a results file (and of each resumed session of it)."""

    kind: Literal["header"] = "header"
    schema_version: int = SCHEMA_VERSION
    run_id: str
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    config: RunConfig
    targets: list[Target]
    provenance: dict[str, Provenance] = Field(default_factory=dict)
    """Per target name."""


class RunRecord(_Model):
    """One scenario run against one target in one epoch: the trajectory and its score."""

    kind: Literal["result"] = "result"
    schema_version: int = SCHEMA_VERSION
    run_id: str
    target: str
    scenario_id: str
    scenario_hash: str
    strata: list[str]
    tags: list[str] = Field(default_factory=list)
    family: str | None = None
    """The scenario family this run's scenario is an instance of (instances are correlated; None: no family)."""
    epoch: int
    trajectory: Trajectory
    score: ScenarioScore
    finished_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.target, self.scenario_id, self.epoch)


class ResultsError(Exception):
    """A results file that cannot be read; says which file and line."""


class Results(_Model):
    """Everything read back from one or more results files."""

    headers: list[RunHeader] = Field(default_factory=list)
    records: list[RunRecord] = Field(default_factory=list)
    bodies: bool = True
    """False: the replies' raw request and response bodies were left in the results file (`strip_bodies`)."""

    @property
    def header(self) -> RunHeader:
        """The newest header (config of the last session)."""
        if not self.headers:
            raise ResultsError("no header line in the results")
        return self.headers[-1]

    def targets(self) -> list[str]:
        """Target names in first-seen order."""
        seen: dict[str, None] = {}
        for h in self.headers:
            for t in h.targets:
                seen.setdefault(t.name, None)
        for r in self.records:
            seen.setdefault(r.target, None)
        return list(seen)

    def provenance(self, target: str) -> Provenance:
        for h in reversed(self.headers):
            if target in h.provenance:
                return h.provenance[target]
        return Provenance()

    def latest(self) -> list[RunRecord]:
        """One record per (target, scenario, epoch): the last one written wins."""
        by_key: dict[tuple[str, str, int], RunRecord] = {}
        for r in self.records:
            by_key[r.key] = r
        return list(by_key.values())

    def for_target(self, target: str) -> list[RunRecord]:
        return [r for r in self.latest() if r.target == target]

    def overlapping_runs(self) -> dict[str, int]:
        """Run id -> how many of its records another run also wrote (same target, scenario, epoch).

        Empty for one session, its resumes, and shards of one suite; not empty for two nights merged.
        """
        owner: dict[tuple[str, str, int], str] = {}
        clash: dict[str, int] = {}
        for r in self.records:
            first = owner.setdefault(r.key, r.run_id)
            if first != r.run_id:
                clash[first] = clash.get(first, 0) + 1
                clash[r.run_id] = clash.get(r.run_id, 0) + 1
        return clash

    def apart(self) -> Results:
        """The same results with every target renamed `NAME@RUN_ID`, so sessions are reported side by side."""
        def name(target: str, run_id: str) -> str:
            return f"{target}@{run_id}"

        headers = [h.model_copy(update={
            "targets": [t.model_copy(update={"name": name(t.name, h.run_id)}) for t in h.targets],
            "provenance": {name(k, h.run_id): v for k, v in h.provenance.items()},
            "config": h.config.model_copy(update={"reference": name(h.config.reference, h.run_id)
                                                  if h.config.reference else None}),
        }) for h in self.headers]
        records = [r.model_copy(update={"target": name(r.target, r.run_id)}) for r in self.records]
        return Results(headers=headers, records=records, bodies=self.bodies)


def strip_bodies(record: RunRecord) -> RunRecord:
    """Drop every reply's raw request and response body from `record` and return it.

    For a record already in the results file, which keeps them (see the module docstring). Each step gets
    a copy of its reply without them; the reply objects themselves are left alone (a client may hand the
    same one out again)."""
    for step in record.trajectory.steps:
        step.reply = step.reply.model_copy(update={"request": {}, "response": None})
    return record


def _strip_body_fields(data: dict[str, Any]) -> None:
    # the same, on a record's parsed JSON before it is validated (so the bodies are never built as models)
    trajectory = data.get("trajectory")
    steps = trajectory.get("steps") if isinstance(trajectory, dict) else None
    for step in steps if isinstance(steps, list) else ():
        reply = step.get("reply") if isinstance(step, dict) else None
        if isinstance(reply, dict):
            reply.pop("request", None)
            reply.pop("response", None)


FSYNC_INTERVAL_S = 1.0
"""Longest time a written record waits for its fsync: the most a machine crash can lose."""

_LINE_SOFT_LIMIT = 4 * scrub.CAP_CHARS
_RAW_LIMIT = 4 * scrub.CAP_CHARS


def _bounded(record: dict[str, Any]) -> dict[str, Any]:
    """Cap every string in a dumped record and, where a raw body is still large (many small parts),
    store it as an excerpt of its JSON text with size and hash."""
    data = scrub.cap_value(record)
    for step in (data.get("trajectory") or {}).get("steps") or []:
        reply = step.get("reply") or {}
        for key in ("response", "request"):
            value = reply.get(key)
            if isinstance(value, dict):
                text = json.dumps(value, ensure_ascii=False)
                if len(text) > _RAW_LIMIT:
                    reply[key] = {"capped": scrub.cap_text(text, scrub.CAP_CHARS)}
    return data


def _line(model: BaseModel) -> tuple[str, bool]:
    """The JSON line stored for `model`: capped when large, always redacted; and whether it is the
    model's own dump unchanged (neither capped nor redacted), so that the model stands for what is stored."""
    plain = model.model_dump_json()
    line = plain
    if len(line) > _LINE_SOFT_LIMIT:
        line = json.dumps(_bounded(model.model_dump(mode="json")), ensure_ascii=False)
    line = scrub.redact(line)
    return line, line == plain


class ResultsWriter:
    """Appends records to a JSONL file: each line flushed at once, fsynced within `fsync_interval_s`.

    See the module docstring for what survives which crash.
    """

    def __init__(self, path: str | Path, *, fsync_interval_s: float = FSYNC_INTERVAL_S):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("a", encoding="utf-8")
        self._interval = fsync_interval_s
        self._lock = threading.Lock()
        self._dirty = False
        self._closed = threading.Event()
        self.fsyncs = 0
        """fsync calls made so far (tests and benchmarks read it)."""
        self._syncer = threading.Thread(target=self._sync_loop, name="results-fsync", daemon=True)
        self._syncer.start()

    def _sync_loop(self) -> None:
        while not self._closed.wait(self._interval):
            self._sync()

    def _sync(self) -> None:
        with self._lock:
            if not self._dirty or self._fh.closed:
                return
            self._dirty = False
            fd = self._fh.fileno()
            self.fsyncs += 1
        os.fsync(fd)

    def _write(self, model: BaseModel) -> tuple[str, bool]:
        line, plain = _line(model)
        with self._lock:
            # one write call per line: a crash tears at most this line, never an earlier one
            self._fh.write(line + "\n")
            self._fh.flush()
            self._dirty = True
        return line, plain

    def header(self, header: RunHeader) -> RunHeader:
        """Write the header (synced before returning: it names the run); returns it as stored."""
        line, plain = self._write(header)
        self._sync()
        return header if plain else RunHeader.model_validate_json(line)

    def record(self, record: RunRecord) -> RunRecord:
        """Append a record; returns it as stored, the very object unless capping or redaction changed its line
        (then the stored line read back), so a run's results need no second read of the file."""
        line, plain = self._write(record)
        return record if plain else RunRecord.model_validate_json(line)

    def close(self) -> None:
        if self._fh.closed:
            return
        self._closed.set()
        self._syncer.join(timeout=5)
        self._sync()
        with self._lock:
            self._fh.close()

    def __enter__(self) -> "ResultsWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Repair(_Model):
    """What `repair_results` did to a results file before a resume appended to it."""

    path: str
    line: int
    """1-based number of the last line, the one repaired."""
    dropped_bytes: int = 0
    """Bytes of a torn line truncated away (0 when the line was complete)."""
    added_newline: bool = False
    """The last line was a complete record missing only its newline; the newline was added and the record kept."""

    @property
    def message(self) -> str:
        if self.dropped_bytes:
            return (f"{self.path}: line {self.line} was torn by a crash mid-write ({self.dropped_bytes:,} bytes, "
                    "not a complete record); truncated it to the last complete record, which is kept")
        return f"{self.path}: line {self.line} was complete but lacked its newline; added it, the record is kept"


def repair_results(path: str | Path) -> Repair | None:
    """Make a results file safe to append to: a torn last line (a crash mid-write) is truncated, a
    complete last record missing only its newline gets one. Returns what was done, None if nothing was."""
    path = Path(path)
    if not path.exists():
        return None
    with path.open("rb+") as fh:
        size = fh.seek(0, os.SEEK_END)
        if size == 0:
            return None
        # the last line starts after the last newline that has something after it
        window = min(size, 1 << 16)
        start = size
        while True:
            fh.seek(start - window)
            chunk = fh.read(window)
            cut = chunk.rstrip(b"\n\r\0 \t").rfind(b"\n")
            if cut >= 0 or start - window == 0:
                begin = start - window + cut + 1 if cut >= 0 else 0
                break
            window = min(start, window * 4)
        fh.seek(begin)
        tail = fh.read()
        line_no = 1 + _count_newlines(fh, begin)
        body = tail.rstrip(b"\n\r\0 \t")
        if not body:
            if tail.strip(b"\n\r") == b"":
                return None
            fh.truncate(begin)  # zero bytes a crash left after the last line
            return Repair(path=str(path), line=line_no, dropped_bytes=len(tail))
        if _complete(body):
            if tail.endswith(b"\n") and tail == body + b"\n":
                return None
            fh.truncate(begin)
            fh.seek(begin)
            fh.write(body + b"\n")
            return Repair(path=str(path), line=line_no, added_newline=True)
        fh.truncate(begin)
        return Repair(path=str(path), line=line_no, dropped_bytes=len(tail))


def _count_newlines(fh: Any, end: int) -> int:
    fh.seek(0)
    count, left = 0, end
    while left > 0:
        chunk = fh.read(min(left, 1 << 20))
        if not chunk:
            break
        count += chunk.count(b"\n")
        left -= len(chunk)
    return count


def _complete(line: bytes) -> bool:
    try:
        data = json.loads(line)
    except (ValueError, RecursionError):
        return False
    return isinstance(data, dict) and data.get("kind") in ("header", "result")


def _results_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(path.glob("*.jsonl"))
        if not files:
            raise ResultsError(f"{path}: no .jsonl results files in this folder")
        return files
    if not path.exists():
        raise ResultsError(f"{path}: no such file or folder")
    return [path]


def read_results(paths: list[str | Path] | str | Path, *, bodies: bool = False) -> Results:
    """Read results files (or folders of them) into one `Results`; several files merge (shards, nights).

    Lines end at "\n" only, as the writer ends them: a raw U+2028 or U+0085 a model wrote into a string is
    part of its line (`str.splitlines()` would break the record there).

    A truncated last line (a crash mid-write) is skipped; any other bad line is an error naming file and line.
    `bodies`: also load the replies' raw request and response bodies (off: see the module docstring).
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    results = Results(bodies=bodies)
    for file in (f for p in paths for f in _results_files(Path(p))):
        with file.open("rb") as fh:
            # a line that is not JSON is an error unless it proves to be the last one (a torn write)
            torn: ResultsError | None = None
            for n, raw in enumerate(fh, start=1):
                if not raw.strip():
                    continue
                if torn is not None:
                    raise torn
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    torn = ResultsError(f"{file}:{n}: not UTF-8 text (byte {exc.start})")
                    continue
                try:
                    data = json.loads(line)
                except json.JSONDecodeError as exc:
                    torn = ResultsError(f"{file}:{n}: not JSON ({exc.msg})")
                    torn.__cause__ = exc
                    continue
                _read_line(results, data, file, n, bodies)
    return results


def _read_line(results: Results, data: Any, file: Path, n: int, bodies: bool) -> None:
    if not isinstance(data, dict):
        raise ResultsError(f"{file}:{n}: a JSON {type(data).__name__}, not a record object")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ResultsError(f"{file}:{n}: schema_version {version!r}; this harness reads version {SCHEMA_VERSION}")
    try:
        if data.get("kind") == "header":
            results.headers.append(RunHeader.model_validate(data))
        elif data.get("kind") == "result":
            if not bodies:
                _strip_body_fields(data)
            results.records.append(RunRecord.model_validate(data))
        else:
            raise ResultsError(f"{file}:{n}: unknown record kind {data.get('kind')!r}")
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(k) for k in first["loc"])
        raise ResultsError(f"{file}:{n}: invalid {data.get('kind')} record at {where}: {first['msg']}") from exc
