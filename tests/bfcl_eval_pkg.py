"""BFCL's own package, fetched from PyPI for the test run: its v4 data and its checkers.

`bfcl-eval` pins numpy 1.26 and pulls in torch, faiss and a dozen model SDKs, so it is not installed
into the test environment. The pinned wheel is downloaded without dependencies (`pip download
--no-deps`), unpacked under the harness cache (`harness.paths.cache_home()`), and imported from there. Its AST checker
reaches the model registry only to ask whether a model maps `.` to `_` in function names; that one
module is replaced by a stand-in that answers yes, as for every OpenAI-style FC model. Without the
network the tests that need it skip (they fail under CI=true).
"""

from __future__ import annotations

import functools
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
import types
import zipfile
from pathlib import Path
from typing import Any

import pytest

from harness.paths import cache_home

__all__ = ["BFCL_EVAL_VERSION", "bfcl_data", "bfcl_eval_root", "bfcl_module"]

BFCL_EVAL_VERSION = "2026.3.23"
"""The bfcl-eval release whose data and checkers the tests compare against."""

_CACHE = cache_home() / "bfcl-eval" / BFCL_EVAL_VERSION


def _unavailable(message: str) -> None:
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(message)
    pytest.skip(message)


@functools.cache
def _fetch() -> Path | str:
    root = _CACHE / "site"
    if (root / "bfcl_eval" / "data").is_dir():
        return root
    download = _CACHE / "wheel"
    download.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", f"bfcl-eval=={BFCL_EVAL_VERSION}", "-d", str(download)],
        capture_output=True, text=True, timeout=600,
    )
    wheels = sorted(download.glob("bfcl_eval-*.whl"))
    if done.returncode != 0 or not wheels:
        return f"cannot download bfcl-eval=={BFCL_EVAL_VERSION}: {done.stderr.strip()[-300:]}"
    # unpack beside the target and rename into place, so a concurrent test run never sees half a wheel
    partial = Path(tempfile.mkdtemp(prefix="site.", dir=_CACHE))
    with zipfile.ZipFile(wheels[0]) as wheel:
        wheel.extractall(partial)
    try:
        partial.rename(root)
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)  # another run got there first
    return root


def bfcl_eval_root() -> Path:
    """The unpacked bfcl-eval wheel (the folder that holds `bfcl_eval/`); skips the test without it."""
    root = _fetch()
    if isinstance(root, str):
        _unavailable(root)
    return root  # type: ignore[return-value]


def bfcl_data() -> Path:
    """BFCL v4's question files, with `possible_answer/` inside (BFCL's own layout)."""
    return bfcl_eval_root() / "bfcl_eval" / "data"


class _FCModel:
    underscore_to_dot = True


def bfcl_module(name: str) -> Any:
    """Import `bfcl_eval.<name>` from the unpacked wheel, with the model registry stood in for."""
    root = str(bfcl_eval_root())
    if root not in sys.path:
        sys.path.append(root)
    if "bfcl_eval.constants.model_config" not in sys.modules:
        stand_in = types.ModuleType("bfcl_eval.constants.model_config")
        stand_in.MODEL_CONFIG_MAPPING = _AnyModel()  # type: ignore[attr-defined]
        sys.modules["bfcl_eval.constants.model_config"] = stand_in
    return importlib.import_module(f"bfcl_eval.{name}")


class _AnyModel(dict):
    def __missing__(self, key: str) -> _FCModel:
        return _FCModel()
