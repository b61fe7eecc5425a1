"""Scenarios: the YAML a person writes, validated into pydantic models.

`load_scenarios` reads files or folders and fails with the file, line and field of every
problem; `scenario_json_schema` produces the JSON Schema committed next to the YAML files.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from harness.outcomes import Stratum

__all__ = [
    "Matcher",
    "ArgSpec",
    "CallStep",
    "AnyOrderStep",
    "AnswerStep",
    "AskStep",
    "ExpectedStep",
    "FewShotCall",
    "FewShotMessage",
    "Fault",
    "Turn",
    "WorldCheck",
    "ForbiddenCall",
    "Checks",
    "InlineTool",
    "Difficulty",
    "Scenario",
    "ScenarioProblem",
    "ScenarioError",
    "load_scenarios",
    "load_scenario_file",
    "scenario_json_schema",
    "SCHEMA_FILENAME",
]

SCHEMA_FILENAME = "scenario.schema.json"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, use_attribute_docstrings=True)


# -- value expectations --------------------------------------------------------------------------


class Matcher(_Strict):
    """What a value must look like. Several fields may be combined; all must hold.

    A bare scalar in YAML (`city: Paris`) means `equals: Paris`.
    """

    equals: Any = None
    """The value must equal this (strings compared after `normalize`; numbers numerically)."""
    one_of: list[Any] | None = None
    """The value must equal one of these."""
    regex: str | None = None
    """The value, as a string, must match this regular expression (`re.search`)."""
    contains: str | list[Any] | None = None
    """A string must contain these substrings; a list must contain these items."""
    not_contains: list[str] | None = None
    """A string must contain none of these substrings."""
    approx: float | None = None
    """The value must be a number within `tolerance` of this."""
    tolerance: float = 1e-6
    """Absolute tolerance for `approx`."""
    length: int | None = None
    """A list or string must have exactly this length."""
    any: bool = False
    """Any value is fine, as long as it is present and valid against the tool's schema."""
    absent: bool = False
    """The value must not be present at all."""
    optional: bool = False
    """The value may be omitted; if present it must match (BFCL's `""` in an answer list)."""
    normalize: Literal["casefold", "exact", "bfcl"] = "casefold"
    """How strings are compared: trimmed and case-folded (default), exactly, or BFCL's normalisation."""

    @model_validator(mode="before")
    @classmethod
    def _scalar_means_equals(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return {"equals": data}
        return data

    @model_validator(mode="after")
    def _says_something(self) -> "Matcher":
        said = [
            self.equals is not None,
            self.one_of is not None,
            self.regex is not None,
            self.contains is not None,
            self.not_contains is not None,
            self.approx is not None,
            self.length is not None,
            self.any,
            self.absent,
        ]
        if not any(said) and not self._has_ref():
            raise ValueError(
                "an expectation needs one of: equals, one_of, regex, contains, not_contains, approx, "
                "length, any, absent (or a bare value meaning equals)"
            )
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"regex {self.regex!r} does not compile: {exc}") from exc
        return self

    def _has_ref(self) -> bool:
        return False


class ArgSpec(Matcher):
    """An argument expectation: a `Matcher`, optionally bound to something said earlier.

    A context reference makes a mismatch count as `context_lost` rather than `value_error`.
    """

    from_user: Any = None
    """The argument must equal this value, which the user gave in an earlier turn (checked at load time)."""
    turn: int | None = None
    """With `from_user`: the 1-based user turn that gave the value (default: any earlier turn)."""
    from_tool: str | None = None
    """The argument must equal the value captured earlier under this name (see `capture` on a call step)."""

    def _has_ref(self) -> bool:
        return self.from_user is not None or self.from_tool is not None

    @property
    def is_context_ref(self) -> bool:
        return self._has_ref()


# -- expected steps ------------------------------------------------------------------------------


class CallStep(_Strict):
    """The model must call this tool next."""

    call: str
    """Name of the tool that must be called."""
    args: dict[str, ArgSpec] = Field(default_factory=dict)
    """Expectations per argument. Arguments not named here only need to be valid against the schema."""
    allow_extra_args: bool = True
    """When false, any argument not named in `args` is an `unexpected_param`."""
    capture: dict[str, str] = Field(default_factory=dict)
    """Save parts of this call's tool result for later `from_tool` references: name -> dotted path (`.` = whole result)."""
    note: str | None = None
    """Free text shown in reports next to this step."""


class AnyOrderStep(_Strict):
    """These calls must all come next, in any order (parallel or sequential)."""

    any_order: list[CallStep] = Field(min_length=2)
    """The calls; each is matched to one actual call by tool name and arguments."""
    note: str | None = None


class AnswerStep(_Strict):
    """The model must answer in text here, without calling a tool."""

    answer: Matcher | Literal[True]
    """Expectations on the text (or `true` for any non-empty answer)."""
    note: str | None = None


class AskStep(_Strict):
    """The model must ask the user for something instead of calling a tool or inventing a value."""

    ask: Matcher | Literal[True]
    """Expectations on the question (or `true` for any non-empty text reply)."""
    note: str | None = None


def _step_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        for key in ("call", "any_order", "answer", "ask"):
            if key in value:
                return key
        return None
    return getattr(value, "kind", None)


ExpectedStep = Annotated[
    Union[
        Annotated[CallStep, Tag("call")],
        Annotated[AnyOrderStep, Tag("any_order")],
        Annotated[AnswerStep, Tag("answer")],
        Annotated[AskStep, Tag("ask")],
    ],
    Discriminator(
        _step_kind,
        custom_error_type="step_kind",
        custom_error_message="an expected step needs exactly one of the keys: call, any_order, answer, ask",
    ),
]

for _cls, _kind in ((CallStep, "call"), (AnyOrderStep, "any_order"), (AnswerStep, "answer"), (AskStep, "ask")):
    setattr(_cls, "kind", _kind)


# -- conversation pieces -------------------------------------------------------------------------


class FewShotCall(_Strict):
    """A tool call inside a few-shot example."""

    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class FewShotMessage(_Strict):
    """One message of the few-shot example exchange placed before the conversation."""

    role: Literal["user", "assistant", "tool"]
    content: str | None = None
    """Text of the message (for `tool`: the tool's result, as the model will see it)."""
    tool_calls: list[FewShotCall] = Field(default_factory=list)
    """For `assistant`: the calls it makes."""
    name: str | None = None
    """For `tool`: the tool whose result this is."""


class Fault(_Strict):
    """Make a tool fail on a given call, to test recovery."""

    tool: str
    """The tool to break."""
    on_call: int = 1
    """Which call of that tool fails (1-based)."""
    error: str = "503 Service Unavailable: upstream timed out, try again"
    """The error text the model sees."""


class Turn(_Strict):
    """A user message and what the model must do before the next one."""

    user: str
    """What the user says."""
    expect: list[ExpectedStep] = Field(default_factory=list)
    """Expected steps, in order."""
    max_steps: int | None = None
    """Cap on model requests in this turn (default: the scenario's)."""


class WorldCheck(_Strict):
    """A check on the mock world after the scenario."""

    path: str
    """Dotted path into the world state, e.g. `orders.A17.status` or `outbox`."""
    expect: Matcher
    """What the value there must look like (`absent: true` for "must not exist")."""
    where: dict[str, Any] | None = None
    """If the value is a list: first keep only items whose fields equal these."""


class ForbiddenCall(_Strict):
    """A call that must never happen (a minefield)."""

    tool: str
    args: dict[str, Matcher] = Field(default_factory=dict)
    """Only calls whose arguments match all of these are forbidden (default: any call of the tool)."""
    reason: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare_name(cls, data: Any) -> Any:
        return {"tool": data} if isinstance(data, str) else data


class Checks(_Strict):
    """End-of-scenario checks."""

    answer: Matcher | None = None
    """The final text answer must match this."""
    world: list[WorldCheck] = Field(default_factory=list)
    """The end state of the mock world."""
    forbidden: list[ForbiddenCall] = Field(default_factory=list)
    """Calls that must not happen anywhere in the run."""


class InlineTool(_Strict):
    """A tool defined in the scenario itself by its JSON Schema (imported suites, users' own APIs).

    It validates arguments like a registry tool and returns `result` (or `results` in turn).
    """

    name: str = Field(pattern=r"^[A-Za-z0-9_\-]{1,64}$")
    """Tool name as the model sees it (OpenAI rules: letters, digits, `_`, `-`)."""
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    """JSON Schema of the arguments (an object schema)."""
    result: Any = Field(default_factory=lambda: {"status": "ok"})
    """What every call returns."""
    results: list[Any] | None = None
    """What successive calls return (the last one repeats); overrides `result`."""
    original_name: str | None = None
    """The name in the source suite, when it had to be mapped (BFCL's `math.factorial` -> `math_factorial`)."""


class Difficulty(_Strict):
    """Knobs that make a scenario harder without rewriting it (also settable from the command line)."""

    distractor_tools: int = 0
    """Offer this many extra, unrelated tools."""
    long_outputs: int = 0
    """Pad list-returning tool results with this many extra records."""
    strip_descriptions: bool = False
    """Remove argument descriptions from the tool schemas."""
    history_turns: int = 0
    """Prepend this many unrelated, finished user/assistant exchanges."""


class Scenario(_Strict):
    """A multi-step tool-calling task with the expected behaviour at every step."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    """Unique id (letters, digits, `_ . -`)."""
    description: str
    """What the scenario is about."""
    catches: str | None = None
    """One line: the failure this scenario is designed to catch."""
    strata: list[Stratum] = Field(min_length=1)
    """Capabilities it stresses; reports break results down by these."""
    tags: list[str] = Field(default_factory=list)
    """Free tags for selection (`smoke`, a domain name, ...)."""
    system: str = "You are a helpful assistant. Use the tools when they help; ask when information is missing."
    """System prompt."""
    tools: list[str] = Field(default_factory=list)
    """Names of the registry mock tools offered (see `tools/`)."""
    inline_tools: list[InlineTool] = Field(default_factory=list)
    """Tools defined right here by schema; offered together with `tools`."""
    world: dict[str, Any] = Field(default_factory=dict)
    """Initial state of the mock world (deep-copied for every run)."""
    few_shot: list[FewShotMessage] = Field(default_factory=list)
    """Example exchanges placed before the conversation."""
    faults: list[Fault] = Field(default_factory=list)
    """Injected tool failures."""
    turns: list[Turn] = Field(min_length=1)
    """The conversation."""
    checks: Checks = Field(default_factory=Checks)
    """End-of-scenario checks."""
    difficulty: Difficulty = Field(default_factory=Difficulty)
    """Difficulty knobs."""
    max_steps: int = 8
    """Cap on model requests per turn; hitting it is the failure `loop`."""
    source: str | None = Field(default=None, exclude=True)
    """Where this scenario was loaded from (set by the loader)."""

    @field_validator("tags")
    @classmethod
    def _lower_tags(cls, tags: list[str]) -> list[str]:
        return [t.strip().lower() for t in tags]

    @property
    def offered_tool_names(self) -> list[str]:
        return list(self.tools) + [t.name for t in self.inline_tools]

    @model_validator(mode="after")
    def _references_hold(self) -> "Scenario":
        if not self.tools and not self.inline_tools:
            raise ValueError("a scenario must offer at least one tool (`tools` or `inline_tools`)")
        offered = set(self.offered_tool_names)
        if len(offered) != len(self.offered_tool_names):
            raise ValueError(f"a tool is offered twice: {self.offered_tool_names}")
        captures: set[str] = set()
        for t_index, turn in enumerate(self.turns, start=1):
            for step in turn.expect:
                calls = step.any_order if isinstance(step, AnyOrderStep) else [step] if isinstance(step, CallStep) else []
                for call in calls:
                    if call.call not in offered:
                        raise ValueError(
                            f"turn {t_index} expects a call to {call.call!r}, which the scenario does not offer "
                            f"(tools: {sorted(offered)})"
                        )
                    for arg, spec in call.args.items():
                        if spec.from_tool is not None and spec.from_tool not in captures:
                            raise ValueError(
                                f"turn {t_index}, argument {arg!r} refers to capture {spec.from_tool!r}, "
                                f"which no earlier step captures (captured so far: {sorted(captures) or 'none'})"
                            )
                        if spec.from_user is not None:
                            self._check_user_said(spec, t_index, arg)
                    captures.update(call.capture)
        for fault in self.faults:
            if fault.tool not in offered:
                raise ValueError(f"fault on {fault.tool!r}, which the scenario does not offer")
        return self

    def _check_user_said(self, spec: ArgSpec, t_index: int, arg: str) -> None:
        needle = str(spec.from_user).casefold()
        turns = [spec.turn] if spec.turn else list(range(1, t_index + 1))
        for n in turns:
            if n < 1 or n > t_index:
                raise ValueError(f"argument {arg!r}: turn {n} is not a user turn at or before turn {t_index}")
            if needle in self.turns[n - 1].user.casefold():
                return
        where = f"turn {spec.turn}" if spec.turn else f"turns 1..{t_index}"
        raise ValueError(f"argument {arg!r}: from_user value {spec.from_user!r} does not appear in the user's {where}")

    @property
    def content_hash(self) -> str:
        """A short hash of everything that affects a run (not the file's formatting)."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def expected_steps(self) -> list[tuple[int, ExpectedStep]]:
        """All expected steps with their 1-based turn, in order."""
        return [(t, step) for t, turn in enumerate(self.turns, start=1) for step in turn.expect]


# -- loading -------------------------------------------------------------------------------------


class ScenarioProblem(BaseModel):
    """One thing wrong with a scenario file."""

    file: str
    """The file."""
    line: int | None = None
    """1-based line, where it could be found."""
    field: str | None = None
    """Dotted path of the field, e.g. `turns.0.expect.1.call`."""
    message: str
    """What is wrong and what was expected."""

    def __str__(self) -> str:
        where = self.file + (f":{self.line}" if self.line else "")
        field = f" at {self.field}" if self.field else ""
        return f"{where}{field}: {self.message}"


class ScenarioError(Exception):
    """Scenario files that cannot be used; carries every problem found."""

    def __init__(self, problems: list[ScenarioProblem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def _node_line(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """Walk a composed YAML node along a pydantic error location; return the deepest line found."""
    line = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if getattr(k, "value", None) == str(key)), None)
            if match is None:
                continue  # a union tag or a synthetic key: stay at this node
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            continue
        line = node.start_mark.line + 1
    return line


def _clean_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    tags = {"call", "any_order", "answer", "ask", "function-after[_says_something(), Matcher]"}
    out = []
    for i, key in enumerate(loc):
        # pydantic inserts the union tag before the tagged model's own fields: drop that copy
        if isinstance(key, str) and key in tags and i + 1 < len(loc) and isinstance(loc[i - 1], int):
            continue
        if isinstance(key, str) and (key.startswith("function-") or key in {"literal[True]", "bool"}):
            continue
        out.append(key)
    return tuple(out)


def load_scenario_file(path: str | Path) -> list[Scenario]:
    """Load one YAML file holding a scenario (a mapping) or several (a list of mappings)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError([ScenarioProblem(file=str(path), message=f"cannot read: {exc.strerror}")]) from exc
    try:
        # libyaml when present: a large imported suite parses several times faster
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ScenarioError(
            [ScenarioProblem(file=str(path), line=mark.line + 1 if mark else None, message=f"not valid YAML: {problem}")]
        ) from exc
    if data is None:
        raise ScenarioError([ScenarioProblem(file=str(path), message="the file is empty; expected a scenario mapping")])
    docs = data if isinstance(data, list) else [data]
    nodes: list[yaml.Node | None] = [None] * len(docs)
    scenarios: list[Scenario] = []
    problems: list[ScenarioProblem] = []
    for i, doc in enumerate(docs):
        node = nodes[i]
        if not isinstance(doc, dict):
            node = _compose_node(text, isinstance(data, list), i)
            problems.append(
                ScenarioProblem(
                    file=str(path), line=node.start_mark.line + 1 if node else None,
                    message="expected a scenario mapping (id, turns, ...)",
                )
            )
            continue
        try:
            scenario = Scenario.model_validate(doc)
        except ValidationError as exc:
            # line numbers are only needed for errors: compose the node tree only then
            node = _compose_node(text, isinstance(data, list), i)
            for err in exc.errors():
                loc = _clean_loc(tuple(err["loc"]))
                problems.append(
                    ScenarioProblem(
                        file=str(path),
                        line=_node_line(node, loc),
                        field=".".join(str(k) for k in loc) or None,
                        message=_describe(err),
                    )
                )
            continue
        scenario.source = str(path)
        scenarios.append(scenario)
    if problems:
        raise ScenarioError(problems)
    return scenarios


def _compose_node(text: str, is_list: bool, index: int) -> yaml.Node | None:
    root = yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    if is_list and isinstance(root, yaml.SequenceNode):
        return root.value[index] if index < len(root.value) else None
    return root


def _describe(err: dict[str, Any]) -> str:
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if err["type"] == "extra_forbidden":
        msg = "unknown field (check the spelling; see scenario.schema.json for the fields)"
    elif err["type"] == "missing":
        msg = "required field is missing"
    if "input" in err and err["type"] not in {"missing", "extra_forbidden"}:
        shown = repr(err["input"])
        if len(shown) <= 60:
            msg += f" (got {shown})"
    return msg


def _scenario_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.suffix in {".yaml", ".yml"} and p.is_file())
    return [path]


def load_scenarios(
    paths: list[str | Path] | str | Path,
    *,
    tags: list[str] | None = None,
    ids: list[str] | None = None,
    known_tools: set[str] | None = None,
) -> list[Scenario]:
    """Load every scenario under `paths`, keep those with any of `tags` (and in `ids`), check tool names.

    Raises `ScenarioError` listing every problem in every file (not just the first).
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if known_tools is None:
        from tools import registry

        known_tools = set(registry.names())
    problems: list[ScenarioProblem] = []
    loaded: list[Scenario] = []
    for root in map(Path, paths):
        if not root.exists():
            problems.append(ScenarioProblem(file=str(root), message="no such file or folder"))
            continue
        files = _scenario_files(root)
        if not files:
            problems.append(ScenarioProblem(file=str(root), message="no .yaml or .yml scenario files here"))
        for file in files:
            try:
                loaded.extend(load_scenario_file(file))
            except ScenarioError as exc:
                problems.extend(exc.problems)
    seen: dict[str, str] = {}
    for sc in loaded:
        if sc.id in seen:
            problems.append(
                ScenarioProblem(file=sc.source or "?", field="id", message=f"duplicate id {sc.id!r} (also in {seen[sc.id]})")
            )
        seen.setdefault(sc.id, sc.source or "?")
        inline = {t.name for t in sc.inline_tools}
        unknown = [t for t in sc.tools if t not in known_tools]
        unknown += [f.tool for f in sc.checks.forbidden if f.tool not in known_tools | inline]
        if unknown:
            problems.append(
                ScenarioProblem(
                    file=sc.source or "?",
                    field="tools",
                    message=f"scenario {sc.id!r} names unknown tools {sorted(set(unknown))}; "
                    f"known tools: {', '.join(sorted(known_tools))}",
                )
            )
    if problems:
        raise ScenarioError(problems)
    if tags:
        wanted = {t.lower() for t in tags}
        loaded = [s for s in loaded if wanted & (set(s.tags) | {str(x) for x in s.strata} | {s.id})]
    if ids:
        loaded = [s for s in loaded if s.id in set(ids)]
    return loaded


def scenario_json_schema() -> dict[str, Any]:
    """JSON Schema for a scenario file (a scenario, or a list of them), for editors."""
    one = Scenario.model_json_schema()
    defs = one.pop("$defs", {})
    defs["Scenario"] = one
    # the shorthands the loader accepts: a bare value means `equals`, a bare name a forbidden tool
    scalar = {"type": ["string", "number", "integer", "boolean", "array"]}
    for name in ("Matcher", "ArgSpec"):
        if name in defs:
            defs[name] = {"anyOf": [defs[name], scalar], "description": defs[name].get("description", "")}
    if "ForbiddenCall" in defs:
        defs["ForbiddenCall"] = {"anyOf": [defs["ForbiddenCall"], {"type": "string"}]}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "agentic-harness scenario file",
        "anyOf": [{"$ref": "#/$defs/Scenario"}, {"type": "array", "items": {"$ref": "#/$defs/Scenario"}}],
        "$defs": defs,
    }
