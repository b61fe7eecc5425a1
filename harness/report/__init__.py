"""Reports built from results alone: one HTML file, a Markdown summary, JUnit XML, the JSON, the terminal.

    write_reports(results, comparison, out_dir)  ->  report.html, summary.md, junit.xml, summary.json

Every format says the same thing with the same words (the outcome names of `harness.outcomes`).
"""

from __future__ import annotations

from pathlib import Path

import structlog

from harness.compare import Comparison
from harness.records import Results
from harness.report.html import render_html
from harness.report.junit import render_junit
from harness.report.markdown import render_markdown
from harness.report.terminal import print_terminal

__all__ = ["REPORT_FILES", "render_html", "render_junit", "render_markdown", "print_terminal", "write_reports"]

log = structlog.get_logger("harness.report")

REPORT_FILES = ("report.html", "summary.md", "junit.xml", "summary.json")
"""The files `write_reports` writes, by name."""


def write_reports(results: Results, comparison: Comparison, out_dir: str | Path, *,
                  gate: list[tuple[bool, str]] | None = None, gate_markdown: str = "",
                  release_records: bool = False) -> dict[str, Path]:
    """Write every report into `out_dir`; returns file name -> path (`report.html`, `summary.md`, `junit.xml`, `summary.json`).

    `gate` (passed, one line each) and `gate_markdown` put the nightly gate's decision first in the
    HTML report and the Markdown summary: it is what the CI job decided.

    `release_records=True` hands the records over: `results.records` is emptied as soon as the last
    report that reads them has (JUnit, then the HTML page's record sections), before the plots import
    matplotlib, so the report stage's peak is the run's or the plots', not both. For a caller that is
    done with the records (the CLI, which exits after its reports); `results.headers` are kept.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    markdown = render_markdown(comparison)
    # each written as soon as it is made, the HTML (whose plots import matplotlib) last: the report
    # stage's memory peak is one document at a time
    renders = {
        "summary.md": lambda: (gate_markdown + "\n" + markdown) if gate_markdown else markdown,
        "junit.xml": lambda: render_junit(results),
        "summary.json": lambda: comparison.model_dump_json(indent=2) + "\n",
        "report.html": lambda: render_html(comparison, results, gate=gate,
                                           release=results.records.clear if release_records else None),
    }
    written: dict[str, Path] = {}
    for name, render in renders.items():
        text = render()
        path = out / name
        # written beside and renamed, so a reader (or a CI upload) never sees half a file
        tmp = path.with_name(f".{name}.tmp")
        # "replace": a lone surrogate the renderers missed becomes "?" rather than losing the whole report
        tmp.write_text(text, encoding="utf-8", errors="replace")
        tmp.replace(path)
        written[name] = path
        del text
    log.info("report.written", out_dir=str(out), files=list(written))
    return written
