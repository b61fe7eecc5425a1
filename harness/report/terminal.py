"""The terminal summary: rich tables and colours, per build, per stratum, per scenario, and the flips.

Strings from models and scenarios go into `Text` objects, never into markup, so a `[bold]` in a
scenario id prints as itself.
"""

from __future__ import annotations

from collections.abc import Collection

from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from harness.compare import Comparison
from harness.records import Results
from harness.report._format import (
    ci_text, clean, delta_ci_text, grade_note, headline, is_comparison, kinds_text, ms, number, ordered_targets, p_value, pct, pts,
    rate_text, scenario_rows, size, strata_kinds, claim_text, flips_text, headline_mark,
)

__all__ = ["print_terminal"]

_MAX_ROWS = 30


def _t(text: object, style: str | None = None) -> Text:
    return Text(clean(text), style=style or "")


def _rate_style(rate: float | None) -> str:
    if rate is None:
        return "dim"
    return "green" if rate >= 0.9 else "yellow" if rate >= 0.6 else "red"


def print_terminal(comparison: Comparison, console: Console, results: Results | None = None, *,
                   shown: Collection[str] = ()) -> None:
    """Print the verdict, the builds with cost, strata and failing scenarios; `results` adds first failed steps and kinds.

    Warnings in `shown` (`[target] text`, as the disclosure has them) were printed before the run: counted, not repeated.
    """
    comparing = is_comparison(comparison)
    verdict = comparison.verdict
    if verdict is not None:
        colour = "green" if verdict.chosen else "red" if verdict.decision_grade else "yellow"
        body = Text()
        body.append(clean(f"{headline_mark(comparison)} " + headline(comparison)), style=f"bold {colour}")
        body.append("\n" + clean(grade_note(comparison)), style="dim")
        styles = {"within": "green", "beyond": "red", "undecided": "yellow"}
        for b in verdict.builds:
            body.append(clean(f"\n  {claim_text(b.status)}: {b.target}: "), style=styles[b.status])
            body.append(clean("; ".join(b.reasons) or "within tolerance"))
            if b.to_decide:
                body.append(clean(f"\n      to decide: {b.to_decide}"), style="dim")
        for line in verdict.planning:
            body.append(clean(f"\n  · {line}"), style="dim")
        console.print(Panel(body, title="verdict", border_style=colour, expand=False))
    else:
        console.print(_t(headline(comparison), "bold"))
    d = comparison.disclosure
    for c in d.confounds:
        console.print(Text.assemble(("confound: ", "bold red"), clean(c.message)))
    repeated = [w for w in d.warnings if w in shown]
    for w in d.warnings:
        if w not in shown:
            console.print(Text.assemble(("warning: ", "yellow"), clean(w)))
    if repeated:
        console.print(Text(f"({len(repeated)} warning(s) printed before the run still apply; all are in the report)", style="dim"))

    builds = Table(title="builds", title_justify="left", header_style="bold")
    for col in ["build", "size", "pass@1", "95% CI"] + (["Δ vs ref", "Tango CI (Δ)", "claim", "McNemar mid-p", "flips −/+"] if comparing else []) \
            + ["p50 latency", "tok/s", "infra"]:
        builds.add_column(col, justify="left" if col == "build" else "right")
    for t in ordered_targets(comparison):
        row = [_t(t.name + (" (ref)" if t.is_reference else ""), "bold"), _t(size(t.size_bytes)),
               _t(rate_text(t.overall), _rate_style(t.overall.rate)), _t(ci_text(t.overall), "dim")]
        if comparing:
            vs = t.vs_reference
            if vs is None:
                row += [_t("–")] * 5
            else:
                style = {"within": "green", "beyond": "bold red", "undecided": "yellow"}[vs.overall.claim]
                row += [_t(pts(vs.overall.delta_pts), style), _t(delta_ci_text(vs.overall), "dim"), _t(vs.overall.claim, style),
                        _t(p_value(vs.overall.mcnemar_p)), _t(flips_text(vs))]
        row += [_t(ms(t.cost.latency_p50_ms)), _t(number(t.cost.gen_tokens_per_s)),
                _t(t.cost.infra_errors, "red" if t.cost.infra_errors else "dim")]
        builds.add_row(*row)
    console.print(builds)

    targets = ordered_targets(comparison)
    strata = sorted({s for t in targets for s in t.strata})
    kinds = strata_kinds(results) if results is not None else {}
    if strata:
        table = Table(title="per stratum", title_justify="left", header_style="bold")
        table.add_column("stratum")
        for t in targets:
            table.add_column(_t(t.name), justify="left")
        for s in strata:
            row = [_t(s)]
            for t in targets:
                rate = t.strata.get(s)
                cell = Text(pct(rate.rate) if rate else "–", style=_rate_style(rate.rate if rate else None))
                ps = t.vs_reference.strata.get(s) if t.vs_reference else None
                if ps is not None and ps.delta_pts is not None:
                    cell.append(f" {ps.delta_pts:+.1f}", style="red" if ps.delta_pts < -comparison.tolerance else "dim")
                failed = kinds.get(s, {}).get(t.name)
                if failed:
                    cell.append(f"\n{kinds_text(failed, 3)}", style="dim")
                row.append(cell)
            table.add_row(*row)
        console.print(table)

    if results is not None:
        rows = scenario_rows(results)
        failing = {sid: by_t for sid, by_t in rows.items() if any(r.passed < r.scored or r.infra for r in by_t.values())}
        if failing:
            table = Table(title=_t(f"scenarios that failed somewhere ({len(failing)} of {len(rows)})"), title_justify="left",
                          header_style="bold")
            table.add_column("scenario")
            for t in targets:
                table.add_column(_t(f"{t.name}\npassed · first failed step · kinds"))
            for sid, by_t in list(failing.items())[:_MAX_ROWS]:
                cells = [_t(sid)]
                for t in targets:
                    r = by_t.get(t.name)
                    if r is None:
                        cells.append(_t("–", "dim"))
                        continue
                    share = r.passed / r.scored if r.scored else None
                    cell = Text(r.rate_text, style=_rate_style(share))
                    if r.kinds:
                        cell.append(f" · step {r.first_failed_text} · {kinds_text(r.kinds, 2)}", style="dim")
                    if r.infra:
                        cell.append(f" · {r.infra} infra", style="red")
                    cells.append(cell)
                table.add_row(*cells)
            console.print(table)
            if len(failing) > _MAX_ROWS:
                console.print(Text(f"… {len(failing) - _MAX_ROWS} more in the HTML report", style="dim"))

    for t in comparison.targets:
        vs = t.vs_reference
        if vs is None or not vs.flips:
            continue
        table = Table(title=_t(f"flips: {t.name} vs {vs.reference} ({vs.noise_note})"), title_justify="left", header_style="bold")
        for col in ("", "scenario", "epoch", vs.reference, t.name, "why"):
            table.add_column(_t(col))
        for f in vs.flips[:_MAX_ROWS]:
            regression = f.direction == "regression"
            table.add_row(_t("▼" if regression else "▲", "red" if regression else "green"), _t(f.scenario_id),
                          _t(f"{100 * f.reference_pass_rate:.0f}→{100 * f.target_pass_rate:.0f}%" + (" flaky" if f.flaky else "")), _t(f.reference_outcome.value),
                          _t(f.target_outcome.value), _t(f.target_reason if regression else f.reference_reason, "dim"))
        console.print(table)
        if len(vs.flips) > _MAX_ROWS:
            console.print(Text(f"… {len(vs.flips) - _MAX_ROWS} more flips in the HTML report", style="dim"))
