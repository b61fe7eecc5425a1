"""Run a set of scenarios against one or more targets, epochs times, writing each result as it lands.

Targets run one after another (so speed is measured on an otherwise idle server); scenarios within
a target run up to `concurrency` at a time. A results file can be resumed: finished runs are kept,
runs that hit an infrastructure error are tried again, and a line torn by a crash is repaired first.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import structlog
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from harness.knobs import merge_difficulty
from harness.loop import ChatClientLike, run_scenario
from harness.records import (
    Provenance, Results, ResultsWriter, RunConfig, RunHeader, RunRecord, Target, read_results, repair_results,
    strip_bodies,
)
from harness.scenario import Scenario
from harness.scoring import score_scenario

__all__ = ["content_hashes", "scenario_set_hash", "new_run_id", "make_progress", "resume_conflicts", "run_suite"]

log = structlog.get_logger("harness.runner")


def content_hashes(scenarios: list[Scenario]) -> dict[str, str]:
    """Scenario id -> content hash. Each hash dumps the whole scenario (about 0.13 ms): a run makes them once
    and hands them to `scenario_set_hash` and `run_suite`."""
    return {sc.id: sc.content_hash for sc in scenarios}


def scenario_set_hash(scenarios: list[Scenario], hashes: dict[str, str] | None = None) -> str:
    """One hash naming the exact task: every selected scenario's content, in id order. `hashes` are the
    scenarios' `content_hashes`, when the caller has them."""
    digest = hashlib.sha256()
    for sc in sorted(scenarios, key=lambda s: s.id):
        digest.update(f"{sc.id}:{hashes[sc.id] if hashes is not None else sc.content_hash}\n".encode())
    return digest.hexdigest()[:16]


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


def make_progress(console: Any = None, *, disable: bool = False) -> Progress:
    """The progress bars shown while a run goes: one per target."""
    return Progress(
        # a target's name is shown as it is: `[q4]` is no style, `[/x]` no closing tag
        TextColumn("{task.description}", style="bold", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=disable,
        transient=False,
    )


def resume_conflicts(old: Results, scenarios: list[Scenario], targets: list[Target], config: RunConfig) -> list[str]:
    """What differs between the run recorded in `old` (its first header) and the one about to resume it,
    one line each: the scenario set, epochs, sampling, difficulty knobs and targets (name, model, provider,
    URL) must all match, or the merged results would compare unlike runs. Empty when resuming is safe."""
    from harness.scrub import redact_url

    if not old.headers:
        return ["the results file has no header line to compare against"]
    then = old.headers[0].config
    out: list[str] = []
    if then.scenario_set_hash != config.scenario_set_hash:
        before, now = set(then.scenario_ids), {s.id for s in scenarios}
        recorded = {r.scenario_id: r.scenario_hash for r in old.records}
        changed = sorted(s.id for s in scenarios if s.id in recorded and recorded[s.id] != s.content_hash)
        parts = [f"added {_few(now - before)}" if now - before else "", f"removed {_few(before - now)}" if before - now else "",
                 f"content changed in {_few(changed)}" if changed else ""]
        out.append("scenario set: " + ("; ".join(p for p in parts if p) or "the scenarios' content changed"))
    if then.epochs != config.epochs:
        out.append(f"epochs: {then.epochs} then, {config.epochs} now")
    for field, value in then.sampling.model_dump().items():
        if getattr(config.sampling, field) != value:
            out.append(f"sampling {field}: {value!r} then, {getattr(config.sampling, field)!r} now")
    if then.difficulty != config.difficulty:
        out.append(f"difficulty knobs: {then.difficulty or 'none'} then, {config.difficulty or 'none'} now")
    old_targets = {t.name: t for h in old.headers for t in h.targets}
    new_targets = {t.name: t for t in targets}
    if set(old_targets) != set(new_targets):
        out.append(f"targets: {sorted(old_targets)} then, {sorted(new_targets)} now")
    for name in sorted(set(old_targets) & set(new_targets)):
        a, b = old_targets[name], new_targets[name]
        for field in ("model", "provider", "base_url"):
            was, now_ = getattr(a, field), getattr(b, field)
            if field == "base_url":
                # the stored URL has its password redacted: compare like with like
                was, now_ = redact_url(was), redact_url(now_)
            if was != now_:
                out.append(f"target {name!r} {field}: {was!r} then, {now_!r} now")
    return out


def _few(ids: object) -> str:
    items = sorted(ids)  # type: ignore[call-overload]
    return ", ".join(items[:5]) + (f" and {len(items) - 5} more" if len(items) > 5 else "")


def _previous(path: Path) -> Results:
    """What a results file already holds (nothing when it is new or empty)."""
    if not path.exists() or path.stat().st_size == 0:
        return Results()
    return read_results(path)


def _done_keys(results: Results) -> set[tuple[str, str, int, str]]:
    return {(r.target, r.scenario_id, r.epoch, r.scenario_hash) for r in results.latest() if not r.score.infra_error}


async def run_suite(
    scenarios: list[Scenario],
    targets: list[Target],
    *,
    out: Path,
    config: RunConfig,
    run_id: str | None = None,
    provenance: dict[str, Provenance] | None = None,
    client_factory: Callable[[Target], ChatClientLike] | None = None,
    progress: Progress | None = None,
    resume: bool = True,
    concurrency: dict[str, int] | None = None,
    previous: Results | None = None,
    hashes: dict[str, str] | None = None,
) -> Results:
    """Run every scenario x target x epoch not already in `out`, append each record, return all results.

    `client_factory` defaults to `harness.client.make_client`. `concurrency` (per target name)
    overrides `config.concurrency`, the scenarios in flight at once. `previous` is what `out` holds, when the
    caller has read it already (a resume's checks); otherwise it is read here; `hashes` likewise are the scenarios'
    `content_hashes`, made here when not given. Interrupting (Ctrl-C) loses only the
    runs in flight: every finished one is already on disk.
    """
    if client_factory is None:
        from harness.client import make_client

        client_factory = make_client
    run_id = run_id or new_run_id()
    repair = repair_results(out)
    if repair is not None:
        log.warning("results.repaired", path=repair.path, line=repair.line, dropped_bytes=repair.dropped_bytes,
                    added_newline=repair.added_newline, message=repair.message)
    # the results come back as the file holds them without reading it again: what was there before,
    # then this session's header and records as the writer stored them
    results = previous if previous is not None else _previous(out)
    # each record is kept without its raw bodies once the file has them (harness.records, "Memory")
    results.bodies = False
    done = _done_keys(results) if resume else set()
    header = RunHeader(run_id=run_id, config=config, targets=targets, provenance=provenance or {})
    writer = ResultsWriter(out)
    results.headers.append(writer.header(header))
    sampling = config.sampling
    overrides = config.difficulty or None
    # hashed once: a scenario's hash dumps and hashes the whole scenario
    if hashes is None:
        hashes = content_hashes(scenarios)
    try:
        for target in targets:
            todo = [
                (sc, epoch)
                for epoch in range(config.epochs)
                for sc in scenarios
                if (target.name, sc.id, epoch, hashes[sc.id]) not in done
            ]
            task = progress.add_task(target.name, total=len(todo), status="") if progress else None
            if not todo:
                log.info("target.skipped", target=target.name, reason="all runs already in the results file")
                continue
            client = client_factory(target)
            semaphore = asyncio.Semaphore(max(1, (concurrency or {}).get(target.name, config.concurrency)))
            failures = 0

            async def one(sc: Scenario, epoch: int) -> None:
                nonlocal failures
                async with semaphore:
                    # a response cache keys replies by epoch too: it hands out a view per epoch
                    for_epoch = getattr(client, "for_epoch", None)
                    trajectory = await run_scenario(
                        sc, for_epoch(epoch) if for_epoch else client, target=target.name, sampling=sampling, epoch=epoch, difficulty=merge_difficulty(sc.difficulty, overrides)
                    )
                    score = score_scenario(sc, trajectory)
                    stored = writer.record(
                        RunRecord(
                            run_id=run_id,
                            target=target.name,
                            scenario_id=sc.id,
                            scenario_hash=hashes[sc.id],
                            strata=[str(s) for s in sc.strata],
                            tags=sc.tags,
                            family=sc.family,
                            epoch=epoch,
                            trajectory=trajectory,
                            score=score,
                        )
                    )
                    results.records.append(strip_bodies(stored))
                    failures += 0 if score.passed else 1
                    log.info(
                        "scenario.done", scenario=sc.id, target=target.name, epoch=epoch,
                        outcome=str(score.outcome), first_failed_step=score.first_failed_step,
                    )
                    if progress is not None and task is not None:
                        progress.update(task, advance=1, status=f"[red]{failures} failed" if failures else "[green]all passed")

            try:
                await asyncio.gather(*(one(sc, epoch) for sc, epoch in todo))
            finally:
                close = getattr(client, "aclose", None)
                if close is not None:
                    await close()
    finally:
        writer.close()
    return results
