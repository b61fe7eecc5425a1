"""The scenario load cache: a file's load is reused only while everything it depends on is unchanged."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import harness.scenario as hs
from harness.scenario import ScenarioError, load_scenarios

ROOT = Path(__file__).resolve().parent.parent

GOOD = """\
id: cached-1
description: weather
strata: [tool_selection]
tools: [get_weather]
turns:
  - user: Weather in Paris?
    expect:
      - call: get_weather
        args: {city: Paris}
      - answer: true
"""


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("HARNESS_SCENARIO_CACHE", str(folder))
    return folder


def _entries(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.pickle")) if folder.exists() else []


def _no_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the file was parsed, not read from the cache")

    monkeypatch.setattr(hs, "_load_file_or_raise", refuse)


def test_a_second_load_comes_from_the_cache_and_equals_a_fresh_one(cache, tmp_path, monkeypatch):
    path = tmp_path / "s.yaml"
    path.write_text(GOOD)
    first = load_scenarios(path)
    assert len(_entries(cache)) == 1
    _no_parsing(monkeypatch)
    again = load_scenarios(path)
    assert again == first
    assert again[0] is not first[0]  # a fresh object per load: changing one run's copy changes no other
    assert again[0].content_hash == first[0].content_hash
    assert again[0].source == str(path)


def test_the_built_in_suite_from_the_cache_equals_the_suite_parsed(cache, monkeypatch):
    parsed = load_scenarios(ROOT / "scenarios")
    entries = _entries(cache)
    assert len(entries) == len(list((ROOT / "scenarios").rglob("*.yaml")))
    _no_parsing(monkeypatch)
    cached = load_scenarios(ROOT / "scenarios")
    assert cached == parsed
    assert [sc.content_hash for sc in cached] == [sc.content_hash for sc in parsed]
    assert [(sc.source, sc.source_line) for sc in cached] == [(sc.source, sc.source_line) for sc in parsed]


def test_an_edit_to_the_file_misses(cache, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(GOOD)
    load_scenarios(path)
    path.write_text(GOOD.replace("Paris", "Lyon"))
    [sc] = load_scenarios(path)
    assert sc.turns[0].expect[0].args["city"].equals == "Lyon"
    assert len(_entries(cache)) == 2


def test_the_same_bytes_under_another_path_are_loaded_for_that_path(cache, tmp_path):
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "a.yaml").write_text(GOOD)
    [one] = load_scenarios(tmp_path / "a.yaml")
    [two] = load_scenarios(tmp_path / "b" / "a.yaml")
    assert (one.source, two.source) == (str(tmp_path / "a.yaml"), str(tmp_path / "b" / "a.yaml"))


def test_other_known_tools_or_other_loading_code_miss(cache, tmp_path, monkeypatch):
    path = tmp_path / "s.yaml"
    path.write_text(GOOD)
    load_scenarios(path)
    # the same file checked against other tools: an unknown tool must be reported, not a cached pass
    with pytest.raises(ScenarioError, match="unknown tool 'get_weather'"):
        load_scenarios(path, known_tools={"send_email"})
    monkeypatch.setattr(hs, "_STAMP", "another version of the loader")
    load_scenarios(path)
    assert len(_entries(cache)) == 2


def test_a_tools_arguments_are_part_of_the_key(cache, tmp_path, monkeypatch):
    from harness.tools import registry

    path = tmp_path / "s.yaml"
    path.write_text(GOOD)
    load_scenarios(path)
    tool = registry["get_weather"]
    monkeypatch.setattr(tool, "_names", ["town"])  # as if the tool's signature had changed
    with pytest.raises(ScenarioError, match="get_weather has no argument 'city'"):
        load_scenarios(path)


def test_a_file_with_problems_is_never_kept_and_says_them_every_time(cache, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(GOOD.replace("strata: [tool_selection]", "strata: [no_such_stratum]"))
    for _ in range(2):
        with pytest.raises(ScenarioError, match="no_such_stratum"):
            load_scenarios(path)
    assert _entries(cache) == []


def test_a_file_that_imports_tool_modules_is_not_kept(cache, tmp_path):
    (tmp_path / "mytools.py").write_text(
        "from harness.tools import mock_tool\n\n"
        "@mock_tool\n"
        "def cached_probe_tool(world, x: int) -> dict:\n"
        "    '''Probe.\n\n    Args:\n        x: a number\n    '''\n"
        "    return {'x': x}\n")
    path = tmp_path / "s.yaml"
    path.write_text(GOOD.replace("tools: [get_weather]", "tool_modules: [mytools.py]\ntools: [get_weather, cached_probe_tool]"))
    assert len(load_scenarios(path)) == 1
    assert _entries(cache) == []


def test_a_torn_or_foreign_entry_is_a_miss_and_is_replaced(cache, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(GOOD)
    first = load_scenarios(path)
    [entry] = _entries(cache)
    for junk in (b"\x80\x05not a pickle", b"\x80\x04\x95\x07\x00\x00\x00\x00\x00\x00\x00]\x94K\x01a."):  # garbage; [1]
        entry.write_bytes(junk)
        assert load_scenarios(path) == first
        assert entry.read_bytes() != junk


def test_off_or_an_unwritable_folder_still_loads(tmp_path, monkeypatch):
    path = tmp_path / "s.yaml"
    path.write_text(GOOD)
    monkeypatch.setenv("HARNESS_SCENARIO_CACHE", "off")
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "home-cache"))
    assert len(load_scenarios(path)) == 1
    assert not (tmp_path / "home-cache").exists()
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("HARNESS_SCENARIO_CACHE", str(blocker / "cache"))
    assert len(load_scenarios(path)) == 1


def test_the_default_folder_is_under_the_harness_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("HARNESS_SCENARIO_CACHE", raising=False)
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "c"))
    path = tmp_path / "s.yaml"
    path.write_text(GOOD)
    load_scenarios(path)
    assert len(_entries(tmp_path / "c" / "scenarios")) == 1


def test_the_folder_is_pruned_past_its_limit(cache, tmp_path, monkeypatch):
    monkeypatch.setattr(hs._LoadCache, "_KEEP", 4)
    cache.mkdir(parents=True)
    for i in range(5):
        old = cache / f"{i:032x}.pickle"
        old.write_bytes(b"old")
        os.utime(old, (1_000_000 + i, 1_000_000 + i))
    path = tmp_path / "s.yaml"
    path.write_text(GOOD)
    load_scenarios(path)
    left = _entries(cache)
    assert len(left) == 2  # over the limit: the newest half kept, this load's entry among them
    assert any(p.read_bytes() != b"old" for p in left)


def test_the_code_stamp_follows_every_source_file_of_the_harness_and_the_tools(tmp_path, monkeypatch):
    from harness import tools

    (tmp_path / "h").mkdir()
    (tmp_path / "t").mkdir()
    for folder, name in (("h", "scenario.py"), ("h", "other.py"), ("t", "base.py")):
        (tmp_path / folder / name).write_text("x = 1\n")
    (tmp_path / "h" / "notes.txt").write_text("not code")
    monkeypatch.setattr(hs, "__file__", str(tmp_path / "h" / "scenario.py"))
    monkeypatch.setattr(tools, "__file__", str(tmp_path / "t" / "__init__.py"))

    def stamp() -> str:
        monkeypatch.setattr(hs, "_STAMP", None)
        return hs._code_stamp()

    first = stamp()
    assert stamp() == first  # the same files, the same stamp
    (tmp_path / "h" / "notes.txt").write_text("edited")
    assert stamp() == first  # only Python files count
    for changed in (tmp_path / "h" / "other.py", tmp_path / "t" / "base.py"):
        before = stamp()
        changed.write_text("x = 22\n")
        assert stamp() != before
