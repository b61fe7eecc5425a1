"""Berkeley Function Calling Leaderboard (BFCL) question and answer files, as scenarios.

`load_bfcl` turns BFCL's JSON-lines files (a question file plus its `possible_answer/` twin) into
`Scenario`s that grade like BFCL's AST checker; `import_bfcl` writes them as scenario YAML.
Entries that cannot become a scenario (or that BFCL's checker fails for every reply) are skipped
and reported. The matching itself (`normalize: bfcl`) is `harness.matchers.match_bfcl`.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import os
import re
from pathlib import Path
from typing import Any

import structlog
import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from pydantic import BaseModel, ConfigDict, ValidationError

from harness.outcomes import Stratum
from harness.scenario import (
    SCHEMA_FILENAME,
    AnswerStep,
    AnyOrderStep,
    ArgSpec,
    CallStep,
    FewShotMessage,
    InlineTool,
    Matcher,
    Scenario,
    ScenarioError,
    ScenarioProblem,
    Turn,
)

__all__ = [
    "BFCLError",
    "SUPPORTED_CATEGORIES",
    "BFCLImport",
    "bfcl_matcher",
    "bfcl_schema",
    "import_bfcl",
    "load_bfcl",
    "read_bfcl",
    "unsupported_reason",
]

log = structlog.get_logger("harness.bfcl")

# category -> what kind of scenario it becomes (BFCL v3 names, v4 names, live variants)
_KIND = {
    "simple": "simple",
    "simple_python": "simple",
    "live_simple": "simple",
    "multiple": "multiple",
    "live_multiple": "multiple",
    "parallel": "parallel",
    "live_parallel": "parallel",
    "parallel_multiple": "parallel",
    "live_parallel_multiple": "parallel",
    "irrelevance": "irrelevance",
    "live_irrelevance": "irrelevance",
}

SUPPORTED_CATEGORIES: tuple[str, ...] = tuple(_KIND)
"""BFCL categories that import (single-turn, AST-checked, Python)."""

# category prefix -> why it does not import
_UNSUPPORTED = {
    "java": "arguments are Java source text, checked by BFCL's Java type converter",
    "simple_java": "arguments are Java source text, checked by BFCL's Java type converter",
    "javascript": "arguments are JavaScript source text, checked by BFCL's JavaScript type converter",
    "simple_javascript": "arguments are JavaScript source text, checked by BFCL's JavaScript type converter",
    "live_relevance": "it passes on any call to any offered function; a scenario names the tool it expects",
    "multi_turn": "multi-turn categories are graded on the state of BFCL's executable backends",
    "exec": "executable categories are graded by running real functions",
    "rest": "REST categories are graded by calling live APIs",
    "memory": "memory categories need BFCL's memory backends",
    "web_search": "web-search categories need live search",
    "format_sensitivity": "format sensitivity varies the prompt format of prompting (non-FC) models",
    "sql": "retired category",
    "chatable": "retired category",
}

_STRATA = {
    "simple": [Stratum.TOOL_SELECTION, Stratum.ARGUMENT_VALIDITY],
    "multiple": [Stratum.TOOL_SELECTION],
    "parallel": [Stratum.MULTI_CALL],
    "irrelevance": [Stratum.IRRELEVANCE],
}

_CATCHES = {
    "simple": "a wrong function, a missing or unexpected argument, or a wrong value in a single call",
    "multiple": "picking the wrong function among several similar ones",
    "parallel": "missing one of several calls the request needs, or making extra ones",
    "irrelevance": "calling a function when none of the offered ones fits the request",
}

# BFCL's types -> JSON Schema types (None: no type constraint)
_TYPES: dict[str, str | None] = {
    "string": "string",
    "integer": "integer",
    "float": "number",
    "number": "number",
    "boolean": "boolean",
    "bool": "boolean",
    "array": "array",
    "list": "array",
    "tuple": "array",
    "dict": "object",
    "object": "object",
    "any": None,
}

# what BFCL's FC-mode handlers add to the schemas the model sees
_PYTHON_HINT = " Note that the provided function is in Python 3 syntax."
_FLOAT_HINT = " This is a float type value."

_MAX_ALTERNATIVES = 512
# one validator of the meta-schema: building it per function is most of the import time
_META = Draft202012Validator(Draft202012Validator.META_SCHEMA)
# libyaml when present: the pure-Python emitter is ten times slower on a full BFCL import
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_OMIT = object()
_ID_RE = re.compile(r"^(?P<cat>[A-Za-z_]+?)_\d+(?:-\d+)*$")
_FILE_RE = re.compile(r"^BFCL_v\d+_(?P<cat>[A-Za-z_]+)\.jsonl?$")


class BFCLError(ScenarioError):
    """BFCL files that cannot be imported; every problem names its file and line."""


class _Problem(Exception):
    """One thing wrong with one entry; turned into a `ScenarioProblem` by the loader."""

    def __init__(self, message: str, *, field: str | None = None, file: Path | None = None, line: int | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.file = file
        self.line = line


# -- schemas -------------------------------------------------------------------------------------


def _convert(node: Any, where: str, *, is_property: bool) -> Any:
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "type":
            continue
        if key == "properties" and isinstance(value, dict):
            out[key] = {name: _convert(p, f"{where}.{name}", is_property=True) for name, p in value.items()}
        elif key == "items":
            out[key] = _convert(value, f"{where}[]", is_property=False)
        elif key == "additionalProperties" and isinstance(value, dict):
            out[key] = _convert(value, f"{where}{{}}", is_property=False)
        elif key == "required" and not isinstance(value, list):
            continue  # an old-style `required: true` on a property; the object's list is what counts
        else:
            out[key] = json.loads(json.dumps(value))
    if "type" in node:
        bfcl_type = node["type"]
        if not isinstance(bfcl_type, str) or bfcl_type not in _TYPES:
            raise _Problem(
                f"unknown BFCL type {bfcl_type!r} (known: {', '.join(_TYPES)})", field=where
            )
        json_type = _TYPES[bfcl_type]
        if json_type is not None:
            out = {"type": json_type, **out}
        if bfcl_type == "float" and is_property:
            out["description"] = (str(out.get("description", "")) + _FLOAT_HINT).strip()
            out["format"] = "float"
        items = out.get("items")
        if json_type == "array" and isinstance(out.get("enum"), list) and isinstance(items, dict) and "enum" not in items:
            # an enum of strings on an array means its items (BFCL ignores it; JSON Schema would refuse every list)
            if all(not isinstance(v, (list, dict)) for v in out["enum"]):
                out["items"] = {**items, "enum": out.pop("enum")}
    return out


def bfcl_schema(parameters: dict[str, Any]) -> dict[str, Any]:
    """A BFCL function's `parameters` as JSON Schema: `dict` -> object, `float` -> number,
    `tuple` -> array, `any` -> no type constraint; floats get BFCL's FC-mode description hint."""
    schema = _convert(parameters, "parameters", is_property=False)
    schema["type"] = "object"
    schema.setdefault("properties", {})
    schema.setdefault("required", [])
    problem = _schema_problem(json.dumps(schema, sort_keys=True))
    if problem is not None:
        raise _Problem(f"not a usable JSON Schema after conversion: {problem[1]}", field=f"parameters.{problem[0]}".rstrip("."))
    return schema


@functools.lru_cache(maxsize=4096)
def _schema_problem(schema_json: str) -> tuple[str, str] | None:
    # live categories repeat the same functions across many entries: check each schema once
    error = best_match(_META.iter_errors(json.loads(schema_json)))
    return None if error is None else (".".join(str(p) for p in error.path), error.message)


# -- answers -------------------------------------------------------------------------------------


def _is_blank(value: Any) -> bool:
    return isinstance(value, str) and value == ""


def _dict_variants(spec: dict[str, Any], param: dict[str, Any] | None) -> list[dict[str, Any]]:
    """A BFCL dict answer ({key: [accepted values]}, `""` = key may be left out) as concrete dicts."""
    properties = (param or {}).get("properties") or {}
    options: list[list[tuple[str, Any]]] = []
    for key, accepted in spec.items():
        accepted = accepted if isinstance(accepted, list) else [accepted]
        opts = [(key, v) for v in accepted if not _is_blank(v)]
        if any(_is_blank(v) for v in accepted):
            # BFCL also takes "" itself for such a key; only for string keys is that a likely reply worth the alternatives
            key_type = (properties.get(key) or {}).get("type") if isinstance(properties.get(key), dict) else None
            opts += [(key, ""), (key, _OMIT)] if key_type in (None, "string", "any") else [(key, _OMIT)]
        options.append(opts)
    if math.prod(len(o) for o in options) > _MAX_ALTERNATIVES:
        raise _Problem(f"a dict answer expands to more than {_MAX_ALTERNATIVES} alternatives")
    return [{k: v for k, v in combo if v is not _OMIT} for combo in itertools.product(*options)]


def _items_type(param: dict[str, Any] | None) -> str | None:
    items = (param or {}).get("items")
    return items.get("type") if isinstance(items, dict) else None


def _expand(values: list[Any], param: dict[str, Any] | None) -> list[Any]:
    bfcl_type = (param or {}).get("type")
    out: list[Any] = []
    for value in values:
        if bfcl_type == "dict" and isinstance(value, dict):
            out.extend(_dict_variants(value, param))
        elif (bfcl_type in ("array", "list", "tuple") and _items_type(param) == "dict" and isinstance(value, list)
              and all(isinstance(v, dict) for v in value)):
            per_item = [_dict_variants(v, (param or {}).get("items")) for v in value]
            if math.prod(len(p) for p in per_item) > _MAX_ALTERNATIVES:
                raise _Problem(f"a list-of-dicts answer expands to more than {_MAX_ALTERNATIVES} alternatives")
            out.extend(list(combo) for combo in itertools.product(*per_item))
        else:
            out.append(value)
    # the same concrete value can come out of two alternatives
    seen: set[str] = set()
    unique = []
    for value in out:
        key = json.dumps(value, sort_keys=True)
        if key not in seen:
            seen.add(key)
            unique.append(value)
    if len(unique) > _MAX_ALTERNATIVES:
        raise _Problem(f"the answer expands to more than {_MAX_ALTERNATIVES} alternatives")
    return unique


def bfcl_matcher(accepted: list[Any], param: dict[str, Any] | None) -> ArgSpec:
    """The argument expectation for one BFCL ground-truth entry `{param: accepted}`.

    `param` is the parameter's BFCL schema (its BFCL `type` decides how answers read). One accepted
    value becomes `equals`, several `one_of`; `""` makes the argument optional (and, for string
    parameters, `""` itself is accepted, as BFCL accepts it); a non-string parameter whose only answer
    is `""` must be left out, and so must a parameter the function does not define. Dict answers
    ({key: [values]}) become the concrete dicts they accept.
    """
    if not isinstance(accepted, list):
        accepted = [accepted]
    bfcl_type = (param or {}).get("type")
    optional = any(_is_blank(v) for v in accepted)
    if param is None:
        # BFCL fails a parameter the function does not define, and one the answer needs but the model omits
        if optional:
            return ArgSpec(absent=True)
        raise _Problem("the ground truth needs a parameter the function does not define, so BFCL's checker fails every reply")
    values = _expand([v for v in accepted if not _is_blank(v)], param)
    if optional and bfcl_type in ("string", "any"):
        values.append("")
    if not values:
        if optional:
            return ArgSpec(absent=True)
        raise _Problem("the list of accepted values is empty, so BFCL's checker fails every reply")
    if len(values) == 1 and values[0] is not None:
        return ArgSpec(equals=values[0], optional=optional, normalize="bfcl")
    return ArgSpec(one_of=values, optional=optional, normalize="bfcl")


# -- files ---------------------------------------------------------------------------------------


def _read_jsonl(path: Path) -> list[tuple[int, dict[str, Any]]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BFCLError([ScenarioProblem(file=str(path), message=f"cannot read: {exc.strerror}")]) from exc
    entries: list[tuple[int, dict[str, Any]]] = []
    problems: list[ScenarioProblem] = []
    # JSON Lines end at "\n" only: str.splitlines() would also break a line at a raw U+2028 or U+0085 inside a string
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(ScenarioProblem(
                file=str(path), line=lineno,
                message=f"not valid JSON: {exc.msg} at column {exc.colno} (BFCL files hold one JSON object per line)",
            ))
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            problems.append(ScenarioProblem(file=str(path), line=lineno, field="id",
                                            message="expected a JSON object with a string `id`"))
            continue
        entries.append((lineno, entry))
    if problems:
        raise BFCLError(problems)
    return entries


def _file_category(path: Path) -> str | None:
    match = _FILE_RE.match(path.name)
    return match.group("cat") if match else None


def _entry_category(entry_id: str, path: Path) -> str | None:
    match = _ID_RE.match(entry_id)
    return match.group("cat") if match else _file_category(path)


def unsupported_reason(category: str) -> str | None:
    """Why a BFCL category does not import, or None when it does (or is unknown)."""
    if category in _KIND:
        return None
    for prefix, reason in _UNSUPPORTED.items():
        if category == prefix or category.startswith(prefix + "_"):
            return reason
    return None


def _answer_path(question_path: Path) -> Path:
    return question_path.parent / "possible_answer" / question_path.name


# -- entries -------------------------------------------------------------------------------------


def _messages(entry: dict[str, Any]) -> tuple[str, list[FewShotMessage], str]:
    """System prompt, earlier exchanges, and the user message the model must act on."""
    question = entry.get("question")
    if isinstance(question, str):
        question = [[{"role": "user", "content": question}]]
    if not isinstance(question, list) or not question:
        raise _Problem("expected a non-empty list of turns, each a list of {role, content} messages", field="question")
    if all(isinstance(m, dict) for m in question):
        question = [question]  # a single turn written without the outer list
    if len(question) != 1:
        raise _Problem(f"{len(question)} turns: multi-turn questions are not supported (single-turn categories only)",
                       field="question")
    turn = question[0]
    if not isinstance(turn, list) or not turn:
        raise _Problem("expected a non-empty list of {role, content} messages", field="question.0")
    system: list[str] = []
    rest: list[tuple[str, str]] = []
    for i, msg in enumerate(turn):
        if not isinstance(msg, dict) or not isinstance(msg.get("content"), str) or msg.get("role") not in ("system", "user", "assistant"):
            raise _Problem("expected {role: system|user|assistant, content: text}", field=f"question.0.{i}")
        if msg["role"] == "system":
            system.append(msg["content"])
        else:
            rest.append((msg["role"], msg["content"]))
    if not rest or rest[-1][0] != "user":
        raise _Problem("the last message must be the user's", field="question.0")
    few_shot = [FewShotMessage(role=role, content=content) for role, content in rest[:-1]]
    return "\n\n".join(system), few_shot, rest[-1][1]


def _tool_name(name: str) -> str:
    # OpenAI-style names: letters, digits, `_`, `-`, at most 64 (BFCL maps `.` to `_` the same way)
    return re.sub(r"[^A-Za-z0-9_\-]", "_", name)[:64]


def _tools(entry: dict[str, Any]) -> tuple[list[InlineTool], dict[str, dict[str, Any]], dict[str, str]]:
    functions = entry.get("function")
    if isinstance(functions, dict):
        functions = [functions]
    if isinstance(functions, list) and not functions:
        raise _Problem("no functions: a scenario must offer at least one tool", field="function")
    if not isinstance(functions, list):
        raise _Problem("expected a non-empty list of function schemas", field="function")
    tools: list[InlineTool] = []
    by_name: dict[str, dict[str, Any]] = {}
    mapped: dict[str, str] = {}
    for i, fn in enumerate(functions):
        where = f"function.{i}"
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise _Problem("expected a function schema with a `name`", field=where)
        params = fn.get("parameters", {"type": "dict", "properties": {}})
        if not isinstance(params, dict) or not isinstance(params.get("properties", {}), dict):
            raise _Problem("expected `parameters` with a `properties` mapping", field=f"{where}.parameters")
        name = _tool_name(fn["name"])
        if name in mapped.values():
            raise _Problem(f"{fn['name']!r} maps to tool name {name!r}, which another function already has", field=f"{where}.name")
        try:
            schema = bfcl_schema(params)
        except _Problem as exc:
            raise _Problem(exc.message, field=f"{where}.{exc.field}") from None
        tools.append(InlineTool(
            name=name,
            description=(str(fn.get("description", "")) + _PYTHON_HINT).strip(),
            parameters=schema,
            original_name=fn["name"] if name != fn["name"] else None,
        ))
        by_name[fn["name"]] = fn
        mapped[fn["name"]] = name
    return tools, by_name, mapped


def _call_step(gt_call: Any, index: int, by_name: dict[str, dict[str, Any]], mapped: dict[str, str]) -> CallStep:
    where = f"ground_truth.{index}"
    if not isinstance(gt_call, dict) or len(gt_call) != 1:
        raise _Problem("expected {function_name: {param: [accepted values]}}", field=where)
    [(name, args)] = gt_call.items()
    if name not in by_name:
        raise _Problem(f"calls {name!r}, which is not among the entry's functions {sorted(by_name)}", field=where)
    if not isinstance(args, dict):
        raise _Problem("expected {param: [accepted values]}", field=f"{where}.{name}")
    properties = by_name[name].get("parameters", {}).get("properties", {})
    required = by_name[name].get("parameters", {}).get("required", [])
    for param in required if isinstance(required, list) else []:
        accepted = args.get(param, [""])
        accepted = accepted if isinstance(accepted, list) else [accepted]
        if accepted and all(_is_blank(v) for v in accepted):
            # the model must send it (required), and sending it fails (not in the answer)
            raise _Problem(f"{param!r} is required by the function but the ground truth leaves it out, "
                           "so BFCL's checker fails every reply", field=f"{where}.{name}")
    specs: dict[str, ArgSpec] = {}
    for param, accepted in args.items():
        try:
            specs[param] = bfcl_matcher(accepted, properties.get(param))
        except _Problem as exc:
            raise _Problem(exc.message, field=f"{where}.{name}.{param}") from None
    return CallStep(call=mapped[name], args=specs, allow_extra_args=False)


def _describe(entry_id: str, user: str) -> str:
    text = " ".join(user.split())
    if len(text) > 100:
        text = text[:97] + "..."
    return f"BFCL {entry_id}: {text}"


def _scenario(
    entry: dict[str, Any], category: str, answer: tuple[Path, int, dict[str, Any]] | None
) -> Scenario:
    kind = _KIND[category]
    system, few_shot, user = _messages(entry)
    tools, by_name, mapped = _tools(entry)
    if kind == "irrelevance":
        # graded as BFCL's relevance check: anything but a call it can decode passes
        expect: list[Any] = [AnswerStep(answer=Matcher(any=True, normalize="bfcl"))]
    else:
        if answer is None:
            raise _Problem(f"no ground truth for id {entry['id']!r} in the possible-answer file", field="id")
        answer_file, answer_line, answer_entry = answer
        try:
            truth = answer_entry.get("ground_truth")
            if not isinstance(truth, list) or not truth:
                raise _Problem("expected a non-empty list of calls", field="ground_truth")
            calls = [_call_step(c, i, by_name, mapped) for i, c in enumerate(truth)]
        except _Problem as exc:
            exc.file, exc.line = answer_file, answer_line
            raise
        expect = [AnyOrderStep(any_order=calls)] if len(calls) > 1 else calls
    return Scenario(
        id="bfcl-" + re.sub(r"[^A-Za-z0-9_.\-]", "_", entry["id"]),
        description=_describe(entry["id"], user),
        catches=_CATCHES[kind],
        strata=_STRATA[kind],
        tags=["bfcl", category],
        system=system,
        inline_tools=tools,
        few_shot=few_shot,
        turns=[Turn(user=user, expect=expect)],
    )


def _wanted(category: str, only: str | None) -> bool:
    # v4 renamed `simple` to `simple_python`; either name selects both
    same = {"simple", "simple_python"}
    return only is None or only == category or {only, category} <= same


class BFCLImport(BaseModel):
    """What reading BFCL files gave: the scenarios, per question file, and the entries left out."""

    model_config = ConfigDict()

    files: dict[str, list[Scenario]] = {}
    """Question file path -> the scenarios made from its entries, in file order."""
    skipped: list[ScenarioProblem] = []
    """Entries that did not become a scenario, each with its file, line and why."""
    written: list[Path] = []
    """The scenario YAML files `import_bfcl` wrote (empty for `read_bfcl`)."""

    @property
    def scenarios(self) -> list[Scenario]:
        return [sc for scenarios in self.files.values() for sc in scenarios]


def _load_file(question_path: Path, answer_path: Path | None, only: str | None) -> tuple[list[Scenario], list[ScenarioProblem]]:
    file_category = _file_category(question_path)
    if file_category is not None:
        reason = unsupported_reason(file_category)
        if reason is not None:
            raise BFCLError([ScenarioProblem(file=str(question_path), message=f"BFCL category {file_category!r} is not supported: {reason}")])
    entries = _read_jsonl(question_path)
    skipped: list[ScenarioProblem] = []
    selected: list[tuple[int, dict[str, Any], str]] = []
    for line, entry in entries:
        category = _entry_category(entry["id"], question_path)
        if category is None or category not in _KIND:
            reason = unsupported_reason(category) if category else None
            skipped.append(ScenarioProblem(
                file=str(question_path), line=line, field="id",
                message=f"category {category!r} is not supported: {reason}" if reason else
                f"cannot tell the BFCL category of id {entry['id']!r}: expected `<category>_<n>` with category one of "
                f"{', '.join(SUPPORTED_CATEGORIES)} (or a file named BFCL_v3_<category>.json)",
            ))
            continue
        if _wanted(category, only):
            selected.append((line, entry, category))

    answers: dict[str, tuple[Path, int, dict[str, Any]]] = {}
    if any(_KIND[c] != "irrelevance" for _, _, c in selected):
        answer_path = answer_path or _answer_path(question_path)
        if not answer_path.is_file():
            raise BFCLError([ScenarioProblem(
                file=str(question_path),
                message=f"no possible-answer file: expected {answer_path} (BFCL keeps them in possible_answer/ "
                "next to the questions, under the same name)",
            )])
        for line, entry in _read_jsonl(answer_path):
            if entry["id"] in answers:
                skipped.append(ScenarioProblem(file=str(answer_path), line=line, field="id",
                                               message=f"duplicate id {entry['id']!r} (the one on line {answers[entry['id']][1]} is used)"))
            answers.setdefault(entry["id"], (answer_path, line, entry))

    scenarios: list[Scenario] = []
    for line, entry, category in selected:
        try:
            scenario = _scenario(entry, category, answers.get(entry["id"]))
        except _Problem as exc:
            skipped.append(ScenarioProblem(file=str(exc.file or question_path), line=exc.line or line,
                                           field=exc.field, message=exc.message))
            continue
        except ValidationError as exc:
            err = exc.errors()[0]
            skipped.append(ScenarioProblem(file=str(question_path), line=line,
                                           field=".".join(str(k) for k in err["loc"]) or None,
                                           message=f"does not make a valid scenario: {err['msg']}"))
            continue
        scenario.source = f"{question_path}:{line}"
        scenarios.append(scenario)
    return scenarios, skipped


def _question_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in (".json", ".jsonl"))


def _split_supported(files: list[Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    keep, skipped = [], []
    for file in files:
        category = _file_category(file)
        reason = unsupported_reason(category) if category else None
        if reason is not None:
            skipped.append((file, reason))
        else:
            keep.append(file)
    return keep, skipped


def read_bfcl(path: str | Path, answer_path: str | Path | None = None, *, category: str | None = None) -> BFCLImport:
    """Read BFCL questions (with their possible answers) into scenarios, leaving out the entries that
    cannot be imported and saying why for each.

    `path` is a BFCL question file, whose answers are found in `possible_answer/` next to it under the
    same name unless `answer_path` is given, or a folder holding question files and that
    `possible_answer/` folder (unsupported categories in it are skipped). `category` keeps only that
    category (`simple` and v4's `simple_python` select each other). Raises `BFCLError` when a file
    cannot be read, or when no entry at all imports (listing why for each).
    """
    path = Path(path)
    answer = Path(answer_path) if answer_path is not None else None
    if not path.exists():
        raise BFCLError([ScenarioProblem(file=str(path), message="no such file or folder")])
    if path.is_file():
        files = [path]
    else:
        files, unsupported = _split_supported(_question_files(path))
        for file, reason in unsupported:
            log.warning("bfcl.skip", file=str(file), reason=reason)
        if category is not None:
            files = [f for f in files if _file_category(f) is None or _wanted(_file_category(f) or "", category)]
        if not files:
            seen = ", ".join(f.name for f, _ in unsupported) or "none"
            raise BFCLError([ScenarioProblem(
                file=str(path),
                message=f"no supported BFCL question files here (skipped as unsupported: {seen}); "
                f"supported categories: {', '.join(SUPPORTED_CATEGORIES)}",
            )])
    result = BFCLImport()
    problems: list[ScenarioProblem] = []
    for file in files:
        try:
            scenarios, skipped = _load_file(file, answer if path.is_file() else None, category)
        except BFCLError as exc:
            problems.extend(exc.problems)
            continue
        result.files[str(file)] = scenarios
        result.skipped.extend(skipped)
    if problems:
        raise BFCLError(problems)
    if not result.scenarios:
        what = f"entries of category {category!r}" if category else "entries"
        raise BFCLError(result.skipped or [ScenarioProblem(file=str(path), message=f"no {what} to import here")])
    return result


def load_bfcl(question_path: str | Path, answer_path: str | Path | None = None, *, category: str | None = None) -> list[Scenario]:
    """The scenarios `read_bfcl` makes (entries that cannot be imported are left out, with a warning)."""
    result = read_bfcl(question_path, answer_path, category=category)
    for problem in result.skipped:
        log.warning("bfcl.skip_entry", file=problem.file, line=problem.line, field=problem.field, reason=problem.message)
    return result.scenarios


def _schema_comment(out_dir: Path) -> str:
    schema = Path(__file__).resolve().parent.parent / "scenarios" / SCHEMA_FILENAME
    if not schema.is_file():
        return ""
    return f"# yaml-language-server: $schema={Path(os.path.relpath(schema, out_dir.resolve())).as_posix()}\n"


def import_bfcl(path: str | Path, out_dir: str | Path, *, category: str | None = None) -> BFCLImport:
    """Convert BFCL files under `path` (a question file or a folder, as for `read_bfcl`) into scenario
    YAML in `out_dir`: one file per question file, holding a list of scenarios.

    Returns what was read, with the files written and the entries skipped. Nothing is written when a
    file cannot be read.
    """
    out = Path(out_dir)
    result = read_bfcl(Path(path), None, category=category)
    out.mkdir(parents=True, exist_ok=True)
    header = _schema_comment(out)
    for source, scenarios in result.files.items():
        if not scenarios:
            continue
        target = out / f"{Path(source).stem}.yaml"
        body = yaml.dump(
            [sc.model_dump(mode="json", exclude_defaults=True) for sc in scenarios],
            Dumper=_DUMPER, sort_keys=False, allow_unicode=True, width=110, default_flow_style=None,
        )
        count = f"{len(scenarios)} scenario" + ("s" if len(scenarios) != 1 else "")
        note = f"# Imported from BFCL {Path(source).name} by `harness import bfcl` ({count}).\n"
        target.write_text(header + note + body, encoding="utf-8")
        result.written.append(target)
    return result
