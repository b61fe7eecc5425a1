"""Reports: every format says the same thing, every string from a model or a scenario is escaped,
the HTML works offline, JUnit tells model failures from infra errors, several sessions merge."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest
from rich.console import Console

from harness.compare import Comparison, compare_runs, summarize_run
from harness.outcomes import Dimension, Outcome
from harness.records import Provenance, Results, ResultsWriter, RunConfig, RunRecord, read_results
from harness.report import REPORT_FILES, print_terminal, render_html, render_junit, render_markdown, write_reports
from harness.report.html import h
from harness.scores import Check, ScenarioScore, StepScore
from harness.trajectory import Reply, Step, ToolCall, ToolExecution, Trajectory
from tests.factories import record, results, spy_on_plots

XSS_ANSWER = "<script>window.__pwned = 1; alert(1)</script>"
XSS_TOOL = '<img src=x onerror="window.__pwned=1">'
XSS_SCENARIO = "<img src=x onerror=alert(1)>"
GB = 1_000_000_000


def conversation(
    target: str,
    scenario_id: str = "weather_paris",
    *,
    fail: Outcome | None = None,
    epoch: int = 0,
    tool: str = "get_weather",
    answer: str = "It is 21°C and sunny in Paris.",
    strata: tuple[str, ...] = ("tool_selection",),
    run_id: str = "run-1",
) -> RunRecord:
    """A real-looking two-step run: call `tool`, read its result, answer. `fail` grades step 0 with that outcome."""
    call = ToolCall(id="call_1", name=tool, raw_arguments='{"city": "Paris"}', arguments={"city": "Paris"})
    steps = [
        Step(index=0, turn=1, reply=Reply(tool_calls=[call], finish_reason="tool_calls", latency_ms=412.0),
             executions=[ToolExecution(step=0, turn=1, call=call, offered=tool == "get_weather", executed=True,
                                       result={"city": "Paris", "temp_c": 21, "sky": "sunny"} if tool == "get_weather" else None,
                                       error=None if tool == "get_weather" else f"unknown tool {tool!r}")]),
        Step(index=1, turn=1, reply=Reply(content=answer, finish_reason="stop", latency_ms=230.0)),
    ]
    messages = [
        {"role": "system", "content": "You are a helpful assistant with tools."},
        {"role": "user", "content": "What's the weather in Paris right now?"},
        {"role": "assistant", "content": "", "tool_calls": [{"id": "call_1", "type": "function",
                                                              "function": {"name": tool, "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "name": tool, "content": '{"temp_c": 21}'},
        {"role": "assistant", "content": answer},
    ]
    trajectory = Trajectory(scenario_id=scenario_id, target=target, epoch=epoch, steps=steps, messages=messages,
                            offered_tools=["get_weather", "send_email"], final_answer=answer, duration_ms=650.0)
    if fail is None:
        grades = [
            StepScore(index=0, turn=1, kind="call", expected="call get_weather(city=Paris)", actual="get_weather(city=Paris)",
                      model_step=0, checks=[Check.ok(Dimension.TOOL_SELECTION)]),
            StepScore(index=1, turn=1, kind="answer", expected="answer mentioning 21", actual=answer, model_step=1,
                      checks=[Check.ok(Dimension.ANSWER)]),
        ]
        score = ScenarioScore(scenario_id=scenario_id, passed=True, outcome=Outcome.OK, steps=grades)
    else:
        why = f"expected get_weather, got {tool}"
        grades = [
            StepScore(index=0, turn=1, kind="call", expected="call get_weather(city=Paris)", actual=f"{tool}(city=Paris)",
                      model_step=0, checks=[Check.fail(Dimension.TOOL_SELECTION, fail, why)]),
            StepScore(index=1, turn=1, kind="answer", expected="answer mentioning 21", actual="(not reached)",
                      checks=[Check.fail(Dimension.ANSWER, Outcome.NOT_REACHED, "an earlier step failed")]),
        ]
        score = ScenarioScore(scenario_id=scenario_id, passed=False, outcome=fail, first_failed_step=0, steps=grades,
                              reason=f"step 0 (turn 1, call get_weather(city=Paris)): {why}")
    return RunRecord(run_id=run_id, target=target, scenario_id=scenario_id, scenario_hash=f"h-{scenario_id}",
                     strata=list(strata), epoch=epoch, trajectory=trajectory, score=score)


PROVENANCE = {
    "f16": Provenance(server="llama.cpp", server_version="b4500", quantization="F16", file_size_bytes=15 * GB,
                      chat_template="qwen2.5", digest="a" * 64),
    "q8_0": Provenance(server="llama.cpp", server_version="b4500", quantization="Q8_0", file_size_bytes=8 * GB,
                       chat_template="qwen2.5"),
    "q4_k_m": Provenance(server="llama.cpp", server_version="b4500", quantization="Q4_K_M", file_size_bytes=int(4.4 * GB),
                         chat_template="qwen2.5", warnings=["model spills 2 layers to CPU"]),
}


def ladder(*, hostile: bool = False, epochs: int = 1) -> Results:
    """f16 (reference), q8_0 and q4_k_m on ten scenarios over three strata; q4_k_m breaks at step 2 of the context ones.

    `hostile=True`: q4_k_m's flipped run answers with a script, calls a tool named like markup, and one
    scenario id is markup too.
    """
    recs: list[RunRecord] = []
    weather = XSS_SCENARIO if hostile else "weather_paris"
    for epoch in range(epochs):
        for target in PROVENANCE:
            for i in range(4):
                recs.append(record(target, f"pick_tool_{i}", steps="ok ok", strata=["tool_selection"], epoch=epoch,
                                   latency_ms={"f16": 900, "q8_0": 500, "q4_k_m": 300}[target]))
            for i in range(4):
                steps = "ok ok context_lost not_reached" if target == "q4_k_m" and i < 3 else "ok ok ok ok"
                recs.append(record(target, f"recall_{i}", steps=steps, strata=["context_retention"], epoch=epoch))
            recs.append(record(target, "args_0", steps="ok type_error" if target == "q4_k_m" else "ok ok",
                               strata=["argument_validity"], epoch=epoch))
            # the server fell over for q4_k_m here: excluded from accuracy, reported as an infra error
            recs.append(record(target, "flaky_server", steps="ok ok", infra=target == "q4_k_m", epoch=epoch))
            if target == "q4_k_m":
                recs.append(conversation(target, weather, fail=Outcome.WRONG_TOOL, epoch=epoch,
                                         tool=XSS_TOOL if hostile else "send_email",
                                         answer=XSS_ANSWER if hostile else "Sent."))
            else:
                recs.append(conversation(target, weather, epoch=epoch))
    return results(recs, provenance=dict(PROVENANCE), config=RunConfig(epochs=epochs, reference="f16"))


def parse_tags(page: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    """Every start tag in `page`, as the browser's tokenizer sees it."""
    tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    class Collect(HTMLParser):
        def handle_starttag(self, tag, attrs):
            tags.append((tag, attrs))

    Collect().feed(page)
    return tags


def compare(res: Results) -> Comparison:
    return compare_runs(res, reference="f16", tolerance=5.0)


# -- HTML ---------------------------------------------------------------------------------------


def test_model_and_scenario_strings_never_become_markup():
    res = ladder(hostile=True)
    page = render_html(compare(res), res)
    # the payloads are shown as text ...
    assert "&lt;script&gt;window.__pwned = 1; alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "&lt;img src=x onerror=&quot;window.__pwned=1&quot;&gt;" in page
    # ... and never as live markup, anywhere in the document
    tags = parse_tags(page)
    assert not [t for t, _ in tags if t in ("script", "iframe", "object", "embed")]
    assert not [(t, a) for t, attrs in tags for a, _ in attrs if a.startswith("on")]
    assert all(dict(attrs)["src"].startswith("data:image/svg+xml") for t, attrs in tags if t == "img")


def test_single_run_report_escapes_too():
    res = results([conversation("q4", XSS_SCENARIO, fail=Outcome.UNKNOWN_TOOL, tool=XSS_TOOL, answer=XSS_ANSWER)])
    page = render_html(summarize_run(res), res)
    tags = parse_tags(page)
    assert "script" not in {t for t, _ in tags} and not [a for _, attrs in tags for a, _ in attrs if a.startswith("on")]
    assert "&lt;script&gt;" in page


def test_the_builder_escapes_children_and_attributes_but_not_its_own_markup():
    el = h("td", "<b>", h("i", "x"), title='"><script>', class_="a b", hidden=True, skipped=None)
    assert el == '<td title="&quot;&gt;&lt;script&gt;" class="a b" hidden>&lt;b&gt;<i>x</i></td>'


def test_html_is_self_contained_and_forbids_script():
    res = ladder()
    page = render_html(compare(res), res)
    # nothing is fetched: every src and href is inline data or an in-page anchor
    for attr, value in re.findall(r'\s(src|href)="([^"]*)"', page):
        assert value.startswith(("data:", "#")), (attr, value)
    assert "<link" not in page and "@import" not in page and "url(http" not in page
    csp = next(dict(a) for t, a in parse_tags(page) if t == "meta" and dict(a).get("http-equiv") == "Content-Security-Policy")
    assert "script-src 'none'" in csp["content"] and "default-src 'none'" in csp["content"]


def test_comparison_report_has_verdict_disclosure_plots_heatmap_and_flips():
    res = ladder()
    comparison = compare(res)
    page = render_html(comparison, res)
    assert page.index('id="verdict"') < page.index('id="disclosure"') < page.index('id="accuracy"')
    # a dozen scenarios can never show a build within 5 pts: the honest verdict is undecided, with a plan
    assert comparison.verdict is not None and comparison.verdict.chosen is None
    assert "? undecided: no build is shown within 5 pts of f16" in page
    assert "What this run can rule out" in page and "rules out drops larger than" in page
    assert "model spills 2 layers to CPU" in page  # a provenance warning is disclosed
    assert page.count("data:image/svg+xml;base64,") == 2  # accuracy by size, depth survival
    assert 'class="heatmap"' in page
    q4 = comparison.target("q4_k_m").vs_reference
    assert q4 is not None and len(q4.flips) == 5  # three recall_*, args_0, weather
    assert page.count('<details class="flip regression">') == len(q4.flips) + len(comparison.target("q8_0").vs_reference.flips)
    # the flipped weather run shows both sides: the reference's call and result, the build's wrong call
    assert "send_email" in page and "temp_c" in page and "expected get_weather, got send_email" in page


def test_cost_sits_beside_accuracy():
    res = ladder()
    page = render_html(compare(res), res)
    accuracy = page[page.index('id="accuracy"'):page.index('id="depth"')]
    assert "latency p50 / p95" in accuracy and "900 ms" in accuracy and "300 ms" in accuracy
    assert "15.00 GB" in accuracy


def test_single_target_report_is_the_same_minus_the_comparison():
    res = results([record("q4", "a", steps="ok ok"), record("q4", "b", steps="ok wrong_tool"),
                   conversation("q4", "weather", fail=Outcome.MISSING_CALL)])
    page = render_html(summarize_run(res), res)
    assert 'id="verdict"' in page and 'id="disclosure"' in page and 'class="heatmap"' in page
    assert 'id="flips"' not in page and "Δ vs reference" not in page
    assert 'id="failed"' in page and page.count('<details class="flip regression">') == 2


def heat_cells(page: str) -> dict[str, str]:
    """Heatmap cell title -> its class."""
    return {dict(a)["title"]: dict(a)["class"] for t, a in parse_tags(page) if t == "td" and "title" in dict(a)}


def test_heatmap_cells_carry_each_epochs_outcome():
    res = results([record("q4", "a", steps="ok wrong_tool", epoch=0), record("q4", "a", steps="ok ok", epoch=1),
                   record("q4", "b", steps="ok context_lost not_reached", end="ok"),
                   record("q4", "c", infra=True)])
    cells = heat_cells(render_html(summarize_run(res), res))
    assert cells["q4 · a · step 0: ok ×2"] == "hm h4 gap"
    assert cells["q4 · a · step 1: wrong_tool, ok"] == "hm h2"  # passed in one epoch of two
    assert cells["q4 · b · step 1: context_lost"] == "hm h0"
    assert cells["q4 · b · step 2: not_reached"] == "hm skip"
    assert cells["q4 · b · end checks: ok"] == "hm h4"
    assert cells["q4 · c · end checks: infra_error"] == "hm infra"
    # a scenario with no end checks has no end cell to colour
    assert not [t for t in cells if t.startswith("q4 · a · end")]


def test_flips_with_unequal_epochs_show_a_representative_run_of_each_side():
    # the reference ran two epochs, the build one: each side is pooled, and a run of each side is shown
    recs = [conversation("f16", "weather", epoch=0), conversation("f16", "weather", epoch=1),
            conversation("q4", "weather", fail=Outcome.WRONG_TOOL, tool="send_email")]
    res = results(recs)
    comparison = compare_runs(res, reference="f16")
    assert comparison.target("q4").vs_reference.flips[0].target_pass_rate == 0.0
    page = render_html(comparison, res)
    assert "pass share 100% → 0%" in page and page.count('<div class="traj">') == 2
    assert "expected get_weather, got send_email" in page


def test_beyond_the_cap_flips_are_listed_without_trajectories(monkeypatch):
    from harness.report import html as html_report

    monkeypatch.setattr(html_report, "_MAX_TRAJECTORIES", 2)
    res = ladder()
    page = render_html(compare(res), res)
    assert page.count('<details class="flip regression">') == 2
    assert page.count('<div class="flip more">') == 3  # q4_k_m has five flips


def test_plots_survive_dollar_signs_in_names():
    res = results([record("cheap$ $build", "a"), record("cheap$ $build", "b", steps="ok wrong_tool")])
    page = render_html(summarize_run(res), res)
    assert "data:image/svg+xml;base64," in page


def test_several_sessions_merge_into_one_report(tmp_path):
    # two shards of one night, each with its own header
    first, second = ladder(), ladder()
    for rec in second.records:
        rec.run_id = "run-2"
    second.headers[0].run_id = "run-2"
    for n, part in enumerate((first, second)):
        with ResultsWriter(tmp_path / f"shard{n}.jsonl") as w:
            w.header(part.headers[0])
            for rec in part.records[n::2]:
                w.record(rec)
    merged = read_results([tmp_path / "shard0.jsonl", tmp_path / "shard1.jsonl"])
    assert len(merged.headers) == 2
    comparison = compare(merged)
    page = render_html(comparison, merged)
    assert "Merged from 2 sessions" in page and "run-1" in page and "run-2" in page
    junit = ET.fromstring(render_junit(merged))
    assert int(junit.get("tests")) == len(merged.latest())


# -- JUnit --------------------------------------------------------------------------------------


def test_junit_has_a_testcase_per_scenario_and_target_with_failure_kinds():
    res = ladder()
    root = ET.fromstring(render_junit(res))
    cases = root.findall("./testsuite/testcase")
    assert len(cases) == len(res.latest())
    assert {s.get("name") for s in root.findall("testsuite")} == {"f16", "q8_0", "q4_k_m"}
    recall = next(c for c in cases if c.get("classname") == "q4_k_m" and c.get("name") == "recall_0")
    failure = recall.find("failure")
    assert failure is not None and failure.get("type") == "context_lost"
    assert "step 2" in failure.get("message") and "FAIL step 2" in failure.text
    passing = next(c for c in cases if c.get("classname") == "f16" and c.get("name") == "recall_0")
    assert list(passing) == []


def test_junit_reports_infra_errors_as_errors_not_failures():
    root = ET.fromstring(render_junit(ladder()))
    q4 = next(s for s in root.findall("testsuite") if s.get("name") == "q4_k_m")
    errors = q4.findall("./testcase/error")
    assert len(errors) == 1 and errors[0].get("type") == "infra_error"
    assert q4.get("errors") == "1" and q4.get("failures") == "5"
    assert root.get("errors") == "1"


def test_junit_names_epochs_when_there_are_several():
    root = ET.fromstring(render_junit(ladder(epochs=2)))
    names = {c.get("name") for c in root.iter("testcase") if c.get("classname") == "f16"}
    assert "recall_0[epoch 0]" in names and "recall_0[epoch 1]" in names


def test_junit_stays_valid_xml_with_hostile_model_output():
    # U+FFFE (a byte-swapped BOM) and U+FFFF are outside XML 1.0 too: a CI system's parser refuses the file
    rec = conversation("q4", XSS_SCENARIO, fail=Outcome.WRONG_TOOL, tool=XSS_TOOL,
                       answer="bell\x07 nul\x00 bom\ufffe ffff\uffff " + XSS_ANSWER)
    rec.score.reason += " \x1b[31m \ufffe"
    text = render_junit(results([rec]))
    case = ET.fromstring(text).find("./testsuite/testcase")
    assert case.get("name") == XSS_SCENARIO
    assert case.find("failure").get("type") == "wrong_tool"
    assert "<script>" not in text


# -- Markdown, terminal, JSON -------------------------------------------------------------------


def test_markdown_leads_with_the_verdict_and_escapes():
    res = ladder(hostile=True)
    comparison = compare(res)
    text = render_markdown(comparison)
    assert text.startswith("## ")
    assert comparison.verdict.chosen is None
    assert "❔ agentic-harness: undecided: no build is shown within 5 pts of f16" in text.splitlines()[0]
    assert "rules out drops larger than" in text
    assert "| build |" in text and "### Per stratum" in text and "### Flipped items: q4\\_k\\_m vs f16" in text
    assert "<img" not in text and "<script" not in text
    assert "&lt;img src=x onerror=alert(1)&gt;" in text
    # every table row keeps its column count: no stray pipe from a reason or an id
    for table in re.findall(r"((?:^\|.*\|$\n?)+)", text, re.MULTILINE):
        widths = {len(re.split(r"(?<!\\)\|", row)) for row in table.strip().splitlines()}
        assert len(widths) == 1, table


def test_markdown_for_a_single_run():
    text = render_markdown(summarize_run(results([record("q4", "a_1", steps="ok wrong_tool"), record("q4", "b", steps="ok ok")])))
    assert "q4: 50.0% (1/2) passed" in text and "Δ vs ref" not in text
    assert "### Failing scenarios: q4" in text and "wrong\\_tool ×1" in text and "| a\\_1 | 0/1 |" in text
    assert "| b |" not in text


def test_terminal_prints_verdict_builds_strata_scenarios_and_flips():
    res = ladder()
    comparison = compare(res)
    console = Console(record=True, width=220, color_system=None)
    print_terminal(comparison, console, results=res)
    out = console.export_text()
    assert "undecided: no build is shown within 5 pts of f16" in out and "Not decided" in out
    assert "to decide:" in out
    for words in ("builds", "per stratum", "context_retention", "flips: q4_k_m vs f16", "recall_0", "context_lost"):
        assert words in out, words
    assert "step 2" in out  # first failed step per scenario


def test_terminal_prints_markup_in_names_literally():
    res = results([record("[red]ref[/]", "[bold red]boom[/]", steps="ok wrong_tool"),
                   record("[blink]q4[/]", "[bold red]boom[/]", steps="ok ok")])
    console = Console(record=True, width=200, color_system=None)
    print_terminal(compare_runs(res, reference="[red]ref[/]"), console, results=res)
    out = console.export_text()
    assert "[bold red]boom[/]" in out and "flips: [blink]q4[/] vs [red]ref[/]" in out


def test_half_an_emoji_from_a_cut_off_reply_does_not_break_any_report(tmp_path):
    half = json.loads('"cut off \\ud83d"')  # a lone surrogate, as json.loads gives it
    rec = conversation("q4", "weather", fail=Outcome.WRONG_TOOL, answer=half)
    rec.score.reason += half
    res = results([rec])
    written = write_reports(res, summarize_run(res), tmp_path)
    assert "cut off \ufffd" in written["report.html"].read_text(encoding="utf-8")
    ET.fromstring(written["junit.xml"].read_text(encoding="utf-8"))
    with open(tmp_path / "terminal.txt", "w", encoding="utf-8") as fh:
        print_terminal(summarize_run(res), Console(file=fh, width=200), results=res)
    assert "weather" in (tmp_path / "terminal.txt").read_text(encoding="utf-8")


def test_write_reports_writes_every_file_and_the_json_round_trips(tmp_path):
    res = ladder()
    comparison = compare(res)
    written = write_reports(res, comparison, tmp_path / "out")
    assert set(written) == set(REPORT_FILES)
    assert all(p.exists() and p.stat().st_size > 0 for p in written.values())
    assert Comparison.model_validate_json(written["summary.json"].read_text()) == comparison
    assert json.loads(written["summary.json"].read_text())["verdict"]["chosen"] == comparison.verdict.chosen
    assert not list((tmp_path / "out").glob(".*.tmp"))


def _undated(page: str) -> str:
    return re.sub(r"generated \d{4}-\d\d-\d\d \d\d:\d\d UTC", "generated", page)


def test_released_records_are_gone_before_any_plot_is_drawn_and_the_reports_are_the_same(tmp_path, monkeypatch):
    kept, handed = ladder(hostile=True), ladder(hostile=True)
    comparison = compare(kept)
    assert comparison == compare(handed)
    seen = spy_on_plots(monkeypatch, lambda: len(handed.records))
    n = len(handed.records)
    a = write_reports(kept, comparison, tmp_path / "kept")
    assert seen and len(kept.records) == n  # the default keeps them
    seen.clear()
    b = write_reports(handed, comparison, tmp_path / "handed", release_records=True)
    # every plot was drawn with the records already let go, and the caller's list is empty
    assert seen and set(seen) == {0} and handed.records == [] and handed.headers
    for name in REPORT_FILES:
        assert _undated(a[name].read_text(encoding="utf-8")) == _undated(b[name].read_text(encoding="utf-8")), name
    # the page still shows the trajectories of the flipped runs, read before the release
    page = b["report.html"].read_text(encoding="utf-8")
    assert "&lt;script&gt;window.__pwned = 1; alert(1)&lt;/script&gt;" in page and 'class="traj"' in page


def test_the_page_is_one_document_with_its_sections_in_order():
    res = ladder()
    page = render_html(compare(res), res)
    assert page.startswith('<!DOCTYPE html>\n<html lang="en"><head>') and page.endswith("</main></body></html>\n")
    ids = re.findall(r'<section id="([a-z-]+)"', page)
    order = ["verdict", "disclosure", "accuracy", "depth", "heatmap", "failure-kinds", "flips"]
    assert [i for i in ids if i in order] == [i for i in order if i in ids] and {"verdict", "flips", "heatmap"} <= set(ids)


@pytest.mark.parametrize("render", [
    lambda c, r: render_html(c, r), lambda c, r: render_markdown(c), lambda c, r: render_junit(r),
])
def test_empty_results_render_without_error(render):
    res = Results()
    assert render(summarize_run(res), res)
