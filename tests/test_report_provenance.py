"""What the report says about each build's placement and abilities, and how it names its estimates."""

from __future__ import annotations

import re

from harness.compare import summarize_run
from harness.records import Provenance
from harness.report import render_html
from tests.factories import record, results


def _report(provenance: dict[str, Provenance]) -> str:
    res = results([record(name, "pick_tool_0", steps="ok ok", strata=["tool_selection"]) for name in provenance],
                  provenance=provenance)
    return render_html(summarize_run(res), res)


def _text(page: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))


def test_memory_vram_and_capabilities_from_ollama_are_in_the_disclosure():
    page = _text(_report({
        "q4": Provenance(server="ollama", memory_bytes=6_000_000_000, vram_bytes=6_000_000_000,
                         capabilities=["completion", "tools"]),
        "f16": Provenance(server="ollama", memory_bytes=16_000_000_000, vram_bytes=12_000_000_000,
                          capabilities=["completion", "tools", "vision"]),
    }))
    assert "memory (VRAM)" in page
    assert "6.00 GB VRAM, all in VRAM" in page
    assert "12.00 GB VRAM, 75% in VRAM" in page
    assert "completion, tools, vision" in page


def test_the_survival_caption_names_the_kaplan_meier_estimate():
    page = _text(_report({"q4": Provenance()}))
    assert "Kaplan-Meier" in page
    assert "Share of scored runs" not in page
