"""The public surface: every module's `__all__` is complete and every name in it exists."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import harness
import harness.tools

MODULES = sorted(
    {f"harness.{m.name}" for m in pkgutil.iter_modules(harness.__path__)}
    | {f"harness.tools.{m.name}" for m in pkgutil.iter_modules(harness.tools.__path__)}
)


def test_package_all_is_sorted_and_importable():
    assert harness.__all__ == sorted(harness.__all__)
    for name in harness.__all__:
        assert hasattr(harness, name), name


@pytest.mark.parametrize("module_name", MODULES)
def test_module_all_lists_its_public_definitions(module_name):
    module = importlib.import_module(module_name)
    exported = getattr(module, "__all__", None)
    if exported is None:
        # modules with no public surface (domain tool modules register on import) define no __all__
        assert module_name.startswith("harness.tools."), f"{module_name} has no __all__"
        return
    for name in exported:
        assert hasattr(module, name), f"{module_name}.__all__ names missing {name!r}"
    defined = {
        name for name, obj in vars(module).items()
        if not name.startswith("_") and (inspect.isfunction(obj) or inspect.isclass(obj))
        and getattr(obj, "__module__", None) == module_name
    }
    missing = defined - set(exported)
    assert not missing, f"{module_name} defines public {sorted(missing)} but __all__ does not list them"


def test_every_subpackage_is_listed_for_installation():
    # a package missing from pyproject's list installs fine in editable mode and is absent from a wheel
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(root).parts) for p in (root / "harness").rglob("__init__.py")}
    assert found - listed == set(), f"add to [tool.setuptools] packages: {sorted(found - listed)}"
    assert "harness.data" in listed


def test_the_wheel_installs_the_mock_tools_as_harness_tools(tmp_path):
    # a top-level `tools` package in site-packages would collide with any other project owning that name
    import shutil
    import subprocess
    import sys
    import zipfile
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    src = tmp_path / "src"  # a copy, so that no stale build/ folder of the checkout leaks into the wheel
    for name in ("harness", "tools"):
        shutil.copytree(root / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"), str(src)],
                   check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert tops == {"harness", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"harness/tools/__init__.py", "harness/tools/base.py", "harness/tools/weather.py"} <= names

    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    probe = ("import harness, harness.tools as t; print(harness.__file__); print(len(t.registry.names()))\n"
             "import importlib.util; print(importlib.util.find_spec('tools'))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env={"PYTHONPATH": str(target)},
                         capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0].startswith(str(target)), out
    assert int(out[1]) >= 40
    assert out[2] == "None"  # no top-level `tools` from this project
