"""The report's plots, drawn with matplotlib (no pyplot, so no GUI backend and no global state) as SVG.

Each function returns the SVG text, or None when there is nothing to draw. The HTML report embeds it as
a base64 `data:` image, which cannot run script and cannot clash with the page's ids.
"""

from __future__ import annotations

import io

import matplotlib
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from harness.compare import Comparison, TargetSummary
from harness.report._format import sized

__all__ = ["accuracy_plot", "sized", "strata_plot", "survival_plot"]

# a fixed palette that prints and reads well for colour-blind readers (Okabe-Ito)
_COLOURS = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999"]
_RC = {
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e5e7eb",
    "grid.linewidth": 0.6,
    "axes.edgecolor": "#9ca3af",
    "svg.fonttype": "path",
}


def _label(text: str) -> str:
    # a `$` pair would start matplotlib mathtext (and a malformed one raises at draw time)
    return str(text).replace("$", r"\$")


def _svg(fig: Figure, salt: str) -> str:
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": salt}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _percent_axis(ax, label: str = "pass rate") -> None:
    ax.set_ylim(-3, 103)
    ax.set_ylabel(label)
    ax.yaxis.set_major_formatter(PercentFormatter())


def accuracy_plot(comparison: Comparison) -> str | None:
    """Pass rate per stratum (and overall) against build size, with 95% Wilson bars; one column per build."""
    targets = sorted(comparison.targets, key=lambda t: (t.size_bytes or 0)) if sized(comparison.targets) else comparison.targets
    targets = [t for t in targets if t.overall.n]
    if not targets:
        return None
    strata = sorted({s for t in targets for s in t.strata})
    by_size = sized(targets)
    xs = [t.size_bytes / 1e9 for t in targets] if by_size else list(range(len(targets)))  # type: ignore[operator]
    span = (max(xs) - min(xs)) or 1.0
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(10.5, 4.2), layout="constrained")
        ax = fig.add_subplot()
        series = [("overall", [t.overall for t in targets])] + [(s, [t.strata.get(s) for t in targets]) for s in strata]
        width = 0.018 * span if by_size else 0.06
        for i, (name, rates) in enumerate(series):
            pts = [(x, r) for x, r in zip(xs, rates) if r is not None and r.rate is not None]
            if not pts:
                continue
            # a small sideways offset per series keeps overlapping error bars readable
            offset = (i - (len(series) - 1) / 2) * width
            px = [x + offset for x, _ in pts]
            py = [100 * r.rate for _, r in pts]
            low = [max(0.0, 100 * (r.rate - r.low)) for _, r in pts]  # type: ignore[operator]
            high = [max(0.0, 100 * (r.high - r.rate)) for _, r in pts]  # type: ignore[operator]
            overall = name == "overall"
            ax.errorbar(px, py, yerr=[low, high], marker="o", markersize=6 if overall else 4, capsize=2.5,
                        linewidth=2.4 if overall else 1.2, elinewidth=0.9, alpha=1.0 if overall else 0.85,
                        color="#111827" if overall else _COLOURS[(i - 1) % len(_COLOURS)], label=_label(name), zorder=3 if overall else 2)
        ax.set_xticks(xs)
        ax.set_xticklabels([_label(f"{t.name}\n{t.size_bytes / 1e9:.2f} GB" if by_size else t.name) for t in targets])  # type: ignore[operator]
        ax.set_xlabel("build size (GB)" if by_size else "build (in comparison order)")
        ax.set_xlim(min(xs) - 0.08 * span - 0.3 * (not by_size), max(xs) + 0.08 * span + 0.3 * (not by_size))
        _percent_axis(ax)
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, title="stratum")
        return _svg(fig, "accuracy")


def strata_plot(target: TargetSummary) -> str | None:
    """One build's pass rate overall and per stratum, as dots with 95% Wilson bars (the single-run form)."""
    rows = [("overall", target.overall)] + sorted(target.strata.items())
    rows = [(name, r) for name, r in rows if r.rate is not None]
    if not rows:
        return None
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(8.0, 0.9 + 0.42 * len(rows)), layout="constrained")
        ax = fig.add_subplot()
        ys = list(range(len(rows)))[::-1]
        for y, (name, r) in zip(ys, rows):
            overall = name == "overall"
            colour = "#111827" if overall else _COLOURS[0]
            ax.barh(y, 100 * r.rate, height=0.55, color=colour, alpha=0.18 if not overall else 0.25)  # type: ignore[operator]
            ax.errorbar([100 * r.rate], [y], xerr=[[max(0.0, 100 * (r.rate - r.low))], [max(0.0, 100 * (r.high - r.rate))]],  # type: ignore[operator]
                        fmt="o", color=colour, capsize=3, markersize=6 if overall else 5)
            ax.annotate(f"{100 * r.rate:.0f}%  ({r.passed}/{r.n})", (101, y), va="center", fontsize=8.5, color="#374151",  # type: ignore[operator]
                        annotation_clip=False)
        ax.set_yticks(ys)
        ax.set_yticklabels([_label(name) for name, _ in rows])
        ax.set_xlim(0, 100)
        ax.xaxis.set_major_formatter(PercentFormatter())
        ax.set_xlabel(f"{_label(target.name)}: pass rate (95% Wilson interval)")
        ax.grid(axis="y", visible=False)
        return _svg(fig, "strata")


def survival_plot(comparison: Comparison) -> str | None:
    """Share of runs still on track after each expected step (Kaplan-Meier survival), one line per build."""
    targets = [t for t in comparison.targets if t.depth]
    if not targets:
        return None
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(10.5, 3.6), layout="constrained")
        ax = fig.add_subplot()
        deepest = 0
        for i, t in enumerate(targets):
            points = [(p.index, p.survival) for p in t.depth if p.survival is not None]
            if not points:
                continue
            deepest = max(deepest, points[-1][0])
            # survival is 100% before the first step; each step's value holds until the next
            xs = [-1] + [x for x, _ in points]
            ys = [100.0] + [100 * y for _, y in points]
            colour = "#111827" if t.is_reference else _COLOURS[i % len(_COLOURS)]
            # the reference is dashed and on top, so a build that tracks it exactly still shows both lines
            ax.step(xs, ys, where="post", linewidth=1.6 if t.is_reference else 2.2, color=colour,
                    linestyle="--" if t.is_reference else "-", zorder=3 if t.is_reference else 2,
                    label=_label(t.name + (" (reference)" if t.is_reference else "")))
            ax.plot(xs[1:], ys[1:], "o", markersize=3.5, color=colour)
        ax.set_xlim(-1.2, deepest + 0.5)
        ax.set_xticks(range(-1, deepest + 1))
        ax.set_xticklabels(["start"] + [str(k) for k in range(deepest + 1)])
        ax.set_xlabel("expected step (0-based, across the scenario)")
        _percent_axis(ax, "runs still on track")
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
        return _svg(fig, "survival")
