"""A managed llama-server: free port, health wait, and no orphans (process group, signals, atexit)."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx

from harness.llamacpp._common import TEMPLATE_STOPS, LlamaServerError, _tail, cache_root, log
from harness.llamacpp.binaries import LlamaBinaries, find_llama_binaries

__all__ = ["LlamaServer"]


_live: dict[int, "LlamaServer"] = {}
_live_lock = threading.Lock()
_handlers_installed = False
_previous_sigterm: Any = None


def _stop_all() -> None:
    with _live_lock:
        servers = list(_live.values())
    for server in servers:
        server.stop()


def _on_sigterm(signum: int, frame: Any) -> None:
    _stop_all()
    previous = _previous_sigterm
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_IGN:
        return
    else:
        # die of the signal as we would have without this handler, servers already gone
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def _install_handlers() -> None:
    """atexit always; SIGTERM when we are the main thread (Ctrl-C raises KeyboardInterrupt, which exits the block)."""
    global _handlers_installed, _previous_sigterm
    if _handlers_installed:
        return
    atexit.register(_stop_all)
    if threading.current_thread() is threading.main_thread():
        _previous_sigterm = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, _on_sigterm)
    _handlers_installed = True


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec function that makes the child get SIGKILL when its parent dies (Linux), even by SIGKILL."""
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        # PR_SET_PDEATHSIG fires when the spawning *thread* exits, so only use it from the main thread
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig, sigkill = 1, int(signal.SIGKILL)

    def preexec() -> None:
        prctl(pr_set_pdeathsig, sigkill)

    return preexec


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _default_threads() -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 2
    return max(1, min(cores, 8))


class LlamaServer:
    """A llama-server for one GGUF on a free localhost port, stopped (with its process group) on exit.

    Use as `with LlamaServer(path, binaries=b) as server:` or `async with`. Stops on normal exit,
    exceptions, Ctrl-C, SIGTERM and interpreter exit; on Linux the server also dies if this process
    is killed outright. `base_url` is the OpenAI-compatible root (`.../v1`).
    """

    def __init__(
        self,
        model_path: Path | str,
        binaries: LlamaBinaries | None = None,
        *,
        alias: str | None = None,
        ctx_size: int = 4096,
        threads: int | None = None,
        parallel: int = 1,
        chat_template: Path | str | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        log_dir: Path | str | None = None,
        startup_timeout: float = 180.0,
        stop: tuple[str, ...] | list[str] = TEMPLATE_STOPS,
        extra_args: list[str] | tuple[str, ...] = (),
    ):
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise LlamaServerError(f"no model file {self.model_path}")
        self.binaries = binaries or find_llama_binaries()
        self.model = alias or self.model_path.stem
        self.ctx_size = ctx_size
        self.threads = threads or _default_threads()
        self.parallel = parallel
        self.chat_template = Path(chat_template) if chat_template else self.binaries.chat_template()
        self.host = host
        self.port = port
        self.log_dir = Path(log_dir) if log_dir else cache_root() / "logs"
        self.startup_timeout = startup_timeout
        self.stop_strings = list(stop)
        self.extra_args = list(extra_args)
        self.log_path: Path | None = None
        self.start_seconds: float | None = None
        """How long the last start took, until /health said ok."""
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_fh: Any = None

    # -- addresses

    @property
    def url(self) -> str:
        """The server root, e.g. `http://127.0.0.1:41234` (`/health`, `/props`, `/metrics` live here)."""
        if self.port is None:
            raise LlamaServerError("the server has not been started")
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL, `<url>/v1`."""
        return self.url + "/v1"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def memory(self) -> dict[str, int]:
        """The server process's resident memory now and at its peak, from `/proc/<pid>/status` (Linux).

        `rss_bytes` (VmRSS) and `peak_rss_bytes` (VmHWM); empty when the process is gone or not on Linux.
        The mapped model file counts once its pages are touched, as it does against the machine's memory.
        """
        if self._proc is None:
            return {}
        try:
            status = Path(f"/proc/{self._proc.pid}/status").read_text()
        except OSError:
            return {}
        out: dict[str, int] = {}
        for line in status.splitlines():
            key, _, value = line.partition(":")
            name = {"VmRSS": "rss_bytes", "VmHWM": "peak_rss_bytes"}.get(key)
            if name and value.strip().endswith("kB"):
                out[name] = int(value.split()[0]) * 1024
        return out

    def reported_memory(self) -> dict[str, int]:
        """What llama-server's log says it allocated: model, KV cache and compute buffers, in bytes, summed per kind."""
        text = self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path and self.log_path.exists() else ""
        sizes: dict[str, float] = {}
        for kind, mib in re.findall(r"\b(model|KV|compute) buffer size\s*=\s*([\d.]+) MiB", text):
            name = {"model": "model_buffer_bytes", "KV": "kv_buffer_bytes", "compute": "compute_buffer_bytes"}[kind]
            sizes[name] = sizes.get(name, 0.0) + float(mib) * 2**20
        return {k: int(v) for k, v in sizes.items()}

    def command(self) -> list[str]:
        """The llama-server command line (port as currently chosen)."""
        return [
            str(self.binaries.server),
            "-m", str(self.model_path),
            "--host", self.host,
            "--port", str(self.port),
            "-a", self.model,
            "-c", str(self.ctx_size),
            "-t", str(self.threads),
            "--parallel", str(self.parallel),
            "--jinja",
            "--chat-template-file", str(self.chat_template),
            "--metrics",
            "--no-webui",
            *(arg for word in self.stop_strings for arg in ("-r", word)),
            *self.extra_args,
        ]  # fmt: skip

    # -- lifecycle

    def _spawn(self) -> None:
        _install_handlers()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        self.log_path = self.log_dir / f"llama-server-{self.model}-{stamp}.log"
        self._log_fh = self.log_path.open("wb")
        self._proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log_fh,
            stderr=subprocess.STDOUT,
            env=self.binaries.env(),
            start_new_session=True,  # its own process group: we stop the whole group, Ctrl-C does not race us
            preexec_fn=_die_with_parent(),
        )
        with _live_lock:
            _live[id(self)] = self
        log.info("llamacpp.server.spawned", model=self.model, port=self.port, pid=self._proc.pid, log=str(self.log_path))

    def _startup_failed(self, why: str) -> LlamaServerError:
        tail = _tail(self.log_path) if self.log_path else ""
        self.stop()
        return LlamaServerError(f"llama-server for {self.model_path.name} {why}; log: {self.log_path}\n--- last lines ---\n{tail}")

    def _bind_failed(self) -> bool:
        text = _tail(self.log_path, 20).lower() if self.log_path else ""
        return "bind" in text or "address already in use" in text

    def start(self) -> "LlamaServer":
        """Start the server and wait until `/health` answers ok (retrying a port lost to a race)."""
        if self.running:
            return self
        fixed_port = self.port is not None
        started = time.perf_counter()
        for attempt in range(3):
            if not fixed_port:
                self.port = _free_port(self.host)
            self._spawn()
            deadline = time.monotonic() + self.startup_timeout
            with httpx.Client(timeout=2.0) as client:
                while True:
                    code = self._proc.poll() if self._proc else None
                    if code is not None:
                        if not fixed_port and attempt < 2 and self._bind_failed():
                            self.stop()
                            break
                        raise self._startup_failed(f"exited with code {code} while starting")
                    if time.monotonic() > deadline:
                        raise self._startup_failed(f"was not healthy after {self.startup_timeout:.0f}s")
                    try:
                        if client.get(self.url + "/health").status_code == 200:
                            self.start_seconds = time.perf_counter() - started
                            log.info("llamacpp.server.ready", model=self.model, port=self.port, seconds=round(self.start_seconds, 2))
                            return self
                    except httpx.TransportError:
                        pass
                    time.sleep(0.1)
        raise self._startup_failed("could not bind a port")  # pragma: no cover

    async def astart(self) -> "LlamaServer":
        """`start` for async code: the health wait runs in a worker thread, so the event loop is not blocked."""
        return await asyncio.to_thread(self.start)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server's process group: SIGTERM, then SIGKILL after `timeout`; reap it. Idempotent."""
        proc, self._proc = self._proc, None
        with _live_lock:
            _live.pop(id(self), None)
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            # anything the server forked lives in its group: make sure none of it outlives it
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            log.info("llamacpp.server.stopped", model=self.model, port=self.port, returncode=proc.returncode)
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None

    def __enter__(self) -> "LlamaServer":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> "LlamaServer":
        try:
            return await self.astart()
        except BaseException:
            self.stop()
            raise

    async def __aexit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"running on {self.url}" if self.running else "stopped"
        return f"LlamaServer({self.model_path.name!r}, {state})"
