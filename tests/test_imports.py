"""Start-up stays light: `--help`, `validate`, `list` and the path to the first request import nothing heavy.

Checked by module, not by the clock (timings live in benchmarks/overhead.py): a heavy import that
creeps back onto one of these paths fails here on any machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("scipy", "numpy", "statsmodels", "pandas", "matplotlib", "openai", "litellm", "jinja2")


def _imported_after(code: str, watched: tuple[str, ...] = HEAVY) -> set[str]:
    probe = f"import sys\n{code}\nimport json; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    return {m for m in watched if m in loaded}


@pytest.mark.parametrize("argv", [["--help"], ["validate"], ["list"], ["run", "--help"]])
def test_commands_that_only_read_scenarios_import_nothing_heavy(argv):
    code = f"from harness.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass"
    assert _imported_after(code) == set()


def test_the_path_to_the_first_request_imports_no_statistics_plotting_or_sdk():
    code = "import harness.client, harness.runner, harness.loop, harness.scoring, harness.preflight, harness.servers"
    assert _imported_after(code) == set()
    # jsonschema is first needed to check the arguments of the first reply, not before the request
    assert _imported_after(code, ("jsonschema",)) == set()


def test_the_package_resolves_its_public_names_on_first_use():
    assert _imported_after("import harness") == set()
    code = "import harness; harness.run_scenario; harness.read_results"
    assert _imported_after(code) == set()


def test_the_path_to_the_first_request_on_plain_http_does_not_import_httpx():
    # aiohttp carries the requests and the target check; httpx (and httpcore's trio and h2) would add
    # a fifth of a second to every start
    probe = ("import sys, asyncio\nimport harness.client, harness.runner, harness.loop, harness.scoring\n"
             "from harness.records import Target\n"
             "c = harness.client.make_client(Target(name='t', base_url='http://127.0.0.1:9/v1', model='m'))\n"
             "async def go():\n    await c.chat([{'role': 'user', 'content': 'hi'}], [], harness.records.Sampling())\n"
             "    await c.aclose()\n"
             "asyncio.run(go())\nprint('httpx' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"


@pytest.mark.parametrize(("given", "seen"), [(None, "__all__"), ("", ""), ("logfire", "logfire")])
def test_the_command_line_skips_pydantic_plugins_unless_the_user_says_otherwise(given, seen):
    # pydantic would read every installed distribution's entry points at the first model; a user's own setting wins
    import os

    env = {k: v for k, v in os.environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"}
    if given is not None:
        env["PYDANTIC_DISABLE_PLUGINS"] = given
    probe = ("import os, harness.cli\nfrom pydantic.plugin import _loader\n"
             "print(repr(os.environ['PYDANTIC_DISABLE_PLUGINS']), _loader._plugins is None)")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True, env=env)
    value, untouched = out.stdout.split()
    assert value == repr(seen)
    # with the scan off, harness.cli's models were built without pydantic ever looking for plugins
    assert untouched == ("True" if seen == "__all__" else "False")
