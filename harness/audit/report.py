"""The audit's answer from its results: the engine's verdict, stratum breaks, the cost table, Markdown and a plot."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import structlog

from harness.audit.models import AuditPlan, AuditReport, AuditRow, BuildResult, BuildSpec, StratumBreak
from harness.compare import Comparison, Rate, compare_runs
from harness.records import Results

__all__ = ["TABLE_HEAD", "audit_report", "table_rows", "to_markdown", "write_plot", "write_audit", "print_audit"]

log = structlog.get_logger("harness.audit")

_STATE = "audit.json"  # run.AUDIT_STATE (run imports this module)

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
    claims = {b.target: getattr(b, "status", None) or ("within" if b.passes else "beyond") for b in verdict.builds} if verdict else {}
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
            passes=judged.get(spec.name), claim=claims.get(spec.name), overall=overall, cost=cost,
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
        elif row.claim:
            mark = row.claim
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
    undecided = [b for b in (report.verdict.builds if report.verdict else []) if getattr(b, "to_decide", "")]
    lines += [f"- {b.target} would be decided by {b.to_decide}" for b in undecided] + ([""] if undecided else [])
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
            colour = "black" if r.is_reference else {"within": "tab:green", "beyond": "tab:red"}.get(
                r.claim or "", "tab:orange")
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
    state = json.loads((run_dir / _STATE).read_text(encoding="utf-8")) if (run_dir / _STATE).exists() else {}
    state["report"] = json.loads(report.model_dump_json())
    state["plan"] = state["report"]["plan"]
    state["builds"] = state["report"]["builds"]
    (run_dir / _STATE).write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    written[_STATE] = run_dir / _STATE
    return written


def print_audit(report: AuditReport, console: Any) -> None:
    """The table, the verdict and the breaks on a rich console (strings as `Text`, never markup)."""
    from rich.table import Table
    from rich.text import Text

    table = Table(*TABLE_HEAD, title=f"audit of {report.plan.source}", title_justify="left")
    styles = {"reference": "bold", "chosen": "bold green", "within": "green", "beyond": "red", "undecided": "yellow"}
    for cells in table_rows(report):
        table.add_row(*(Text(c) for c in cells), style=styles.get(cells[-1], "yellow"))
    console.print(table)
    if report.verdict is not None:
        console.print(Text("verdict: ", style="bold") + Text(report.verdict.summary))
        for b in report.verdict.builds:
            if getattr(b, "to_decide", ""):
                console.print(Text(f"  {b.target} would be decided by {b.to_decide}"))
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
