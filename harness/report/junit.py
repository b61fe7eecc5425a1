"""JUnit XML for CI test views: one testcase per scenario x target (x epoch).

A model failure is a `<failure>` whose type is the failure kind (`wrong_tool`, `context_lost`, ...);
an infrastructure error is an `<error>`, so a dashboard never counts a dead server as a wrong answer.
"""

from __future__ import annotations

import socket
import xml.etree.ElementTree as ET
from collections import defaultdict

from harness.records import Results, RunRecord
from harness.report._format import clean, one_line

__all__ = ["render_junit"]


def _seconds(record: RunRecord) -> str:
    ms = record.trajectory.duration_ms
    return f"{(ms or 0.0) / 1000:.3f}"


def _details(record: RunRecord) -> str:
    """The failure body: every graded step, then the end checks, one line each."""
    lines = [f"scenario {record.scenario_id} on {record.target}, epoch {record.epoch}: {record.score.outcome.value}"]
    if record.score.reason:
        lines.append(f"reason: {record.score.reason}")
    for step in record.score.steps:
        mark = "ok  " if step.passed else "FAIL"
        lines.append(f"{mark} step {step.index} (turn {step.turn}) expected {step.expected}; got {step.actual}")
        for check in step.checks:
            if not check.passed:
                lines.append(f"       {check.outcome.value}: {check.reason}")
    for check in record.score.final_checks:
        mark = "ok  " if check.passed else "FAIL"
        lines.append(f"{mark} end {check.dimension.value}" + (f": {check.outcome.value}: {check.reason}" if not check.passed else ""))
    if record.trajectory.final_answer:
        lines.append(f"final answer: {one_line(record.trajectory.final_answer, 500)}")
    return clean("\n".join(lines))


def _testcase(record: RunRecord, epochs: int) -> ET.Element:
    name = record.scenario_id if epochs <= 1 else f"{record.scenario_id}[epoch {record.epoch}]"
    case = ET.Element("testcase", {"classname": clean(record.target), "name": clean(name), "time": _seconds(record)})
    score = record.score
    if score.infra_error:
        error = ET.SubElement(case, "error", {
            "type": "infra_error",
            "message": one_line(score.reason or record.trajectory.outcome.value),
        })
        error.text = _details(record)
    elif not score.passed:
        failure = ET.SubElement(case, "failure", {
            "type": score.outcome.value,
            "message": one_line(f"{score.outcome.value}: {score.reason}" if score.reason else score.outcome.value),
        })
        failure.text = _details(record)
    return case


def render_junit(results: Results) -> str:
    """The results as JUnit XML: a testsuite per target, a testcase per scenario (x epoch when there are several)."""
    by_target: dict[str, list[RunRecord]] = defaultdict(list)
    for r in results.latest():
        by_target[r.target].append(r)
    root = ET.Element("testsuites", {"name": "agentic-harness"})
    totals = {"tests": 0, "failures": 0, "errors": 0}
    time_total = 0.0
    timestamp = results.headers[0].created_at.replace(microsecond=0).isoformat() if results.headers else None
    for target in results.targets():
        records = sorted(by_target.get(target, []), key=lambda r: (r.scenario_id, r.epoch))
        if not records:
            continue
        epochs = len({r.epoch for r in records})
        errors = sum(r.score.infra_error for r in records)
        failures = sum(not r.score.passed and not r.score.infra_error for r in records)
        seconds = sum((r.trajectory.duration_ms or 0.0) for r in records) / 1000
        attrs = {"name": clean(target), "tests": str(len(records)), "failures": str(failures),
                 "errors": str(errors), "skipped": "0", "time": f"{seconds:.3f}",
                 "hostname": socket.gethostname()}
        if timestamp:
            attrs["timestamp"] = timestamp
        suite = ET.SubElement(root, "testsuite", attrs)
        props = ET.SubElement(suite, "properties")
        prov = results.provenance(target)
        values = {
            "run_ids": ", ".join(dict.fromkeys(h.run_id for h in results.headers)),
            "quantization": prov.quantization, "server": prov.server, "server_version": prov.server_version,
            "model_id": prov.model_id, "digest": prov.digest,
        }
        for key, value in values.items():
            if value:
                ET.SubElement(props, "property", {"name": key, "value": clean(value)})
        for r in records:
            suite.append(_testcase(r, epochs))
        totals["tests"] += len(records)
        totals["failures"] += failures
        totals["errors"] += errors
        time_total += seconds
    root.attrib.update({k: str(v) for k, v in totals.items()})
    root.set("time", f"{time_total:.3f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
