"""A project file: the one YAML a team commits for a nightly job or a quant audit.

    harness run -c nightly.yaml          harness compare -c audit.yaml --epochs 5

Every key is the command-line flag of the same name (`--max-drop` is `max_drop`); a flag given on
the command line wins over the file. Paths in the file are relative to the file. A broken file is
reported as scenario files are: file, line and key of every problem, all at once.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from harness.outcomes import Stratum
# the scenario loader's YAML-with-line-numbers machinery, so both files report problems alike
from harness.scenario import ScenarioError, ScenarioProblem, _node_line, _parse

__all__ = ["OllamaTags", "Project", "ProjectError", "ProjectTarget", "load_project"]

_PATH_KEYS = ("scenarios", "out", "baseline", "pinned_baseline", "junit", "html", "markdown")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProjectTarget(_Model):
    """One server and model to run against."""

    name: str
    """The label in reports and the key the gate matches nights by: keep it stable."""
    base_url: str
    """OpenAI-compatible base URL, ending in /v1."""
    model: str
    """The model id to send."""
    provider: Literal["openai", "litellm"] = "openai"
    api_key_env: str | None = None
    """Name of the environment variable holding the API key (never the key itself in a committed file)."""


class OllamaTags(_Model):
    """Ollama tags of one model, each a target (as `--ollama`)."""

    tags: list[str]
    host: str = "http://localhost:11434"
    pull: bool = False
    """Pull missing tags first."""


class Project(_Model):
    """What `harness run -c` / `harness compare -c` read; each key is the flag of the same name."""

    scenarios: list[str] = Field(default_factory=list)
    """Scenario files or folders (the command's PATHS), relative to the project file."""
    tags: list[str] = Field(default_factory=list)
    ids: list[str] = Field(default_factory=list)
    targets: list[ProjectTarget] = Field(default_factory=list)
    """`run` takes one; `compare` two or more (with `ollama`)."""
    ollama: OllamaTags | None = None
    reference: str | None = None
    """Name of the reference target (compare)."""
    tolerance: float | None = Field(default=None, ge=0, le=100)
    """Allowed drop in points versus the reference (compare)."""
    critical: list[Stratum] = Field(default_factory=list)
    """Strata that must stay within tolerance (compare)."""
    epochs: int | None = Field(default=None, ge=1, le=100)
    temperature: float | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    concurrency: int | None = Field(default=None, ge=1, le=64)
    timeout: float | None = Field(default=None, gt=0)
    knobs: dict[str, Any] = Field(default_factory=dict)
    """Difficulty knobs, e.g. {distractor_tools: 4}."""
    preflight: bool | None = None
    """False skips the server probes (as --no-preflight)."""
    out: str | None = None
    baseline: str | None = None
    """Last night's summary.json: catches a sudden drop."""
    pinned_baseline: str | None = None
    """A committed summary.json updated only by review: catches a slow slide."""
    max_drop: float | None = Field(default=None, ge=0, le=100)
    """Allowed drop in points against the baselines."""
    gate_alpha: float | None = Field(default=None, ge=0, le=1)
    """False-alarm rate of the gate's scenario-level sign test (1: gate on max_drop alone)."""
    fail_under: dict[str, float] = Field(default_factory=dict)
    """Absolute floors in percent: a number (overall) or {overall: 80, tool_selection: 90}."""
    allow_meaningless: bool | None = None
    """True: exit 0/1 even when the tools never reached the prompt (as --allow-meaningless; otherwise exit 4)."""
    junit: str | None = None
    html: str | None = None
    markdown: str | None = None
    source: str | None = Field(default=None, exclude=True)
    """The file it was read from."""

    @field_validator("fail_under", mode="before")
    @classmethod
    def _bare_number_is_overall(cls, value: Any) -> Any:
        return {"overall": value} if isinstance(value, (int, float)) and not isinstance(value, bool) else value

    @field_validator("fail_under")
    @classmethod
    def _known_strata(cls, value: dict[str, float]) -> dict[str, float]:
        known = {"overall", *(s.value for s in Stratum)}
        for key, floor in value.items():
            if key not in known:
                close = difflib.get_close_matches(key, sorted(known), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ValueError(f"{key!r} is neither 'overall' nor a stratum ({', '.join(sorted(known - {'overall'}))}){hint}")
            if not 0 <= floor <= 100:
                raise ValueError(f"{key}: {floor} is not a percentage between 0 and 100")
        return value

    def options(self) -> dict[str, Any]:
        """The keys set in the file, as the command's parameter names and value shapes."""
        set_ = self.model_dump(exclude_unset=True, exclude={"source"})
        out: dict[str, Any] = {}
        for key, value in set_.items():
            if key == "scenarios":
                out["paths"] = tuple(value)
            elif key in ("tags", "ids", "critical"):
                out[key] = tuple(str(v) for v in value)
            elif key == "knobs":
                out["knobs"] = tuple(f"{k}={v}" for k, v in value.items())
            elif key == "preflight":
                out["no_preflight"] = not value
            elif key == "out":
                out["out_dir"] = value
            elif key == "fail_under":
                out["fail_under"] = tuple(f"{v:g}" if k == "overall" else f"{k}={v:g}" for k, v in value.items())
            elif key in ("targets", "ollama"):
                continue  # structured: the command reads them from the model
            else:
                out[key] = value
        return out

    def where(self, key: str) -> str:
        """`file:line` of a top-level key, for messages about it."""
        line = _key_line(self.source, key) if self.source else None
        return f"{self.source}:{line}" if line else (self.source or "the project file")


class ProjectError(Exception):
    """A project file that cannot be used; carries every problem found (file, line, key)."""

    def __init__(self, problems: list[ScenarioProblem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def _key_line(path: str, key: str) -> int | None:
    try:
        _, node = _parse(Path(path).read_text(encoding="utf-8"), path)
    except (OSError, ScenarioError):
        return None
    return _node_line(node, (key,)) if isinstance(node, yaml.MappingNode) else None


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _model_at(model: type[BaseModel] | None, loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model whose keys are valid at `loc` (`("targets", 0)` -> `ProjectTarget`)."""
    for key in loc:
        if model is None or isinstance(key, int):
            continue
        field = model.model_fields.get(str(key))
        model = _inner_model(field.annotation) if field is not None else None
    return model


def _describe(err: dict[str, Any], loc: tuple[Any, ...]) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        parent = _model_at(Project, loc[:-1])
        keys = [k for k in (parent.model_fields if parent else {}) if k != "source"]
        close = difflib.get_close_matches(str(loc[-1]), keys, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return f"unknown key {loc[-1]!r}; {hint}known keys: {', '.join(keys)}"
    if kind == "missing":
        return "required key is missing"
    msg = err["msg"].removeprefix("Value error, ")
    shown = repr(err.get("input"))
    return msg + (f" (got {shown})" if "input" in err and len(shown) <= 60 else "")


def _resolve(project: Project, base: Path) -> None:
    def fix(p: str) -> str:
        path = Path(p).expanduser()
        return str(path if path.is_absolute() else base / path)

    project.scenarios = [fix(p) for p in project.scenarios]
    for key in _PATH_KEYS[1:]:
        value = getattr(project, key)
        if value is not None:
            setattr(project, key, fix(value))


def load_project(path: str | Path) -> Project:
    """Read and check a project file; raises `ProjectError` naming file, line and key of every problem."""
    path = Path(path)
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProjectError([ScenarioProblem(file=where, message=f"cannot read: {exc.strerror}")]) from exc
    try:
        # the scenario loader's parser: YAML errors with lines, and no alias bombs
        data, node = _parse(text, where)
    except ScenarioError as exc:
        raise ProjectError(exc.problems) from None
    if not isinstance(data, dict):
        raise ProjectError([ScenarioProblem(file=where, line=1, message="expected a mapping of keys (targets, scenarios, ...)")])
    try:
        project = Project.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(k for k in err["loc"] if not (isinstance(k, str) and k.startswith("function-")))
            problems.append(ScenarioProblem(file=where, line=_node_line(node, loc),
                                            field=".".join(str(k) for k in loc) or None,
                                            message=_describe(err, loc)))
        raise ProjectError(problems) from None
    project.source = where
    problems = _cross_checks(project, node, where)
    if problems:
        raise ProjectError(problems)
    _resolve(project, path.parent)
    return project


def _cross_checks(project: Project, node: yaml.Node | None, where: str) -> list[ScenarioProblem]:
    problems = []
    names = [t.name for t in project.targets]
    for i, name in enumerate(names):
        if name in names[:i]:
            problems.append(ScenarioProblem(file=where, line=_node_line(node, ("targets", i, "name")),
                                            field=f"targets.{i}.name", message=f"target name {name!r} is used twice"))
    if project.reference is not None and names and not project.ollama and project.reference not in names:
        problems.append(ScenarioProblem(file=where, line=_node_line(node, ("reference",)), field="reference",
                                        message=f"{project.reference!r} is not one of the targets ({', '.join(names)})"))
    return problems
