"""Ollama tags resolve to targets with what Ollama says about each build, against a fake Ollama over HTTP."""

from __future__ import annotations

import pytest

from harness.ollama import (
    OllamaModelError,
    OllamaUnreachable,
    normalise_host,
    ollama_provenance,
    resolve_ollama_targets,
    tag_labels,
)
from tests.fake_ollama import OLLAMA_VERSION, FakeOllama, OllamaModel
from tests.fakeserver import FakeServer, free_port

FP16 = "qwen2.5:7b-instruct-fp16"
Q4 = "qwen2.5:7b-instruct-q4_K_M"


@pytest.fixture
def ollama():
    models = [OllamaModel(FP16, quantization="F16", size=15_237_853_696), OllamaModel(Q4)]
    with FakeOllama(models) as server:
        yield server


def test_tags_resolve_to_openai_targets_with_digest_quantization_and_capabilities(ollama):
    resolved = resolve_ollama_targets([FP16, Q4], host=ollama.root_url)

    assert [t.name for t, _ in resolved] == ["fp16", "q4_K_M"]
    for target, prov in resolved:
        assert target.base_url == f"{ollama.root_url}/v1"
        assert prov.server == "ollama" and prov.server_version == OLLAMA_VERSION
        assert prov.digest == ollama.local[target.model].digest
        assert "tools" in prov.capabilities
        assert prov.context_length == 4096  # what /api/ps says is served, not the trained 32768
        assert prov.extra["context_length_trained"] == 32768
        assert prov.warnings == []
    assert [t.model for t, _ in resolved] == [FP16, Q4]
    assert [p.quantization for _, p in resolved] == ["F16", "Q4_K_M"]
    assert resolved[0][1].file_size_bytes == 15_237_853_696


def test_each_tag_is_preloaded_with_keep_alive_before_timing(ollama):
    resolve_ollama_targets([FP16, Q4], host=ollama.root_url, keep_alive="1h")

    loads = ollama.requests_to("/api/generate")
    assert [(b["model"], b["prompt"], b["keep_alive"]) for b in loads] == [(FP16, "", "1h"), (Q4, "", "1h")]
    assert set(ollama.loaded) == {FP16, Q4}


def test_without_preload_nothing_is_loaded_and_num_ctx_comes_from_the_modelfile():
    with FakeOllama([OllamaModel(Q4, num_ctx=8192)]) as server:
        [(_, prov)] = resolve_ollama_targets([Q4], host=server.root_url, preload=False)
        assert server.requests_to("/api/generate") == []
    assert prov.context_length == 8192
    assert prov.memory_bytes is None


def test_a_tag_without_the_tools_capability_gets_a_warning():
    plain = OllamaModel("gemma2:2b-instruct-q4_0", quantization="Q4_0", capabilities=["completion"])
    with FakeOllama([plain, OllamaModel(Q4)]) as server:
        resolved = resolve_ollama_targets([plain.tag, Q4], host=server.root_url)

    (_, no_tools), (_, with_tools) = resolved
    assert len(no_tools.warnings) == 1
    assert "gemma2:2b-instruct-q4_0" in no_tools.warnings[0] and "`tools` capability" in no_tools.warnings[0]
    assert with_tools.warnings == []


def test_a_model_that_spills_to_the_cpu_gets_a_warning_from_api_ps():
    big = OllamaModel("llama3.1:70b-instruct-q4_K_M", size=42_520_412_160, vram_fraction=0.55)
    with FakeOllama([big, OllamaModel(Q4)]) as server:
        (_, spilled), (_, fits) = resolve_ollama_targets([big.tag, Q4], host=server.root_url)

    assert spilled.memory_bytes == 42_520_412_160
    assert spilled.vram_bytes == int(42_520_412_160 * 0.55)
    assert len(spilled.warnings) == 1
    assert "45% of it runs on the CPU" in spilled.warnings[0]
    assert fits.vram_bytes == fits.memory_bytes and fits.warnings == []


def test_an_unknown_tag_is_an_error_naming_it_and_the_tags_the_server_has(ollama):
    with pytest.raises(OllamaModelError) as err:
        resolve_ollama_targets([Q4, "qwen2.5:7b-instruct-q2_K"], host=ollama.root_url)

    message = str(err.value)
    assert "'qwen2.5:7b-instruct-q2_K'" in message
    assert FP16 in message and Q4 in message
    assert "--pull" in message
    assert err.value.exit_code == 2
    assert ollama.requests_to("/api/generate") == []  # nothing loaded before the error


def test_an_unreachable_host_is_an_error_naming_the_host():
    host = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(OllamaUnreachable) as err:
        resolve_ollama_targets([Q4], host=host)
    assert host in str(err.value)
    assert "ollama serve" in str(err.value)
    assert err.value.exit_code == 3


def test_a_server_that_is_not_ollama_is_told_apart():
    with FakeServer() as server, pytest.raises(OllamaUnreachable) as err:
        resolve_ollama_targets([Q4], host=server.root_url)
    assert "does not look like an Ollama server" in str(err.value)


def test_missing_tags_are_pulled_with_progress_reported():
    q3 = OllamaModel("qwen2.5:7b-instruct-q3_K_M", quantization="Q3_K_M")
    messages: list[str] = []
    with FakeOllama([OllamaModel(Q4)], registry=[q3]) as server:
        resolved = resolve_ollama_targets([Q4, q3.tag], host=server.root_url, pull=True, progress=messages.append)
        pulls = server.requests_to("/api/pull")

    assert [b["model"] for b in pulls] == [q3.tag]
    pull_lines = [m for m in messages if m.startswith(f"pull {q3.tag}:")]
    assert any(m.endswith("50%") for m in pull_lines)
    assert any(m.endswith("100%") for m in pull_lines)
    assert pull_lines[-1] == f"pull {q3.tag}: success"
    assert resolved[1][0].name == "q3_K_M" and resolved[1][1].digest == q3.digest


def test_a_pull_the_registry_refuses_is_an_error_naming_the_tag():
    with FakeOllama([OllamaModel(Q4)]) as server, pytest.raises(OllamaModelError) as err:
        resolve_ollama_targets(["nosuch:7b"], host=server.root_url, pull=True)
    assert "'nosuch:7b'" in str(err.value) and "file does not exist" in str(err.value)


def test_ollama_provenance_describes_one_tag_without_loading_it(ollama):
    prov = ollama_provenance(Q4, ollama.root_url)
    assert prov.quantization == "Q4_K_M" and prov.digest == ollama.local[Q4].digest
    assert ollama.requests_to("/api/generate") == []


@pytest.mark.parametrize(
    ("tags", "quants", "expected"),
    [
        ([FP16, Q4], {}, ["fp16", "q4_K_M"]),
        (["llama3.2:3b", "llama3.2:latest"], {"llama3.2:3b": "Q4_K_M", "llama3.2:latest": "Q8_0"}, ["Q4_K_M", "Q8_0"]),
        (["hf.co/bartowski/Qwen2.5-7B-Instruct-GGUF:Q4_K_M"], {}, ["Q4_K_M"]),
        (["qwen2.5:7b-q4_K_M", "llama3:8b-q4_K_M"], {}, ["qwen2.5:7b-q4_K_M", "llama3:8b-q4_K_M"]),
    ],
)
def test_labels_are_short_and_unique(tags, quants, expected):
    labels = tag_labels(tags, quants)
    assert [labels[t] for t in tags] == expected


def test_a_tag_given_twice_is_an_error(ollama):
    with pytest.raises(OllamaModelError, match="more than once"):
        resolve_ollama_targets([Q4, "qwen2.5:7b-instruct-q4_K_M"], host=ollama.root_url)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, "http://localhost:11434"),
        ("localhost", "http://localhost:11434"),
        ("0.0.0.0:11500", "http://0.0.0.0:11500"),
        ("http://box:11434/", "http://box:11434"),
        ("http://box:11434/v1", "http://box:11434"),
        ("https://ollama.example.com", "https://ollama.example.com"),
    ],
)
def test_hosts_are_normalised_like_ollama_host(given, expected):
    assert normalise_host(given) == expected
