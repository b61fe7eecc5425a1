"""The `harness` command: run, compare, audit, demo, validate, list, selfcheck, report, import, schema.

User errors (bad scenario files, unreachable servers, unknown models) end with one paragraph that
says what and where, and a distinct exit code; never a traceback.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

# pydantic scans every installed distribution's entry points for plugins when it builds its first model
# (40-70 ms of each start here, more in a big environment); the command line has none to load. A value the
# user set wins: PYDANTIC_DISABLE_PLUGINS= (empty) loads them as usual.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

import click
from rich.console import Console
from rich.text import Text

from harness import __version__
from harness.console import make_console, progress_for, protect_stdout
from harness.exitcodes import ExitCode
from harness.records import Provenance, RunConfig, Sampling, Target

__all__ = ["main", "ExitCode", "HarnessError"]


def _esc(value: object) -> str:
    """A path, name or message put into a rich markup string: its brackets shown, never read as markup
    (`[q4]` would vanish as an unknown style, `[/x]` raise MarkupError)."""
    from rich.markup import escape

    return escape(str(value))


class HarnessError(click.ClickException):
    """A user-facing error: printed as one paragraph, no traceback."""

    def __init__(self, message: str, code: ExitCode = ExitCode.BAD_INPUT):
        super().__init__(message)
        self.exit_code = int(code)

    def show(self, file: Any = None) -> None:
        Console(stderr=True, highlight=False).print(Text.assemble(("error:", "bold red"), " ", self.format_message()),
                                                    soft_wrap=True)


def _writable_folder(path: Path, what: str) -> Path:
    """Create `path` (a folder the user named, or its default) or say which and why not: exit 2, no traceback."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HarnessError(f"{what} {path}: cannot create this folder ({exc.strerror or exc})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise HarnessError(f"{what} {path}: this folder is not writable")
    return path


def _check_report_paths(**paths: str | None) -> None:
    """--junit / --html / --markdown: checked before the run, not found unwritable after an hour of model time."""
    for flag, value in paths.items():
        if not value:
            continue
        target = Path(value)
        if target.is_dir():
            raise HarnessError(f"--{flag} {value}: is a folder; give a file name")
        _writable_folder(target.parent, f"--{flag} {value}: its folder")


def _default_scenarios() -> list[str]:
    here = Path(__file__).resolve().parent.parent / "scenarios"
    if here.is_dir():
        return [str(here)]
    raise HarnessError("no scenario paths given and no built-in scenarios/ folder found next to the package")


def _load(paths: tuple[str, ...], tags: tuple[str, ...], ids: tuple[str, ...], tool_modules: tuple[str, ...] = ()) -> list[Any]:
    from harness.scenario import ScenarioError, load_scenarios

    try:
        scenarios = load_scenarios(list(paths) or _default_scenarios(), tags=list(tags) or None, ids=list(ids) or None,
                                   tool_modules=list(tool_modules) or None)
    except ScenarioError as exc:
        n = len(exc.problems)
        raise HarnessError(f"{n} problem{'s' if n != 1 else ''} in the scenario files:\n" + str(exc)) from None
    # the cheap check first: a selector that picked nothing here may still exist (tags are any-of)
    if _unmatched(scenarios, tags, ids) or not scenarios:
        problem = _selection_problem(paths, tags, ids, len(scenarios), tool_modules)
        if problem:
            raise HarnessError(problem)
    return scenarios


def _unmatched(scenarios: list[Any], tags: tuple[str, ...], ids: tuple[str, ...]) -> list[tuple[str, str]]:
    """(`--tag`/`--id`, value) for every selector that picked nothing: a typo, not an empty wish."""
    carried: set[str] = set()
    for sc in scenarios:
        # what the loader's tag filter matches: tags, strata, the id and the family
        carried |= set(sc.tags) | {str(s) for s in sc.strata} | {sc.id, (sc.family or "").lower()}
    missing = [("--tag", t) for t in tags if t.lower() not in carried]
    missing += [("--id", i) for i in ids if i not in {sc.id for sc in scenarios}]
    return missing


def _selection_problem(paths: tuple[str, ...], tags: tuple[str, ...], ids: tuple[str, ...], selected: int,
                       tool_modules: tuple[str, ...] = ()) -> str | None:
    """Why `--tag`/`--id` selected nothing, or named something that does not exist; None when all is well."""
    import difflib

    from harness.scenario import load_scenarios

    where = list(paths) or _default_scenarios()
    everything = load_scenarios(where, tool_modules=list(tool_modules) or None)
    known_ids = sorted(sc.id for sc in everything)
    known_tags = sorted({t for sc in everything for t in sc.tags} | {str(s) for sc in everything for s in sc.strata}
                        | {sc.family for sc in everything if sc.family})
    unknown = _unmatched(everything, tags, ids)
    if not unknown:
        # every selector exists; only their combination can be empty (tags are any-of, ids narrow them)
        return None if selected else f"no scenario in {where} has any of the tags {list(tags)} and one of the ids {list(ids)}"
    lines = []
    for flag, value in unknown:
        pool = known_ids if flag == "--id" else known_tags + known_ids
        what = "scenario id" if flag == "--id" else "tag, stratum or scenario id"
        close = difflib.get_close_matches(value, pool, n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}?" if close else (
            f"known tags: {', '.join(known_tags)}" if flag == "--tag" else "`harness list` shows the ids")
        lines.append(f"{flag} {value}: no {what} {value!r} in {where}; {hint}")
    return "\n".join(lines)


def _parse_target(spec: str) -> Target:
    from harness.records import Target

    # NAME=BASE_URL@MODEL, or NAME=URL1,URL2@MODEL for several servers of one build
    name, sep, rest = spec.partition("=")
    url, at, model = rest.rpartition("@")
    urls = [u.strip() for u in url.split(",") if u.strip()]
    if not sep or not at or not name or not urls or not model:
        raise HarnessError(
            f"--target {spec!r}: expected NAME=BASE_URL@MODEL, e.g. q4=http://127.0.0.1:8082/v1@gemma-q4_k_m "
            "(several servers of one build: NAME=URL1,URL2@MODEL)"
        )
    return Target(name=name, base_url=urls[0], endpoints=urls[1:], model=model)


def _check_urls(target: Target) -> None:
    """A base URL that is not http(s)://host is bad input (exit 2), not a server that is down (exit 3)."""
    from urllib.parse import urlsplit

    from harness.scrub import redact_url

    for url in [target.base_url, *target.endpoints]:
        if not url and target.provider == "litellm":
            continue  # LiteLLM's own provider routing needs no base URL
        try:
            parts = urlsplit(url)
            ok = parts.scheme in ("http", "https") and bool(parts.hostname)
            parts.port  # noqa: B018 -- raises on a port that is not a number
        except ValueError:
            ok = False
        if not ok:
            raise HarnessError(f"target {target.name!r}: base URL {redact_url(url)!r} is not an http(s) URL with a host, "
                               "e.g. http://localhost:11434/v1 (Ollama) or http://127.0.0.1:8080/v1 (llama-server)")


def _knobs(values: tuple[str, ...]) -> dict[str, Any]:
    from harness.knobs import KnobError, parse_knobs

    try:
        return parse_knobs(values)
    except KnobError as exc:
        raise HarnessError(f"--knob: {exc}") from None


def _console(json_out: bool) -> Console:
    from rich.console import Console

    # with --json, stdout carries only JSON: people-facing output goes to stderr
    return make_console(stderr=json_out)


def _run_opts(f: Any) -> Any:
    opts = [
        click.option("-c", "--config", type=click.Path(dir_okay=False, exists=True),
                     help="Project file (YAML): targets, scenarios, thresholds; flags given here override it."),
        click.option("--tag", "tags", multiple=True, help="Only scenarios with this tag or stratum (repeatable)."),
        click.option("--id", "ids", multiple=True, help="Only the scenario with this id (repeatable)."),
        click.option("--epochs", default=None, type=click.IntRange(1, 100),
                     help="Repeat every scenario this many times (default: 1 for run, 2 for compare, so each build's "
                          "flaky scenarios show; at temperature 0 epochs add no evidence, only a stability check)."),
        click.option("--temperature", default=0.0, show_default=True, type=click.FloatRange(min=0)),
        click.option("--top-p", default=1.0, show_default=True, type=click.FloatRange(0, 1, min_open=True)),
        click.option("--seed", default=0, show_default=True, type=int),
        click.option("--max-tokens", default=512, show_default=True, type=click.IntRange(min=1)),
        click.option("--concurrency", default=None, type=click.IntRange(1, 64),
                     help="Scenarios in flight per target (default: the server's slots, e.g. llama.cpp total_slots; else 1)."),
        click.option("--shard", "shard_spec", metavar="K/N",
                     help="Run only the K-th of N deterministic parts of the suite (CI jobs, machines); `harness report` merges them."),
        click.option("--knob", "knobs", multiple=True, help="Difficulty knob NAME=VALUE: distractor_tools, long_outputs, strip_descriptions, history_turns."),
        click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Folder for results and reports (default: runs/<run id>)."),
        click.option("--resume", "resume_dir", type=click.Path(file_okay=False, exists=True), help="Continue an interrupted run in this folder."),
        click.option("--baseline", type=click.Path(dir_okay=False), help="Gate against this summary.json (e.g. last night's)."),
        click.option("--max-drop", default=2.0, show_default=True, type=click.FloatRange(0, 100),
                     help="Allowed pass-rate drop in points against --baseline."),
        click.option("--pinned-baseline", type=click.Path(dir_okay=False),
                     help="Also gate against this fixed summary.json (catches slow slides that nightly diffs miss)."),
        click.option("--gate-alpha", default=0.05, show_default=True, type=click.FloatRange(0, 1),
                     help="False-alarm rate of the gate's scenario-level sign test (1: gate on --max-drop alone)."),
        click.option("--allow-meaningless", is_flag=True,
                     help="Exit 0/1 even when the server dropped the tools from the prompt and no run made a tool call "
                          "(otherwise exit 4: the model never saw the tools)."),
        click.option("--fail-under", "fail_under", multiple=True,
                     help="Absolute floor, PERCENT or STRATUM=PERCENT (repeatable): fails even without a baseline."),
        click.option("--junit", type=click.Path(dir_okay=False), help="Also write JUnit XML here."),
        click.option("--html", type=click.Path(dir_okay=False), help="Also write the HTML report here."),
        click.option("--markdown", type=click.Path(dir_okay=False), help="Also write the Markdown summary here (e.g. $GITHUB_STEP_SUMMARY)."),
        click.option("--json", "json_out", is_flag=True, help="Print the summary as JSON on stdout instead of tables."),
        click.option("--no-preflight", is_flag=True, help="Skip the probes of each server (tools in prompt, tool_choice, ...)."),
        click.option("--cache", "cache_dir", type=click.Path(file_okay=False),
                     help="Answer from this response cache when the same build got the same request in the same epoch; store new replies there."),
        click.option("--timeout", default=300.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
                     help="Wall-clock seconds per request attempt (however slowly the server sends) before it counts as an infrastructure error."),
        click.option("--retries", default=3, show_default=True, type=click.IntRange(0, 20),
                     help="Retries of a request that hit an infrastructure error (with backoff, Retry-After honoured)."),
        click.option("-v", "--verbose", is_flag=True, help="Log every step and request, to the terminal and to log.jsonl (which otherwise keeps info and up)."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


class _Commands(click.Group):
    """The command group; an exception no command expected exits `ExitCode.INTERNAL`, Ctrl-C anywhere
    `ExitCode.INTERRUPTED`, never 1.

    Python's own exit status for an uncaught exception is 1, which is `ExitCode.REGRESSION` here: a CI job
    would read a harness bug as a model that got worse."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit):
            raise
        except (KeyboardInterrupt, EOFError, click.exceptions.Abort):
            # click would exit 1 (a regression, to a CI job); a command that keeps finished work says so itself
            Console(stderr=True, highlight=False).print("[yellow]interrupted.[/]")
            sys.exit(ExitCode.INTERRUPTED)
        except Exception as exc:
            import traceback

            traceback.print_exc()
            sub = f"`harness {ctx.invoked_subcommand}`" if ctx.invoked_subcommand else "harness"
            why = ("the operating system refused a file or socket operation (a full disk, permissions, a path that "
                   "went away)" if isinstance(exc, OSError) else "this is a fault in the harness (or a library it uses)")
            Console(stderr=True, highlight=False).print(Text.assemble(
                ("internal error:", "bold red"),
                f" {sub} failed with {type(exc).__name__}: {str(exc)[:500]}. {why[0].upper()}{why[1:]}, not a result "
                f"about any model; the traceback is above. Runs that finished are in results.jsonl. "
                f"Exit code {int(ExitCode.INTERNAL)}."), soft_wrap=True)
            sys.exit(ExitCode.INTERNAL)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="harness")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Eval harness for agentic tool calling: find the quant that picks the wrong tool at step 3."""
    from harness import scrub

    # nothing printed may carry a known secret: keys from the environment now, flags' keys and URLs' passwords when read
    scrub.guard_streams()
    scrub.register_env_secrets()
    # `harness list | head`: the reader leaving ends the output, and the exit code still says what happened
    protect_stdout()
    # commands that never log skip importing structlog (a third of `validate`'s start-up)
    if ctx.invoked_subcommand in _QUIET_COMMANDS:
        return
    from harness.logs import configure_logging

    # every other command: warnings to stderr, stdout stays clean for --json (run and demo add a log file)
    configure_logging()


_QUIET_COMMANDS = frozenset({"validate", "list", "schema", "tools"})
"""Commands whose code paths log nothing (no module they import uses structlog)."""


# -- run / compare -------------------------------------------------------------------------------


@main.command()
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--base-url", "base_urls", multiple=True,
              help="OpenAI-compatible base URL, e.g. http://localhost:11434/v1 (or the project file's target). Repeat it "
                   "for several servers of the same build: LiteLLM's Router spreads requests over them.")
@click.option("--model", help="Model id to send, e.g. qwen2.5:7b-instruct-q4_K_M")
@click.option("--name", help="Label for this target in reports (default: the model id).")
@click.option("--provider", type=click.Choice(["openai", "litellm"]), default="openai", show_default=True,
              help="litellm routes non-OpenAI providers (--model ollama_chat/...).")
@click.option("--api-key", envvar=["HARNESS_API_KEY", "OPENAI_API_KEY"],
              help="API key (or HARNESS_API_KEY, else OPENAI_API_KEY as the openai SDK reads it). Never written or printed.")
@_run_opts
def run(paths: tuple[str, ...], base_urls: tuple[str, ...], model: str, name: str | None, provider: str, api_key: str | None,
        **opts: Any) -> None:
    """Run scenarios against one model server and score every step."""
    project, opts = _apply_project(opts.pop("config"), {"paths": paths, **opts}, ignore=_COMPARE_ONLY)
    paths = opts.pop("paths")
    base_url = base_urls[0] if base_urls else None
    if project is not None and project.targets and base_url is None and model is None:
        if len(project.targets) != 1:
            raise HarnessError(f"{project.where('targets')}: `harness run` takes one target and the file has "
                               f"{len(project.targets)}; use `harness compare -c {project.source}`")
        pt = project.targets[0]
        base_url, model, name = pt.base_url, pt.model, name or pt.name
        provider = provider if _from_command_line("provider") else pt.provider
        api_key = api_key or _api_key(pt.api_key_env)
    if not base_url or not model:
        raise HarnessError("run needs --base-url and --model (or -c FILE naming one target)")
    target = Target(name=name or model, base_url=base_url, endpoints=list(base_urls[1:]), model=model,
                    provider=provider, api_key=api_key)  # type: ignore[arg-type]
    opts["epochs"] = opts["epochs"] or 1
    _execute(paths, [target], reference=None, tolerance=None, critical=(), **opts)


@main.command()
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--target", "target_specs", multiple=True, help="NAME=BASE_URL@MODEL (repeatable).")
@click.option("--ollama", "ollama_tags", help="Comma-separated Ollama tags of one model, e.g. qwen2.5:7b-instruct-fp16,qwen2.5:7b-instruct-q4_K_M")
@click.option("--ollama-host", default="http://localhost:11434", show_default=True, envvar="OLLAMA_HOST")
@click.option("--pull", is_flag=True, help="Pull missing Ollama tags first.")
@click.option("--reference", help="Name of the reference target (default: the first).")
@click.option("--tolerance", default=5.0, show_default=True, type=click.FloatRange(0, 100),
              help="Allowed drop in pass-rate points versus the reference.")
@click.option("--critical", multiple=True, help="Stratum that must stay within tolerance (repeatable; default: every "
              "stratum with enough scenarios to decide it; the rest are reported only).")
@_run_opts
def compare(paths: tuple[str, ...], target_specs: tuple[str, ...], ollama_tags: str | None, ollama_host: str, pull: bool,
            reference: str | None, tolerance: float, critical: tuple[str, ...], **opts: Any) -> None:
    """Compare builds of one model against a reference, item by item, and say which quant is safe."""
    project, opts = _apply_project(opts.pop("config"), {"paths": paths, "reference": reference, "tolerance": tolerance,
                                                        "critical": critical, **opts})
    paths, reference, tolerance, critical = (opts.pop(k) for k in ("paths", "reference", "tolerance", "critical"))
    targets = [_parse_target(s) for s in target_specs]
    if project is not None and not target_specs and not ollama_tags:
        targets = [Target(name=t.name, base_url=t.base_url, model=t.model, provider=t.provider,
                          api_key=_api_key(t.api_key_env)) for t in project.targets]
        if project.ollama is not None:
            ollama_tags = ",".join(project.ollama.tags)
            ollama_host = ollama_host if _from_command_line("ollama_host") else project.ollama.host
            pull = pull or project.ollama.pull
    provenance: dict[str, Provenance] = {}
    if ollama_tags:
        from harness.ollama import OllamaError, resolve_ollama_targets

        tags = [t.strip() for t in ollama_tags.split(",") if t.strip()]
        try:
            for target, prov in resolve_ollama_targets(tags, host=ollama_host, pull=pull, progress=Console(stderr=True).print):
                targets.append(target)
                provenance[target.name] = prov
        except OllamaError as exc:
            raise HarnessError(str(exc), getattr(exc, "exit_code", ExitCode.INFRA)) from None
    if len(targets) < 2:
        raise HarnessError("compare needs at least two targets (--target NAME=URL@MODEL, or --ollama tag1,tag2)")
    names = [t.name for t in targets]
    if len(set(names)) != len(names):
        raise HarnessError(f"target names must be unique, got {names}")
    reference = reference or targets[0].name
    if reference not in names:
        raise HarnessError(f"--reference {reference!r} is not one of the targets {names}")
    opts["epochs"] = opts["epochs"] or 2
    _execute(paths, targets, reference=reference, tolerance=tolerance, critical=critical, provenance=provenance, **opts)


# -- project files -------------------------------------------------------------------------------

# keys a shared project file may carry that only `compare` uses
_COMPARE_ONLY = frozenset({"reference", "tolerance", "critical"})



def _from_command_line(name: str) -> bool:
    """Whether the user gave this parameter (flag or environment), rather than its default."""
    from click.core import ParameterSource

    source = click.get_current_context().get_parameter_source(name)
    return source not in (None, ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)


def _api_key(env: str | None) -> str | None:
    import os

    return os.environ.get(env) if env else None


def _apply_project(config: str | None, params: dict[str, Any], *, ignore: frozenset[str] = frozenset(),
                   only: frozenset[str] | None = None) -> tuple[Any, dict[str, Any]]:
    """Fill every parameter the command line left at its default from the project file.

    Keys in `ignore` (or outside `only`) are skipped; any other key the command has no parameter for is an error.
    """
    if config is None:
        return None, params
    from harness.project import ProjectError, load_project

    try:
        project = load_project(config)
    except ProjectError as exc:
        n = len(exc.problems)
        raise HarnessError(f"{n} problem{'s' if n != 1 else ''} in the project file:\n" + str(exc)) from None
    merged = dict(params)
    for key, value in project.options().items():
        if key in ignore or (only is not None and key not in only):
            continue
        if key not in merged:
            # a gate setting silently dropped would pass a night that should fail
            raise HarnessError(f"{project.where(key)}: {key} is not supported by this command of harness {__version__}")
        if not _from_command_line(key):
            merged[key] = value
    return project, merged


def _execute(
    paths: tuple[str, ...],
    targets: list[Target],
    *,
    reference: str | None,
    tolerance: float | None,
    critical: tuple[str, ...],
    provenance: dict[str, Provenance] | None = None,
    tags: tuple[str, ...],
    ids: tuple[str, ...],
    epochs: int,
    temperature: float,
    top_p: float,
    seed: int,
    max_tokens: int,
    concurrency: int | None,
    knobs: tuple[str, ...],
    shard_spec: str | None,
    out_dir: str | None,
    resume_dir: str | None,
    baseline: str | None,
    max_drop: float,
    pinned_baseline: str | None,
    gate_alpha: float,
    fail_under: tuple[str, ...],
    allow_meaningless: bool,
    junit: str | None,
    html: str | None,
    markdown: str | None,
    json_out: bool,
    no_preflight: bool,
    cache_dir: str | None,
    timeout: float,
    retries: int,
    verbose: bool,
) -> None:
    import asyncio

    from harness import scrub
    from harness.records import RunConfig, Sampling

    console = _console(json_out)
    for target in targets:
        _check_urls(target)
        if target.api_key is None:
            # as the openai SDK does: a key in the environment is used when none is given
            target.api_key = os.environ.get("HARNESS_API_KEY") or os.environ.get("OPENAI_API_KEY")
        scrub.add_secret(target.api_key)
        scrub.add_url_secrets(target.base_url)
    run_dir: Path | None = None
    # Ctrl-C anywhere (loading, the server check, the runs, the reports) ends with 130; finished runs are on disk
    try:
        from harness.logs import configure_logging
        from harness.runner import content_hashes, new_run_id, run_suite, scenario_set_hash

        scenarios = _load(paths, tags, ids)
        hashes = content_hashes(scenarios)
        suite_hash = scenario_set_hash(scenarios, hashes)
        shard = None
        if shard_spec:
            from harness.shard import ShardError, parse_shard, select_shard

            try:
                shard = parse_shard(shard_spec)
            except ShardError as exc:
                raise HarnessError(f"--shard {exc}") from None
            scenarios = select_shard(scenarios, shard)
            if not scenarios:
                raise HarnessError(f"--shard {shard}: this shard is empty (the selection has fewer scenarios than shards)")
        difficulty = _knobs(knobs)
        for flag, path in (("--baseline", baseline), ("--pinned-baseline", pinned_baseline)):
            if path and not Path(path).is_file():
                # say so before an hour of runs, not after
                raise HarnessError(f"{flag} {path}: no such file (expected a summary.json from an earlier run)")
        _check_report_paths(junit=junit, html=html, markdown=markdown)
        if cache_dir:
            _writable_folder(Path(cache_dir), "--cache")
        floors: dict[str, float] = {}
        if fail_under:
            # the gate, and the statistics it imports, only when a floor is set: not before the first request
            from harness.gate import parse_thresholds

            try:
                floors = parse_thresholds(fail_under)
            except ValueError as exc:
                raise HarnessError(str(exc)) from None
        if out_dir and resume_dir and Path(out_dir).resolve() != Path(resume_dir).resolve():
            raise HarnessError(f"--out {out_dir} and --resume {resume_dir} name different folders; "
                               "--resume alone continues a run in its own folder")
        run_dir = Path(resume_dir or out_dir or Path("runs") / new_run_id())
        results_file = run_dir / "results.jsonl"
        config = RunConfig(
            scenario_paths=list(paths) or _default_scenarios(),
            scenario_set_hash=suite_hash,
            scenario_ids=[s.id for s in scenarios],
            tags=list(tags),
            shard=str(shard) if shard else None,
            epochs=epochs,
            sampling=Sampling(temperature=temperature, top_p=top_p, seed=seed, max_tokens=max_tokens),
            concurrency=concurrency or 1,
            reference=reference,
            tolerance=tolerance,
            critical_strata=list(critical),
            difficulty=difficulty,
            harness_version=__version__,
        )
        previous = None
        if resume_dir:
            # the run's own log records what a resume found, refused or not
            configure_logging(run_dir / "log.jsonl", verbose=verbose)
            previous = _check_resume(results_file, scenarios, targets, config, console)
        else:
            _check_fresh(results_file)
            _writable_folder(run_dir, "--out" if out_dir else "the run folder")
            configure_logging(run_dir / "log.jsonl", verbose=verbose)
        provenance = dict(provenance or {})
        part = f" (shard {shard})" if shard else ""
        console.print(f"[bold]{len(scenarios)} scenarios[/]{part} x {len(targets)} target(s) x {epochs} epoch(s) -> {_esc(run_dir)}")
        if len(targets) > 1 and scenarios:
            from harness.stats import min_decidable_scenarios, z_value

            z2 = z_value() ** 2
            best = 100 * z2 / (len(scenarios) + z2)
            need = min_decidable_scenarios((tolerance or 5.0) / 100) if tolerance else None
            console.print(f"plan: even with no flip, {len(scenarios)} scenarios can rule out drops no smaller than {best:.1f} pts"
                          + (f"; ruling out {tolerance:g} pts needs at least {need} (see `harness plan`)"
                             if need and need > len(scenarios) else "")
                          + ("; epochs at temperature 0 add no evidence, only a stability check" if epochs > 1 and temperature == 0 else ""))
        try:
            shown = asyncio.run(_check_and_probe(targets, provenance, scenarios, config, no_preflight, timeout, console))
        except HarnessError as exc:
            if exc.exit_code == ExitCode.INFRA:
                # CI publishing steps still get a summary and a JUnit file that say what happened
                _write_infra_reports(run_dir, exc.format_message(), junit=junit, markdown=markdown)
            raise
        in_flight = _concurrency(targets, provenance, concurrency, console)
        config.concurrency = max(in_flight.values())

        from harness.client import make_client

        cache = None
        if cache_dir:
            from harness.cache import ResponseCache

            cache = ResponseCache(cache_dir)  # checked writable before the server check

        def factory(target: Target) -> Any:
            client = make_client(target, timeout_s=timeout, retries=retries)
            if cache is None:
                return client
            from harness.cache import CachedClient, target_identity

            return CachedClient(client, cache, target_identity(target, provenance.get(target.name)))

        with progress_for(console, disable=json_out) as progress:
            results = _run_quietly(
                run_suite(scenarios, targets, out=results_file, config=config, provenance=provenance,
                          client_factory=factory, progress=progress, concurrency=in_flight, previous=previous,
                          hashes=hashes)
            )
        # the reports need neither the scenarios nor a resumed run's records (they are in `results`): let them
        # go, so the report stage's plots reuse their memory
        del scenarios, previous, hashes
        code = _finish(results, run_dir, console, reference=reference, tolerance=tolerance, critical=list(critical),
                       baseline=baseline, max_drop=max_drop, junit=junit, html=html, markdown=markdown, json_out=json_out,
                       pinned_baseline=pinned_baseline, gate_alpha=gate_alpha, floors=floors, shown=shown,
                       allow_meaningless=allow_meaningless)
    except KeyboardInterrupt:
        if run_dir is not None and (run_dir / "results.jsonl").exists():
            console.print(f"[yellow]interrupted.[/] Finished runs are saved in {_esc(run_dir / 'results.jsonl')}; "
                          f"continue with the same command plus --resume {run_dir}")
        else:
            console.print("[yellow]interrupted[/] before any run started; nothing was written.")
        sys.exit(ExitCode.INTERRUPTED)
    sys.exit(code)


def _check_fresh(results_file: Path) -> None:
    """A new run never lands in a folder that holds another run's results (a nightly reusing `--out`)."""
    if not results_file.exists() or results_file.stat().st_size == 0:
        return
    from harness.records import ResultsError, read_results

    what = "results"
    try:
        old = read_results(results_file)
        if old.headers:
            what = f"the results of run {old.headers[0].run_id} ({len(old.records)} records)"
    except ResultsError:
        pass
    folder = results_file.parent
    raise HarnessError(f"--out {folder} already holds {what} in {results_file.name}; a new run will not mix into it. "
                       f"Use another --out folder (or none: runs/<run id>), remove the old one, "
                       f"or continue that run with --resume {folder}.")


def _check_resume(results_file: Path, scenarios: list[Any], targets: list[Target], config: RunConfig,
                  console: Console) -> Any:
    """Repair a torn last line (saying so), then refuse a resume whose run differs from the one in the file.

    Returns what the file holds (None when it is empty), for the run to continue from without reading it again."""
    import structlog

    from harness.records import ResultsError, read_results, repair_results
    from harness.runner import resume_conflicts

    if not results_file.exists() or results_file.stat().st_size == 0:
        # killed before its header was written: nothing to continue, nothing to contradict
        console.print(f"[yellow]note:[/] no results in {_esc(results_file.parent)} yet; starting the run there")
        return None
    repair = repair_results(results_file)
    if repair is not None:
        console.print(f"[yellow]repaired:[/] {_esc(repair.message)}")
        # on the terminal already; the log keeps it too
        structlog.get_logger("harness.cli").info(
            "results.repaired", path=repair.path, line=repair.line, dropped_bytes=repair.dropped_bytes,
            added_newline=repair.added_newline, message=repair.message)
    try:
        old = read_results(results_file)
    except ResultsError as exc:
        raise HarnessError(f"--resume: {exc}") from None
    conflicts = resume_conflicts(old, scenarios, targets, config)
    if conflicts:
        raise HarnessError(
            f"--resume {results_file.parent}: this command differs from the run in {results_file.name}, and "
            "mixing the two would compare unlike results:\n" + "\n".join(f"  - {c}" for c in conflicts)
            + "\nResume with the original settings, or start a new run with another --out."
        )
    return old


async def _check_and_probe(targets: list[Target], provenance: dict[str, Provenance], scenarios: list[Any],
                           config: RunConfig, no_preflight: bool, timeout: float, console: Console) -> set[str]:
    """Check every target, probe its server, print each warning once; returns them as `[target] warning`."""
    from harness import preflight as pf
    from harness.client import TargetError, check_target, make_client

    found: dict[str, list[str]] = {}
    for target in targets:
        # every endpoint of a routed target must serve the model at the start: a typo is not a dead replica
        for url in [target.base_url, *target.endpoints]:
            try:
                served = await check_target(target.model_copy(update={"base_url": url, "endpoints": []}),
                                            timeout_s=min(timeout, 30.0))
            except TargetError as exc:
                raise HarnessError(f"target {target.name!r} ({url}, model {target.model!r}): {exc}",
                                   getattr(exc, "exit_code", ExitCode.INFRA)) from None
            mismatch = pf.served_model_warning(target, served)
            if mismatch:
                found.setdefault(target.name, []).append(mismatch)
    if not no_preflight:
        from harness.loop import build_toolset
        from harness.servers import probe_provenance

        sample = build_toolset(scenarios[0]).schemas
        for target in targets:
            prov = provenance.get(target.name) or await _maybe_async(probe_provenance(target))
            client = make_client(target, timeout_s=timeout)
            try:
                prov.preflight = await pf.preflight(target, client, sample, provenance=prov)
            finally:
                await client.aclose()
            for warning in found.get(target.name, []) + prov.preflight.get("warnings", []):
                if warning not in prov.warnings:
                    prov.warnings.append(warning)
            found[target.name] = list(prov.warnings)
            provenance[target.name] = prov
    else:
        for name, warnings in found.items():
            if name in provenance:
                provenance[name].warnings += [w for w in warnings if w not in provenance[name].warnings]
    # once each: the same finding on several targets is one line naming them all
    for warning, names in pf.group_warnings(found):
        console.print(Text.assemble(("warning ", "yellow"), f"[{', '.join(names)}] ", warning), soft_wrap=False)
    for line in pf.confounds(provenance) if not no_preflight else []:
        console.print(Text.assemble(("confound: ", "bold yellow"), line))
    return {f"[{name}] {w}" for name, warnings in found.items() for w in warnings}


def _run_quietly(coro: Any) -> Any:
    """`asyncio.run(coro)`, keeping the result off the main task.

    When asyncio.run restores the SIGINT handler, CPython formats a ValueError whose message reprs
    the handler, which holds the finished main task, whose repr includes its result: for a whole
    run's `Results` that full pydantic repr cost about 2 ms per model call (measured, 148 calls).
    """
    import asyncio

    box: list[Any] = []

    async def main() -> None:
        box.append(await coro)

    asyncio.run(main())
    return box[0]


def _concurrency(targets: list[Target], provenance: dict[str, Provenance], override: int | None,
                 console: Console) -> dict[str, int]:
    """Scenarios in flight per target: --concurrency, else what each server says it can serve at once."""
    from harness.concurrency import choose_concurrency

    out = {}
    for target in targets:
        chosen = choose_concurrency(target.name, provenance.get(target.name), override)
        out[target.name] = chosen.value
        if chosen.source not in ("--concurrency", "default"):
            console.print(Text(f"[{target.name}] {chosen.value} scenario(s) in flight ({chosen.source}; --concurrency overrides)"))
    return out


async def _maybe_async(value: Any) -> Any:
    import asyncio

    if asyncio.iscoroutine(value):
        return await value
    return value


def _write_infra_reports(run_dir: Path, message: str, *, junit: str | None, markdown: str | None) -> None:
    """summary.md and junit.xml for a run that never started because a server was down."""
    from xml.sax.saxutils import escape, quoteattr

    from harness.report._format import clean
    from harness.scrub import redact

    # the server's words arrive quoted (repr) by the server check; a second guard all the same: nothing
    # XML 1.0 refuses may reach junit.xml, which a CI system's parser would reject whole
    message = clean(redact(message))
    summary = f"## ⚠️ agentic-harness: infrastructure error, nothing was run\n\n{message}\n\nExit code 3 (INFRA): not a model regression.\n"
    xml = ('<?xml version="1.0" encoding="utf-8"?>\n<testsuites name="agentic-harness" tests="1" errors="1" failures="0">'
           '<testsuite name="server check" tests="1" errors="1" failures="0"><testcase classname="server check" '
           f'name="targets reachable"><error type="infra_error" message={quoteattr(message[:500])}>{escape(message)}</error>'
           '</testcase></testsuite></testsuites>\n')
    targets = [(run_dir / "summary.md", summary), (run_dir / "junit.xml", xml)]
    targets += [(Path(markdown), summary)] if markdown else []
    targets += [(Path(junit), xml)] if junit else []
    for path, text in targets:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def _finish(results: Any, run_dir: Path, console: Console, *, reference: str | None, tolerance: float | None,
            critical: list[str], baseline: str | None, max_drop: float, junit: str | None, html: str | None,
            markdown: str | None, json_out: bool, pinned_baseline: str | None = None, gate_alpha: float = 0.05,
            floors: dict[str, float] | None = None, shown: set[str] | frozenset[str] = frozenset(),
            allow_meaningless: bool = False, sources: list[str] | None = None) -> int:
    """Compare, gate, write and print the reports; the exit code. `sources`: the results files the
    reports were rebuilt from (`harness report`); None: the run's own, `run_dir`/results.jsonl."""
    from harness import report
    from harness.compare import compare_runs, summarize_run
    from harness.preflight import meaningless_targets, settle_warnings

    # decided before the warnings are settled: a run with structured calls is never meaningless
    meaningless = meaningless_targets(results)

    # a probe's doubt that tool calls work is moot once the runs made some
    settle_warnings(results)
    targets = results.targets()
    if reference and len(targets) > 1:
        comparison = compare_runs(results, reference=reference, tolerance=tolerance, critical_strata=critical or None)
    else:
        comparison = summarize_run(results)
    decision = None
    if baseline or pinned_baseline or floors or meaningless:
        from harness.gate import decide

        decision = decide(comparison, baselines=[p for p in (baseline, pinned_baseline) if p], max_drop=max_drop,
                          alpha=gate_alpha, floors=floors, meaningless=meaningless, allow_meaningless=allow_meaningless)
    code = decision.exit_code if decision else ExitCode.OK
    # a server down mid-run, or flaky, leaves numbers that say nothing about the model: INFRA, as the gate rules
    from harness.gate import DEFAULT_MAX_INFRA_SHARE

    lost_runs = [(name, share) for name in targets if (share := _lost_share(results.for_target(name), DEFAULT_MAX_INFRA_SHARE))]
    if not json_out:
        # printed before the reports are written: the reports take the records over (`release_records`)
        for passed, line in (decision.lines() if decision else []):
            console.print(Text.assemble(("gate: " if passed else "gate failed: ", "bold green" if passed else "bold red"),
                                        line))
        report.print_terminal(comparison, console, results=results, shown=shown)
    # the gate's answer comes first in summary.md and report.html: it is what the job decided; nothing reads
    # the records after this, so the plots are drawn without them in memory
    written = report.write_reports(results, comparison, run_dir, gate=decision.lines() if decision else None,
                                   gate_markdown=decision.to_markdown() if decision else "", release_records=True)
    _redact_files(written.values())
    for extra, key in ((junit, "junit.xml"), (html, "report.html"), (markdown, "summary.md")):
        if extra:
            Path(extra).parent.mkdir(parents=True, exist_ok=True)
            Path(extra).write_text(Path(written[key]).read_text(encoding="utf-8"), encoding="utf-8")
    if json_out:
        payload = json.loads(comparison.model_dump_json())
        if decision and decision.gates:
            payload["gate"] = json.loads(decision.gates[0].model_dump_json())
            payload["gates"] = [json.loads(g.model_dump_json()) for g in decision.gates]
        click.echo(json.dumps(payload, indent=2))
    else:
        shown_sources = ", ".join(sources) if sources else str(run_dir / "results.jsonl")
        console.print(Text(f"\nresults: {shown_sources}\nreport:  {written['report.html']}"))
    for name, every in lost_runs:
        console.print(f"[red]{every} against {_esc(repr(name))} hit an infrastructure error[/] (more than "
                      f"{DEFAULT_MAX_INFRA_SHARE:.0%} of runs): the numbers cannot be trusted. "
                      "Check the server, then rerun the lost runs with "
                      + (f"--resume {_esc(run_dir)}." if not sources else "--resume and the folder of the run that lost them."))
    if lost_runs and code == ExitCode.OK:
        return int(ExitCode.INFRA)
    return int(code)


def _lost_share(records: list[Any], limit: float) -> str | None:
    """How many of a target's runs an infrastructure error took ("every run", "4 of 10 runs (40%)"), when
    more than `limit` of them; None otherwise."""
    lost = sum(1 for r in records if r.score.infra_error)
    if not records or (lost < len(records) and lost / len(records) <= limit):
        return None
    return "every run" if lost == len(records) else f"{lost} of {len(records)} runs ({lost / len(records):.0%})"


def _redact_files(paths: Any) -> None:
    """Reports are built from redacted records; this pass makes sure of it for every file written."""
    from harness import scrub

    if not scrub.secrets():
        return
    for path in map(Path, paths):
        text = path.read_text(encoding="utf-8")
        clean = scrub.redact(text)
        if clean != text:
            path.write_text(clean, encoding="utf-8")


# -- audit / demo --------------------------------------------------------------------------------


def _csv(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


@main.command()
@click.argument("args", nargs=-1, type=click.Path(), metavar="[SOURCE]... [SCENARIOS]...")
@click.option("--quants", help="Rungs to make from a GGUF source (default Q8_0,Q6_K,Q5_K_M,Q4_K_M,Q3_K_M,Q2_K below "
              "its precision; the embedded ladder: Q8_0,Q4_K_M,Q3_K_M,Q2_K); Ollama: tags to add (with --pull).")
@click.option("--reference", help="Reference build (default: the GGUF source, or the most precise build).")
@click.option("--imatrix", type=click.Path(dir_okay=False), help="Quantize with this importance matrix.")
@click.option("--calibrate", help="Compute an importance matrix with llama-imatrix on this text file "
              "(`scenarios`: the scenarios' own prompts) and quantize with it.")
@click.option("--kv-cache", "kv_cache", help="KV-cache types, each rung x type a build, e.g. f16,q8_0,q4_0.")
@click.option("--ctx", help="Context sizes, each rung x size a build, e.g. 4096,8192.")
@click.option("--gpu-layers", help="llama-server --gpu-layers (a number, auto or all).")
@click.option("--server-arg", "server_args", multiple=True, help="Extra llama-server argument (repeatable), e.g. --server-arg=--mlock.")
@click.option("--threads", type=click.IntRange(min=1), help="llama-server threads (default: the cores, at most 8).")
@click.option("--pull", is_flag=True, help="Ollama: pull the tags --quants names that are missing.")
@click.option("--ollama-host", default="http://localhost:11434", show_default=True, envvar="OLLAMA_HOST")
@click.option("--tag", "tags", multiple=True, help="Only scenarios with this tag or stratum (default with no source: smoke).")
@click.option("--id", "ids", multiple=True, help="Only the scenario with this id (repeatable).")
@click.option("--epochs", default=2, show_default=True, type=click.IntRange(1, 100), help="Epochs (2+ gives a noise floor).")
@click.option("--tolerance", default=5.0, show_default=True, type=click.FloatRange(0, 100),
              help="Allowed drop in pass-rate points versus the reference.")
@click.option("--critical", multiple=True, help="Stratum that must stay within tolerance (repeatable; default: all).")
@click.option("--max-tokens", default=256, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Folder for results and reports (default: runs/audit-<id>).")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False, exists=True), help="Continue an interrupted audit in this folder.")
@click.option("--preflight/--no-preflight", default=True, show_default=True, help="Probe each build's server first.")
@click.option("--timeout", default=300.0, show_default=True, type=click.FloatRange(min=0, min_open=True), help="Seconds per request.")
@click.option("--json", "json_out", is_flag=True, help="Print the audit report as JSON.")
@click.option("-v", "--verbose", is_flag=True)
def audit(args: tuple[str, ...], quants: str | None, reference: str | None, imatrix: str | None, calibrate: str | None,
          kv_cache: str | None, ctx: str | None, gpu_layers: str | None, server_args: tuple[str, ...], threads: int | None,
          pull: bool, ollama_host: str, tags: tuple[str, ...], ids: tuple[str, ...], epochs: int, tolerance: float,
          critical: tuple[str, ...], max_tokens: int, seed: int, out_dir: str | None, resume_dir: str | None,
          preflight: bool, timeout: float, json_out: bool, verbose: bool) -> None:
    """Audit a model's quants: make and serve each build, find where tool calling breaks, with cost beside accuracy.

    SOURCE is a high-precision GGUF (the ladder is made from it), several GGUFs or a folder of them (audited
    as they are), or ollama:MODEL (its local tags); with no SOURCE, the embedded gemma-3-270m ladder.
    """
    import asyncio

    from harness import audit as au
    from harness import llamacpp
    from harness.logs import configure_logging
    from harness.records import RunConfig, Sampling
    from harness.runner import make_progress, new_run_id, scenario_set_hash

    console = _console(json_out)
    sources, paths = au.split_arguments(args)
    if not sources and not paths and not tags and not ids:
        tags = ("smoke",)  # the embedded model is a small base model: the few-shot smoke subset suits it
    scenarios = _load(tuple(paths), tags, ids)
    try:
        contexts = [int(c) for c in _csv(ctx)]
    except ValueError:
        raise HarnessError(f"--ctx {ctx!r}: expected comma-separated integers, e.g. 4096,8192") from None
    run_dir = _writable_folder(Path(resume_dir or out_dir or Path("runs") / f"audit-{new_run_id()}"),
                               "--resume" if resume_dir else "--out" if out_dir else "the audit folder")
    configure_logging(run_dir / "log.jsonl", verbose=verbose)
    try:
        plan = au.resolve_source(sources, quants=_csv(quants) if quants is not None else None, reference=reference,
                                 kv_cache=_csv(kv_cache), ctx=contexts, pull=pull, ollama_host=ollama_host,
                                 progress=console.print)
    except au.AuditError as exc:
        raise HarnessError(str(exc)) from None
    config = RunConfig(
        scenario_paths=list(paths) or _default_scenarios(), scenario_set_hash=scenario_set_hash(scenarios),
        scenario_ids=[s.id for s in scenarios], tags=list(tags), epochs=epochs,
        sampling=Sampling(max_tokens=max_tokens, seed=seed), reference=plan.reference, tolerance=tolerance,
        critical_strata=list(critical), harness_version=__version__,
    )
    console.print(f"[bold]audit[/] {_esc(plan.source)}: {len(plan.builds)} builds x {len(scenarios)} scenarios x {epochs} "
                  f"epoch(s) -> {_esc(run_dir)}")

    def probe(target: Target, prov: Provenance) -> None:
        asyncio.run(_check_and_probe([target], {target.name: prov}, scenarios, config, False, timeout, console))

    with make_progress(console, disable=json_out) as progress:
        try:
            report = au.run_audit(plan, scenarios, config, run_dir, imatrix=imatrix, calibrate=calibrate,
                                  gpu_layers=gpu_layers, server_args=list(server_args), threads=threads,
                                  timeout_s=timeout, preflight=probe if preflight else None, progress=progress,
                                  say=lambda message: console.print(Text(message)))
        except KeyboardInterrupt:
            console.print(f"[yellow]interrupted.[/] Finished builds and runs are in {_esc(run_dir)}; "
                          f"continue with the same command plus --resume {_esc(run_dir)}")
            sys.exit(ExitCode.INTERRUPTED)
        except au.AuditError as exc:
            raise HarnessError(str(exc)) from None
        except llamacpp.LlamaError as exc:
            raise HarnessError(str(exc), ExitCode.INFRA) from None
    written = au.write_audit(report, run_dir)
    if report.comparison is not None:
        from harness import report as reports
        from harness.records import read_results

        # nothing else holds these records: the reports let them go before their plots
        written.update(reports.write_reports(read_results(run_dir / "results.jsonl"), report.comparison, run_dir,
                                             release_records=True))
    _redact_files(p for p in written.values() if p.suffix != ".png")
    if json_out:
        click.echo(report.model_dump_json(indent=2))
    else:
        au.print_audit(report, console)
        console.print(Text(f"\naudit:   {written['audit.md']}" + (f"\nplot:    {written['audit.png']}" if "audit.png" in written else "")
                           + (f"\nreport:  {written['report.html']}" if "report.html" in written else "")))
    sys.exit(int(ExitCode.OK) if any(b.status == "done" for b in report.builds) else int(ExitCode.INFRA))


@main.command()
@click.option("--quants", default="Q8_0,Q4_K_M,Q3_K_M,Q2_K", show_default=True, help="Ladder rungs; the first is the reference.")
@click.option("--tag", "tags", multiple=True, default=("smoke",), show_default=True, help="Scenario tags to run.")
@click.option("--epochs", default=2, show_default=True, type=click.IntRange(1, 20), help="Epochs (2+ gives a noise floor).")
@click.option("--tolerance", default=5.0, show_default=True, type=float)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Folder for results and reports.")
@click.option("--json", "json_out", is_flag=True, help="Print the audit report as JSON.")
@click.option("--preflight/--no-preflight", default=True, show_default=True, help="Probe each rung's server first (tools in prompt, tool_choice).")
@click.option("-v", "--verbose", is_flag=True)
@click.pass_context
def demo(ctx: click.Context, quants: str, tags: tuple[str, ...], epochs: int, tolerance: float, out_dir: str | None,
         json_out: bool, preflight: bool, verbose: bool) -> None:
    """The embedded default: `harness audit` with no source (the gemma-3-270m ladder). No set-up."""
    rungs = _csv(quants)
    if len(rungs) < 2:
        raise HarnessError("--quants needs at least two rungs: the reference first")
    ctx.invoke(audit, args=(), quants=quants, reference=rungs[0].upper(), tags=tags, epochs=epochs, tolerance=tolerance,
               out_dir=out_dir, json_out=json_out, preflight=preflight, verbose=verbose)


# -- files ---------------------------------------------------------------------------------------


def _families(scenarios: list[Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for sc in scenarios:
        if sc.family:
            counts[sc.family] = counts.get(sc.family, 0) + 1
    return counts


@main.command()
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--tools-module", "tool_modules", multiple=True,
              help="Your own mock tools: a .py file or module name with @mock_tool functions (repeatable; runs its code).")
@click.option("-c", "--config", type=click.Path(dir_okay=False, exists=True), help="Also check this project file (and its scenarios).")
def validate(paths: tuple[str, ...], tool_modules: tuple[str, ...], config: str | None) -> None:
    """Check scenario files (and a project file); report every problem with file, line and field."""
    # validate reads only the scenario paths of a project file (and checks all of it)
    project, merged = _apply_project(config, {"paths": paths}, only=frozenset({"paths"}))
    paths = merged["paths"]
    if project is not None:
        targets = len(project.targets) + (len(project.ollama.tags) if project.ollama else 0)
        click.echo(f"{project.source} OK ({targets} target(s))")
    scenarios = _load(paths, (), (), tool_modules)
    strata: dict[str, int] = {}
    for sc in scenarios:
        for s in sc.strata:
            strata[str(s)] = strata.get(str(s), 0) + 1
    families = _families(scenarios)
    in_families = sum(families.values())
    grouped = f", {in_families} of them in {len(families)} famil{'y' if len(families) == 1 else 'ies'}" if families else ""
    click.echo(f"{len(scenarios)} scenarios OK{grouped} (" + ", ".join(f"{k} {v}" for k, v in sorted(strata.items())) + ")")


@main.command(name="list")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--tag", "tags", multiple=True, help="Only scenarios with this tag, stratum, id or family (repeatable).")
@click.option("--family", "families", multiple=True, help="Only the instances of this family (repeatable).")
@click.option("--families", "by_family", is_flag=True, help="One row per family (and per scenario outside any), with instance counts.")
@click.option("--tools-module", "tool_modules", multiple=True,
              help="Your own mock tools: a .py file or module name with @mock_tool functions (repeatable; runs its code).")
def list_(paths: tuple[str, ...], tool_modules: tuple[str, ...], tags: tuple[str, ...], families: tuple[str, ...], by_family: bool) -> None:
    """List scenarios with their strata, tags, family and what each is designed to catch."""
    from rich.console import Console
    from rich.table import Table

    scenarios = _load(paths, tags, (), tool_modules)
    if families:
        scenarios = [sc for sc in scenarios if sc.family in set(families)]
        if not scenarios:
            known = sorted(_families(_load(paths, (), (), tool_modules)))
            raise HarnessError(f"no family {list(families)}; families: {', '.join(known) or 'none'}")
    if by_family:
        table = Table("family / id", "instances", "strata", "tags", "catches")
        seen: set[str] = set()
        counts = _families(scenarios)
        for sc in scenarios:
            key = sc.family or sc.id
            if key in seen:
                continue
            seen.add(key)
            table.add_row(*map(Text, (key, str(counts.get(sc.family, 1) if sc.family else 1), ", ".join(map(str, sc.strata)),
                                      ", ".join(sc.tags), sc.catches or "")))
        make_console().print(table)
        make_console().print(f"{len(scenarios)} scenarios: {sum(counts.values())} in {len(counts)} famil{'y' if len(counts) == 1 else 'ies'}, "
                        f"{len(scenarios) - sum(counts.values())} on their own")
        return
    table = Table("id", "family", "strata", "tags", "turns", "catches")
    for sc in scenarios:
        table.add_row(*map(Text, (sc.id, sc.family or "", ", ".join(map(str, sc.strata)), ", ".join(sc.tags), str(len(sc.turns)),
                                  sc.catches or "")))
    make_console().print(table)


@main.command()
@click.option("--tolerance", default=5.0, show_default=True, type=click.FloatRange(0, 100, min_open=True),
              help="The drop in points a comparison must rule out.")
@click.option("--discordance", default="2,5,10", show_default=True,
              help="Assumed share of scenarios that flip either way, in percent (comma-separated).")
@click.option("--delta", default=0.0, show_default=True, type=float, help="Assumed true target - reference, in points.")
@click.option("--power", default=0.8, show_default=True, type=click.FloatRange(0.5, 0.99))
@click.option("--exact", is_flag=True, help="Search exact trinomial power (slower) instead of the asymptotic formula.")
@click.option("--json", "json_out", is_flag=True)
def plan(tolerance: float, discordance: str, delta: float, power: float, exact: bool, json_out: bool) -> None:
    """How many scenarios a tolerance claim needs, before you run anything."""
    from rich.console import Console
    from rich.table import Table

    from harness.stats import min_decidable_scenarios, scenarios_needed

    try:
        shares = [float(x) / 100.0 for x in discordance.split(",") if x.strip()]
    except ValueError:
        raise HarnessError(f"--discordance {discordance!r}: expected percentages like 2,5,10") from None
    if any(not 0 <= x <= 1 for x in shares):
        raise HarnessError("--discordance: each share must be between 0 and 100 percent")
    tol = tolerance / 100.0
    rows = [{"discordance_pct": 100 * x,
             "scenarios": scenarios_needed(tol, x, delta=delta / 100.0, power=power, exact=exact)} for x in shares]
    floor = min_decidable_scenarios(tol)
    claim = "within" if delta > -tolerance else "beyond"
    if json_out:
        click.echo(json.dumps({"tolerance_pts": tolerance, "delta_pts": delta, "power": power, "exact": exact,
                               "claim": claim, "min_decidable_scenarios": floor, "rows": rows}, indent=2))
        return
    table = Table("discordance", f"scenarios to show {claim} {tolerance:g} pts ({power:.0%} power)",
                  title=f"true delta {delta:+g} pts, Tango's test, one-sided 2.5%" + (", exact" if exact else ", asymptotic"))
    for row in rows:
        table.add_row(f"{row['discordance_pct']:g}%", "never (delta on the line)" if row["scenarios"] is None else str(row["scenarios"]))
    console = Console()
    console.print(table)
    console.print(f"No number of flips can show a drop within {tolerance:g} pts with fewer than {floor} independent "
                  "scenarios (per stratum, too, for a stratum to count).\n"
                  "Scenarios are the unit: epochs at temperature 0 are near-copies and add no evidence. To measure "
                  "run-to-run variability, sample at temperature > 0 with --epochs; scenario families count their "
                  "correlated instances as fewer units.")


@main.command()
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--tag", "tags", multiple=True, help="Only scenarios with this tag, stratum, id or family (repeatable).")
@click.option("--json", "json_out", is_flag=True, help="Print one JSON object per scenario.")
@click.option("--tools-module", "tool_modules", multiple=True,
              help="Your own mock tools: a .py file or module name with @mock_tool functions (repeatable; runs its code).")
def selfcheck(paths: tuple[str, ...], tool_modules: tuple[str, ...], tags: tuple[str, ...], json_out: bool) -> None:
    """Replay every scenario's expected trajectory through the real loop and scorers (it must pass),
    and a wrong first move (it must fail): is each scenario passable, and can it fail?"""
    import asyncio

    from harness.selfcheck import selfcheck as run_selfcheck

    scenarios = _load(paths, tags, (), tool_modules)
    found = asyncio.run(run_selfcheck(scenarios))
    bad = [c for c in found if c.status != "ok"]
    if json_out:
        for c in found:
            click.echo(c.model_dump_json())
    else:
        for c in bad:
            click.echo(f"{c.source}: {c.scenario_id}: {c.status}: {c.reason}")
        counts: dict[str, int] = {}
        for c in found:
            counts[c.status] = counts.get(c.status, 0) + 1
        click.echo(f"{len(found)} scenarios self-checked: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if bad:
        sys.exit(int(ExitCode.BAD_INPUT))


@main.command()
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write here (default: scenarios/scenario.schema.json).")
@click.option("--check", is_flag=True, help="Fail if the committed schema is out of date.")
def schema(out: str | None, check: bool) -> None:
    """Write the JSON Schema for scenario files (for editor autocompletion)."""
    from harness.scenario import SCHEMA_FILENAME, scenario_json_schema

    path = Path(out) if out else Path(_default_scenarios()[0]) / SCHEMA_FILENAME
    text = json.dumps(scenario_json_schema(), indent=2) + "\n"
    if check:
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            raise HarnessError(f"{path} is out of date; run `harness schema` to regenerate it")
        click.echo(f"{path} is up to date")
        return
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise HarnessError(f"{'--out ' if out else ''}{path}: cannot write the schema here ({exc.strerror or exc})") from None
    click.echo(f"wrote {path}")


@main.command()
@click.argument("results_paths", nargs=-1, required=True, type=click.Path())
@click.option("--reference", help="Reference target for a comparison (default: the run's own, else the first).")
@click.option("--tolerance", default=None, type=float)
@click.option("--critical", multiple=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Folder for the rebuilt reports (default: next to the first results file).")
@click.option("--baseline", type=click.Path(dir_okay=False))
@click.option("--max-drop", default=2.0, show_default=True, type=float)
@click.option("--merge", "merge_runs", is_flag=True,
              help="Sessions that ran the same scenarios (two nights): keep the last result of each, and say so.")
@click.option("--apart", is_flag=True, help="Sessions that ran the same scenarios: report each run's targets as NAME@RUN_ID.")
@click.option("--allow-meaningless", is_flag=True, help="Do not exit 4 when the tools never reached the prompt.")
@click.option("--json", "json_out", is_flag=True)
def report(results_paths: tuple[str, ...], reference: str | None, tolerance: float | None, critical: tuple[str, ...],
           out_dir: str | None, baseline: str | None, max_drop: float, merge_runs: bool, apart: bool,
           allow_meaningless: bool, json_out: bool) -> None:
    """Rebuild every report from results files alone (shards and resumes of one run merge; nights need --merge or --apart)."""
    from harness.records import ResultsError, RunConfig, read_results

    try:
        results = read_results(list(results_paths))
    except ResultsError as exc:
        raise HarnessError(str(exc)) from None
    if not results.records:
        raise HarnessError(f"no scenario results in {list(results_paths)}")
    overlap = results.overlapping_runs()
    if overlap and not (merge_runs or apart):
        runs = ", ".join(f"{run} ({n} records)" for run, n in sorted(overlap.items()))
        raise HarnessError(f"these results hold the same (target, scenario, epoch) from different runs: {runs}. "
                           "They look like separate nights: pass one, --apart to report each run's targets side by "
                           "side as NAME@RUN_ID, or --merge to keep the last result of each")
    if merge_runs and apart:
        raise HarnessError("--merge and --apart exclude each other")
    if apart and overlap:
        results = results.apart()
        reference = f"{reference}@{results.headers[0].run_id}" if reference and results.headers else reference
    targets = results.targets()
    cfg = results.headers[-1].config if results.headers else RunConfig()
    reference = reference or cfg.reference or (targets[0] if len(targets) > 1 else None)
    if reference and reference not in targets:
        raise HarnessError(f"--reference {reference!r} is not in the results (targets: {targets})")
    first = Path(results_paths[0])
    run_dir = _writable_folder(Path(out_dir) if out_dir else (first if first.is_dir() else first.parent),
                               "--out" if out_dir else "the results' folder (--out names another)")
    console = _console(json_out)
    code = _finish(results, run_dir, console, reference=reference, tolerance=next((t for t in (tolerance, cfg.tolerance) if t is not None), None),
                   critical=list(critical) or cfg.critical_strata, baseline=baseline, max_drop=max_drop,
                   junit=None, html=None, markdown=None, json_out=json_out, allow_meaningless=allow_meaningless,
                   sources=list(results_paths))
    sys.exit(code)


@main.group(name="import")
def import_() -> None:
    """Turn other suites into scenario files."""


@import_.command(name="bfcl")
@click.argument("path", type=click.Path(exists=True))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Folder for the scenario YAML files.")
@click.option("--category", help="Only this BFCL category (simple, multiple, parallel, ...).")
def import_bfcl(path: str, out_dir: str, category: str | None) -> None:
    """Import Berkeley Function Calling Leaderboard question + possible_answer files."""
    from harness import bfcl

    try:
        result = bfcl.import_bfcl(Path(path), Path(out_dir), category=category)
    except bfcl.BFCLError as exc:
        raise HarnessError(str(exc)) from None
    click.echo(f"wrote {len(result.written)} scenario file(s) to {out_dir}: {len(result.scenarios)} scenarios")
    if result.skipped:
        click.echo(f"skipped {len(result.skipped)} BFCL entr{'y' if len(result.skipped) == 1 else 'ies'}:", err=True)
        for problem in result.skipped:
            click.echo(f"  {problem}", err=True)


@main.command(name="bfcl-multi-turn")
@click.argument("path", type=click.Path(exists=True))
@click.option("--base-url", required=True, help="OpenAI-compatible base URL, e.g. http://localhost:8080/v1")
@click.option("--model", required=True, help="Model id to send.")
@click.option("--limit", type=int, help="Only the first N entries of each file.")
@click.option("--out", "out_file", type=click.Path(dir_okay=False), help="Write every run (calls per turn, grades) as JSON lines here.")
@click.option("--json", "json_out", is_flag=True, help="Print the summary as JSON.")
def bfcl_multi_turn(path: str, base_url: str, model: str, limit: int | None, out_file: str | None, json_out: bool) -> None:
    """Run BFCL multi_turn_* files on BFCL's own classes and grade every turn (needs the `bfcl` extra)."""
    import asyncio

    from harness import bfcl_multi_turn as mt
    from harness.bfcl import BFCLError
    from harness.client import make_client
    from harness.records import Target

    files = [Path(path)] if Path(path).is_file() else sorted(Path(path).glob("BFCL_v*_multi_turn_*.json"))
    try:
        entries = [e for f in files for e in mt.load_multi_turn(f)[:limit]]
    except BFCLError as exc:
        raise HarnessError(str(exc)) from None
    if not entries:
        raise HarnessError(f"no BFCL multi-turn entries under {path}")
    target = Target(name=model, base_url=base_url, model=model)
    _check_urls(target)
    if out_file:
        _check_report_paths(out=out_file)

    async def go() -> list[mt.MultiTurnRun]:
        client = make_client(target)
        try:
            return [await mt.run_multi_turn(e, client, target=model) for e in entries]
        finally:
            await client.aclose()

    try:
        runs = asyncio.run(go())
    except ImportError as exc:
        raise HarnessError(f"BFCL's classes are not installed ({exc}); pip install 'agentic-harness[bfcl]'") from None
    if out_file:
        Path(out_file).write_text("".join(r.model_dump_json() + "\n" for r in runs), encoding="utf-8")
    summary = mt.summarize_multi_turn([r.score for r in runs])
    if json_out:
        click.echo(summary.model_dump_json(indent=2))
        return
    for name, fig in [*summary.categories.items(), ("overall", summary.overall)]:
        first = ", ".join(f"turn {t}: {n}" for t, n in fig.first_failure.items()) or "none"
        click.echo(f"{name}: {fig.entries} entries, BFCL accuracy {fig.bfcl_accuracy:.1%}, turns ok {fig.turns_passed:.1%}; "
                   f"first failing turn: {first}")


@main.command(name="tools")
def tools_() -> None:
    """List the built-in mock tools by domain."""
    from rich.table import Table

    from rich.console import Console

    from harness.tools import registry

    table = Table("domain", "tool", "description")
    for domain, tools in sorted(registry.by_domain().items()):
        for tool in tools:
            table.add_row(*map(Text, (domain, tool.name, tool.description.splitlines()[0])))
    make_console().print(table)


if __name__ == "__main__":  # pragma: no cover
    main()
