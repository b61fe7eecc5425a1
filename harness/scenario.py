"""Scenarios: the YAML a person writes, validated into pydantic models.

`load_scenarios` reads files or folders and fails with the file, line and field of every
problem; `scenario_json_schema` produces the JSON Schema committed next to the YAML files.
"""

from __future__ import annotations

import copy
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
    ValidationInfo,
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
    "Family",
    "InlineCase",
    "expand_family",
    "load_scenarios",
    "load_scenario_file",
    "scenario_json_schema",
    "SCHEMA_FILENAME",
]

SCHEMA_FILENAME = "scenario.schema.json"


class _Strict(BaseModel):
    # the fields' docstrings become their descriptions in the published JSON Schema, read only when the
    # schema is made (`scenario_json_schema`): pydantic's use_attribute_docstrings would parse every
    # class's source at import, 60 ms of every start
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


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
        contains = data.get("contains")
        # a number to find in text (`contains: 18`, or a family's "${temp}") is searched for as written
        if isinstance(contains, (int, float)) and not isinstance(contains, bool):
            data = {**data, "contains": str(contains)}
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
        others = [name for name, on in zip(
            ("equals", "one_of", "regex", "contains", "not_contains", "approx", "length", "any"), said[:-1]) if on]
        if self.absent and (others or self.optional or self._has_ref()):
            raise ValueError(
                f"absent: true contradicts {', '.join(others) or ('optional' if self.optional else 'a context reference')}: "
                "a value that must not be there cannot also have to look like something"
            )
        if self.one_of is not None and not self.one_of:
            raise ValueError("one_of is empty, so no value can match; list the accepted values")
        if self.equals is not None and self.one_of is not None and self.equals not in self.one_of:
            raise ValueError(f"equals {self.equals!r} is not among one_of {self.one_of!r}: no value can match both")
        if self.length is not None and self.length < 0:
            raise ValueError(f"length must be 0 or more, got {self.length}")
        if self.tolerance < 0:
            raise ValueError(f"tolerance must be 0 or more, got {self.tolerance}")
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

    @model_validator(mode="after")
    def _one_reference(self) -> "ArgSpec":
        if self.from_user is not None and self.from_tool is not None:
            raise ValueError("from_user and from_tool contradict each other: the value comes from the user or from a tool")
        if self.turn is not None and self.from_user is None:
            raise ValueError("turn only means something with from_user (the turn in which the user said the value)")
        if self.turn is not None and self.turn < 1:
            raise ValueError(f"turn is 1-based (the first user turn is 1), got {self.turn}")
        if self.from_user is not None and self.equals is not None and self.equals != self.from_user:
            raise ValueError(f"equals {self.equals!r} contradicts from_user {self.from_user!r}")
        return self

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
    on_call: int = Field(1, ge=1)
    """Which call of that tool fails (1-based: 1 is the first call)."""
    error: str = "503 Service Unavailable: upstream timed out, try again"
    """The error text the model sees."""


class Turn(_Strict):
    """A user message and what the model must do before the next one."""

    user: str
    """What the user says."""
    expect: list[ExpectedStep] = Field(default_factory=list)
    """Expected steps, in order."""
    max_steps: int | None = Field(None, ge=1)
    """Cap on model requests in this turn (default: the scenario's); at least 1."""


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
    cases: list["InlineCase"] = Field(default_factory=list)
    """Results that depend on the arguments: the first case whose `when` matches is returned (else `result`/`results`)."""
    original_name: str | None = None
    """The name in the source suite, when it had to be mapped (BFCL's `math.factorial` -> `math_factorial`)."""

    @field_validator("parameters")
    @classmethod
    def _a_valid_object_schema(cls, parameters: dict[str, Any]) -> dict[str, Any]:
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import SchemaError

        try:
            Draft202012Validator.check_schema(parameters)
        except SchemaError as exc:
            where = "/".join(str(p) for p in exc.absolute_path) or "(the schema itself)"
            raise ValueError(f"not a valid JSON Schema at {where}: {exc.message}") from None
        if parameters.get("type", "object") != "object":
            raise ValueError(f"the arguments schema must have type: object (got type {parameters.get('type')!r})")
        return parameters


class InlineCase(_Strict):
    """One argument-dependent result of an inline tool."""

    when: dict[str, Matcher]
    """Argument name -> what it must look like for this case (all must hold)."""
    result: Any = None
    """What the call returns in this case."""
    error: str | None = None
    """Or: the error text the model sees (the call fails, as a tool error would)."""


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
    """Names of the registry mock tools offered (see `tools/`, and `tool_modules`)."""
    tool_modules: list[str] = Field(default_factory=list)
    """Your own mock tools: `.py` files (relative to this scenario file) or module names, imported when the file loads."""
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
    max_steps: int = Field(8, ge=1)
    """Cap on model requests per turn (at least 1); hitting it is the failure `loop`."""
    family: str | None = None
    """The family this scenario is an instance of (set when a family expands; see `Family`)."""
    source: str | None = Field(default=None, exclude=True)
    """Where this scenario was loaded from (set by the loader)."""
    source_line: int | None = Field(default=None, exclude=True)
    """The line its `id` is on (for a family instance: the line of its row), set by the loader."""

    @field_validator("tags")
    @classmethod
    def _lower_tags(cls, tags: list[str]) -> list[str]:
        return [t.strip().lower() for t in tags]

    @property
    def offered_tool_names(self) -> list[str]:
        return list(self.tools) + [t.name for t in self.inline_tools]

    @model_validator(mode="after")
    def _references_hold(self, info: ValidationInfo) -> "Scenario":
        # the loader checks these itself, to point at the line of each problem (and report them all)
        if not (info.context or {}).get("defer_references"):
            problems = self.reference_problems()
            if problems:
                raise ValueError("; ".join(message for _, message in problems))
        return self

    def reference_problems(self) -> list[tuple[tuple[Any, ...], str]]:
        """Everything that ties parts of the scenario together and does not hold, as (field path, message)."""
        out: list[tuple[tuple[Any, ...], str]] = []
        if not self.tools and not self.inline_tools:
            out.append((("tools",), "a scenario must offer at least one tool (`tools` or `inline_tools`)"))
        offered = set(self.offered_tool_names)
        names = self.offered_tool_names
        for i, name in enumerate(names):
            if name in names[:i]:
                where = ("tools", i) if i < len(self.tools) else ("inline_tools", i - len(self.tools), "name")
                out.append((where, f"tool {name!r} is offered twice"))
        captures: set[str] = set()
        expected_calls: set[str] = set()
        for t_index, turn in enumerate(self.turns, start=1):
            for s_index, step in enumerate(turn.expect):
                here = ("turns", t_index - 1, "expect", s_index)
                if isinstance(step, AnyOrderStep):
                    calls = [(here + ("any_order", k), c) for k, c in enumerate(step.any_order)]
                else:
                    calls = [(here, step)] if isinstance(step, CallStep) else []
                for loc, call in calls:
                    expected_calls.add(call.call)
                    if call.call not in offered:
                        out.append((loc + ("call",),
                                    f"turn {t_index} expects a call to {call.call!r}, which the scenario does not offer "
                                    f"(tools: {sorted(offered)})"))
                    for arg, spec in call.args.items():
                        if spec.from_tool is not None and spec.from_tool not in captures:
                            out.append((loc + ("args", arg, "from_tool"),
                                        f"turn {t_index}, argument {arg!r} refers to capture {spec.from_tool!r}, "
                                        f"which no earlier step captures (captured so far: {sorted(captures) or 'none'})"))
                        if spec.from_user is not None:
                            problem = self._check_user_said(spec, t_index, arg)
                            if problem:
                                out.append((loc + ("args", arg, "from_user"), problem))
                    captures.update(call.capture)
        for i, fault in enumerate(self.faults):
            if fault.tool not in offered:
                out.append((("faults", i, "tool"), f"fault on {fault.tool!r}, which the scenario does not offer "
                                                   f"(tools: {sorted(offered)})"))
        for i, message in enumerate(self.few_shot):
            for k, call in enumerate(message.tool_calls):
                if call.name not in offered:
                    out.append((("few_shot", i, "tool_calls", k, "name"),
                                f"a few-shot call to {call.name!r}, which the scenario does not offer: the example would "
                                f"teach a tool the model cannot call (tools: {sorted(offered)})"))
        for i, forbidden in enumerate(self.checks.forbidden):
            if forbidden.tool in expected_calls and not forbidden.args:
                out.append((("checks", "forbidden", i), f"{forbidden.tool!r} is both expected and forbidden (with any "
                                                        "arguments): no run can pass; narrow it with `args`"))
        return out

    def _check_user_said(self, spec: ArgSpec, t_index: int, arg: str) -> str | None:
        needle = str(spec.from_user).casefold()
        turns = [spec.turn] if spec.turn else list(range(1, t_index + 1))
        for n in turns:
            if n < 1 or n > t_index:
                return f"argument {arg!r}: turn {n} is not a user turn at or before turn {t_index}"
            if needle in self.turns[n - 1].user.casefold():
                return None
        where = f"turn {spec.turn}" if spec.turn else f"turns 1..{t_index}"
        return f"argument {arg!r}: from_user value {spec.from_user!r} does not appear in the user's {where}"

    @property
    def content_hash(self) -> str:
        """A short hash of everything that affects a run (not the file's formatting)."""
        # the family is a label, not content: an instance hashes the same whether or not it is grouped
        blob = json.dumps(self.model_dump(mode="json", exclude={"family"}), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def expected_steps(self) -> list[tuple[int, ExpectedStep]]:
        """All expected steps with their 1-based turn, in order."""
        return [(t, step) for t, turn in enumerate(self.turns, start=1) for step in turn.expect]


# -- families ------------------------------------------------------------------------------------


_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class Family(_Strict):
    """One scenario template and a table of values: each row becomes its own scenario.

    Strings in the template may hold `${name}` placeholders. A string that is only a placeholder
    takes the row's value with its type (a number, a list, a mapping); inside longer text the value
    is written in. Keys of mappings may hold placeholders too (`orders: {"${order}": ...}`).
    `${n}` is the instance's 1-based number.
    """

    family: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    """The family id: recorded on every instance, selectable like a tag (`--tag FAMILY`)."""
    description: str | None = None
    """What varies across the rows, and why."""
    rows: list[dict[str, Any]] | None = None
    """The table: one mapping of placeholder values per instance."""
    product: dict[str, list[Any]] | None = None
    """A small generator: every combination of these values (crossed with `rows` when both are given)."""
    template: dict[str, Any]
    """A scenario (see `Scenario`) with `${name}` placeholders. Without a placeholder in `id`, instances are `ID-1`, `ID-2`, ..."""

    @model_validator(mode="after")
    def _has_values(self) -> "Family":
        if not self.rows and not self.product:
            raise ValueError("a family needs `rows` (a table of values) or `product` (values to combine)")
        for name, values in (self.product or {}).items():
            if not values:
                raise ValueError(f"product.{name} is empty: it would make no instances")
        return self


_ATOMS = (str, int, float, bool, type(None))


def _fill(value: Any, row: dict[str, Any], used: set[str], missing: set[str]) -> Any:
    """`value` with the row's values in place of its `${name}`s; names the row lacks go into `missing`.

    The template's own strings are scanned, the values put in are not (a row's value is data, even when
    it contains `${`)."""
    if isinstance(value, str):
        if "${" not in value:
            return value
        whole = _PLACEHOLDER.fullmatch(value)
        if whole and whole.group(1) in row:
            used.add(whole.group(1))
            got = row[whole.group(1)]
            return got if isinstance(got, _ATOMS) else copy.deepcopy(got)

        def one(match: re.Match[str]) -> str:
            if match.group(1) not in row:
                missing.add(match.group(1))
                return match.group(0)
            used.add(match.group(1))
            got = row[match.group(1)]
            return got if isinstance(got, str) else json.dumps(got) if isinstance(got, (dict, list)) else str(got)

        return _PLACEHOLDER.sub(one, value)
    if isinstance(value, dict):
        return {_fill(k, row, used, missing) if isinstance(k, str) else k: _fill(v, row, used, missing)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, row, used, missing) for v in value]
    return value


def _scalar_line(node: yaml.Node | None, needle: str) -> int | None:
    """The line of the first scalar in `node` containing `needle`."""
    stack = [node] if node is not None else []
    seen: set[int] = set()
    while stack:
        current = stack.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, yaml.ScalarNode):
            if needle in str(current.value):
                return current.start_mark.line + 1
        elif isinstance(current, yaml.SequenceNode):
            stack.extend(current.value)
        elif isinstance(current, yaml.MappingNode):
            for k, v in current.value:
                stack.extend([k, v])
    return None


def _child(node: yaml.Node | None, key: Any) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        return next((v for k, v in node.value if getattr(k, "value", None) == str(key)), None)
    if isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
        return node.value[key]
    return None


def expand_family(family: Family, *, file: str = "?", node: yaml.Node | None = None) -> tuple[list[Scenario], list[ScenarioProblem]]:
    """Every instance of a family, validated; problems name the template's line and the row's."""
    import itertools

    template_node = _child(node, "template")
    rows_node = _child(node, "rows")
    rows = family.rows or [{}]
    keys = list(family.product or {})
    combos = [dict(zip(keys, values)) for values in itertools.product(*(family.product or {}).values())] or [{}]
    scenarios: list[Scenario] = []
    raw: list[tuple[int | None, str | None, str, int | None, str]] = []
    numbered = not _PLACEHOLDER.search(str(family.template.get("id", "")))
    n = 0
    for r_index, base in enumerate(rows):
        row_node = _child(rows_node, r_index) if family.rows else _child(node, "product")
        row_line = row_node.start_mark.line + 1 if row_node is not None else None
        for combo in combos:
            n += 1
            values = {"n": n, **base, **combo}
            used: set[str] = set()
            missing: set[str] = set()
            doc = _fill(family.template, values, used, missing)
            label = f"family {family.family!r}, instance {n}" + (f" (row {r_index + 1})" if family.rows else "")

            def problem(line: int | None, field: str | None, message: str) -> None:
                raw.append((line, field, message, row_line, label))

            if missing:
                for name in sorted(missing):
                    problem(_scalar_line(template_node, "${" + name + "}"), None,
                            f"placeholder ${{{name}}} has no value in this row (the row has: {', '.join(sorted(values)) or 'nothing'})")
                continue
            if numbered and isinstance(doc.get("id"), str):
                doc["id"] = f"{doc['id']}-{n}"
            doc["family"] = family.family
            scenario, found = _validate_doc(doc, file=file, node=template_node)
            for p in found:
                problem(p.line, p.field, p.message)
            if scenario is not None:
                scenario.source_line = row_line
                scenarios.append(scenario)
    # one mistake in the template shows in every instance: say it once, with the rows it hit
    grouped: dict[tuple[int | None, str | None, str], list[tuple[int | None, str]]] = {}
    for line, field, message, row_line, label in raw:
        grouped.setdefault((line, field, message), []).append((row_line, label))
    problems: list[ScenarioProblem] = []
    for (line, field, message), hits in grouped.items():
        if len(hits) == 1:
            problems.append(ScenarioProblem(file=file, line=line, field=field, row_line=hits[0][0],
                                            message=f"{hits[0][1]}: {message}"))
            continue
        rows = sorted({r for r, _ in hits if r is not None})
        shown = ", ".join(map(str, rows[:8])) + (", ..." if len(rows) > 8 else "")
        problems.append(ScenarioProblem(file=file, line=line, field=field, message=(
            f"family {family.family!r}, {len(hits)} of {n} instances: {message} "
            f"(row{'s' if len(hits) > 1 else ''} at line{'s' if len(rows) > 1 else ''} {shown})")))
    return scenarios, problems


# -- loading -------------------------------------------------------------------------------------


class ScenarioProblem(BaseModel):
    """One thing wrong with a scenario file."""

    file: str
    """The file."""
    line: int | None = None
    """1-based line, where it could be found (for a family instance: in the template)."""
    field: str | None = None
    """Dotted path of the field, e.g. `turns.0.expect.1.call`."""
    message: str
    """What is wrong and what was expected."""
    row_line: int | None = None
    """For a family instance: the line of the row whose values made this instance."""

    def __str__(self) -> str:
        where = self.file + (f":{self.line}" if self.line else "")
        field = f" at {self.field}" if self.field else ""
        row = f" (row at line {self.row_line})" if self.row_line else ""
        return f"{where}{field}: {self.message}{row}"


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


_MAX_VALUES = 1_000_000
"""A file may expand to this many values (aliases counted every time they are used): more is an alias bomb."""
_MAX_DEPTH = 200
"""How deeply values may nest."""
_INT_TAG = "tag:yaml.org,2002:int"


def _node_problems(root: yaml.Node, file: str) -> list[ScenarioProblem]:
    """What must be refused before building any value: cycles, alias bombs, huge numbers, duplicate keys."""
    import sys

    problems: list[ScenarioProblem] = []
    sizes: dict[int, int] = {}
    active: set[int] = set()
    digits = sys.get_int_max_str_digits() or 4300

    def line(node: yaml.Node) -> int:
        return node.start_mark.line + 1

    def walk(node: yaml.Node, depth: int) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise _Cycle(node)
        if depth > _MAX_DEPTH:
            raise _TooDeep(node)
        active.add(key)
        size = 1
        if isinstance(node, yaml.ScalarNode):
            if node.tag == _INT_TAG and len(str(node.value)) > digits:
                problems.append(ScenarioProblem(file=file, line=line(node), message=(
                    f"a number with {len(str(node.value))} digits; at most {digits} are accepted (quote it to make it text)")))
        elif isinstance(node, yaml.SequenceNode):
            size += sum(walk(child, depth + 1) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value != "<<":
                    if k.value in seen:
                        problems.append(ScenarioProblem(file=file, line=line(k), field=str(k.value), message=(
                            f"duplicate key {k.value!r} (first at line {seen[k.value]}): YAML would silently keep only the last")))
                    seen.setdefault(k.value, line(k))
                size += walk(k, depth + 1) + walk(v, depth + 1)
        active.discard(key)
        sizes[key] = size
        return size

    try:
        total = walk(root, 0)
    except _Cycle as cycle:
        return [ScenarioProblem(file=file, line=line(cycle.node), message=(
            "a recursive anchor: this value contains an alias to itself, so it never ends; write the value out instead"))]
    except _TooDeep as deep:
        return [ScenarioProblem(file=file, line=line(deep.node), message=f"values nest more than {_MAX_DEPTH} levels deep")]
    if total > _MAX_VALUES and total > 2 * len(sizes):
        node = root
        while True:
            children = node.value if isinstance(node, yaml.SequenceNode) else (
                [n for kv in node.value for n in kv] if isinstance(node, yaml.MappingNode) else [])
            big = next((c for c in children if sizes.get(id(c), 0) > _MAX_VALUES), None)
            if big is None:
                break
            node = big
        problems.append(ScenarioProblem(file=file, line=line(node), message=(
            f"this value expands to {total:,} values through aliases (at most {_MAX_VALUES:,}): an alias bomb? "
            "Use each anchor for a value once or write the values out")))
    return problems


class _Cycle(Exception):
    def __init__(self, node: yaml.Node):
        self.node = node


class _TooDeep(_Cycle):
    pass


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ScenarioError([ScenarioProblem(file=str(path), message=f"cannot read: {exc.strerror}")]) from exc


def _decode(path: Path, raw: bytes) -> str:
    if b"\x00" in raw:
        at = raw.index(b"\x00")
        raise ScenarioError([ScenarioProblem(file=str(path), line=raw[:at].count(b"\n") + 1, message=(
            "a binary file (it holds NUL bytes), not YAML text; scenario files are UTF-8 text"))])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScenarioError([ScenarioProblem(file=str(path), line=raw[: exc.start].count(b"\n") + 1, message=(
            f"not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start}); save the file as UTF-8"))]) from None


def _parse(text: str, file: str) -> tuple[Any, yaml.Node | None]:
    """Compose the node tree once, refuse what must not be built, then construct the values from it."""
    loader_cls = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    loader = loader_cls(text)
    try:
        try:
            root = loader.get_single_node()
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            problem = getattr(exc, "problem", None) or str(exc)
            raise ScenarioError([ScenarioProblem(file=file, line=mark.line + 1 if mark else None,
                                                 message=f"not valid YAML: {problem}")]) from None
        if root is None:
            return None, None
        problems = _node_problems(root, file)
        if problems:
            raise ScenarioError(problems)
        try:
            return loader.construct_document(root), root
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            raise ScenarioError([ScenarioProblem(file=file, line=mark.line + 1 if mark else None,
                                                 message=f"not valid YAML: {getattr(exc, 'problem', None) or exc}")]) from None
        except (ValueError, TypeError, OverflowError, RecursionError) as exc:
            # e.g. a date that does not exist (2026-02-30): libyaml parsed it, Python cannot build it
            raise ScenarioError([ScenarioProblem(file=file, message=f"a value cannot be read: {exc}")]) from None
    finally:
        loader.dispose()


def _validate_doc(doc: dict[str, Any], *, file: str, node: yaml.Node | None,
                  known_tools: set[str] | None = None) -> tuple[Scenario | None, list[ScenarioProblem]]:
    """One scenario mapping -> a Scenario, or every problem with its line."""
    problems: list[ScenarioProblem] = []

    def add(loc: tuple[Any, ...], message: str) -> None:
        problems.append(ScenarioProblem(file=file, line=_node_line(node, loc), field=".".join(map(str, loc)) or None,
                                        message=message))

    # unknown tools are checked on the raw mapping, so they come in the same report as field errors
    if known_tools is not None and isinstance(doc.get("tools"), list):
        inline = {t.get("name") for t in doc.get("inline_tools") or [] if isinstance(t, dict)}
        for i, name in enumerate(doc["tools"]):
            if isinstance(name, str) and name not in known_tools and name not in inline:
                add(("tools", i), _unknown_tool(name, known_tools))
    try:
        scenario = Scenario.model_validate(doc, context={"defer_references": True})
    except ValidationError as exc:
        for err in exc.errors():
            add(_clean_loc(tuple(err["loc"])), _describe(err))
        return None, problems
    for loc, message in scenario.reference_problems():
        add(loc, message)
    if known_tools is not None:
        for loc, message in _tool_problems(scenario, known_tools):
            add(loc, message)
    # a scenario with problems is still returned: duplicate ids are then found in the same report
    scenario.source = file
    scenario.source_line = node.start_mark.line + 1 if node is not None else None
    id_node = _child(node, "id")
    if id_node is not None:
        scenario.source_line = id_node.start_mark.line + 1
    return scenario, problems


def _unknown_tool(name: str, known: set[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, sorted(known), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown tool {name!r}; {hint}known tools: {', '.join(sorted(known))}"


def _tool_problems(scenario: Scenario, known_tools: set[str]) -> list[tuple[tuple[Any, ...], str]]:
    """Forbidden tools that exist, and expected arguments that the tool's schema has."""
    from harness.tools import registry

    out: list[tuple[tuple[Any, ...], str]] = []
    inline = {t.name: t.parameters for t in scenario.inline_tools}
    for i, forbidden in enumerate(scenario.checks.forbidden):
        if forbidden.tool not in known_tools and forbidden.tool not in inline:
            out.append((("checks", "forbidden", i), _unknown_tool(forbidden.tool, known_tools | set(inline))))
    for t_index, turn in enumerate(scenario.turns):
        for s_index, step in enumerate(turn.expect):
            here = ("turns", t_index, "expect", s_index)
            calls = [(here + ("any_order", k), c) for k, c in enumerate(step.any_order)] if isinstance(step, AnyOrderStep) \
                else [(here, step)] if isinstance(step, CallStep) else []
            for loc, call in calls:
                tool = registry.get(call.call)
                if tool is not None and call.call in scenario.tools:
                    props = tool.argument_names()
                else:
                    # an inline schema that allows extra properties may take arguments it does not list
                    schema = inline.get(call.call)
                    if not schema or schema.get("additionalProperties", True) is not False:
                        continue
                    props = list(schema.get("properties", {}))
                for arg, spec in call.args.items():
                    if arg not in props and not spec.absent:
                        out.append((loc + ("args", arg), (
                            f"{call.call} has no argument {arg!r} (its arguments: {', '.join(props) or 'none'}); "
                            "a model following the schema could never pass this step")))
    return out


def _import_tool_modules(docs: list[Any], root: yaml.Node | None, is_list: bool, path: Path,
                         known_tools: set[str] | None) -> list[ScenarioProblem]:
    """Import the `tool_modules` the file names (before tool names are checked); add their tools to `known_tools`."""
    from harness.tools import ToolModuleError, load_tool_module

    problems: list[ScenarioProblem] = []
    for i, doc in enumerate(docs):
        if not isinstance(doc, dict):
            continue
        node = root.value[i] if is_list and isinstance(root, yaml.SequenceNode) else root
        holder, loc = (doc.get("template"), ("template", "tool_modules")) if isinstance(doc.get("template"), dict) \
            else (doc, ("tool_modules",))
        specs = holder.get("tool_modules") if isinstance(holder, dict) else None
        if not isinstance(specs, list):
            continue
        for k, spec in enumerate(specs):
            if not isinstance(spec, str):
                continue
            try:
                added = load_tool_module(spec, base=str(path.parent))
            except ToolModuleError as exc:
                problems.append(ScenarioProblem(file=str(path), line=_node_line(node, loc + (k,)),
                                                field=".".join(map(str, loc + (k,))), message=str(exc)))
                continue
            if known_tools is not None:
                known_tools.update(added)
    return problems


def load_scenario_file(path: str | Path, *, known_tools: set[str] | None = None) -> list[Scenario]:
    """Load one YAML file holding a scenario or family (a mapping) or several (a list of mappings).

    Raises `ScenarioError` with every problem in the file.
    """
    scenarios, problems = _load_file(Path(path), known_tools)
    if problems:
        raise ScenarioError(problems)
    return scenarios


def _load_file(path: Path, known_tools: set[str] | None) -> tuple[list[Scenario], list[ScenarioProblem]]:
    try:
        raw = _read_bytes(path)
        cache = _LoadCache.for_file(path, raw, known_tools)
        cached = cache.get() if cache is not None else None
        if cached is not None:
            return cached, []
        scenarios, problems = _load_file_or_raise(path, known_tools, raw)
    except ScenarioError as exc:
        return [], exc.problems
    # only a clean load is kept, and only of a file that imports no tool modules (whose import is a side effect)
    if cache is not None and not problems and b"tool_modules" not in raw:
        cache.put(scenarios)
    return scenarios, problems


def _load_file_or_raise(path: Path, known_tools: set[str] | None,
                        raw: bytes | None = None) -> tuple[list[Scenario], list[ScenarioProblem]]:
    file = str(path)
    text = _decode(path, raw if raw is not None else _read_bytes(path))
    data, root = _parse(text, file)
    if data is None:
        raise ScenarioError([ScenarioProblem(file=file, line=1, message=(
            "the file is empty; expected a scenario mapping (id, description, strata, tools, turns) or a list of them"))])
    is_list = isinstance(data, list)
    docs = data if is_list else [data]
    scenarios: list[Scenario] = []
    problems: list[ScenarioProblem] = _import_tool_modules(docs, root, is_list, path, known_tools)
    for i, doc in enumerate(docs):
        node = root.value[i] if is_list and isinstance(root, yaml.SequenceNode) and i < len(root.value) else root
        if not isinstance(doc, dict):
            problems.append(ScenarioProblem(file=file, line=node.start_mark.line + 1 if node else None,
                                            message="expected a scenario mapping (id, turns, ...) or a family (family, rows, template)"))
            continue
        if "template" in doc:
            try:
                family = Family.model_validate(doc)
            except ValidationError as exc:
                for err in exc.errors():
                    loc = _clean_loc(tuple(err["loc"]))
                    problems.append(ScenarioProblem(file=file, line=_node_line(node, loc),
                                                    field=".".join(map(str, loc)) or None, message=_describe(err)))
                continue
            found, found_problems = expand_family(family, file=file, node=node)
            if known_tools is not None:
                for sc in found:
                    for loc, message in _tool_problems(sc, known_tools):
                        found_problems.append(ScenarioProblem(
                            file=file, line=_node_line(_child(node, "template"), loc), field=".".join(map(str, loc)),
                            row_line=sc.source_line, message=f"{message} (family {family.family!r}, {sc.id})"))
                unknown = sorted({t for sc in found for t in sc.tools if t not in known_tools})
                for name in unknown:
                    found_problems.append(ScenarioProblem(
                        file=file, line=_scalar_line(_child(_child(node, "template"), "tools"), name), field="template.tools",
                        message=_unknown_tool(name, known_tools) + f" (family {family.family!r})"))
            problems += found_problems
            scenarios += found
            continue
        scenario, found_problems = _validate_doc(doc, file=file, node=node, known_tools=known_tools)
        problems += found_problems
        if scenario is not None:
            scenarios.append(scenario)
    return scenarios, problems


def _describe(err: dict[str, Any]) -> str:
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if err["type"] == "extra_forbidden":
        msg = "unknown field (check the spelling; see scenario.schema.json for the fields)"
    elif err["type"] == "missing":
        msg = "required field is missing"
    if "input" in err and err["type"] not in {"missing", "extra_forbidden"}:
        try:
            shown = repr(err["input"])
        except ValueError:  # an int too long to print
            shown = "a very long value"
        if len(shown) <= 60:
            msg += f" (got {shown})"
    return msg


# -- the load cache ------------------------------------------------------------------------------

_CACHE_FORMAT = 1


def _cache_folder() -> Path | None:
    """Where loaded scenario files are kept: `$HARNESS_SCENARIO_CACHE` (a folder, or `off`), else
    `$HARNESS_CACHE_DIR/scenarios`, else `~/.cache/agentic-harness/scenarios`."""
    import os

    from harness.paths import cache_home

    setting = os.environ.get("HARNESS_SCENARIO_CACHE")
    if setting is not None:
        return None if setting.strip().lower() in ("", "0", "off", "no", "false") else Path(setting)
    return cache_home() / "scenarios"


_STAMP: str | None = None


def _code_stamp() -> str:
    """What the loading code is: the harness's and the tools' own modules (path, size and mtime of each
    `.py` file in those two folders; the subpackages, reports and comparison, take no part in loading), and
    the versions of Python, pydantic and PyYAML. The same for every command; an edit to any of them
    misses every cached file."""
    global _STAMP
    if _STAMP is None:
        import os
        import sys

        import pydantic

        from harness import tools

        digest = hashlib.sha256(f"{_CACHE_FORMAT}|{sys.version}|{pydantic.VERSION}|{yaml.__version__}|"
                                f"{sys.get_int_max_str_digits()}".encode())
        for folder in sorted({os.path.dirname(__file__), os.path.dirname(tools.__file__)}):
            with os.scandir(folder) as found:
                for entry in sorted((e for e in found if e.name.endswith(".py")), key=lambda e: e.name):
                    st = entry.stat()
                    digest.update(f"|{entry.path}|{st.st_size}|{st.st_mtime_ns}".encode())
        _STAMP = digest.hexdigest()
    return _STAMP


class _LoadCache:
    """One scenario file's load, pickled under a key of everything the load depends on: the file's path and
    bytes, the loading code (`_code_stamp`), and the tools it is checked against (names and arguments).

    A load with problems is never kept, so every error is found afresh. The 398 built-in scenarios take
    0.11-0.19 s to parse and validate, 0.03 s from the cache. The folder is the user's own cache (entries
    are pickles, read only under their key's name); `HARNESS_SCENARIO_CACHE=off` turns it off."""

    _KEEP = 512

    def __init__(self, folder: Path, key: str):
        self.folder = folder
        self.path = folder / f"{key}.pickle"

    @classmethod
    def for_file(cls, path: Path, raw: bytes, known_tools: set[str] | None) -> _LoadCache | None:
        folder = _cache_folder()
        if folder is None:
            return None
        from harness.tools import registry

        digest = hashlib.sha256(f"{_code_stamp()}|{path}|".encode())
        digest.update(hashlib.sha256(raw).digest())
        digest.update(json.dumps(sorted(known_tools) if known_tools is not None else None).encode())
        digest.update(json.dumps([(t.name, t.argument_names()) for t in registry.all()]).encode())
        return cls(folder, digest.hexdigest()[:32])

    def get(self) -> list[Scenario] | None:
        import pickle

        try:
            blob = self.path.read_bytes()
        except OSError:
            return None
        try:
            scenarios = pickle.loads(blob)
            if isinstance(scenarios, list) and all(isinstance(sc, Scenario) for sc in scenarios):
                return scenarios
        except Exception:  # noqa: BLE001 (a torn or foreign entry is a miss, and is replaced)
            pass
        return None

    def put(self, scenarios: list[Scenario]) -> None:
        import os
        import pickle

        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            tmp.write_bytes(pickle.dumps(scenarios, protocol=pickle.HIGHEST_PROTOCOL))
            tmp.replace(self.path)
            entries = list(self.folder.glob("*.pickle"))
            if len(entries) > self._KEEP:
                entries.sort(key=lambda p: p.stat().st_mtime)
                for old in entries[: len(entries) - self._KEEP // 2]:
                    old.unlink(missing_ok=True)
        except OSError:
            pass  # a read-only or full disk: the load is just not kept


def _scenario_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.suffix in {".yaml", ".yml"} and p.is_file())
    return [path]


def load_scenarios(
    paths: list[str | Path] | str | Path,
    *,
    tags: list[str] | None = None,
    ids: list[str] | None = None,
    families: list[str] | None = None,
    known_tools: set[str] | None = None,
    tool_modules: list[str] | None = None,
) -> list[Scenario]:
    """Load every scenario under `paths` (families expanded), keep those selected, check tool names.

    `tags` keeps scenarios with any of these tags, strata, ids or family ids; `ids` and `families`
    keep exactly those. `tool_modules` (files or module names) are imported first, like a file's own
    `tool_modules:`, so that their tools are known. Raises `ScenarioError` listing every problem in every file (not just the first).
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    from harness.tools import ToolModuleError, load_tool_module, registry

    problems: list[ScenarioProblem] = []
    for spec in tool_modules or []:
        try:
            load_tool_module(spec)
        except ToolModuleError as exc:
            problems.append(ScenarioProblem(file=spec, message=str(exc)))
    # a copy: tool modules that files name add to it as they load
    known_tools = set(known_tools) if known_tools is not None else set(registry.names())
    loaded: list[Scenario] = []
    for root in map(Path, paths):
        if not root.exists():
            problems.append(ScenarioProblem(file=str(root), message="no such file or folder"))
            continue
        files = _scenario_files(root)
        if not files:
            problems.append(ScenarioProblem(file=str(root), message="no .yaml or .yml scenario files here"))
        for file in files:
            found, found_problems = _load_file(file, known_tools)
            loaded.extend(found)
            problems.extend(found_problems)
    seen: dict[str, Scenario] = {}
    for sc in loaded:
        first = seen.get(sc.id)
        if first is not None:
            at = f"{first.source}:{first.source_line}" if first.source_line else first.source
            problems.append(ScenarioProblem(file=sc.source or "?", line=sc.source_line, field="id",
                                            message=f"duplicate id {sc.id!r} (first at {at}); ids must be unique across all files"))
        seen.setdefault(sc.id, sc)
    if problems:
        raise ScenarioError(problems)
    if tags:
        wanted = {t.lower() for t in tags}
        loaded = [s for s in loaded if wanted & (set(s.tags) | {str(x) for x in s.strata} | {s.id, (s.family or "").lower()})]
    if ids:
        loaded = [s for s in loaded if s.id in set(ids)]
    if families:
        loaded = [s for s in loaded if s.family in set(families)]
    return loaded


def _field_docs(cls: type[BaseModel]) -> dict[str, str]:
    """A model's attribute docstrings (the string right after a field), its bases' included, as pydantic reads them."""
    import ast
    import inspect
    import textwrap

    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not (isinstance(klass, type) and issubclass(klass, BaseModel)) or klass.__module__ != __name__:
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, after in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(after, ast.Expr)
                    and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)):
                docs[node.target.id] = inspect.cleandoc(after.value.value)
    return docs


def _describe_fields(schema: dict[str, Any], cls: type[BaseModel], defs: dict[str, Any]) -> None:
    """Give each property of `cls`'s schema its field's docstring as description, unless it has one
    (or, as pydantic does, when it only repeats the description of the model it refers to)."""
    props = schema.get("properties") or {}
    for name, doc in _field_docs(cls).items():
        field = cls.model_fields.get(name)
        key = (field.alias or name) if field is not None else None
        if key not in props:
            continue
        ref = props[key].get("$ref", "")
        if ref and defs.get(ref.rsplit("/", 1)[-1], {}).get("description") == doc:
            continue
        props[key].setdefault("description", doc)


def _model_schema(cls: type[BaseModel]) -> dict[str, Any]:
    models = {c.__name__: c for c in globals().values() if isinstance(c, type) and issubclass(c, BaseModel)}
    schema = cls.model_json_schema()
    defs = schema.get("$defs") or {}
    _describe_fields(schema, cls, defs)
    for name, sub in defs.items():
        if name in models:
            _describe_fields(sub, models[name], defs)
    return schema


def scenario_json_schema() -> dict[str, Any]:
    """JSON Schema for a scenario file (a scenario or family, or a list of them), for editors."""
    one = _model_schema(Scenario)
    defs = one.pop("$defs", {})
    defs["Scenario"] = one
    # the shorthands the loader accepts: a bare value means `equals`, a bare name a forbidden tool
    scalar = {"type": ["string", "number", "integer", "boolean", "array"]}
    for name in ("Matcher", "ArgSpec"):
        if name in defs:
            defs[name] = {"anyOf": [defs[name], scalar], "description": defs[name].get("description", "")}
    if "ForbiddenCall" in defs:
        defs["ForbiddenCall"] = {"anyOf": [defs["ForbiddenCall"], {"type": "string"}]}
    family = _model_schema(Family)
    family.pop("$defs", None)  # Family refers to no other model
    family["properties"]["template"] = {
        "type": "object", "description": family["properties"]["template"].get("description", ""),
    }
    defs["Family"] = family
    entry = {"anyOf": [{"$ref": "#/$defs/Scenario"}, {"$ref": "#/$defs/Family"}]}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "agentic-harness scenario file",
        "anyOf": [entry, {"type": "array", "items": entry}],
        "$defs": defs,
    }
