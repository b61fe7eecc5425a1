"""The nightly regression gate: tonight's pass rates against a baseline `summary.json` (last night's or a pinned one).

A target fails the gate when its pass rate, on the scenarios both nights ran unchanged, drops by more
than `max_drop` points *and* a one-sided scenario-level sign test says the drop is not noise (false-alarm
rate at most `alpha` for an unchanged model, whatever share of its scenarios is flaky). Scenarios new
tonight, gone since, or edited since (another content hash) are listed, never counted. A night whose
server was down (or mostly down) is an infrastructure failure, not a regression. `thresholds` adds
absolute floors (`--fail-under`), so a first night without a baseline can fail too.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.compare import Comparison, GateRow, GateTable
from harness.exitcodes import ExitCode

__all__ = ["DEFAULT_ALPHA", "DEFAULT_MAX_INFRA_SHARE", "ExitCode", "ScenarioChange", "TargetDrop", "GateResult",
           "BaselineError", "load_baseline", "gate", "parse_thresholds", "thresholds", "Decision", "decide"]

DEFAULT_ALPHA = 0.05
"""False-alarm rate of the gate's sign test for an unchanged model."""

DEFAULT_MAX_INFRA_SHARE = 0.2
"""Above this share of runs lost to infrastructure errors, a night's numbers are not trusted: INFRA."""


class _Model(BaseModel):
    model_config = ConfigDict()


class ScenarioChange(_Model):
    """One scenario whose pass rate moved between the baseline and now."""

    target: str
    """The target (build) name, as both nights call it."""
    scenario_id: str
    before: float
    """Baseline pass rate over its scored epochs (fraction)."""
    after: float
    """Current pass rate (fraction)."""

    @property
    def delta_pts(self) -> float:
        return round(100.0 * (self.after - self.before), 9)


class TargetDrop(_Model):
    """One target's pass rate now against the baseline, on the scenarios both scored."""

    target: str
    shared_scenarios: int
    """Scenarios with a scored pass rate in both the baseline and now: the only ones compared."""
    before: float | None = None
    """Baseline: mean pass rate over the shared scenarios (fraction); None with no shared scenario."""
    after: float | None = None
    """Now: mean pass rate over the same scenarios (fraction)."""
    drop_pts: float | None = None
    """before - after in percentage points (positive is worse)."""
    regressed: bool = False
    """`drop_pts` exceeds `max_drop`."""
    scored: int = 0
    """Runs scored now."""
    infra_errors: int = 0
    """Runs lost to infrastructure errors now."""
    new_scenarios: list[str] = Field(default_factory=list)
    """Scenarios scored now but not in the baseline (not compared)."""
    missing_scenarios: list[str] = Field(default_factory=list)
    """Scenarios in the baseline that were not scored now (not compared)."""
    edited_scenarios: list[str] = Field(default_factory=list)
    """Scenarios whose content hash changed since the baseline: another task, so not compared."""
    worse: int = 0
    """Shared scenarios whose pass rate went down."""
    better: int = 0
    """Shared scenarios whose pass rate went up."""
    p_value: float | None = None
    """One-sided exact sign test over the scenarios that moved: the chance of at least `worse` of
    `worse + better` going down if the model were unchanged. None when none moved."""
    identity_changes: list[str] = Field(default_factory=list)
    """Build identity that differs from the baseline's (`quantization: Q4_K_M -> Q2_K`, a digest, a file size)."""


class GateResult(_Model):
    """The gate's answer: pass or not, the exit code, and the evidence."""

    passed: bool
    """True only for OK: every shared target within `max_drop` points, infrastructure healthy."""
    exit_code: ExitCode
    """What the process should exit with."""
    message: str
    """One paragraph a CI log shows: what failed and by how much, or why nothing could be compared."""
    baseline_path: str
    """The baseline file as given."""
    max_drop: float
    """Allowed drop in percentage points."""
    alpha: float = DEFAULT_ALPHA
    """False-alarm rate of the sign test for an unchanged model."""
    overall_drop_pts: float | None = None
    """The largest drop of any target (percentage points, positive is worse); None when nothing was compared."""
    targets: list[TargetDrop] = Field(default_factory=list)
    """One per target present in both the baseline and now."""
    regressions: list[ScenarioChange] = Field(default_factory=list)
    """Scenarios whose pass rate went down, the biggest drop first."""
    improvements: list[ScenarioChange] = Field(default_factory=list)
    """Scenarios whose pass rate went up."""
    notes: list[str] = Field(default_factory=list)
    """Things to know that do not fail the gate (scenario set changed, targets only on one side)."""


    def to_markdown(self) -> str:
        """The gate's answer as Markdown, to append to summary.md or `$GITHUB_STEP_SUMMARY`."""
        from harness.report.markdown import md

        icon = "✅" if self.passed else "❌" if self.exit_code is ExitCode.REGRESSION else "⚠️"
        lines = [f"### {icon} Nightly gate: {self.exit_code.name} (max drop {self.max_drop:g} pts, "
                 f"false-alarm rate {self.alpha:g})", "", md(self.message, 2000), ""]
        measured = [t for t in self.targets if t.drop_pts is not None]
        if measured:
            lines += ["| target | baseline | now | change | shared scenarios | worse / better | sign test p |",
                      "|---|---|---|---|---|---|---|"]
            lines += [f"| {md(t.target)} | {100 * t.before:.1f}% | {100 * t.after:.1f}% | {-t.drop_pts:+.1f} pts | "  # type: ignore[operator]
                      f"{t.shared_scenarios} | {t.worse} / {t.better} | {'–' if t.p_value is None else f'{t.p_value:.2g}'} |"
                      for t in measured]
            lines.append("")
        if self.regressions:
            lines += ["| got worse | target | baseline | now |", "|---|---|---|---|"]
            lines += [f"| {md(c.scenario_id)} | {md(c.target)} | {100 * c.before:.0f}% | {100 * c.after:.0f}% |"
                      for c in self.regressions[:25]]
            if len(self.regressions) > 25:
                lines.append(f"\n… and {len(self.regressions) - 25} more.")
            lines.append("")
        lines += [f"- {md(n, 400)}" for n in self.notes]
        return "\n".join(lines).rstrip() + "\n"


class BaselineError(Exception):
    """A baseline that cannot be used; the message says which file and why."""


def load_baseline(path: str | Path) -> tuple[GateTable, str | None]:
    """Read a baseline: a `summary.json` (the Comparison JSON `write_reports` writes) or a bare gate table.

    Returns the per-target table and the baseline's scenario-set hash (None for a bare table).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BaselineError(f"baseline {path} does not exist; pass last night's summary.json "
                            "(written next to results.jsonl), or run once without --baseline to make one") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BaselineError(f"baseline {path} cannot be read: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BaselineError(f"baseline {path} is not JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(data, dict):
        raise BaselineError(f"baseline {path} is not a summary.json object")
    try:
        if "targets" in data and isinstance(data["targets"], list):
            comparison = Comparison.model_validate(data)
            return comparison.for_gate(), comparison.disclosure.scenario_set_hash
        return GateTable.model_validate(data), None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(k) for k in first["loc"]) or "(top level)"
        raise BaselineError(f"baseline {path} is not a summary.json this harness wrote: {where}: {first['msg']}") from None


def _sign_test(worse: int, better: int) -> float | None:
    moved = worse + better
    if moved == 0:
        return None
    return sum(math.comb(moved, k) for k in range(worse, moved + 1)) / 2.0 ** moved


def _identity_changes(now: GateRow, before: GateRow) -> list[str]:
    keys = sorted(set(now.identity) & set(before.identity))
    return [f"{k}: {before.identity[k]} -> {now.identity[k]}" for k in keys if now.identity[k] != before.identity[k]]


def _compare_target(name: str, now: GateRow, before: GateRow, max_drop: float, alpha: float,
                    infra_now: int) -> tuple[TargetDrop, list[ScenarioChange], list[ScenarioChange]]:
    scored_now = {s: r for s, r in now.scenarios.items() if r is not None}
    scored_before = {s: r for s, r in before.scenarios.items() if r is not None}
    both = set(scored_now) & set(scored_before)
    edited = sorted(s for s in both if s in now.hashes and s in before.hashes and now.hashes[s] != before.hashes[s])
    shared = sorted(both - set(edited))
    drop = TargetDrop(
        target=name, shared_scenarios=len(shared), scored=now.scored, infra_errors=infra_now,
        new_scenarios=sorted(set(scored_now) - set(scored_before)),
        missing_scenarios=sorted(set(before.scenarios) - set(scored_now)),
        edited_scenarios=edited, identity_changes=_identity_changes(now, before),
    )
    worse: list[ScenarioChange] = []
    better: list[ScenarioChange] = []
    if shared:
        # the mean of per-scenario rates: each scenario counts once, however many epochs it ran
        drop.before = sum(scored_before[s] for s in shared) / len(shared)
        drop.after = sum(scored_now[s] for s in shared) / len(shared)
        drop.drop_pts = round(100.0 * (drop.before - drop.after), 9)
        for s in shared:
            change = ScenarioChange(target=name, scenario_id=s, before=scored_before[s], after=scored_now[s])
            if change.after < change.before:
                worse.append(change)
            elif change.after > change.before:
                better.append(change)
        drop.worse, drop.better = len(worse), len(better)
        drop.p_value = _sign_test(len(worse), len(better))
        drop.regressed = drop.drop_pts > max_drop and drop.p_value is not None and drop.p_value <= alpha
    return drop, worse, better


def gate(
    current: Comparison | GateTable,
    baseline_summary_path: str | Path,
    max_drop: float = 2.0,
    *,
    max_infra_share: float = DEFAULT_MAX_INFRA_SHARE,
    alpha: float = DEFAULT_ALPHA,
) -> GateResult:
    """Gate tonight's results against a baseline summary.json: OK, REGRESSION, BAD_INPUT or INFRA, with the evidence.

    `max_drop` is in percentage points. Only targets present on both sides and scenarios scored on both
    sides are compared. `max_infra_share` (a fraction) is the share of runs lost to infrastructure errors
    above which the night is INFRA (only a `Comparison` carries the counts).
    """
    base = GateResult(passed=False, exit_code=ExitCode.BAD_INPUT, message="", baseline_path=str(baseline_summary_path),
                      max_drop=max_drop, alpha=alpha)
    if max_drop < 0:
        base.message = f"--max-drop must be 0 or more points, got {max_drop:g}"
        return base
    try:
        baseline, baseline_hash = load_baseline(baseline_summary_path)
    except BaselineError as exc:
        base.message = str(exc)
        return base

    if isinstance(current, Comparison):
        table = current.for_gate()
        runs = {t.name: (t.runs, t.infra_errors) for t in current.targets}
        current_hash = current.disclosure.scenario_set_hash
    else:
        table, runs, current_hash = current, {}, None

    notes: list[str] = []
    if baseline_hash and current_hash and baseline_hash != current_hash:
        notes.append(f"the scenario set changed since the baseline ({baseline_hash} -> {current_hash}); "
                     "only scenarios scored on both sides are compared")
    only_now = [n for n in table.targets if n not in baseline.targets]
    only_before = [n for n in baseline.targets if n not in table.targets]
    if only_now:
        notes.append(f"not in the baseline, so not gated: {', '.join(only_now)}")
    if only_before:
        notes.append(f"in the baseline but not run now: {', '.join(only_before)}")
    shared = [n for n in table.targets if n in baseline.targets]
    base.notes = notes
    if not shared:
        base.message = (f"no target in common with the baseline {baseline_summary_path} "
                        f"(baseline: {', '.join(baseline.targets) or 'none'}; now: {', '.join(table.targets) or 'none'}); "
                        "name targets the same way every night (--name)")
        return base

    # infrastructure first: numbers from a night the server was down say nothing about the model
    infra_lines = []
    for name in shared:
        n_runs, n_infra = runs.get(name, (0, 0))
        if n_runs and (n_infra == n_runs or n_infra / n_runs > max_infra_share):
            infra_lines.append(f"{name}: {n_infra} of {n_runs} runs hit infrastructure errors")
        elif table.targets[name].scored == 0 and not runs:
            infra_lines.append(f"{name}: no scored runs")
    drops, worse, better = [], [], []
    for name in shared:
        d, w, b = _compare_target(name, table.targets[name], baseline.targets[name], max_drop, alpha,
                                  runs.get(name, (0, 0))[1])
        drops.append(d)
        worse += w
        better += b
    worse.sort(key=lambda c: (c.after - c.before, c.target, c.scenario_id))
    better.sort(key=lambda c: (c.before - c.after, c.target, c.scenario_id))
    for d in drops:
        if d.edited_scenarios:
            notes.append(f"{d.target}: {len(d.edited_scenarios)} scenario(s) edited since the baseline, not compared: "
                         f"{', '.join(d.edited_scenarios[:10])}{' ...' if len(d.edited_scenarios) > 10 else ''}")
        if d.identity_changes:
            notes.append(f"{d.target} is another build than in the baseline ({'; '.join(d.identity_changes)}): "
                         "the gate compares the same name, not the same build")
    measured = [d.drop_pts for d in drops if d.drop_pts is not None]
    result = base.model_copy(update={
        "targets": drops, "regressions": worse, "improvements": better,
        "overall_drop_pts": max(measured) if measured else None,
    })
    if infra_lines:
        result.exit_code = ExitCode.INFRA
        result.message = ("too many infrastructure errors to gate (limit "
                          f"{max_infra_share:.0%} of runs): " + "; ".join(infra_lines))
        return result
    if not measured:
        result.message = (f"nothing to compare: no scenario was scored both now and in the baseline {baseline_summary_path}")
        return result

    regressed = [d for d in drops if d.regressed]

    def line(d: TargetDrop) -> str:
        test = ("no scenario moved" if d.p_value is None else
                f"{d.worse} worse / {d.better} better, sign test p={d.p_value:.2g}")
        return (f"{d.target} {100 * d.after:.1f}% vs {100 * d.before:.1f}% ({-d.drop_pts:+.1f} pts, "  # type: ignore[operator]
                f"{d.shared_scenarios} shared scenarios, {test})")

    if regressed:
        names = ", ".join(f"{c.scenario_id} ({c.target}: {100 * c.before:.0f}% -> {100 * c.after:.0f}%)" for c in worse[:10])
        more = f" and {len(worse) - 10} more" if len(worse) > 10 else ""
        result.exit_code = ExitCode.REGRESSION
        result.message = (f"regression beyond {max_drop:g} pts: " + "; ".join(line(d) for d in regressed)
                          + (f". Scenarios that got worse: {names}{more}" if worse else ""))
        return result
    result.passed = True
    result.exit_code = ExitCode.OK
    noisy = [d for d in drops if d.drop_pts is not None and d.drop_pts > max_drop]
    result.message = (f"no regression beyond {max_drop:g} pts at false-alarm rate {alpha:g}: "
                      + "; ".join(line(d) for d in drops if d.drop_pts is not None)
                      + (f". {', '.join(d.target for d in noisy)} dropped more than {max_drop:g} pts, but too few scenarios "
                         "moved to tell it from noise" if noisy else ""))
    return result


def parse_thresholds(values: list[str] | tuple[str, ...]) -> dict[str, float]:
    """`["80", "tool_selection=90"]` -> `{"overall": 80.0, "tool_selection": 90.0}`; ValueError names a bad one."""
    out: dict[str, float] = {}
    for raw in values:
        key, sep, number = raw.partition("=")
        if not sep:
            key, number = "overall", raw
        key = key.strip().lower() or "overall"
        try:
            value = float(number)
        except ValueError:
            raise ValueError(f"--fail-under {raw!r}: expected PERCENT or STRATUM=PERCENT, e.g. 80 or tool_selection=90") from None
        if not 0 <= value <= 100:
            raise ValueError(f"--fail-under {raw!r}: the percentage must be between 0 and 100")
        out[key] = value
    return out


def thresholds(current: Comparison, floors: dict[str, float]) -> list[str]:
    """Every absolute floor a target is under (point estimates, percent): `q4 tool_selection 70.0% < 90%`.

    `floors` maps `overall` or a stratum name to a minimum pass rate in percent. A floor for a stratum no
    scenario belongs to is a failure too (it cannot be shown to hold).
    """
    failures: list[str] = []
    for t in current.targets:
        for key, floor in floors.items():
            rate = t.overall if key == "overall" else t.strata.get(key)
            if rate is None or rate.rate is None:
                failures.append(f"{t.name} {key}: no scored runs, so the {floor:g}% floor cannot be shown to hold")
            elif 100.0 * rate.rate < floor:
                failures.append(f"{t.name} {key} {100 * rate.rate:.1f}% < {floor:g}% ({rate.passed}/{rate.n} runs)")
    return failures


class Decision(_Model):
    """What a night's job decided, from every check at once: baselines, absolute floors, a meaningless run."""

    exit_code: ExitCode
    """The first failing check's code (MEANINGLESS first: such a run's numbers say nothing), else OK."""
    gates: list[GateResult] = Field(default_factory=list)
    """One per baseline given (last night's, the pinned one)."""
    floors: dict[str, float] = Field(default_factory=dict)
    """The absolute floors checked, in percent."""
    under: list[str] = Field(default_factory=list)
    """Every floor a target is under."""
    meaningless: list[str] = Field(default_factory=list)
    """Targets whose server dropped the tools and whose runs made no structured call."""
    allow_meaningless: bool = False

    def _useless(self) -> str:
        if not self.meaningless:
            return ""
        return (f"{', '.join(self.meaningless)}: the server dropped the tools from the prompt (preflight: prompt tokens "
                "did not grow with the tools) and no run made a structured tool call, so the model never saw what "
                "it was graded on. Fix the chat template (llama-server needs --jinja and a template with tools)"
                + ("" if self.allow_meaningless else "; --allow-meaningless accepts the run anyway"))

    def _floors_line(self) -> str:
        return "; ".join(self.under) if self.under else (
            "every target at or above " + ", ".join(f"{k} {v:g}%" for k, v in self.floors.items()))

    def lines(self) -> list[tuple[bool, str]]:
        """(passed, one line) per check, for report.html and the terminal."""
        out: list[tuple[bool, str]] = []
        if self.meaningless:
            out.append((self.allow_meaningless, "meaningless run: " + self._useless()))
        out += [(g.passed, f"against {g.baseline_path}: {g.message}") for g in self.gates]
        if self.floors:
            out.append((not self.under, "absolute floors (--fail-under): " + self._floors_line()))
        return out

    def to_markdown(self) -> str:
        """Every check as Markdown, to lead summary.md."""
        parts = []
        if self.meaningless:
            parts.append(f"### {'⚠️' if self.allow_meaningless else '❌'} Meaningless run\n\n{self._useless()}\n")
        parts += [g.to_markdown() + "\n" for g in self.gates]
        if self.floors:
            icon = "❌" if self.under else "✅"
            body = "\n".join(f"- {u}" for u in self.under) if self.under else self._floors_line()
            parts.append(f"### {icon} Absolute floors (--fail-under)\n\n{body}\n")
        return "".join(parts)


def decide(current: Comparison, *, baselines: list[str], max_drop: float, alpha: float = DEFAULT_ALPHA,
           floors: dict[str, float] | None = None, meaningless: list[str] | None = None,
           allow_meaningless: bool = False) -> Decision:
    """Run every check a night asks for and pick the exit code; empty arguments check nothing (OK)."""
    gates = [gate(current, Path(b), max_drop=max_drop, alpha=alpha) for b in baselines]
    under = thresholds(current, floors) if floors else []
    code = ExitCode.OK
    if meaningless and not allow_meaningless:
        code = ExitCode.MEANINGLESS
    for g in gates:
        if code == ExitCode.OK:
            code = g.exit_code
    if under and code == ExitCode.OK:
        code = ExitCode.REGRESSION
    return Decision(exit_code=code, gates=gates, floors=dict(floors or {}), under=under,
                    meaningless=list(meaningless or []), allow_meaningless=allow_meaningless)
