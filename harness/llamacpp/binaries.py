"""Find llama-server, llama-quantize and llama-imatrix: on PATH, in the cache, or built from the pinned source."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from harness.llamacpp._common import (
    _PACKAGE_DATA,
    BUILD_JOBS,
    BUILD_TARGETS,
    CHAT_TEMPLATE,
    CMAKE_FLAGS,
    LLAMA_CPP_PYTHON_VERSION,
    LlamaBuildError,
    LlamaError,
    _file_lock,
    _say,
    _tail,
    cache_root,
    log,
)

__all__ = ["LlamaBinaries", "find_llama_binaries", "find_llama_imatrix"]


class LlamaBinaries(BaseModel):
    """Where the llama.cpp programs are and where they came from."""

    model_config = ConfigDict(frozen=True)

    server: Path
    """The `llama-server` executable."""
    quantize: Path
    """The `llama-quantize` executable."""
    imatrix: Path | None = None
    """The `llama-imatrix` executable (importance matrices for calibrated quants), when there is one."""
    templates_dir: Path | None = None
    """llama.cpp's `models/templates` folder, when the source tree is at hand."""
    version: str | None = None
    """What `llama-server --version` says, e.g. `0.5.0-dev (build 1, commit 0c1e570)`."""
    built_from: Literal["path", "cache", "build"]
    """`path`: found on PATH; `cache`: a build cached earlier; `build`: built just now."""
    source: str | None = None
    """The source the binaries were built from (`llama-cpp-python==0.3.36 vendor/llama.cpp`), when known."""

    @property
    def lib_dir(self) -> Path:
        """Folder of the shared libraries (next to the executables in a llama.cpp build)."""
        return self.server.parent

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment to run the programs in: the build's libraries first on LD_LIBRARY_PATH.

        A build is moved into place after linking, so its RUNPATH can point at the temporary folder.
        """
        env = dict(os.environ if base is None else base)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(self.lib_dir), env.get("LD_LIBRARY_PATH", "")) if p)
        return env

    def chat_template(self, name: str = CHAT_TEMPLATE) -> Path:
        """The chat template file `name`: from llama.cpp's templates, else the copy shipped with the harness."""
        candidates = [self.templates_dir / name] if self.templates_dir else []
        candidates.append(_PACKAGE_DATA / name)
        for candidate in candidates:
            if candidate.is_file():
                return candidate
        raise LlamaError(f"chat template {name} not found (looked in {', '.join(map(str, candidates))})")


def _source_dir(root: Path) -> Path:
    return root / "src" / f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}"


def _llama_dir(root: Path) -> Path:
    return _source_dir(root) / "vendor" / "llama.cpp"


def _version_of(server: Path, env: dict[str, str]) -> str | None:
    """`llama-server --version`, or None when the program does not run (a broken or partial build)."""
    try:
        proc = subprocess.run([str(server), "--version"], capture_output=True, text=True, timeout=30, env=env)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = proc.stdout + proc.stderr
    match = re.search(r"version:\s*(.+)", text)
    if proc.returncode != 0 or not match:
        return None
    return match.group(1).strip()


def _usable(binaries: LlamaBinaries) -> LlamaBinaries | None:
    if not (os.access(binaries.server, os.X_OK) and os.access(binaries.quantize, os.X_OK)):
        return None
    version = _version_of(binaries.server, binaries.env())
    if version is None:
        return None
    return binaries.model_copy(update={"version": version})


def _from_path() -> LlamaBinaries | None:
    server, quantize = shutil.which("llama-server"), shutil.which("llama-quantize")
    if not server or not quantize:
        return None
    imatrix = shutil.which("llama-imatrix")
    server_path = Path(server).resolve()
    # a source build on PATH (build/bin) has the templates two folders up; a package install does not
    templates = server_path.parent.parent.parent / "models" / "templates"
    return _usable(
        LlamaBinaries(
            server=server_path,
            quantize=Path(quantize).resolve(),
            imatrix=Path(imatrix).resolve() if imatrix else None,
            templates_dir=templates if templates.is_dir() else None,
            built_from="path",
        )
    )


def _from_cache(root: Path) -> LlamaBinaries | None:
    llama = _llama_dir(root)
    bin_dir = llama / "build" / "bin"
    if not (bin_dir / "llama-server").exists():
        return None
    templates = llama / "models" / "templates"
    return _usable(
        LlamaBinaries(
            server=bin_dir / "llama-server",
            quantize=bin_dir / "llama-quantize",
            imatrix=bin_dir / "llama-imatrix" if os.access(bin_dir / "llama-imatrix", os.X_OK) else None,
            templates_dir=templates if templates.is_dir() else None,
            built_from="cache",
            source=f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION} vendor/llama.cpp",
        )
    )


def find_llama_binaries(
    cache_dir: Path | str | None = None, *, build: bool = True, progress: Callable[[str], Any] | None = None
) -> LlamaBinaries:
    """Find `llama-server` and `llama-quantize`: on PATH, else in the cache, else build them (when `build`).

    The build downloads the llama-cpp-python sdist with pip, unpacks it into the cache and compiles
    its vendored llama.cpp (CPU only, portable AVX2 flags). It takes a while the first time only.
    """
    started = time.perf_counter()
    found = _from_path()
    if found is None:
        root = cache_root(cache_dir)
        found = _from_cache(root)
        if found is None:
            if not build:
                raise LlamaBuildError(
                    "llama-server and llama-quantize are not on PATH and not built in the cache "
                    f"({_llama_dir(root) / 'build' / 'bin'}); run `python -m harness.llamacpp prepare` to build them"
                )
            with _file_lock(root / "locks" / "llama-build.lock", "building llama.cpp", progress):
                found = _from_cache(root)  # another process may have finished while we waited
                if found is None:
                    _build(root, progress)
                    found = _from_cache(root)
                    if found is None:
                        raise LlamaBuildError(f"the build finished but {_llama_dir(root) / 'build' / 'bin'} has no working llama-server")
                    found = found.model_copy(update={"built_from": "build"})
    log.info(
        "llamacpp.binaries",
        built_from=found.built_from,
        server=str(found.server),
        version=found.version,
        seconds=round(time.perf_counter() - started, 2),
    )
    return found


def _run_logged(cmd: list[str], cwd: Path, logfile: Path, what: str) -> None:
    with logfile.open("a", encoding="utf-8") as fh:
        fh.write(f"\n$ {' '.join(cmd)}  (in {cwd})\n")
        fh.flush()
        try:
            proc = subprocess.run(cmd, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        except FileNotFoundError as exc:
            raise LlamaBuildError(f"{what}: {cmd[0]} is not installed ({exc}); on Debian: apt-get install cmake g++") from exc
    if proc.returncode != 0:
        raise LlamaBuildError(f"{what} failed (exit {proc.returncode}); log: {logfile}\n--- last lines ---\n{_tail(logfile)}")


def _download_sdist(root: Path, logfile: Path, progress: Callable[[str], Any] | None) -> Path:
    src = root / "src"
    src.mkdir(parents=True, exist_ok=True)
    sdist = src / f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}.tar.gz"
    if sdist.exists():
        return sdist
    _say(progress, f"downloading the llama-cpp-python {LLAMA_CPP_PYTHON_VERSION} source (~77 MB) with pip")
    with tempfile.TemporaryDirectory(dir=src, prefix=".download-") as tmp:
        cmd = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
            f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}", "-d", tmp,
        ]  # fmt: skip
        _run_logged(cmd, src, logfile, "pip download of llama-cpp-python")
        got = list(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        if not got:
            raise LlamaBuildError(f"pip download left no llama_cpp_python sdist in {tmp}; log: {logfile}")
        os.replace(got[0], sdist)
    return sdist


def _unpack(root: Path, sdist: Path, progress: Callable[[str], Any] | None) -> Path:
    target = _source_dir(root)
    if (target / "vendor" / "llama.cpp" / "CMakeLists.txt").exists():
        return target
    _say(progress, f"unpacking {sdist.name}")
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".unpack-") as tmp:
        with tarfile.open(sdist) as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(tmp, filter="data")
            else:  # pragma: no cover - python < 3.11.4
                tar.extractall(tmp)
        unpacked = Path(tmp) / target.name
        if not (unpacked / "vendor" / "llama.cpp" / "CMakeLists.txt").exists():
            raise LlamaBuildError(f"{sdist} does not hold {target.name}/vendor/llama.cpp")
        if target.exists():
            shutil.rmtree(target)  # a partial tree from an interrupted earlier attempt (we hold the lock)
        os.replace(unpacked, target)
    return target


def _build(root: Path, progress: Callable[[str], Any] | None) -> None:
    """Download, unpack and build into `build.partial-<pid>`, then rename it to `build` (caller holds the lock)."""
    logs = root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    logfile = logs / f"llama-build-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.log"
    for tool in ("cmake", "c++"):
        if shutil.which(tool) is None:
            raise LlamaBuildError(f"building llama.cpp needs `{tool}`, which is not on PATH; on Debian: apt-get install cmake g++")
    t0 = time.perf_counter()
    sdist = _download_sdist(root, logfile, progress)
    t1 = time.perf_counter()
    llama = _unpack(root, sdist, progress) / "vendor" / "llama.cpp"
    t2 = time.perf_counter()
    for stale in llama.glob("build.partial-*"):
        shutil.rmtree(stale, ignore_errors=True)  # left by a build that was interrupted
    partial = llama / f"build.partial-{os.getpid()}"
    _say(progress, f"building llama-server and llama-quantize with -j{BUILD_JOBS} (several minutes; log: {logfile})")
    _run_logged(["cmake", "-B", partial.name, *CMAKE_FLAGS], llama, logfile, "cmake configure")
    _run_logged(
        ["cmake", "--build", partial.name, "--target", *BUILD_TARGETS, f"-j{BUILD_JOBS}"], llama, logfile, "cmake build"
    )
    final = llama / "build"
    if final.exists():
        shutil.rmtree(final)  # an unusable earlier build
    os.replace(partial, final)
    t3 = time.perf_counter()
    log.info(
        "llamacpp.built",
        download_s=round(t1 - t0, 1),
        unpack_s=round(t2 - t1, 1),
        build_s=round(t3 - t2, 1),
        log=str(logfile),
    )
    _say(progress, f"built llama.cpp in {t3 - t2:.0f}s (download {t1 - t0:.0f}s, unpack {t2 - t1:.0f}s)")


def find_llama_imatrix(
    binaries: LlamaBinaries, cache_dir: Path | str | None = None, *, progress: Callable[[str], Any] | None = None
) -> Path:
    """`llama-imatrix` from the same llama.cpp as `binaries`: there already, or built into the cached build.

    Builds made before llama-imatrix joined the build targets lack it; it is then compiled into that
    build (only its own sources: the libraries are already built). A llama.cpp found on PATH must
    bring its own llama-imatrix.
    """
    if binaries.imatrix is not None:
        return binaries.imatrix
    if binaries.built_from == "path":
        raise LlamaBuildError(
            f"llama-server is on PATH ({binaries.server}) but llama-imatrix is not: put the llama-imatrix of the "
            "same llama.cpp build on PATH to compute importance matrices, or pass --imatrix FILE"
        )
    root = cache_root(cache_dir)
    with _file_lock(root / "locks" / "llama-build.lock", "building llama-imatrix", progress):
        found = _from_cache(root)
        if found is None or found.imatrix is None:
            _build_extra_target(root, "llama-imatrix", progress)
            found = _from_cache(root)
        if found is None or found.imatrix is None:
            raise LlamaBuildError(f"built llama-imatrix but {_llama_dir(root) / 'build' / 'bin'} has no working one")
        return found.imatrix


def _build_extra_target(root: Path, target: str, progress: Callable[[str], Any] | None) -> None:
    """Build one more target in the finished `build` folder (caller holds the build lock).

    cmake remembers the folder it configured (`build.partial-<pid>`, renamed to `build` when done), and
    refuses to run elsewhere: the folder goes back to that name for the build, and to `build` after it.
    """
    llama = _llama_dir(root)
    final = llama / "build"
    logs = root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    logfile = logs / f"llama-build-{target}-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.log"
    configured = final
    cache_file = final / "CMakeCache.txt"
    if cache_file.exists():
        match = re.search(r"^CMAKE_CACHEFILE_DIR:INTERNAL=(.+)$", cache_file.read_text(errors="replace"), re.MULTILINE)
        if match:
            configured = Path(match.group(1).strip())
    if configured != final and configured.exists():
        raise LlamaBuildError(f"cannot build {target}: {configured} (where {final} was configured) is in the way")
    _say(progress, f"building {target} into the cached llama.cpp build (log: {logfile})")
    started = time.perf_counter()
    if configured != final:
        os.replace(final, configured)
    try:
        _run_logged(["cmake", "--build", str(configured), "--target", target, f"-j{BUILD_JOBS}"], llama, logfile,
                    f"cmake build of {target}")
    finally:
        if configured != final:
            os.replace(configured, final)
    log.info("llamacpp.built_target", target=target, seconds=round(time.perf_counter() - started, 1), log=str(logfile))
