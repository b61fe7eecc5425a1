"""Server kinds are told apart by what each serves, and provenance is read from what each says about itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import llamacpp
from harness.records import Provenance, Target
from harness.servers import detect_server, probe_provenance, quantization_from_name
from tests.fake_ollama import FakeOllama, OllamaModel
from tests.fakeserver import Canned, FakeServer, free_port

LLAMA_TEMPLATE = "{%- for message in messages %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>{% endfor %}"


def llama_cpp(model_path: str = "/models/Qwen2.5-7B-Instruct-Q4_K_M.gguf") -> FakeServer:
    """llama-server: /props with generation settings and build, /v1/models owned by `llamacpp`."""
    server = FakeServer()
    server.route("/props", {
        "default_generation_settings": {"n_ctx": 8192, "model": model_path, "params": {"temperature": 0.8}},
        "total_slots": 1,
        "model_path": model_path,
        "chat_template": LLAMA_TEMPLATE,
        "chat_template_caps": {"supports_tools": True, "supports_tool_calls": True, "supports_system_role": True},
        "build_info": "b5090-4ccea213",
        "modalities": {"vision": False},
    })
    server.route("/v1/models", {"object": "list", "data": [{
        "id": Path(model_path).name, "object": "model", "created": 1_700_000_000, "owned_by": "llamacpp",
        "meta": {"vocab_type": 2, "n_vocab": 152064, "n_ctx_train": 32768, "n_embd": 3584,
                 "n_params": 7_615_616_512, "size": 4_677_120_000}}]})
    return server


VLLM_METRICS = """\
# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig
# TYPE vllm:cache_config_info gauge
vllm:cache_config_info{block_size="16",cache_dtype="fp8",enable_prefix_caching="True",gpu_memory_utilization="0.9",num_gpu_blocks="27000"} 1.0
# HELP vllm:num_requests_running Number of requests currently running.
vllm:num_requests_running{model_name="Qwen/Qwen2.5-7B-Instruct-AWQ"} 0.0
"""


def vllm(*, owned_by: str = "vllm") -> FakeServer:
    """vLLM's OpenAI server: /version, model cards with `max_model_len`, Prometheus /metrics."""
    server = FakeServer()
    server.route("/version", {"version": "0.8.5.post1"})
    server.route("/v1/models", {"object": "list", "data": [{
        "id": "Qwen/Qwen2.5-7B-Instruct-AWQ", "object": "model", "created": 1_700_000_000, "owned_by": owned_by,
        "root": "Qwen/Qwen2.5-7B-Instruct-AWQ", "parent": None, "max_model_len": 32768,
        "permission": [{"id": "modelperm-1", "object": "model_permission", "allow_sampling": True}]}]})
    server.route("/metrics", Canned(text=VLLM_METRICS, content_type="text/plain; version=0.0.4"))
    return server


def test_llama_cpp_is_recognised_by_its_props():
    with llama_cpp() as server:
        assert detect_server(server.base_url) == "llama.cpp"
        assert detect_server(server.root_url + "/") == "llama.cpp"


def test_ollama_is_recognised_by_api_version():
    with FakeOllama([OllamaModel("qwen2.5:7b")]) as server:
        assert detect_server(server.base_url) == "ollama"


def test_vllm_is_recognised_by_version_and_its_model_cards():
    with vllm() as server:
        assert detect_server(server.base_url) == "vllm"
    # a proxy that rewrites owned_by still shows max_model_len next to /version
    with vllm(owned_by="org") as server:
        assert detect_server(server.base_url) == "vllm"


def test_sglang_is_not_taken_for_vllm():
    with vllm(owned_by="sglang") as server:
        assert detect_server(server.base_url) == "openai-compatible"


def test_any_other_server_is_openai_compatible():
    with FakeServer() as server:
        assert detect_server(server.base_url) == "openai-compatible"
    assert detect_server(f"http://127.0.0.1:{free_port()}/v1") == "openai-compatible"


def test_llama_cpp_provenance_comes_from_props_when_the_model_file_is_elsewhere():
    with llama_cpp() as server:
        prov = probe_provenance(Target(name="q4", base_url=server.base_url, model="anything"))

    assert prov.server == "llama.cpp"
    assert prov.server_version == "b5090-4ccea213"
    assert prov.context_length == 8192
    assert prov.quantization == "Q4_K_M"
    assert prov.file_path == "/models/Qwen2.5-7B-Instruct-Q4_K_M.gguf"
    assert prov.chat_template is not None and prov.chat_template.startswith("server (")
    assert "tools" in prov.capabilities
    assert prov.parameter_size == "7.6B"
    assert prov.warnings == []  # llama-server ignores the model id: no "not listed" warning


def test_llama_cpp_provenance_reads_the_gguf_when_the_file_is_here(tmp_path, monkeypatch):
    gguf = tmp_path / "gemma-3-270m-Q8_0.gguf"
    gguf.write_bytes(b"GGUF")
    calls = []

    def fake_llama_provenance(server_url, model_path, binaries=None):
        calls.append((server_url, str(model_path)))
        return Provenance(server="llama.cpp", quantization="Q8_0", digest="abc")

    monkeypatch.setattr(llamacpp, "llama_provenance", fake_llama_provenance)
    with llama_cpp(str(gguf)) as server:
        prov = probe_provenance(Target(name="q8", base_url=server.base_url, model="m"))
    assert calls == [(server.base_url, str(gguf))]
    assert prov.digest == "abc"


def test_two_llama_servers_with_different_templates_get_different_template_ids():
    with llama_cpp() as a, FakeServer() as b:
        b.route("/props", {"default_generation_settings": {"n_ctx": 8192}, "chat_template": "{{ messages }}",
                           "build_info": "b5090-4ccea213"})
        one = probe_provenance(Target(name="a", base_url=a.base_url, model="m"))
        two = probe_provenance(Target(name="b", base_url=b.base_url, model="m"))
    assert one.chat_template != two.chat_template


def test_vllm_provenance_has_version_context_and_kv_cache_dtype():
    with vllm() as server:
        prov = probe_provenance(Target(name="awq", base_url=server.base_url, model="Qwen/Qwen2.5-7B-Instruct-AWQ"))

    assert prov.server == "vllm"
    assert prov.server_version == "0.8.5.post1"
    assert prov.context_length == 32768
    assert prov.quantization == "AWQ"
    assert prov.extra["kv_cache_dtype"] == "fp8"
    assert prov.extra["metrics_info"]["vllm:cache_config_info"]["block_size"] == "16"
    assert prov.warnings == []


def test_a_model_id_the_server_does_not_list_is_a_warning():
    with vllm() as server:
        prov = probe_provenance(Target(name="x", base_url=server.base_url, model="Qwen/Qwen2.5-7B-Instruct"))
    assert any("lists no model 'Qwen/Qwen2.5-7B-Instruct'" in w for w in prov.warnings)


def test_ollama_provenance_goes_through_the_native_api():
    with FakeOllama([OllamaModel("qwen2.5:7b-instruct-q4_K_M")]) as server:
        prov = probe_provenance(Target(name="q4", base_url=server.base_url, model="qwen2.5:7b-instruct-q4_K_M"))
    assert prov.server == "ollama" and prov.quantization == "Q4_K_M" and prov.digest


def test_an_unrecognised_server_says_what_cannot_be_checked():
    with FakeServer(models=["my-model-GPTQ-Int4"]) as server:
        prov = probe_provenance(Target(name="x", base_url=server.base_url, model="my-model-GPTQ-Int4"))
    assert prov.server == "openai-compatible"
    assert prov.quantization == "GPTQ-INT4"
    assert any("cannot be read" in w for w in prov.warnings)


def test_a_server_that_is_down_gives_unknown_provenance_not_an_exception():
    prov = probe_provenance(Target(name="x", base_url=f"http://127.0.0.1:{free_port()}/v1", model="m"))
    assert prov.server == "unknown"
    assert "nothing answered" in prov.warnings[0]


def test_the_api_key_is_sent_to_the_probes():
    with vllm() as server:
        probe_provenance(Target(name="x", base_url=server.base_url, model="Qwen/Qwen2.5-7B-Instruct-AWQ", api_key="sk-1"))
        auth = {r.path: r.headers.get("Authorization") for r in server.requests}
    assert auth["/v1/models"] == "Bearer sk-1"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("/models/Qwen2.5-7B-Instruct-Q4_K_M.gguf", "Q4_K_M"),
        ("gemma-3-270m-it-q8_0.gguf", "Q8_0"),
        ("Meta-Llama-3.1-8B-Instruct-IQ3_XXS.gguf", "IQ3_XXS"),
        ("model-bf16.gguf", "BF16"),
        ("Qwen/Qwen2.5-7B-Instruct-AWQ", "AWQ"),
        ("neuralmagic/Meta-Llama-3.1-8B-Instruct-FP8", "FP8"),
        ("RedHatAI/Llama-3.1-8B-Instruct-quantized.w4a16", "W4A16"),
        ("Qwen/Qwen2.5-7B-Instruct", None),
        (None, None),
    ],
)
def test_quantization_is_read_from_file_and_repo_names(name, expected):
    assert quantization_from_name(name) == expected
