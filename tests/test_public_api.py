"""The public surface: every module's `__all__` is complete and every name in it exists."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import harness
import tools

MODULES = sorted(
    {f"harness.{m.name}" for m in pkgutil.iter_modules(harness.__path__)}
    | {f"tools.{m.name}" for m in pkgutil.iter_modules(tools.__path__)}
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
        assert module_name.startswith("tools."), f"{module_name} has no __all__"
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
