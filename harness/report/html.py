"""The HTML report: one self-contained file per run or comparison, readable offline from disk.

Every piece of text from a model, a scenario or a server goes through `h()`, which escapes it; only
markup built here (and the plots, embedded as `data:` images) is ever written raw. The page carries
no script at all, and a Content-Security-Policy that forbids any, so injected markup stays inert twice over.
"""

from __future__ import annotations

import base64
import html
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import Any

from harness.compare import Comparison, Flip
from harness.outcomes import Outcome
from harness.records import Results, RunRecord
from harness.report._format import (
    as_json, ci_text, claim_text, clean, clip, delta_ci_text, find_record, headline, headline_mark, is_comparison, ms,
    number, one_line, ordered_targets, p_value, pct, pts, rate_text, runs_index, seconds, size, sized, style_of,
)
from harness.report.styles import CSS
from harness.scores import Check, StepScore
from harness.trajectory import Step

__all__ = ["Markup", "h", "render_html"]

# flips and failed runs shown with their full trajectories, per target; the rest get one line each
_MAX_TRAJECTORIES = 150
_MAX_TEXT = 2_000

_VOID = {"meta", "img", "br", "hr", "col"}


class Markup(str):
    """Text that is already HTML: built by `h()` or drawn by a plot, never taken from a model or a scenario."""


def _children(children: Iterable[Any]) -> str:
    out: list[str] = []
    for child in children:
        if child is None or child is False:
            continue
        if isinstance(child, Markup):
            out.append(child)
        elif isinstance(child, (list, tuple)):
            out.append(_children(child))
        else:
            out.append(html.escape(clean(child), quote=True))
    return "".join(out)


def h(tag: str, *children: Any, **attrs: Any) -> Markup:
    """An element; string children and attribute values are escaped (`class_` -> `class`, `data_x` -> `data-x`)."""
    parts = [tag]
    for key, value in attrs.items():
        if value is None or value is False:
            continue
        name = key.rstrip("_").replace("_", "-")
        parts.append(name if value is True else f'{name}="{html.escape(clean(value), quote=True)}"')
    start = f"<{' '.join(parts)}>"
    if tag in _VOID:
        return Markup(start)
    return Markup(f"{start}{_children(children)}</{tag}>")


def _badge(outcome: Outcome | str, text: str | None = None) -> Markup:
    return h("span", text or str(outcome), class_=f"badge {style_of(outcome)}")


def _kv(rows: list[tuple[str, Any]]) -> Markup:
    return h("table", class_="kv", *[h("tr", h("th", k), h("td", v)) for k, v in rows if v not in (None, "", [])])


def _table(head: list[Any], rows: list[list[Any]], class_: str = "grid") -> Markup:
    return h("table", h("thead", h("tr", *[h("th", c) for c in head])), h("tbody", *[h("tr", *[h("td", c) for c in r]) for r in rows]),
             class_=class_)


def _drawn(draw: Callable[[Any], str | None], alt: str) -> Markup | None:
    """`draw(plots)` embedded, or a line saying why it is missing: a plot is a nicety, and a broken matplotlib
    (or a bug in a plot) must cost that plot only, never the page or the run's exit code."""
    try:
        from harness.report import plots  # matplotlib is imported only when a plot is drawn

        return _plot(draw(plots), alt)
    except Exception as exc:
        import structlog

        structlog.get_logger("harness.report").warning("report.plot_failed", plot=alt, error=repr(exc)[:300])
        return h("p", f"Plot not drawn ({alt}): {type(exc).__name__}: {one_line(str(exc), 300)}", class_="muted plot-missing")


def _plot(svg: str | None, alt: str) -> Markup | None:
    if svg is None:
        return None
    data = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    return h("figure", h("img", src=f"data:image/svg+xml;base64,{data}", alt=alt, class_="plot"), h("figcaption", alt))


# -- verdict and disclosure ---------------------------------------------------------------------


def _verdict(comparison: Comparison) -> Markup:
    verdict = comparison.verdict
    if verdict is None:
        total = sum(t.infra_errors for t in comparison.targets)
        return h("section", h("h2", "Result"), h("p", headline(comparison), class_="verdict-line"),
                 h("p", f"single-target run: no reference, so no verdict; {total} infrastructure error(s) excluded from accuracy",
                   class_="muted"),
                 id="verdict", class_="verdict info")
    state = "pass" if verdict.chosen else "fail" if verdict.decision_grade else "open"
    grade = h("span", "decided" if verdict.decision_grade else "not decided",
              class_="chip " + ("ok" if verdict.decision_grade else "warn"))
    chips = [grade, h("span", f"tolerance {verdict.tolerance:g} pts", class_="chip"),
             h("span", f"reference {verdict.reference}", class_="chip"),
             h("span", "builds ordered by " + verdict.size_basis.replace("_bytes", "").replace("_", " "), class_="chip")]
    if verdict.critical_strata:
        chips.append(h("span", "counted strata: " + ", ".join(verdict.critical_strata), class_="chip"))
    if verdict.reported_strata:
        chips.append(h("span", "reported only: " + ", ".join(verdict.reported_strata), class_="chip"))
    rows = []
    for b in verdict.builds:
        cls = {"within": "ok-text", "beyond": "fail-text", "undecided": "warn-text"}[b.status]
        mark = h("span", claim_text(b.status), class_="nowrap " + cls)
        rows.append([h("strong", b.target), h("span", size(b.size_bytes), class_="nowrap"), mark,
                     h("ul", *[h("li", r) for r in b.reasons]) if b.reasons else "–",
                     b.decision_note + (f"; to decide: {b.to_decide}" if b.to_decide else "")])
    notes = [h("li", line) for line in verdict.planning]
    return h("section",
             h("h2", "Verdict"),
             h("p", f"{headline_mark(comparison)} " + headline(comparison), class_="verdict-line"),
             h("p", verdict.summary, class_="muted"),
             h("div", *chips, class_="chips"),
             _table(["build (smallest first)", "size", "claim", "open or failed criteria", "evidence"], rows),
             h("h3", "What this run can rule out") if notes else None, h("ul", *notes) if notes else None,
             h("p", "A claim is within (the 95% interval's lower end is at or above -tolerance), beyond (its upper end "
                    "is below -tolerance) or undecided; never a point estimate. Scenarios are the unit of evidence: "
                    "epochs of one scenario are pooled, and at temperature 0 they count once.", class_="muted"),
             id="verdict", class_=f"verdict {state}")


def _sessions(results: Results) -> Markup | None:
    if len(results.headers) <= 1:
        return None
    rows = [[h("code", hd.run_id), hd.created_at.strftime("%Y-%m-%d %H:%M UTC"), ", ".join(t.name for t in hd.targets),
             hd.config.epochs] for hd in results.headers]
    return h("div", h("h3", f"Merged from {len(results.headers)} sessions"),
             _table(["run id", "started", "targets", "epochs"], rows))


def _placement(p: Any) -> Any:
    """Memory the loaded model takes and how much of it is on the GPU (Ollama's /api/ps)."""
    if p.memory_bytes is None and p.vram_bytes is None:
        return "–"
    if p.memory_bytes and p.vram_bytes is not None:
        share = p.vram_bytes / p.memory_bytes
        where = "all in VRAM" if share >= 0.999 else "on the CPU" if p.vram_bytes == 0 else f"{share:.0%} in VRAM"
        return _two(size(p.memory_bytes), f"{size(p.vram_bytes)} VRAM, {where}", "fail-text" if share < 0.999 else None)
    return _two(size(p.memory_bytes), f"{size(p.vram_bytes)} VRAM" if p.vram_bytes is not None else None)


def _disclosure(comparison: Comparison, results: Results) -> Markup:
    d = comparison.disclosure
    loud = [h("div", h("strong", "Confound: "), c.message, class_="alert fail") for c in d.confounds]
    loud += [h("div", h("strong", "Unverified: "), u, class_="alert warn") for u in d.unverified]
    loud += [h("div", h("strong", "Warning: "), w, class_="alert warn") for w in d.warnings]
    sampling = d.sampling
    noise = comparison.noise_floor
    facts = _kv([
        ("run ids", ", ".join(d.run_ids)),
        ("scenarios", f"{len(d.scenario_ids)} (set hash {d.scenario_set_hash or 'unknown'}, {d.scenario_set_hash_source})"),
        ("epochs", d.epochs),
        ("sampling", None if sampling is None else
         f"temperature {sampling.temperature:g}, top_p {sampling.top_p:g}, seed {sampling.seed}, max_tokens {sampling.max_tokens}"),
        ("reference", d.reference),
        ("tolerance", None if d.tolerance is None else f"{d.tolerance:g} pts"),
        ("critical strata", ", ".join(d.critical_strata)),
        ("unit of evidence", d.unit_of_evidence),
        ("noise floor", noise.note if noise is not None else None),
        ("scored runs", ", ".join(f"{k}: {v}" for k, v in d.sample_sizes.items())),
        ("harness version", d.harness_version),
    ])
    rows = []
    for t in d.targets:
        p = t.provenance
        rows.append([h("strong", t.name), t.model or p.model_id or "–", p.quantization or "–",
                     " ".join(x for x in (p.server, p.server_version) if x) or "–", size(p.file_size_bytes),
                     _placement(p), ", ".join(p.capabilities) or "–",
                     p.context_length or "–", p.chat_template or "–", p.imatrix or "–", t.requantized_from or "–",
                     h("code", p.digest[:16]) if p.digest else "–"])
    metrics = h("details", h("summary", "How each number is computed"),
                _kv([(k, v) for k, v in d.metrics.items()]), class_="metrics")
    loud += [h("div", h("strong", "Evidence: "), n, class_="alert warn") for n in d.evidence_notes]
    return h("section", h("h2", "Disclosure"), *loud, facts, _sessions(results),
             h("div", _table(["build", "model", "quant", "server", "file", "memory (VRAM)", "capabilities", "context",
                              "chat template", "imatrix", "requantized from", "digest"], rows), class_="scroll"),
             metrics, id="disclosure")


# -- accuracy, strata, depth, cost --------------------------------------------------------------


def _two(main: Any, sub: str | None = None, class_: str | None = None) -> Markup:
    """A table cell's value with its interval (or detail) in small type underneath."""
    return h("span", h("span", main, class_=f"nowrap {class_ or ''}".strip()), h("span", sub, class_="sub") if sub else None)


def _accuracy(comparison: Comparison) -> Markup:
    comparing = is_comparison(comparison)
    targets = ordered_targets(comparison)
    # columns that would say only "–" for every build are left out
    with_k = any(len(t.pass_hat_k) > 1 for t in targets)
    with_noise = any(t.noise.known for t in targets)
    head = ["build", "size", "pass@1 (95% CI)"] + (["pass^k"] if with_k else [])
    if comparing:
        head += ["Δ vs ref (Tango 95% CI)", "claim", "McNemar mid-p (equality)", "flips −/+"]
    if with_noise:
        head += ["flaky scenarios (95% CI)"]
    head += ["latency p50 / p95", "gen tok/s", "run time", "tokens in / out", "retries / infra errors"]
    rows = []
    for t in targets:
        row: list[Any] = [_two(h("strong", t.name), "reference" if t.is_reference else None), _two(size(t.size_bytes)),
                          _two(rate_text(t.overall), ci_text(t.overall))]
        if with_k:
            # one value a line: "^2 100.0%" never breaks inside
            row.append([h("span", f"^{p.k} {pct(p.value)}", class_="sub-line") for p in t.pass_hat_k[1:]] or "–")
        if comparing:
            vs = t.vs_reference
            if vs is None:
                row += ["–"] * 4
            else:
                d = vs.overall.delta_pts
                claim = vs.overall.claim
                cls = {"within": "ok-text", "beyond": "fail-text", "undecided": "warn-text"}[claim]
                stable = [f for f in vs.flips if not f.flaky]
                paired = (f"{pct(vs.overall.reference_rate, 0)} → {pct(vs.overall.target_rate, 0)} on "
                          f"{vs.overall.scenarios} paired scenarios")
                row += [_two(pts(d), f"{delta_ci_text(vs.overall)} · {paired}"),
                        h("span", claim_text(claim), class_="nowrap " + cls),
                        p_value(vs.overall.mcnemar_p),
                        _two(f"{sum(f.direction == 'regression' for f in stable)} / "
                             f"{sum(f.direction == 'improvement' for f in stable)}",
                             f"+{len(vs.flips) - len(stable)} flaky" if len(vs.flips) > len(stable) else None)]
        if with_noise:
            n = t.noise
            row.append(_two(f"{len(n.flaky)} / {n.repeated_scenarios}",
                            f"[{100 * n.low:.0f}, {100 * n.high:.0f}]%" if n.known and n.low is not None else "one epoch"))
        c = t.cost
        row += [_two(f"{ms(c.latency_p50_ms)} / {ms(c.latency_p95_ms)}"), number(c.gen_tokens_per_s), _two(seconds(c.wall_time_s)),
                _two(f"{c.prompt_tokens:,} / {c.completion_tokens:,}"),
                h("span", f"{c.retries} / {c.infra_errors}", class_="fail-text" if c.infra_errors else None)]
        rows.append(row)
    return h("section", h("h2", "Accuracy and cost"),
             h("div", _table(head, rows, class_="grid compact"), class_="scroll"),
             _accuracy_plot(comparison), _strata(comparison), id="accuracy")


def _accuracy_plot(comparison: Comparison) -> Markup | None:
    if len(comparison.targets) == 1:
        return _drawn(lambda plots: plots.strata_plot(comparison.targets[0]),
                      "Pass rate overall and per stratum, with 95% Wilson intervals")
    return _drawn(lambda plots: plots.accuracy_plot(comparison),
                  "Pass rate per stratum against build " + ("size" if sized(comparison.targets) else "(sizes unknown or equal)")
                  + ", with 95% Wilson intervals")


def _strata(comparison: Comparison) -> Markup | None:
    targets = ordered_targets(comparison)
    strata = sorted({s for t in targets for s in t.strata})
    if not strata:
        return None
    rows = []
    for s in strata:
        row: list[Any] = [h("strong", s)]
        for t in targets:
            rate = t.strata.get(s)
            cell: list[Any] = [rate_text(rate) if rate else "–"]
            ps = t.vs_reference.strata.get(s) if t.vs_reference else None
            if ps is not None and ps.delta_pts is not None:
                bad = ps.delta_pts < -comparison.tolerance
                cell.append(h("span", f" {pts(ps.delta_pts)}", class_="delta " + ("fail-text" if bad else "muted")))
            row.append(cell)
        rows.append(row)
    return h("div", h("h3", "Per stratum"), h("div", _table(["stratum"] + [t.name for t in targets], rows), class_="scroll"))


def _depth(comparison: Comparison) -> Markup:
    targets = ordered_targets(comparison)
    deepest = max((p.index for t in targets for p in t.depth), default=-1)
    rows = []
    for t in targets:
        by_index = {p.index: p for p in t.depth}
        rows.append([h("strong", t.name)] + [
            (f"{pct(by_index[k].survival, 0)} ({by_index[k].failed_here}✘)" if k in by_index else "–") for k in range(deepest + 1)
        ])
    table = _table(["build"] + [f"step {k}" for k in range(deepest + 1)], rows) if deepest >= 0 else None
    return h("section", h("h2", "Where runs break: survival by step depth"),
             h("p", "Kaplan-Meier survival: the estimated share of runs with no failed step up to and including each "
                    "expected step. A run with fewer expected steps leaves the count when it ends, neither a survivor "
                    "nor a failure; (n✘) runs first failing there.", class_="muted"),
             _drawn(lambda plots: plots.survival_plot(comparison), "Runs still on track after each expected step"),
             h("div", table, class_="scroll"), id="depth")


# -- heatmap ------------------------------------------------------------------------------------


def _heatmap(comparison: Comparison, results: Results) -> Markup | None:
    targets = [t.name for t in ordered_targets(comparison)]
    cells: dict[tuple[str, str, int | str], list[str]] = defaultdict(list)
    steps_of: dict[str, int] = defaultdict(int)
    scenarios: set[str] = set()
    for r in results.latest():
        if r.target not in targets:
            continue
        scenarios.add(r.scenario_id)
        if r.score.infra_error:
            cells[(r.target, r.scenario_id, "end")].append(Outcome.INFRA_ERROR.value)
            continue
        for s in r.score.steps:
            cells[(r.target, r.scenario_id, s.index)].append(s.outcome.value)
            steps_of[r.target] = max(steps_of[r.target], s.index + 1)
        if r.score.final_checks:
            failed_end = next((c.outcome.value for c in r.score.final_checks if not c.passed), None)
            cells[(r.target, r.scenario_id, "end")].append(failed_end or Outcome.OK.value)
    if not scenarios:
        return None

    def cell(target: str, sid: str, col: int | str) -> Markup:
        gap = " gap" if col == 0 else ""
        got = cells.get((target, sid, col))
        if not got:
            return h("td", class_=f"hm none{gap}")
        counts = Counter(got)
        ok = counts.get("ok", 0)
        if set(counts) <= {"infra_error"}:
            cls = "infra"
        elif set(counts) <= {"not_reached"}:
            cls = "skip"
        else:
            scored = sum(n for k, n in counts.items() if k != "infra_error")
            share = ok / scored if scored else 1.0
            cls = "h4" if share == 1 else "h0" if share == 0 else f"h{1 + int(share * 3 - 1e-9)}"
        title = f"{target} · {sid} · {'end checks' if col == 'end' else f'step {col}'}: " + ", ".join(
            f"{k} ×{n}" if n > 1 else k for k, n in counts.most_common())
        return h("td", class_=f"hm {cls}{gap}", title=title)

    head1 = [h("th", "", class_="sid")] + [h("th", t, colspan=steps_of[t] + 1, class_="tgt") for t in targets]
    head2 = [h("th", "scenario", class_="sid")] + [h("th", str(k), class_="step gap" if k == 0 else "step")
                                                  for t in targets for k in [*range(steps_of[t]), "end"]]
    body = []
    for sid in sorted(scenarios):
        row = [h("th", sid, class_="sid", title=sid)]
        for t in targets:
            row += [cell(t, sid, k) for k in [*range(steps_of[t]), "end"]]
        body.append(h("tr", *row))
    legend = h("div", *[h("span", h("i", class_=f"hm {c}"), label) for c, label in (
        ("h4", "passed"), ("h2", "passed in some epochs"), ("h0", "failed"), ("skip", "not reached"),
        ("infra", "infra error"), ("none", "no such step"))], class_="legend")
    return h("section", h("h2", "Per-step grades: scenario × step × build"),
             h("p", "Hover a cell for the outcome of each epoch. ‘end’ holds the final answer and end-state checks.", class_="muted"),
             legend, h("div", h("table", h("thead", h("tr", *head1), h("tr", *head2)), h("tbody", *body), class_="heatmap"),
                       class_="scroll"), id="heatmap")


def _failure_kinds(comparison: Comparison) -> Markup | None:
    targets = ordered_targets(comparison)
    kinds = sorted({k for t in targets for k in t.failures.first_failure})
    if not kinds:
        return None
    rows = [[_badge(k)] + [t.failures.first_failure.get(k, 0) or "" for t in targets] for k in kinds]
    return h("section", h("h2", "How runs failed"),
             h("p", "Failed runs by the kind of their first failure.", class_="muted"),
             h("div", _table(["failure kind"] + [t.name for t in targets], rows), class_="scroll"), id="failure-kinds")


# -- trajectories -------------------------------------------------------------------------------


def _call(call: Any) -> Markup:
    raw = call.raw_arguments
    args = as_json(call.arguments) if raw is None and call.arguments is not None else as_json(raw) if raw is not None else ""
    tags = []
    if call.source == "text":
        tags.append(h("span", "written as text, not a tool call", class_="tag fail"))
    if call.truncated:
        tags.append(h("span", "truncated", class_="tag fail"))
    if call.parse_error:
        tags.append(h("span", f"bad JSON: {call.parse_error}", class_="tag fail"))
    return h("div", h("div", h("span", "call ", class_="muted"), h("code", call.name, class_="tool"), *tags),
             h("pre", clip(args, _MAX_TEXT)) if args else None, class_="call")


def _execution(ex: Any) -> Markup:
    tags = []
    if not ex.offered:
        tags.append(h("span", "not offered", class_="tag fail"))
    if ex.injected_fault:
        tags.append(h("span", "injected fault", class_="tag warn"))
    body = ex.error if ex.error is not None else as_json(ex.result)
    return h("div", h("div", h("span", "tool ", class_="role"), h("code", ex.call.name, class_="tool"), *tags),
             h("pre", clip(body, _MAX_TEXT)),
             h("ul", *[h("li", e) for e in ex.schema_errors], class_="errors") if ex.schema_errors else None,
             class_="msg tool" + (" error" if ex.error is not None else ""))


def _grade(step: StepScore) -> Markup:
    failing = [c for c in step.checks if not c.passed]
    return h("div",
             h("div", _badge(step.outcome), h("span", f" expected step {step.index} ({step.kind}): ", class_="muted"),
                   h("span", step.expected), h("span", " — got: ", class_="muted"), h("span", step.actual)),
             h("ul", *[h("li", h("code", c.outcome.value), " ", c.reason) for c in failing]) if failing else None,
             class_=f"grade {style_of(step.outcome)}")


def _check(check: Check) -> Markup:
    return h("div", _badge(check.outcome), h("span", f" {check.dimension.value}", class_="muted"),
             (" — " + check.reason) if check.reason else "", class_=f"grade {style_of(check.outcome)}")


def _reply(step: Step) -> Markup:
    reply = step.reply
    meta = [f"model step {step.index}"]
    if reply.finish_reason:
        meta.append(f"finish {reply.finish_reason}")
    if reply.latency_ms is not None:
        meta.append(ms(reply.latency_ms))
    if reply.attempts > 1:
        meta.append(f"{reply.attempts} attempts")
    return h("div",
             h("div", h("span", "assistant ", class_="role"), h("span", " · ".join(meta), class_="muted"),
               _badge(reply.outcome) if reply.outcome is not Outcome.OK else None),
             h("div", clip(reply.content, _MAX_TEXT), class_="text") if reply.content else None,
             *[_call(c) for c in reply.tool_calls],
             h("div", reply.error, class_="text fail-text") if reply.error else None,
             class_="msg assistant")


def _context_message(message: dict[str, Any]) -> Markup:
    """A message of the prefix (system prompt, few-shot exchanges) as sent: an assistant's calls included."""
    role = str(message.get("role", "?"))
    content = message.get("content")
    calls = [c for c in message.get("tool_calls") or [] if isinstance(c, dict)]
    rendered = []
    for call in calls:
        fn = call.get("function") if isinstance(call.get("function"), dict) else {}
        args = fn.get("arguments")
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except ValueError:
                pass
        rendered.append(h("div", h("div", h("span", "call ", class_="muted"), h("code", fn.get("name") or "?", class_="tool")),
                          h("pre", clip(as_json(args), _MAX_TEXT)) if args not in (None, "", {}) else None,
                          class_="call"))
    label = role + (f" · {message['name']}" if role == "tool" and message.get("name") else "")
    return h("div", h("div", label, class_="role"),
             h("pre", clip(as_json(content), _MAX_TEXT)) if content not in (None, "") or not calls else None,
             *rendered, class_="msg ctx" + (" assistant" if calls else ""))


def _trajectory(record: RunRecord | None, title: str) -> Markup:
    if record is None:
        return h("div", h("div", title, class_="traj-head"), h("p", "no record of this run", class_="muted"), class_="traj")
    traj, score = record.trajectory, record.score
    turns = max((s.turn for s in traj.steps), default=0)
    users = [i for i, m in enumerate(traj.messages) if m.get("role") == "user"]
    first_turn_at = users[-turns] if turns and len(users) >= turns else len(traj.messages)
    prefix = traj.messages[:first_turn_at]
    turn_text = {n + 1: traj.messages[i].get("content") for n, i in enumerate(users[-turns:])} if turns and len(users) >= turns else {}
    grades_by_step: dict[int, list[StepScore]] = defaultdict(list)
    loose: dict[int, list[StepScore]] = defaultdict(list)
    step_indices = {s.index for s in traj.steps}
    for g in score.steps:
        if g.model_step is not None and g.model_step in step_indices:
            grades_by_step[g.model_step].append(g)
        else:
            loose[g.turn].append(g)

    parts: list[Any] = []
    if prefix:
        parts.append(h("details", h("summary", f"system prompt and context ({len(prefix)} message(s))"),
                       *[_context_message(m) for m in prefix], class_="ctx"))
    for turn in range(1, turns + 1):
        if turn in turn_text:
            parts.append(h("div", h("div", f"user · turn {turn}", class_="role"), h("div", clip(as_json(turn_text[turn] or ""), _MAX_TEXT),
                                                                                  class_="text"), class_="msg user"))
        for step in traj.turn_steps(turn):
            parts.append(_reply(step))
            parts += [_execution(ex) for ex in step.executions]
            parts += [_grade(g) for g in grades_by_step.get(step.index, [])]
        parts += [_grade(g) for g in loose.pop(turn, [])]
    for turn in sorted(loose):
        parts += [_grade(g) for g in loose[turn]]
    if score.final_checks:
        parts.append(h("div", h("div", "end of run", class_="role"), *[_check(c) for c in score.final_checks], class_="end"))
    if traj.world_after and any(not c.passed for c in score.final_checks):
        parts.append(h("details", h("summary", "world state after the run"), h("pre", clip(as_json(traj.world_after), _MAX_TEXT))))
    status = "infra error" if score.infra_error else "passed" if score.passed else "failed"
    return h("div",
             h("div", h("strong", title), " ", _badge(score.outcome if not score.passed else Outcome.OK, status),
               h("div", score.reason, class_="reason") if score.reason else None, class_="traj-head"),
             *parts, class_="traj")


def _flip_summary(flip: Flip, reference: str, target: str) -> list[Any]:
    def side(outcome: Outcome, step: int | None) -> str:
        return outcome.value + (f" at step {step}" if step is not None else "")

    arrow = "▼ regression" if flip.direction == "regression" else "▲ improvement"
    epoch = (f" · pass share {100 * flip.reference_pass_rate:.0f}% → {100 * flip.target_pass_rate:.0f}%"
             + (" · flaky: not evidence on its own" if flip.flaky else "")
             + (f" · epoch {flip.epoch}" if flip.epoch is not None else ""))
    reason = flip.target_reason if flip.direction == "regression" else flip.reference_reason
    return [h("span", arrow, class_="dir " + ("fail-text" if flip.direction == "regression" else "ok-text")), " ",
            h("code", flip.scenario_id), h("span", epoch, class_="muted"), " · ",
            f"{reference}: {side(flip.reference_outcome, flip.reference_first_failed_step)} → "
            f"{target}: {side(flip.target_outcome, flip.target_first_failed_step)}",
            h("div", reason, class_="reason") if reason else None]


def _flips(comparison: Comparison, results: Results) -> Markup | None:
    reference = comparison.reference
    if reference is None:
        return None
    blocks: list[Any] = []
    index = runs_index(results)
    for t in comparison.targets:
        vs = t.vs_reference
        if vs is None:
            continue
        blocks.append(h("h3", f"{t.name} vs {reference}: {vs.overall.regressions} regression(s), "
                              f"{vs.overall.improvements} improvement(s) on {vs.overall.pairs} paired items"))
        blocks.append(h("p", vs.noise_note, class_="muted"))
        if vs.unpaired:
            blocks.append(h("p", "Not paired (scored on one side only): " + ", ".join(vs.unpaired), class_="muted"))
        for n, flip in enumerate(vs.flips):
            summary = h("summary", *_flip_summary(flip, reference, t.name))
            if n >= _MAX_TRAJECTORIES:
                blocks.append(h("div", summary, class_="flip more"))
                continue
            ref_passed = flip.direction == "regression"
            ref_rec = find_record(index.get((reference, flip.scenario_id), []), flip.epoch, ref_passed)
            tgt_rec = find_record(index.get((t.name, flip.scenario_id), []), flip.epoch, not ref_passed)
            blocks.append(h("details", summary,
                            h("div", _trajectory(ref_rec, f"{reference} (reference)"), _trajectory(tgt_rec, t.name), class_="pair"),
                            class_=f"flip {flip.direction}"))
        quiet = [s for s in vs.step_flips if not s.scenario_flipped]
        if quiet:
            rows = [[h("code", s.scenario_id), "–" if s.epoch is None else s.epoch, s.index, _badge(s.reference_outcome),
                     _badge(s.target_outcome), s.direction] for s in quiet]
            blocks.append(h("details", h("summary", f"{len(quiet)} item(s) graded differently at some step without a pass/fail flip"),
                            _table(["scenario", "epoch", "first differing step", reference, t.name, "direction"], rows)))
    return h("section", h("h2", "Flipped items"),
             h("p", "Each item passed on one side and failed on the other. Open one to see both runs side by side.", class_="muted"),
             *blocks, id="flips")


def _failed_runs(results: Results, comparison: Comparison) -> Markup | None:
    blocks: list[Any] = []
    for t in comparison.targets:
        failed = sorted((r for r in results.for_target(t.name) if not r.score.passed),
                        key=lambda r: (r.score.infra_error, r.scenario_id, r.epoch))
        if not failed:
            continue
        blocks.append(h("h3", f"{t.name}: {len(failed)} failed run(s)"))
        for n, r in enumerate(failed):
            summary = h("summary", _badge(r.score.outcome), " ", h("code", r.scenario_id),
                        h("span", f" · epoch {r.epoch}", class_="muted"),
                        h("div", r.score.reason, class_="reason") if r.score.reason else None)
            if n >= _MAX_TRAJECTORIES:
                blocks.append(h("div", summary, class_="flip more"))
            else:
                blocks.append(h("details", summary, h("div", _trajectory(r, t.name), class_="single"), class_="flip regression"))
    if not blocks:
        return h("section", h("h2", "Failed runs"), h("p", "Every run passed."), id="failed")
    return h("section", h("h2", "Failed runs"), h("p", "Open a run to see its trajectory.", class_="muted"), *blocks, id="failed")


# -- page ---------------------------------------------------------------------------------------


_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'none'; base-uri 'none'; form-action 'none'"


def _gate(gate: list[tuple[bool, str]] | None) -> Markup | None:
    if not gate:
        return None
    ok = all(passed for passed, _ in gate)
    return h("section", h("h2", "Nightly gate: " + ("passed" if ok else "failed")),
             h("ul", *[h("li", h("strong", "✔ " if passed else "✘ ", class_="ok-text" if passed else "fail-text"), line)
                       for passed, line in gate]),
             id="gate", class_="verdict " + ("pass" if ok else "fail"))


def render_html(comparison: Comparison, results: Results, gate: list[tuple[bool, str]] | None = None, *,
                release: Callable[[], None] | None = None) -> str:
    """The whole report as one HTML document: the gate's decision (if any), verdict and disclosure on top, then
    accuracy, depth, grades and flips.

    The sections that read the records are built first; then `release` (if given) is called, and only then
    are the plots drawn. A caller that hands over its records this way (`write_reports(..., release_records=True)`)
    keeps matplotlib's memory from stacking on the run's.
    """
    comparing = is_comparison(comparison)
    title = "Comparison report" if comparing else "Run report"
    names = ", ".join(t.name for t in ordered_targets(comparison))
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    n_scen = len(comparison.disclosure.scenario_ids)
    nav = [("verdict", "Verdict" if comparing else "Result"), ("disclosure", "Disclosure"), ("accuracy", "Accuracy & cost"),
           ("depth", "Depth"), ("heatmap", "Per-step grades"), ("failure-kinds", "Failure kinds"),
           ("flips", "Flips") if comparing else ("failed", "Failed runs")]
    # what reads the records, before they are let go
    disclosure = _disclosure(comparison, results)
    heatmap = _heatmap(comparison, results)
    runs = _flips(comparison, results) if comparing else _failed_runs(results, comparison)
    if release is not None:
        release()
    header = h("header",
               h("h1", f"agentic-harness · {title}"),
               h("p", f"{names} · {n_scen} scenario(s) · runs {', '.join(comparison.disclosure.run_ids) or '–'} · generated {generated}",
                 class_="muted"),
               h("nav", *[h("a", label, href=f"#{anchor}") for anchor, label in nav]))
    sections = [_gate(gate), _verdict(comparison), disclosure, _accuracy(comparison), _depth(comparison), heatmap,
                _failure_kinds(comparison), runs]
    head = h("head", h("meta", charset="utf-8"), h("meta", http_equiv="Content-Security-Policy", content=_CSP),
             h("meta", name="viewport", content="width=device-width, initial-scale=1"),
             h("title", f"{one_line(headline(comparison), 120)} · agentic-harness"),
             h("style", Markup(CSS)))
    # one join of the sections, not an element per level around them: each level would copy the whole page
    return "".join(["<!DOCTYPE html>\n<html lang=\"en\">", head, "<body>", header, "<main>",
                    *[s for s in sections if s is not None], "</main></body></html>\n"])
