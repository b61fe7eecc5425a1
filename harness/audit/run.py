"""Running an audit: each build made, served, health-checked, probed, run and stopped in turn, resumable."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from harness.audit.models import AuditError, AuditPlan, AuditReport, BuildResult, BuildSpec
from harness.audit.report import audit_report
from harness.audit.sources import resolve_calibration
from harness.records import Provenance, Results, RunConfig, Target, read_results
from harness.scenario import Scenario

__all__ = ["AUDIT_STATE", "run_audit", "server_flags"]

log = structlog.get_logger("harness.audit")

AUDIT_STATE = "audit.json"
"""The audit's own record next to `results.jsonl`: the plan and each build's status and cost."""

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


def server_flags(spec: BuildSpec, plan: AuditPlan, gpu_layers: str | None, server_args: list[str]) -> list[str]:
    """llama-server flags for one build: its KV-cache type, flash attention, GPU layers, then the user's own."""
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
        plan.calibration, imatrix_path = resolve_calibration(imatrix, calibrate, plan, scenarios, binaries, say,
                                                                 threads=threads)
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
                                 server_flags(spec, plan, gpu_layers, server_args or []), threads, preflight,
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
        prov.extra["server_flags"] = flags
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
