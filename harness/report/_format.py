"""Number and text formatting shared by every report format, so all of them print the same thing the same way."""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

from harness.compare import Comparison, PairedStats, Rate, TargetSummary
from harness.outcomes import Outcome
from harness.records import Results, RunRecord

# control characters (invalid in XML, noise in HTML) and lone surrogates (half an emoji from a
# cut-off reply, which no UTF-8 file can hold)
# what XML 1.0 forbids (C0 controls but tab and newlines, lone surrogates, U+FFFE and U+FFFF), and DEL
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


def clean(text: Any) -> str:
    """`text` as a string with control characters, lone surrogates and the noncharacters U+FFFE and U+FFFF
    (a byte-swapped BOM from a broken tokenizer) replaced by U+FFFD: nothing XML 1.0 refuses is left."""
    return _CONTROL.sub("\ufffd", "" if text is None else str(text))


def one_line(text: Any, limit: int = 300) -> str:
    """`text` on one line, cut at `limit` characters."""
    s = " ".join(clean(text).split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


def clip(text: str, limit: int) -> str:
    """`text` cut at `limit` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n… ({len(text) - limit:,} more characters; the full text is in results.jsonl)"


def pct(rate: float | None, digits: int = 1) -> str:
    """A fraction as a percentage: `0.8125` -> `81.2%`; `–` when unknown."""
    return "–" if rate is None else f"{100 * rate:.{digits}f}%"


def pts(value: float | None) -> str:
    """Percentage points with a sign: `-12.5 pts`."""
    return "–" if value is None else f"{value:+.1f} pts"


def rate_text(rate: Rate) -> str:
    """`80.0% (8/10)`."""
    return f"{pct(rate.rate)} ({rate.passed}/{rate.n})" if rate.n else "–"


def ci_text(rate: Rate) -> str:
    """The Wilson interval: `[49.0, 94.3]`."""
    if rate.low is None or rate.high is None:
        return "–"
    return f"[{100 * rate.low:.1f}, {100 * rate.high:.1f}]"


def delta_ci_text(stats: PairedStats | None) -> str:
    """Tango's interval of a paired difference (the one the verdict uses): `[-20.0, -3.3]`."""
    if stats is None or stats.ci_low_pts is None or stats.ci_high_pts is None:
        return "–"
    return f"[{stats.ci_low_pts:+.1f}, {stats.ci_high_pts:+.1f}]"


def p_value(p: float | None) -> str:
    return "–" if p is None else f"{p:.2g}"


def size(nbytes: int | None) -> str:
    """`4.37 GB`, `512 MB`; `–` when unknown."""
    if nbytes is None:
        return "–"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.2f} {unit}" if unit == "GB" else f"{nbytes / scale:.0f} {unit}"
    return f"{nbytes} B"


def ms(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.0f} ms"


def number(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def seconds(value: float | None) -> str:
    if value is None:
        return "–"
    if value >= 3600:
        return f"{value / 3600:.1f} h"
    return f"{value / 60:.1f} min" if value >= 120 else f"{value:.1f} s"


def as_json(value: Any) -> str:
    """A tool result or arguments object as indented JSON (strings as they are)."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, indent=2, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return repr(value)


def kinds_text(counts: dict[str, int] | Counter[str], limit: int = 4) -> str:
    """`wrong_tool ×3, context_lost ×1`."""
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = ", ".join(f"{k} ×{n}" for k, n in items[:limit])
    return shown + (f", +{len(items) - limit} more" if len(items) > limit else "")


def is_comparison(comparison: Comparison) -> bool:
    return comparison.reference is not None and comparison.verdict is not None


def headline(comparison: Comparison) -> str:
    """One short sentence at the top of every report: the verdict, or the single run's pass rate."""
    v = comparison.verdict
    if v is not None:
        if v.chosen:
            return f"{v.chosen} is the smallest safe build within {v.tolerance:g} pts of {v.reference}"
        if v.smallest_within:
            return (f"{v.smallest_within} is within {v.tolerance:g} pts of {v.reference}, "
                    "but the smallest safe build is not settled")
        if v.decision_grade:
            return f"every build drops beyond {v.tolerance:g} pts of {v.reference}; keep {v.reference}"
        return f"undecided: no build is shown within {v.tolerance:g} pts of {v.reference}"
    if not comparison.targets:
        return "no scored runs in these results"
    parts = [f"{t.name}: {rate_text(t.overall)} passed" for t in comparison.targets]
    return "; ".join(parts)


def headline_mark(comparison: Comparison) -> str:
    """The mark in front of the headline: ✔ only for a settled safe build, ✘ for settled failure, ? otherwise."""
    v = comparison.verdict
    if v is None:
        return ""
    if v.chosen:
        return "✔"
    return "✘" if v.decision_grade else "?"


def flips_text(vs: Any) -> str:
    """Stable regressions / improvements, and how many more differ only on flaky scenarios: `2 / 0 (+1 flaky)`."""
    stable = [f for f in vs.flips if not f.flaky]
    text = f"{sum(f.direction == 'regression' for f in stable)} / {sum(f.direction == 'improvement' for f in stable)}"
    extra = len(vs.flips) - len(stable)
    return text + (f" (+{extra} flaky)" if extra else "")


def claim_text(claim: str) -> str:
    """`within` -> `✔ within tolerance`, and so on: the words every report uses for a claim."""
    return {"within": "✔ within tolerance", "beyond": "✘ beyond tolerance", "undecided": "? undecided"}[claim]


def grade_note(comparison: Comparison) -> str:
    """Whether the verdict is settled, and the evidence: the line under the headline."""
    v = comparison.verdict
    if v is None:
        return ""
    grade = "Decided" if v.decision_grade else "Not decided"
    return f"{grade}: {v.summary}"


def ordered_targets(comparison: Comparison) -> list[TargetSummary]:
    """The reference first, then the other builds largest first when every size is known (a ladder going down)."""
    ref = [t for t in comparison.targets if t.is_reference]
    rest = [t for t in comparison.targets if not t.is_reference]
    if rest and all(t.size_bytes for t in rest):
        rest.sort(key=lambda t: -(t.size_bytes or 0))
    return ref + rest


class ScenarioRow:
    """Per target, one scenario's runs: pass count, first failed steps and failure kinds (for tables)."""

    def __init__(self) -> None:
        self.passed = 0
        self.scored = 0
        self.infra = 0
        self.first_failed: list[int] = []
        self.kinds: Counter[str] = Counter()

    def add(self, record: RunRecord) -> None:
        if record.score.infra_error:
            self.infra += 1
            return
        self.scored += 1
        if record.score.passed:
            self.passed += 1
            return
        self.kinds[record.score.outcome.value] += 1
        if record.score.first_failed_step is not None:
            self.first_failed.append(record.score.first_failed_step)

    @property
    def first_failed_text(self) -> str:
        return "–" if not self.first_failed else ", ".join(str(s) for s in sorted(set(self.first_failed)))

    @property
    def rate_text(self) -> str:
        if not self.scored:
            return "–"
        return f"{self.passed}/{self.scored}"


def scenario_rows(results: Results) -> dict[str, dict[str, ScenarioRow]]:
    """Scenario id -> target -> its row, from the latest record of each scenario x target x epoch."""
    rows: dict[str, dict[str, ScenarioRow]] = {}
    for r in sorted(results.latest(), key=lambda r: (r.scenario_id, r.epoch)):
        rows.setdefault(r.scenario_id, {}).setdefault(r.target, ScenarioRow()).add(r)
    return dict(sorted(rows.items()))


def strata_kinds(results: Results) -> dict[str, dict[str, Counter[str]]]:
    """Stratum -> target -> failure kinds of its failed (scored) runs."""
    out: dict[str, dict[str, Counter[str]]] = {}
    for r in results.latest():
        if r.score.infra_error or r.score.passed:
            continue
        for s in r.strata:
            out.setdefault(str(s), {}).setdefault(r.target, Counter())[r.score.outcome.value] += 1
    return out


def runs_index(results: Results) -> dict[tuple[str, str], list[RunRecord]]:
    """(target, scenario id) -> its latest runs, by epoch: built once, so finding a flip's runs stays cheap."""
    index: dict[tuple[str, str], list[RunRecord]] = {}
    for r in sorted(results.latest(), key=lambda r: r.epoch):
        index.setdefault((r.target, r.scenario_id), []).append(r)
    return index


def sized(targets: list[TargetSummary]) -> bool:
    """Whether builds can be placed by file size: every size known and no two equal (equal sizes would
    stack builds on one x position; the plot then gives each build a column)."""
    sizes = [t.size_bytes for t in targets]
    return len(targets) > 1 and all(sizes) and len(set(sizes)) == len(sizes)


def find_record(runs: list[RunRecord], epoch: int | None, passed: bool | None) -> RunRecord | None:
    """The run a flip refers to: its epoch when both sides' shown runs share one, else the first scored run with `passed`."""
    if epoch is not None:
        return next((r for r in runs if r.epoch == epoch), None)
    scored = [r for r in runs if not r.score.infra_error]
    return next((r for r in scored if passed is None or r.score.passed == passed), scored[0] if scored else None)


FAILURE_STYLE: dict[str, str] = {Outcome.OK.value: "ok", Outcome.NOT_REACHED.value: "skip",
                                 Outcome.INFRA_ERROR.value: "infra"}
"""Outcome -> the CSS / colour class it is shown with (everything else: `fail`)."""


def style_of(outcome: Outcome | str) -> str:
    return FAILURE_STYLE.get(str(outcome), "fail")
