"""Build RunRecords and Results in code, for tests of anything downstream of scoring (compare, reports, gates).

    record("q4", "weather", steps="ok wrong_tool not_reached", strata=["tool_selection"])

makes a run whose scenario has three expected steps, the second graded `wrong_tool`; the score's
`passed`, `outcome` and `first_failed_step` are derived the way `harness.scoring` derives them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from harness.outcomes import Dimension, Outcome
from harness.records import Provenance, Results, RunConfig, RunHeader, RunRecord, Sampling, Target
from harness.scores import Check, ScenarioScore, StepScore
from harness.trajectory import Reply, ServerTimings, Step, Trajectory, Usage

__all__ = ["DIMENSION_OF", "record", "results", "outcomes"]

DIMENSION_OF: dict[Outcome, Dimension] = {
    **{o: Dimension.ARGUMENT_VALIDITY for o in (
        Outcome.MALFORMED_ARGUMENTS, Outcome.TRUNCATED_CALL, Outcome.MISSING_REQUIRED,
        Outcome.UNEXPECTED_PARAM, Outcome.TYPE_ERROR, Outcome.VALUE_ERROR)},
    Outcome.CONTEXT_LOST: Dimension.CONTEXT_RETENTION,
    Outcome.ANSWER_MISMATCH: Dimension.ANSWER,
    Outcome.END_STATE_MISMATCH: Dimension.END_STATE,
}
"""Which dimension a failing check of each outcome grades (everything else: tool_selection)."""


def outcomes(steps: str | Sequence[Outcome | str]) -> list[Outcome]:
    """`"ok ok wrong_tool"` or a list of outcomes -> a list of `Outcome`."""
    items = steps.split() if isinstance(steps, str) else steps
    return [Outcome(s) for s in items]


def record(
    target: str,
    scenario_id: str,
    *,
    steps: str | Sequence[Outcome | str] = "ok ok",
    end: Outcome | str | None = None,
    epoch: int = 0,
    strata: Iterable[str] = ("tool_selection",),
    tags: Iterable[str] = (),
    infra: bool = False,
    latency_ms: float | None = 100.0,
    tokens_per_s: float | None = None,
    attempts: int = 1,
    prompt_tokens: int = 10,
    completion_tokens: int = 5,
    duration_ms: float | None = None,
    scenario_hash: str | None = None,
    run_id: str = "run-1",
) -> RunRecord:
    """One run of one scenario: a step score and a model reply per expected step.

    `steps` grades each expected step in order; `end` adds a final check (`ok`, `answer_mismatch`,
    `end_state_mismatch`); `infra=True` makes an infrastructure-error run (no step scores).
    """
    grades = outcomes(steps)
    replies = [
        Step(index=i, turn=1, reply=Reply(
            outcome=Outcome.INFRA_ERROR if infra and i == len(grades) - 1 else Outcome.OK,
            latency_ms=latency_ms,
            attempts=attempts,
            usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                        total_tokens=prompt_tokens + completion_tokens),
            timings=ServerTimings(predicted_per_second=tokens_per_s) if tokens_per_s is not None else None,
        ))
        for i in range(len(grades))
    ]
    trajectory = Trajectory(
        scenario_id=scenario_id, target=target, epoch=epoch, steps=replies,
        outcome=Outcome.INFRA_ERROR if infra else Outcome.OK,
        duration_ms=duration_ms if duration_ms is not None else (latency_ms or 0.0) * len(grades),
    )
    if infra:
        score = ScenarioScore(scenario_id=scenario_id, passed=False, outcome=Outcome.INFRA_ERROR,
                              infra_error=True, reason="infrastructure error (excluded from accuracy): 503")
    else:
        step_scores = [
            StepScore(
                index=i, turn=1, kind="call", expected=f"step {i}", actual=o.value,
                checks=[Check.ok(Dimension.TOOL_SELECTION)] if o is Outcome.OK
                else [Check.fail(DIMENSION_OF.get(o, Dimension.TOOL_SELECTION), o, f"step {i}: {o.value}")],
            )
            for i, o in enumerate(grades)
        ]
        final: list[Check] = []
        if end is not None:
            e = Outcome(end)
            dim = Dimension.END_STATE if e is Outcome.END_STATE_MISMATCH else Dimension.ANSWER
            final.append(Check.ok(dim) if e is Outcome.OK else Check.fail(dim, e, f"final: {e.value}"))
        first = next((s for s in step_scores if not s.passed), None)
        failed_final = next((c for c in final if not c.passed), None)
        outcome = first.outcome if first else failed_final.outcome if failed_final else Outcome.OK
        reason = (f"step {first.index}: {first.outcome.value}" if first
                  else failed_final.reason if failed_final else "")
        score = ScenarioScore(
            scenario_id=scenario_id, passed=outcome is Outcome.OK, outcome=outcome,
            first_failed_step=first.index if first else None, steps=step_scores, final_checks=final,
            reason=reason,
        )
    return RunRecord(
        run_id=run_id, target=target, scenario_id=scenario_id,
        scenario_hash=scenario_hash or f"hash-{scenario_id}",
        strata=list(strata), tags=list(tags), epoch=epoch, trajectory=trajectory, score=score,
    )


def results(
    records: Iterable[RunRecord],
    *,
    provenance: dict[str, Provenance] | None = None,
    config: RunConfig | None = None,
    run_id: str = "run-1",
) -> Results:
    """A `Results` with one header naming every target the records use (in first-seen order)."""
    records = list(records)
    names = list(dict.fromkeys(r.target for r in records))
    header = RunHeader(
        run_id=run_id,
        config=config or RunConfig(sampling=Sampling()),
        targets=[Target(name=n, base_url="http://127.0.0.1:8080/v1", model=n) for n in names],
        provenance=provenance or {},
    )
    return Results(headers=[header], records=records)


def write_results_file(results: Results, path: Path) -> Path:
    """`results` as a results.jsonl (headers, then records), as a run leaves it; the folder is made."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [h.model_dump_json() for h in results.headers] + [r.model_dump_json() for r in results.records]
    path.write_text("\n".join(lines) + "\n")
    return path


def fake_program(path: Path, body: str) -> Path:
    """An executable bash script at `path` (a stand-in for llama-server, llama-quantize, ...)."""
    import stat
    import textwrap

    path.write_text("#!/usr/bin/env bash\n" + textwrap.dedent(body))
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def spy_on_plots(monkeypatch, measure: Callable[[], int]) -> list[int]:
    """Wrap each of the report's plot functions so that it records `measure()` just before it draws;
    returns the list the values are appended to, one per plot drawn."""
    import harness.report.plots as plots

    seen: list[int] = []
    for name in ("accuracy_plot", "strata_plot", "survival_plot"):
        def spy(*args, _draw=getattr(plots, name)):
            seen.append(measure())
            return _draw(*args)

        monkeypatch.setattr(plots, name, spy)
    return seen
