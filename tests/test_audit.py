"""harness.audit: what a source resolves to, content-keyed rungs and imatrices, failures as data, the answer.

Unit tests use tiny GGUF files written with the `gguf` package, fake llama.cpp programs and the fake Ollama.
The integration tests (marked) run `harness audit` on the real embedded model with real llama-servers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from harness import audit, llamacpp
from harness.records import Provenance, read_results
from tests import factories as f
from tests.factories import fake_program
from tests.fake_ollama import FakeOllama, OllamaModel

ROOT = Path(__file__).resolve().parent.parent

F16, Q8_0, Q4_K_M, Q2_K = 1, 7, 15, 10  # gguf.LlamaFileType codes


def _gguf(path: Path, file_type: int, *, arch: str = "gemma3", vocab: int = 300, width: int = 8) -> Path:
    import gguf

    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name("tiny")
    writer.add_file_type(file_type)
    writer.add_context_length(128)
    writer.add_array("tokenizer.ggml.tokens", [f"t{i}" for i in range(vocab)])
    writer.add_tensor("w", np.zeros((4, width), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(root))
    return root


@pytest.fixture
def fake_llama(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache: Path) -> Path:
    """llama-quantize (copies, counts its calls, fails for Q2_K), llama-imatrix (writes -o), and a llama-server
    that dies at start, all on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.log"
    fake_program(bin_dir / "llama-quantize", f"""\
        echo "quantize $*" >> {calls}
        for last; do :; done
        if [ "$last" = Q2_K ]; then echo "unsupported" >&2; exit 1; fi
        args=("$@"); n=${{#args[@]}}
        cp "${{args[$((n-3))]}}" "${{args[$((n-2))]}}"
        """)
    fake_program(bin_dir / "llama-imatrix", f"""\
        echo "imatrix $*" >> {calls}
        while [ $# -gt 0 ]; do if [ "$1" = -o ]; then echo matrix > "$2"; fi; shift; done
        """)
    fake_program(bin_dir / "llama-server", """\
        if [ "$1" = --version ]; then echo "version: 1 (fake)"; exit 0; fi
        echo "error: cannot allocate the model"; exit 1
        """)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    return calls


def _calls(log: Path, program: str) -> int:
    return sum(line.startswith(program + " ") for line in log.read_text().splitlines())


# -- arguments and sources ----------------------------------------------------------------------


def test_leading_ggufs_folders_and_ollama_are_the_source_and_the_rest_scenarios(tmp_path: Path):
    folder = tmp_path / "quants"
    folder.mkdir()
    _gguf(folder / "a.gguf", Q8_0)
    assert audit.split_arguments(["m.gguf", str(folder), "scenarios/"]) == (["m.gguf", str(folder)], ["scenarios/"])
    assert audit.split_arguments(["ollama:qwen2.5:7b", "x.yaml"]) == (["ollama:qwen2.5:7b"], ["x.yaml"])
    assert audit.split_arguments(["scenarios/"]) == ([], ["scenarios/"])


def test_a_f16_source_is_the_reference_and_every_default_rung_is_made_from_it(tmp_path: Path):
    plan = audit.resolve_source([str(_gguf(tmp_path / "model-f16.gguf", F16))])
    assert plan.kind == "gguf" and plan.reference == "F16"
    assert [b.name for b in plan.builds] == ["F16", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q3_K_M", "Q2_K"]
    assert plan.builds[0].origin == "source" and {b.origin for b in plan.builds[1:]} == {"quantize"}
    assert not plan.notes


def test_a_quantized_source_leaves_out_rungs_above_it_and_says_why(tmp_path: Path):
    plan = audit.resolve_source([str(_gguf(tmp_path / "m.gguf", Q4_K_M))])
    assert [b.name for b in plan.builds] == ["Q4_K_M", "Q3_K_M", "Q2_K"]
    assert any("Q8_0 left out" in n for n in plan.notes)
    assert any("not a high-precision file" in n for n in plan.notes)
    # asked for by name, a rung above the source is made, and disclosed as requantized up
    plan = audit.resolve_source([str(tmp_path / "m.gguf")], quants=["Q8_0", "Q2_K"])
    assert [b.name for b in plan.builds] == ["Q4_K_M", "Q8_0", "Q2_K"] and plan.reference == "Q4_K_M"
    assert any("requantized up" in n for n in plan.notes)


def test_kv_cache_types_and_contexts_make_every_rung_a_build(tmp_path: Path):
    plan = audit.resolve_source([str(_gguf(tmp_path / "m.gguf", Q8_0))], quants=["Q4_K_M"], kv_cache=["f16", "q8_0"],
                                ctx=[2048])
    assert [b.name for b in plan.builds] == ["Q8_0 kv=f16", "Q8_0 kv=q8_0", "Q4_K_M kv=f16", "Q4_K_M kv=q8_0"]
    assert plan.reference == "Q8_0 kv=f16"
    assert all(b.ctx == 2048 for b in plan.builds)
    assert plan.flash_attn  # a quantized V cache needs flash attention: on for all, so only the cache differs
    flags = audit.server_flags(plan.builds[1], plan, "all", ["--mlock"])
    assert flags == ["--cache-type-k", "q8_0", "--cache-type-v", "q8_0", "--flash-attn", "on", "--gpu-layers", "all", "--mlock"]


def test_a_folder_is_audited_as_is_with_its_most_precise_file_as_reference(tmp_path: Path):
    folder = tmp_path / "published"
    folder.mkdir()
    for name, code in (("m-Q2_K.gguf", Q2_K), ("m-Q8_0.gguf", Q8_0), ("m-Q4_K_M.gguf", Q4_K_M)):
        _gguf(folder / name, code)
    plan = audit.resolve_source([str(folder)])
    assert plan.kind == "files" and [b.name for b in plan.builds] == ["Q8_0", "Q4_K_M", "Q2_K"]
    assert plan.reference == "Q8_0" and {b.origin for b in plan.builds} == {"file"}
    plan = audit.resolve_source([str(folder)], reference="m-Q4_K_M.gguf")
    assert plan.reference == "Q4_K_M" and plan.builds[0].name == "Q4_K_M"
    with pytest.raises(audit.AuditError, match="none of the builds"):
        audit.resolve_source([str(folder)], reference="Q6_K")


@pytest.mark.parametrize(("other", "what"), [({"arch": "llama"}, "architecture"), ({"vocab": 301}, "vocabulary size"),
                                             ({"width": 16}, "parameter count")])
def test_files_of_different_models_are_refused_naming_what_differs(tmp_path: Path, other: dict, what: str):
    a = _gguf(tmp_path / "a.gguf", Q8_0)
    b = _gguf(tmp_path / "b.gguf", Q4_K_M, **other)
    with pytest.raises(audit.AuditError, match=f"not one model: the {what} differs"):
        audit.resolve_source([str(a), str(b)])


def test_an_ollama_source_is_the_models_local_tags_with_the_most_precise_as_reference():
    models = [OllamaModel("qwen2.5:7b-instruct-q4_K_M"), OllamaModel("qwen2.5:7b-instruct-q8_0", quantization="Q8_0"),
              OllamaModel("qwen2.5:7b-instruct-fp16", quantization="F16"), OllamaModel("llama3.2:3b")]
    with FakeOllama(models) as server:
        plan = audit.resolve_source(["ollama:qwen2.5:7b"], ollama_host=server.root_url)
        assert plan.kind == "ollama" and plan.ollama_host == server.root_url
        assert [b.ollama_tag for b in plan.builds] == ["qwen2.5:7b-instruct-fp16", "qwen2.5:7b-instruct-q8_0",
                                                       "qwen2.5:7b-instruct-q4_K_M"]
        assert plan.reference == plan.builds[0].name == "fp16"
        with pytest.raises(audit.AuditError, match="no tags of 'mistral'"):
            audit.resolve_source(["ollama:mistral"], ollama_host=server.root_url)
        with pytest.raises(audit.AuditError, match="Ollama tags are served by Ollama"):
            audit.resolve_source(["ollama:qwen2.5:7b"], ollama_host=server.root_url, kv_cache=["q8_0"])


def test_an_ollama_source_pulls_the_tags_quants_names_with_pull():
    registry = [OllamaModel("qwen2.5:7b-instruct-q2_K", quantization="Q2_K")]
    with FakeOllama([OllamaModel("qwen2.5:7b-instruct-q8_0", quantization="Q8_0")], registry=registry) as server:
        with pytest.raises(audit.AuditError, match="--pull"):
            audit.resolve_source(["ollama:qwen2.5:7b-instruct"], quants=["Q2_K"], ollama_host=server.root_url)
        plan = audit.resolve_source(["ollama:qwen2.5:7b-instruct"], quants=["Q2_K"], pull=True, ollama_host=server.root_url)
        assert [b.quant for b in plan.builds] == ["Q8_0", "Q2_K"]
        assert server.requests_to("/api/pull")


# -- content-keyed rungs and importance matrices ------------------------------------------------


def test_rung_cache_keys_change_with_source_quant_and_imatrix():
    base = llamacpp.rung_cache_key("a" * 64, "Q4_K_M")
    assert base == llamacpp.rung_cache_key("a" * 64, "q4_k_m")
    assert len({base, llamacpp.rung_cache_key("b" * 64, "Q4_K_M"), llamacpp.rung_cache_key("a" * 64, "Q2_K"),
                llamacpp.rung_cache_key("a" * 64, "Q4_K_M", "c" * 64)}) == 4


def test_a_second_audit_of_the_same_model_quantizes_nothing(tmp_path: Path, fake_llama: Path):
    source = _gguf(tmp_path / "m.gguf", F16)
    binaries = llamacpp.find_llama_binaries(build=False)
    first = llamacpp.quantize_gguf(source, "Q4_K_M", binaries)
    assert llamacpp.quantize_gguf(source, "Q4_K_M", binaries) == first
    assert _calls(fake_llama, "quantize") == 1
    info = llamacpp.rung_info(first)
    assert info.requantized_from is None and info.source_file == "m.gguf"  # from F16: a quantization, not a requant
    matrix = tmp_path / "imatrix.gguf"
    matrix.write_text("calibration")
    calibrated = llamacpp.quantize_gguf(source, "Q4_K_M", binaries, imatrix=matrix)
    assert calibrated != first and "--imatrix" in fake_llama.read_text().splitlines()[-1]
    assert llamacpp.rung_info(calibrated).imatrix_sha256 is not None
    # new bytes in the source make a new rung
    _gguf(source, F16, width=16)
    assert llamacpp.quantize_gguf(source, "Q4_K_M", binaries) != first
    assert _calls(fake_llama, "quantize") == 3


def test_an_importance_matrix_is_computed_once_per_model_and_text(tmp_path: Path, fake_llama: Path):
    source = _gguf(tmp_path / "m.gguf", F16)
    text = tmp_path / "calib.txt"
    text.write_text("the quick brown fox " * 200)
    binaries = llamacpp.find_llama_binaries(build=False)
    assert binaries.imatrix is not None
    first = llamacpp.compute_imatrix(source, text, binaries)
    assert first.read_text() == "matrix\n"
    assert llamacpp.compute_imatrix(source, text, binaries) == first
    text.write_text("other text " * 300)
    assert llamacpp.compute_imatrix(source, text, binaries) != first
    assert _calls(fake_llama, "imatrix") == 2


def test_scenario_calibration_text_holds_the_prompts_the_model_sees(tmp_path: Path):
    from harness.scenario import load_scenarios

    scenarios = load_scenarios([str(ROOT / "scenarios")], tags=["smoke"])
    text = audit.calibration_text(scenarios, tmp_path / "calib.txt").read_text()
    assert scenarios[0].turns[0].user in text and scenarios[0].system in text
    assert '"name": "get_weather"' in text  # the tool schemas are part of the prompt


# -- running: failures are data -----------------------------------------------------------------


def test_builds_that_cannot_be_made_or_served_are_reported_and_the_audit_goes_on(tmp_path: Path, fake_llama: Path):
    from harness.records import RunConfig
    from harness.scenario import load_scenarios

    source = _gguf(tmp_path / "m.gguf", F16)
    plan = audit.resolve_source([str(source)], quants=["Q4_K_M", "Q2_K"])
    scenarios = load_scenarios([str(ROOT / "scenarios")], ids=["smoke-no-tool-needed"])
    report = audit.run_audit(plan, scenarios, RunConfig(epochs=1, tolerance=5.0), tmp_path / "run")
    status = {b.name: b.status for b in report.builds}
    assert status == {"F16": "not_served", "Q4_K_M": "not_served", "Q2_K": "not_made"}
    by_name = {b.name: b for b in report.builds}
    assert "cannot allocate the model" in by_name["F16"].error and by_name["F16"].server_log
    assert "llama-quantize to Q2_K failed" in by_name["Q2_K"].error
    assert report.verdict is None and [r.status for r in report.rows] == ["not_served", "not_served", "not_made"]
    saved = json.loads((tmp_path / "run" / audit.AUDIT_STATE).read_text())
    assert [b["status"] for b in saved["builds"]] == ["not_served", "not_served", "not_made"]
    md = audit.to_markdown(report)
    assert "Q2_K not made: llama-quantize to Q2_K failed" in md and "**Calibration:** none" in md


# -- the answer from results --------------------------------------------------------------------


def _ladder_results(tmp_path: Path, per_stratum: int = 12):
    """Reference and three rungs on 2 strata: Q6_K holds, Q4_K_M loses context, Q2_K loses all."""
    plan = audit.AuditPlan(source="m.gguf", kind="gguf", reference="F16", builds=[
        audit.BuildSpec(name=n, quant=n, origin="source" if n == "F16" else "quantize", gguf="m.gguf")
        for n in ("F16", "Q6_K", "Q4_K_M", "Q2_K")])
    fails = {"F16": set(), "Q6_K": set(), "Q4_K_M": {"context_retention"}, "Q2_K": {"context_retention", "tool_selection"}}
    records, provenance = [], {}
    for size, (name, broken) in zip((400, 300, 200, 100), fails.items()):
        for stratum in ("tool_selection", "context_retention"):
            for i in range(per_stratum):
                for epoch in range(2):
                    records.append(f.record(name, f"{stratum}-{i}", steps="context_lost" if stratum in broken else "ok",
                                            strata=[stratum], epoch=epoch, tokens_per_s=50.0 + size / 10))
        provenance[name] = Provenance(server="llama.cpp", file_size_bytes=size * 1_000_000, quantization=name)
    results = f.results(records, provenance=provenance)
    builds = {n: audit.BuildResult(name=n, status="done", cost=audit.BuildCost(file_size_bytes=s * 1_000_000, rss_bytes=s * 2_000_000))
              for n, s in zip(fails, (400, 300, 200, 100))}
    return plan, builds, results


def test_the_report_names_the_verdict_and_where_each_stratum_first_breaks(tmp_path: Path):
    plan, builds, results = _ladder_results(tmp_path)
    report = audit.audit_report(plan, builds, results, tolerance=30.0)
    assert report.verdict is not None and report.verdict.chosen == "Q6_K"
    breaks = {b.stratum: b.build for b in report.breaks}
    assert breaks == {"overall": "Q4_K_M", "context_retention": "Q4_K_M", "tool_selection": "Q2_K"}
    rows = {r.build: r for r in report.rows}
    assert rows["F16"].is_reference and rows["Q6_K"].chosen and rows["Q2_K"].passes is False
    assert rows["Q2_K"].claim == "beyond" and rows["Q6_K"].claim == "within"
    assert rows["Q2_K"].overall.rate == 0.0 and rows["F16"].overall.n == 48
    assert rows["Q2_K"].cost.gen_tok_s == 60.0 and rows["Q2_K"].cost.rss_bytes == 200_000_000
    cells = {c[0]: c for c in audit.table_rows(report)}
    assert cells["Q6_K"][-1] == "chosen" and cells["Q2_K"][-1] == "beyond" and cells["Q2_K"][2] == "100.0"


def test_a_build_the_evidence_cannot_decide_is_marked_undecided_not_beyond(tmp_path: Path):
    # two scenarios a stratum: even a build identical to the reference cannot be shown within 5 pts
    plan, builds, results = _ladder_results(tmp_path, per_stratum=2)
    report = audit.audit_report(plan, builds, results, tolerance=5.0)
    cells = {c[0]: c[-1] for c in audit.table_rows(report)}
    assert report.verdict.chosen is None and cells["Q6_K"] == "undecided"


def test_the_plot_and_markdown_are_written_beside_the_state(tmp_path: Path):
    plan, builds, results = _ladder_results(tmp_path)
    report = audit.audit_report(plan, builds, results, tolerance=30.0)
    written = audit.write_audit(report, tmp_path / "run")
    assert written["audit.png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = written["audit.md"].read_text()
    assert "| Q6_K | 100% [" in md and "context_retention: Q4_K_M (-100.0 pts, 0% vs 100%)" in md
    saved = json.loads(written[audit.AUDIT_STATE].read_text())
    assert saved["report"]["verdict"]["chosen"] == "Q6_K"


def test_an_ollama_audit_runs_every_tag_through_the_cli_and_records_memory(tmp_path: Path):
    from click.testing import CliRunner

    from harness.cli import main

    models = [OllamaModel("qwen2.5:7b-instruct-q4_K_M", size=4_700_000_000),
              OllamaModel("qwen2.5:7b-instruct-q8_0", quantization="Q8_0", size=8_100_000_000)]
    with FakeOllama(models) as server:
        out = tmp_path / "audit"
        result = CliRunner().invoke(main, ["audit", "ollama:qwen2.5:7b", str(ROOT / "scenarios"), "--id",
                                           "smoke-no-tool-needed", "--epochs", "1", "--ollama-host", server.root_url,
                                           "--out", str(out), "--no-preflight", "--json"])
        assert result.exit_code == 0, result.output
        report = audit.AuditReport.model_validate_json(result.stdout)
        assert report.plan.reference == "q8_0" and [b.status for b in report.builds] == ["done", "done"]
        rows = {r.build: r for r in report.rows}
        assert rows["q8_0"].cost.file_size_bytes == 8_100_000_000 and rows["q4_K_M"].cost.rss_bytes == 4_700_000_000
        assert rows["q4_K_M"].overall.n == 1 and report.verdict is not None
        results = read_results(out / "results.jsonl")
        assert sorted(results.targets()) == ["q4_K_M", "q8_0"]
        assert results.provenance("q4_K_M").server == "ollama"
        assert (out / "audit.md").exists() and (out / "report.html").exists()


def test_the_audited_axes_are_not_confounds_but_a_calibration_difference_is():
    names = ["Q8_0 kv=f16", "Q8_0 kv=q8_0", "Q4_K_M kv=f16"]
    plan = audit.AuditPlan(source="m.gguf", kind="gguf", reference=names[0], builds=[
        audit.BuildSpec(name=n, quant=n.split()[0], origin="source" if n.startswith("Q8") else "quantize",
                        kv_cache=n.split("=")[1], calibrated=n.startswith("Q4")) for n in names])
    provenance = {n: Provenance(server="llama.cpp", digest="d-" + n.split()[0], file_size_bytes=100 if n.startswith("Q4") else 200,
                                imatrix="imatrix sha256:abc" if n.startswith("Q4") else "none",
                                extra={"kv_cache_dtype": n.split("=")[1]}) for n in names}
    results = f.results([f.record(n, "s0", epoch=e) for n in names for e in range(2)], provenance=provenance)
    report = audit.audit_report(plan, {n: audit.BuildResult(name=n, status="done") for n in names}, results)
    assert any("imatrix calibration data differs" in c for c in report.confounds)
    assert not any("same build" in c or "KV cache" in c for c in report.confounds)
    assert "confound: imatrix calibration data differs" in audit.to_markdown(report)


# -- integration: `harness audit` on the real embedded model, served by real llama-servers -------

SCENARIO_IDS = ("smoke-email-select", "smoke-weather-then-email")
BUILDS = ["Q4_K_M kv=f16", "Q4_K_M kv=q8_0", "Q3_K_M kv=f16", "Q3_K_M kv=q8_0"]


def _harness(*args: str) -> subprocess.CompletedProcess:
    # run from the repository root, so this tree's harness is the one imported
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "160", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)


def _audit_args(out: Path, *extra: str) -> list[str]:
    ids = [a for sid in SCENARIO_IDS for a in ("--id", sid)]
    return ["audit", str(llamacpp.assemble_base_model()), str(ROOT / "scenarios"), *ids, "--quants", "Q3_K_M",
            "--calibrate", "scenarios", "--kv-cache", "f16,q8_0", "--epochs", "1", "--threads", "1", "--out", str(out),
            *extra]  # one server thread: on a busy 2-core machine two threads spin on each other (10x slower)


@pytest.fixture(scope="module")
def audited(llama_ladder, tmp_path_factory):
    """One real audit: the packaged GGUF as source, one calibrated rung, each on an f16 and a q8_0 KV cache."""
    out = tmp_path_factory.mktemp("audit") / "run"
    started = time.perf_counter()
    proc = _harness(*_audit_args(out, "--json"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = audit.AuditReport.model_validate_json(proc.stdout)
    return report, out, time.perf_counter() - started


@pytest.mark.integration
def test_audit_makes_serves_and_runs_every_build_with_cost_beside_accuracy(audited):
    report, out, seconds = audited
    assert [b.name for b in report.builds] == BUILDS and all(b.status == "done" for b in report.builds)
    assert report.plan.reference == "Q4_K_M kv=f16" and report.plan.flash_attn
    results = read_results(out / "results.jsonl")
    assert results.targets() == BUILDS
    for row in report.rows:
        c = row.cost
        assert row.overall is not None and row.overall.n == len(SCENARIO_IDS)
        assert c.gen_tok_s > 0 and c.prompt_tok_s > 0 and 0 < c.latency_p50_ms <= c.latency_p95_ms
        # the server process's own resident memory (this llama.cpp logs no buffer sizes at its default verbosity)
        assert c.rss_bytes > 100e6 and c.peak_rss_bytes >= c.rss_bytes
    rows = {r.build: r for r in report.rows}
    for quant in ("Q4_K_M", "Q3_K_M"):
        f16, q8 = rows[f"{quant} kv=f16"].cost, rows[f"{quant} kv=q8_0"].cost
        assert q8.file_size_bytes == f16.file_size_bytes
        # the q8_0 cache holds half the bytes of the f16 one: the server's resident memory shows it (~40 MB here)
        assert q8.rss_bytes < f16.rss_bytes - 15e6
        flags = results.provenance(f"{quant} kv=q8_0").extra["server_flags"]
        assert flags[:6] == ["--cache-type-k", "q8_0", "--cache-type-v", "q8_0", "--flash-attn", "on"]
    assert rows["Q3_K_M kv=f16"].cost.file_size_bytes < rows["Q4_K_M kv=f16"].cost.file_size_bytes
    print(f"\naudit of {len(BUILDS)} builds x {len(SCENARIO_IDS)} scenarios took {seconds:.0f}s")
    print((out / "audit.md").read_text())


@pytest.mark.integration
def test_audit_records_each_builds_provenance_and_names_the_computed_imatrix(audited):
    report, out, _ = audited
    calibration = report.plan.calibration
    assert calibration.kind == "computed" and calibration.text == "scenarios"
    assert calibration.text_bytes > 1000 and len(calibration.text_sha256) == 64 and calibration.imatrix_bytes > 0
    results = read_results(out / "results.jsonl")
    source_sha = results.provenance("Q4_K_M kv=f16").digest  # the source GGUF, served as is
    for name in BUILDS:
        prov = results.provenance(name)
        quant, kv = name.split(" kv=")
        assert prov.server == "llama.cpp" and prov.quantization == quant
        assert prov.extra["kv_cache_dtype"] == kv and prov.extra["flash_attn"] is True
        assert prov.preflight.get("tools_in_prompt") is True
        if quant == "Q3_K_M":
            assert calibration.imatrix_sha256[:12] in prov.imatrix
            assert prov.extra["made_from"]["sha256"] == source_sha
            assert prov.extra["imatrix_sha256"] == calibration.imatrix_sha256
            assert prov.extra["gguf"]["imatrix"]  # llama-quantize wrote the matrix into the rung's header
        else:
            assert prov.imatrix == "none"
    md = (out / "audit.md").read_text()
    assert f"**Calibration:** imatrix sha256:{calibration.imatrix_sha256[:12]}" in md and "computed on scenarios" in md


@pytest.mark.integration
def test_audit_reaches_the_engines_verdict_and_walks_each_kv_series_for_breaks(audited):
    report, out, _ = audited
    verdict = report.verdict
    assert verdict is not None and verdict.reference == "Q4_K_M kv=f16"
    assert sorted(b.target for b in verdict.builds) == sorted(BUILDS[1:])
    assert verdict.chosen is None or verdict.chosen in BUILDS[1:]
    assert {(b.stratum, b.series) for b in report.breaks} >= {("overall", "kv=f16"), ("overall", "kv=q8_0")}
    assert all(b.build is None or b.build.endswith(b.series) for b in report.breaks)
    assert (out / "audit.png").read_bytes()[:4] == b"\x89PNG" and (out / "report.html").exists()


@pytest.mark.integration
def test_an_interrupted_audit_resumes_at_the_build_it_was_on(audited, tmp_path):
    report, out, _ = audited
    # as if the audit had died during the last build: its runs and its state are not there
    copy = tmp_path / "run"
    copy.mkdir()
    last = BUILDS[-1]
    lines = [ln for ln in (out / "results.jsonl").read_text().splitlines()
             if json.loads(ln).get("target") != last]
    (copy / "results.jsonl").write_text("\n".join(lines) + "\n")
    state = json.loads((out / audit.AUDIT_STATE).read_text())
    state["builds"] = [b for b in state["builds"] if b["name"] != last]
    (copy / audit.AUDIT_STATE).write_text(json.dumps(state))
    proc = _harness(*_audit_args(copy, "--resume", str(copy)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout + proc.stderr
    assert text.count("serving ") == 1 and f"{last}: serving" in text
    assert all(f"{b}: already done" in text for b in BUILDS[:-1])
    results = read_results(copy / "results.jsonl")
    assert len(results.for_target(last)) == len(SCENARIO_IDS)
    assert "quantizing" not in text and "computing an importance matrix" not in text  # all cached by content
