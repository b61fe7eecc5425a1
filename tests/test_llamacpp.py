"""harness.llamacpp: finding and building binaries, the GGUF header reader, and real llama-servers on the ladder.

The unit tests use fake `cmake` programs and tiny GGUF files written with the `gguf` package. The
integration tests start real llama-servers on real rungs and send real chat completions.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from harness import llamacpp
from harness.llamacpp.binaries import LlamaBinaries, _llama_dir
from harness.loop import build_toolset, few_shot_messages
from harness.scenario import load_scenario_file
from tests.factories import fake_program

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ROOT / "scenarios" / "smoke"
SAMPLING = {"temperature": 0, "top_p": 1, "seed": 0, "max_tokens": 256}


# -- helpers ------------------------------------------------------------------------------------


def _port_open(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, int(port))) == 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); count it as dead only once reaped by its parent
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _wait_gone(pid: int, url: str, seconds: float = 15) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _pid_alive(pid) and not _port_open(url):
            return True
        time.sleep(0.1)
    return False


def _write_gguf(path: Path, file_type: int, imatrix: bool = False) -> Path:
    import gguf

    writer = gguf.GGUFWriter(str(path), "gemma3")
    writer.add_name("tiny")
    writer.add_file_type(file_type)
    writer.add_context_length(128)
    writer.add_array("tokenizer.ggml.tokens", [f"t{i}" for i in range(300)])
    if imatrix:
        writer.add_string("quantize.imatrix.file", "imatrix.dat")
        writer.add_string("quantize.imatrix.dataset", "calibration.txt")
        writer.add_int32("quantize.imatrix.entries_count", 7)
    writer.add_tensor("w", np.zeros((4, 8), dtype=np.float32))
    writer.add_tensor("b", np.zeros((8,), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture
def fake_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache with an unpacked (fake) source tree and an sdist, and a PATH without llama.cpp on it."""
    cache = tmp_path / "cache"
    llama = _llama_dir(cache)
    (llama / "models" / "templates").mkdir(parents=True)
    (llama / "CMakeLists.txt").write_text("# fake\n")
    (cache / "src" / f"llama_cpp_python-{llamacpp.LLAMA_CPP_PYTHON_VERSION}.tar.gz").write_bytes(b"")
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    fake_program(bin_dir / "c++", "exit 0\n")
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    return cache


# -- finding and building -----------------------------------------------------------------------


def test_missing_binaries_without_build_say_how_to_get_them(fake_source: Path):
    with pytest.raises(llamacpp.LlamaBuildError, match="python -m harness.llamacpp prepare"):
        llamacpp.find_llama_binaries(fake_source, build=False)


def test_build_uses_the_pinned_flags_and_moves_a_finished_build_into_place(fake_source: Path, tmp_path: Path):
    calls = tmp_path / "cmake-calls.txt"
    # a cmake that records its arguments and, on --build, leaves two programs in <dir>/bin
    fake_program(
        tmp_path / "fakebin" / "cmake",
        f"""\
        echo "$@" >> {calls}
        if [ "$1" = "--build" ]; then
          mkdir -p "$2/bin"
          for p in llama-server llama-quantize; do
            printf '#!/usr/bin/env bash\\necho "version: 9.9.9 (build 7, commit fake)" >&2\\n' > "$2/bin/$p"
            chmod +x "$2/bin/$p"
          done
        fi
        """,
    )
    progress: list[str] = []
    found = llamacpp.find_llama_binaries(fake_source, progress=progress.append)
    assert found.built_from == "build"
    assert found.version == "9.9.9 (build 7, commit fake)"
    assert found.server == _llama_dir(fake_source) / "build" / "bin" / "llama-server"
    assert not list(_llama_dir(fake_source).glob("build.partial-*"))
    configure, build = calls.read_text().splitlines()
    assert configure.split()[2:] == list(llamacpp.CMAKE_FLAGS)
    assert "-DGGML_NATIVE=OFF" in configure
    assert build.split()[2:] == ["--target", "llama-server", "llama-quantize", "llama-imatrix", "-j2"]
    assert any("building" in m for m in progress)
    # the second time it is found in the cache, without building
    again = llamacpp.find_llama_binaries(fake_source)
    assert again.built_from == "cache" and calls.read_text().count("--build") == 1


def test_a_cached_build_without_llama_imatrix_gets_it_built_where_cmake_configured_it(fake_source: Path, tmp_path: Path):
    # a build from before llama-imatrix joined the targets: configured in build.partial-123, then renamed to build
    llama = _llama_dir(fake_source)
    bin_dir = llama / "build" / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("llama-server", "llama-quantize"):
        fake_program(bin_dir / name, 'echo "version: 9.9.9 (build 7, commit fake)" >&2\n')
    configured = llama / "build.partial-123"
    (llama / "build" / "CMakeCache.txt").write_text(f"CMAKE_CACHEFILE_DIR:INTERNAL={configured}\n")
    calls = tmp_path / "cmake-calls.txt"
    # cmake builds only in the folder it configured, as the real one does
    fake_program(
        tmp_path / "fakebin" / "cmake",
        f"""\
        echo "$@ (exists: $(test -d {configured} && echo yes))" >> {calls}
        [ "$2" = "{configured}" ] || exit 1
        printf '#!/usr/bin/env bash\\n' > "$2/bin/llama-imatrix"; chmod +x "$2/bin/llama-imatrix"
        """,
    )
    binaries = llamacpp.find_llama_binaries(fake_source, build=False)
    assert binaries.imatrix is None
    tool = llamacpp.find_llama_imatrix(binaries, fake_source)
    assert tool == bin_dir / "llama-imatrix" and tool.exists()
    assert calls.read_text().split()[:4] == ["--build", str(configured), "--target", "llama-imatrix"]
    assert "(exists: yes)" in calls.read_text() and not configured.exists()  # renamed back to build
    assert llamacpp.find_llama_binaries(fake_source, build=False).imatrix == tool


def test_a_failed_build_shows_the_log_tail_and_never_looks_finished(fake_source: Path, tmp_path: Path):
    fake_program(
        tmp_path / "fakebin" / "cmake",
        """\
        if [ "$1" = "--build" ]; then mkdir -p "$2/bin"; touch "$2/bin/llama-server"; echo "error: ggml.c:42 boom"; exit 2; fi
        """,
    )
    with pytest.raises(llamacpp.LlamaBuildError) as info:
        llamacpp.find_llama_binaries(fake_source)
    assert "cmake build failed (exit 2)" in str(info.value)
    assert "error: ggml.c:42 boom" in str(info.value)
    assert not (_llama_dir(fake_source) / "build").exists()
    with pytest.raises(llamacpp.LlamaBuildError, match="not built in the cache"):
        llamacpp.find_llama_binaries(fake_source, build=False)


def test_binaries_on_path_come_first_and_fall_back_to_the_packaged_template(fake_source: Path, tmp_path: Path):
    for name in ("llama-server", "llama-quantize"):
        fake_program(tmp_path / "fakebin" / name, 'echo "version: 1.2.3 (build 9, commit onpath)" >&2\n')
    found = llamacpp.find_llama_binaries(fake_source, build=False)
    assert found.built_from == "path" and found.version == "1.2.3 (build 9, commit onpath)"
    assert found.server == tmp_path / "fakebin" / "llama-server"
    # no llama.cpp source tree next to a PATH install: the harness's own copy of the template is used
    template = found.chat_template()
    assert template.name == llamacpp.CHAT_TEMPLATE and template.parent.name == "data"
    assert "<tool_call>" in template.read_text()


def test_a_binary_that_does_not_run_is_not_found(fake_source: Path, tmp_path: Path):
    bin_dir = _llama_dir(fake_source) / "build" / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("llama-server", "llama-quantize"):
        fake_program(bin_dir / name, "exit 127\n")  # e.g. a missing shared library
    with pytest.raises(llamacpp.LlamaBuildError, match="not built in the cache"):
        llamacpp.find_llama_binaries(fake_source, build=False)


# -- the GGUF header ----------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "name"), [(7, "Q8_0"), (15, "Q4_K_M"), (12, "Q3_K_M"), (10, "Q2_K"), (1, "F16")])
def test_gguf_metadata_names_the_file_type(tmp_path: Path, code: int, name: str):
    meta = llamacpp.gguf_metadata(_write_gguf(tmp_path / "m.gguf", code))
    assert meta["file_type"] == name
    assert meta["architecture"] == "gemma3" and meta["context_length"] == 128
    assert meta["parameters"] == 4 * 8 + 8 and meta["tensors"] == 2
    assert meta["imatrix"] == {} and meta["has_chat_template"] is False


def test_gguf_metadata_reports_imatrix_keys(tmp_path: Path):
    meta = llamacpp.gguf_metadata(_write_gguf(tmp_path / "m.gguf", 15, imatrix=True))
    assert meta["imatrix"] == {"file": "imatrix.dat", "dataset": "calibration.txt", "entries_count": 7}


def test_gguf_metadata_rejects_a_file_that_is_not_gguf(tmp_path: Path):
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"not a gguf at all")
    with pytest.raises(llamacpp.LlamaError, match="not a GGUF"):
        llamacpp.gguf_metadata(bad)


def test_server_memory_is_read_from_proc_and_its_own_log(tmp_path: Path):
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    fake = LlamaBinaries(server=Path("/bin/true"), quantize=Path("/bin/true"), built_from="path")
    server = llamacpp.LlamaServer(model, fake, chat_template=model, log_dir=tmp_path)
    assert server.memory() == {}  # not started
    server.log_path = tmp_path / "server.log"
    server.log_path.write_text(
        "load_tensors:   CPU_Mapped model buffer size =   241.05 MiB\n"
        "load_tensors:   CPU_REPACK model buffer size =    10.00 MiB\n"
        "llama_kv_cache:        CPU KV buffer size =    26.00 MiB\n"
        "sched_reserve:        CPU compute buffer size =   514.25 MiB\n"
    )
    assert server.reported_memory() == {"model_buffer_bytes": int(251.05 * 2**20), "kv_buffer_bytes": 26 * 2**20,
                                        "compute_buffer_bytes": int(514.25 * 2**20)}
    # a real process: /proc gives its resident and peak memory
    server._proc = subprocess.Popen([sys.executable, "-c", "import time; b = bytearray(50_000_000); time.sleep(30)"])
    try:
        deadline = time.monotonic() + 10
        while server.memory().get("rss_bytes", 0) < 50_000_000 and time.monotonic() < deadline:
            time.sleep(0.05)
        mem = server.memory()
        assert mem["rss_bytes"] >= 50_000_000 and mem["peak_rss_bytes"] >= mem["rss_bytes"]
    finally:
        server._proc.kill()
        server._proc.wait()


# -- integration: the ladder and real servers ---------------------------------------------------

integration = pytest.mark.integration


def _weather_request(server: llamacpp.LlamaServer) -> tuple[dict, list[dict], list[dict]]:
    """The first request of the smoke scenario `smoke-weather-then-email`, sent as the loop sends it."""
    (scenario,) = load_scenario_file(SMOKE / "weather_email.yaml")
    tools = build_toolset(scenario).schemas
    messages = [{"role": "system", "content": scenario.system}, *few_shot_messages(scenario.few_shot)]
    messages.append({"role": "user", "content": scenario.turns[0].user})
    body = {"model": server.model, "messages": messages, "tools": tools, **SAMPLING}
    reply = httpx.post(server.base_url + "/chat/completions", json=body, timeout=120)
    assert reply.status_code == 200, reply.text[:500]
    return reply.json(), messages, tools


@integration
def test_ladder_rungs_have_their_file_types_and_shrink(llama_ladder):
    sizes = {}
    for quant, path in llama_ladder.rungs.items():
        assert llamacpp.gguf_metadata(path)["file_type"] == quant
        sizes[quant] = path.stat().st_size
        info = llamacpp.rung_info(path)
        if quant == llamacpp.SOURCE_QUANT:
            assert info is None  # the packaged file itself
        else:
            assert info.requantized_from == "Q4_K_M" and info.direction == ("up" if quant == "Q8_0" else "down")
    assert sizes["Q8_0"] > sizes["Q4_K_M"] > sizes["Q3_K_M"] > sizes["Q2_K"]


@integration
def test_real_chat_completion_returns_structured_tool_calls_and_timings(llama_server):
    server = llama_server("Q8_0")
    data, messages, tools = _weather_request(server)
    choice = data["choices"][0]
    calls = choice["message"].get("tool_calls")
    assert calls, f"expected a structured call, got {choice['message']!r}"
    assert choice["finish_reason"] == "tool_calls"
    assert "<tool_call>" not in (choice["message"].get("content") or "")
    call = calls[0]
    assert call["type"] == "function" and call["id"]
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"])["city"] == "Paris"
    timings = data["timings"]
    assert timings["prompt_n"] > 0 and timings["predicted_n"] > 0 and timings["predicted_per_second"] > 0

    # the answer after the tool result stops at the template's end marker instead of running to max_tokens
    messages += [
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "name": "get_weather",
         "content": json.dumps({"city": "Paris", "temperature": 18, "unit": "celsius", "conditions": "cloudy"})},
    ]  # fmt: skip
    body = {"model": server.model, "messages": messages, "tools": tools, **SAMPLING}
    answer = httpx.post(server.base_url + "/chat/completions", json=body, timeout=120).json()
    text = answer["choices"][0]["message"]["content"]
    assert answer["choices"][0]["finish_reason"] == "stop"
    assert "18" in text and "<|im_end|>" not in text and "<|im_start|>" not in text
    assert answer["timings"]["predicted_n"] < SAMPLING["max_tokens"]


@integration
@pytest.mark.parametrize("quant", llamacpp.DEFAULT_QUANTS)
def test_provenance_reads_each_rungs_build(llama_server, llama_ladder, quant):
    server = llama_server(quant)
    prov = llamacpp.llama_provenance(server.base_url, llama_ladder.rungs[quant], llama_ladder.binaries)
    assert prov.server == "llama.cpp"
    assert prov.quantization == quant
    assert prov.model_id == server.model
    assert prov.family == "gemma3" and prov.parameter_size == "270M"
    assert prov.context_length == 4096
    assert prov.file_size_bytes == llama_ladder.rungs[quant].stat().st_size
    assert prov.digest and len(prov.digest) == 64
    assert prov.server_version and prov.chat_template.startswith("Qwen-Qwen2.5-7B-Instruct")
    assert {"tools", "tool_calls"} <= set(prov.capabilities)
    if quant == llamacpp.SOURCE_QUANT:
        assert "requantized_from" not in prov.extra
    else:
        assert prov.extra["requantized_from"] == "Q4_K_M"
        assert any("requantized" in w for w in prov.warnings)
    if quant == "Q8_0":
        assert prov.extra["requantized_direction"] == "up"


@integration
def test_server_is_gone_after_the_block(llama_ladder, tmp_path):
    with llamacpp.LlamaServer(llama_ladder.rungs["Q2_K"], llama_ladder.binaries, log_dir=tmp_path) as server:
        url, pid = server.url, server.pid
        assert httpx.get(url + "/health", timeout=5).json() == {"status": "ok"}
        assert server.base_url == url + "/v1" and server.log_path.exists()
    assert not _port_open(url)
    assert not _pid_alive(pid)


@integration
def test_server_is_gone_after_an_exception_in_the_block(llama_ladder, tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        with llamacpp.LlamaServer(llama_ladder.rungs["Q2_K"], llama_ladder.binaries, log_dir=tmp_path) as server:
            url, pid = server.url, server.pid
            raise RuntimeError("boom")
    assert not _port_open(url)
    assert not _pid_alive(pid)


@integration
async def test_async_context_manager_starts_and_stops(llama_ladder, tmp_path):
    async with llamacpp.LlamaServer(llama_ladder.rungs["Q2_K"], llama_ladder.binaries, log_dir=tmp_path) as server:
        url, pid = server.url, server.pid
        async with httpx.AsyncClient() as client:
            assert (await client.get(url + "/health")).status_code == 200
    assert not _port_open(url)
    assert not _pid_alive(pid)


_CHILD = """
import sys, time
from pathlib import Path
from harness import llamacpp
server = llamacpp.LlamaServer(Path(sys.argv[1]), llamacpp.find_llama_binaries(build=False), log_dir=Path(sys.argv[2]))
with server:
    print("READY", server.pid, server.url, flush=True)
    time.sleep(120)
"""


@integration
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_no_orphan_when_the_owner_is_signalled(llama_ladder, tmp_path, sig):
    # SIGTERM: our handler stops servers; SIGINT: KeyboardInterrupt leaves the block; SIGKILL: PDEATHSIG
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(llama_ladder.rungs["Q2_K"]), str(tmp_path)],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
        # a background job inherits SIGINT ignored; give the child the default so Ctrl-C works as in a terminal
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        # structlog prints its own lines to stdout: wait for ours
        line = next(line for line in child.stdout if line.startswith("READY"))
        _, pid_text, url = line.split()
        pid = int(pid_text)
        assert _pid_alive(pid) and _port_open(url)
        child.send_signal(sig)
        child.wait(timeout=30)
        assert _wait_gone(pid, url), f"llama-server {pid} outlived its owner after {sig.name}"
    finally:
        if child.poll() is None:
            child.kill()


@integration
def test_a_server_that_cannot_start_raises_with_its_log(llama_ladder, tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    server = llamacpp.LlamaServer(broken, llama_ladder.binaries, log_dir=tmp_path, startup_timeout=60)
    with pytest.raises(llamacpp.LlamaServerError, match="last lines") as info:
        server.start()
    assert "broken.gguf" in str(info.value)
    assert not server.running
