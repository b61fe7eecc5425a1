"""The quant audit: from one model to the rung where tool calling breaks, with cost beside accuracy.

`resolve_source` (sources.py) turns what the user names (a GGUF, several, a folder, `ollama:MODEL`, or nothing:
the embedded gemma-3-270m ladder) into an `AuditPlan` of builds (models.py); `run_audit` (run.py) makes, serves,
probes, runs and stops each build in turn, writing every run to one results file as it goes; `audit_report`
(report.py) reads it back into the comparison engine's verdict, the rung where each stratum first breaks, one
cost-beside-accuracy table and a plot.
"""

from harness.audit.models import (
    AuditError,
    AuditPlan,
    AuditReport,
    AuditRow,
    BuildCost,
    BuildResult,
    BuildSpec,
    Calibration,
    StratumBreak,
)
from harness.audit.report import TABLE_HEAD, audit_report, print_audit, table_rows, to_markdown, write_audit, write_plot
from harness.audit.run import AUDIT_STATE, run_audit, server_flags
from harness.audit.sources import calibration_text, resolve_calibration, resolve_source, split_arguments

__all__ = [
    "AUDIT_STATE",
    "TABLE_HEAD",
    "AuditError",
    "AuditPlan",
    "AuditReport",
    "AuditRow",
    "BuildCost",
    "BuildResult",
    "BuildSpec",
    "Calibration",
    "StratumBreak",
    "audit_report",
    "calibration_text",
    "print_audit",
    "resolve_calibration",
    "resolve_source",
    "run_audit",
    "server_flags",
    "split_arguments",
    "table_rows",
    "to_markdown",
    "write_audit",
    "write_plot",
]
