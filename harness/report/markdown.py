"""The Markdown summary: short enough for `$GITHUB_STEP_SUMMARY` or a PR comment, with the verdict first.

GitHub renders HTML inside Markdown, so every string from a model or a scenario is escaped here too.
"""

from __future__ import annotations

import html
import re

from harness.compare import Comparison
from harness.report._format import (
    ci_text, delta_ci_text, grade_note, headline, is_comparison, ms, number, one_line, ordered_targets, p_value, pct, pts,
    rate_text, size, flips_text,
)

__all__ = ["render_markdown"]

# rows of flips or failures listed per target; the HTML report has them all
_MAX_ROWS = 25
_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def md(text: object, limit: int = 200) -> str:
    """Text safe inside Markdown (and a table cell): one line, HTML escaped, Markdown punctuation backslashed."""
    return _SPECIAL.sub(r"\\\1", html.escape(one_line(text, limit), quote=False))


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out + [""]


def render_markdown(comparison: Comparison) -> str:
    """The comparison (or single run) as GitHub-flavoured Markdown: verdict, builds, strata, flips, disclosure."""
    comparing = is_comparison(comparison)
    verdict = comparison.verdict
    icon = "ℹ️" if verdict is None else "✅" if verdict.chosen else "❌" if verdict.decision_grade else "❔"
    lines = [f"## {icon} agentic-harness: {md(headline(comparison), 400)}", ""]
    if verdict is not None:
        lines += [f"Reference **{md(verdict.reference)}**, tolerance {verdict.tolerance:g} pts"
                  + (f", counted strata {md(', '.join(verdict.critical_strata))}" if verdict.critical_strata else "")
                  + f". {md(grade_note(comparison), 600)}", ""]
        for b in verdict.builds:
            mark = {"within": "✅", "beyond": "❌", "undecided": "❔"}[b.status]
            why = "; ".join(md(r, 300) for r in b.reasons) or "within tolerance"
            todo = f" To decide: {md(b.to_decide, 400)}." if b.to_decide else ""
            lines.append(f"- {mark} **{md(b.target)}** ({size(b.size_bytes)}, {b.status}): {why}.{todo} "
                         f"_{md(b.decision_note, 600)}_")
        lines.append("")
        lines += [f"- {md(p, 500)}" for p in verdict.planning] + ([""] if verdict.planning else [])
        lines += ["_A claim is within (95% interval's lower end at or above -tolerance), beyond (upper end below "
                  "it) or undecided, never a point estimate; scenarios are the unit of evidence._", ""]
    d = comparison.disclosure
    for c in d.confounds:
        lines.append(f"> ⚠️ **Confound:** {md(c.message, 400)}")
    for w in d.warnings:
        lines.append(f"> ⚠️ {md(w, 400)}")
    if d.confounds or d.warnings:
        lines.append("")

    head = ["build", "size", "pass@1", "95% CI"]
    if comparing:
        head += ["Δ vs ref", "Tango 95% CI (Δ)", "claim", "McNemar mid-p", "flips −/+"]
    head += ["latency p50", "gen tok/s", "infra errors"]
    rows = []
    for t in ordered_targets(comparison):
        row = [f"**{md(t.name)}**" + (" (ref)" if t.is_reference else ""), size(t.size_bytes), rate_text(t.overall), ci_text(t.overall)]
        if comparing:
            vs = t.vs_reference
            row += (["–"] * 5 if vs is None else
                    [pts(vs.overall.delta_pts), delta_ci_text(vs.overall), vs.overall.claim, p_value(vs.overall.mcnemar_p),
                     flips_text(vs)])
        row += [ms(t.cost.latency_p50_ms), number(t.cost.gen_tokens_per_s), str(t.cost.infra_errors)]
        rows.append(row)
    lines += _table(head, rows)

    targets = ordered_targets(comparison)
    strata = sorted({s for t in targets for s in t.strata})
    if strata:
        lines += ["### Per stratum", ""]
        srows = []
        for s in strata:
            cells = [md(s)]
            for t in targets:
                rate = t.strata.get(s)
                cell = pct(rate.rate) if rate else "–"
                ps = t.vs_reference.strata.get(s) if t.vs_reference else None
                if ps is not None and ps.delta_pts is not None:
                    cell += f" ({ps.delta_pts:+.1f})"
                cells.append(cell)
            srows.append(cells)
        lines += _table(["stratum"] + [md(t.name) for t in targets], srows)

    for t in comparison.targets:
        vs = t.vs_reference
        if vs is None or not vs.flips:
            continue
        lines += [f"### Flipped items: {md(t.name)} vs {md(vs.reference)}", "", md(vs.noise_note, 400), ""]
        frows = []
        for f in vs.flips[:_MAX_ROWS]:
            why = f.target_reason if f.direction == "regression" else f.reference_reason
            frows.append(["▼" if f.direction == "regression" else "▲", md(f.scenario_id),
                          f"{100 * f.reference_pass_rate:.0f}→{100 * f.target_pass_rate:.0f}%" + (" flaky" if f.flaky else ""), md(f.reference_outcome.value),
                          md(f.target_outcome.value), md(why, 160)])
        lines += _table(["", "scenario", "epoch", md(vs.reference), md(t.name), "why"], frows)
        if len(vs.flips) > _MAX_ROWS:
            lines += [f"… and {len(vs.flips) - _MAX_ROWS} more in the HTML report.", ""]

    if not comparing:
        for t in targets:
            failing = [(sid, r) for sid, r in t.scenario_rates.items() if r.n and r.passed < r.n]
            if not failing:
                continue
            kinds = ", ".join(f"{md(k)} ×{n}" for k, n in t.failures.first_failure.items())
            lines += [f"### Failing scenarios: {md(t.name)}", "", f"First failures: {kinds}.", ""]
            lines += _table(["scenario", "passed"], [[md(sid), f"{r.passed}/{r.n}"] for sid, r in failing[:_MAX_ROWS]])
            if len(failing) > _MAX_ROWS:
                lines += [f"… and {len(failing) - _MAX_ROWS} more in the HTML report.", ""]

    lines += ["<details><summary>Disclosure</summary>", ""]
    sampling = d.sampling
    facts = [
        ("run ids", ", ".join(d.run_ids)),
        ("scenarios", f"{len(d.scenario_ids)} (set hash {d.scenario_set_hash or 'unknown'})"),
        ("epochs", str(d.epochs)),
        ("sampling", "" if sampling is None else
         f"temperature {sampling.temperature:g}, top_p {sampling.top_p:g}, seed {sampling.seed}, max_tokens {sampling.max_tokens}"),
        ("noise floor", comparison.noise_floor.note if comparison.noise_floor else ""),
        ("harness version", d.harness_version or ""),
    ]
    lines += [f"- {k}: {md(v, 400)}" for k, v in facts if v] + [""]
    prov_rows = [[md(t.name), md(t.provenance.quantization or "–"),
                  md(" ".join(x for x in (t.provenance.server, t.provenance.server_version) if x) or "–"),
                  size(t.provenance.file_size_bytes), md((t.provenance.digest or "–")[:16])] for t in d.targets]
    lines += _table(["build", "quant", "server", "file", "digest"], prov_rows)
    lines += [md(u, 400) + "  " for u in d.unverified]
    lines += ["</details>", ""]
    return "\n".join(lines)
