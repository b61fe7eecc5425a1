"""BFCL's multi-turn categories, run on BFCL's own tool classes and graded turn by turn.

`load_multi_turn` reads a `multi_turn_*` question file (base, miss_func, miss_param, long_context)
with its possible answers. `BFCLWorld` holds the entry's bfcl-eval class instances (GorillaFileSystem,
TwitterAPI, ...) and runs calls on them as plain method calls. `grade_multi_turn` grades a
conversation turn by turn, with BFCL's state and execution-result checks, and gives BFCL's
all-or-nothing verdict next to it. `run_multi_turn` drives a model through an entry.
Needs the `bfcl` extra (bfcl-eval's classes; nothing else of it runs).
"""

from __future__ import annotations

import ast
import copy
import importlib
import inspect
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from harness.bfcl import BFCLError, bfcl_schema
from harness.outcomes import Outcome
from harness.records import Sampling
from harness.scenario import ScenarioProblem
from harness.trajectory import Reply

__all__ = [
    "MULTI_TURN_CATEGORIES",
    "BFCLWorld",
    "CategoryFigures",
    "MultiTurnEntry",
    "MultiTurnRun",
    "MultiTurnScore",
    "MultiTurnSummary",
    "TurnGrade",
    "grade_multi_turn",
    "load_multi_turn",
    "parse_call",
    "run_multi_turn",
    "summarize_multi_turn",
]

MULTI_TURN_CATEGORIES: tuple[str, ...] = ("multi_turn_base", "multi_turn_miss_func", "multi_turn_miss_param", "multi_turn_long_context")
"""The multi-turn categories that import."""

# what BFCL sends when a turn only adds the functions that were held out (miss_func)
_ADDED_FUNCTIONS_PROMPT = "I have updated some more functions you can choose from. What about now?"
# BFCL's per-turn step limit for a model (MAXIMUM_STEP_LIMIT)
_STEP_LIMIT = 20
# calls BFCL's executor refuses to run, whatever class offers them
_REFUSED = {"kill", "exit", "quit", "remove", "unlink", "popen", "Popen", "run"}
_BACKENDS = "bfcl_eval.eval_checker.multi_turn_eval.func_source_code"
_FUNC_DOCS = {
    "GorillaFileSystem": "gorilla_file_system", "MathAPI": "math_api", "MessageAPI": "message_api",
    "TwitterAPI": "posting_api", "TicketAPI": "ticket_api", "TradingBot": "trading_bot",
    "TravelAPI": "travel_booking", "VehicleControlAPI": "vehicle_control",
}
_STATELESS = {"MathAPI"}
_PYTHON_HINT = " Note that the provided function is in Python 3 syntax."


class _Model(BaseModel):
    model_config = ConfigDict()


class MultiTurnEntry(_Model):
    """One BFCL multi-turn entry, ready to run."""

    id: str
    """BFCL's id (`multi_turn_base_0`)."""
    category: str
    """`multi_turn_base`, `multi_turn_miss_func`, `multi_turn_miss_param` or `multi_turn_long_context`."""
    turns: list[list[dict[str, str]]]
    """The user messages of each turn; a turn that only adds held-out functions gets BFCL's prompt for it."""
    ground_truth: list[list[str]]
    """The calls of each turn, as BFCL writes them (`cd(folder='document')`); empty where the model must not act."""
    initial_config: dict[str, Any] = Field(default_factory=dict)
    """Each class's starting state (`GorillaFileSystem: {root: ...}`)."""
    involved_classes: list[str]
    """The bfcl-eval classes whose methods are the tools."""
    functions: list[dict[str, Any]]
    """The function docs offered from the first turn (BFCL's format)."""
    added_functions: dict[int, list[dict[str, Any]]] = Field(default_factory=dict)
    """0-based turn -> the docs of functions held out until then (miss_func)."""
    source: str | None = None
    """`file:line` it was read from."""

    @property
    def long_context(self) -> bool:
        return "long_context" in self.category


class TurnGrade(_Model):
    """How one turn went, by this project's outcome names."""

    turn: int
    """1-based."""
    expected: list[str]
    """The ground-truth calls of the turn."""
    calls: list[str]
    """The calls the model made in the turn, in order."""
    outcome: Outcome
    """`ok`; `missing_call` (no call, or a ground-truth call never made); `value_error` (made, but its
    result differs: other arguments); `end_state_mismatch` (the classes' state differs from the
    ground truth's); `unexpected_call` (a call in a turn where the model must not act)."""
    reason: str = ""
    bfcl_error: str | None = None
    """BFCL's error type for this turn, where its checker would fail here (`multi_turn:...`)."""
    call_errors: list[str] = Field(default_factory=list)
    """The model's calls in this turn that the classes answered with an error, each with the error."""


class MultiTurnScore(_Model):
    """A graded conversation: every turn, and BFCL's all-or-nothing verdict."""

    entry_id: str
    category: str
    turns: list[TurnGrade]
    bfcl_valid: bool
    """BFCL's verdict: every turn with ground truth passes its state and result checks."""
    bfcl_error: str | None = None
    """BFCL's error type at the first turn it fails."""

    @property
    def first_failed_turn(self) -> int | None:
        return next((t.turn for t in self.turns if t.outcome is not Outcome.OK), None)

    @property
    def turns_passed(self) -> int:
        return sum(t.outcome is Outcome.OK for t in self.turns)


class MultiTurnRun(_Model):
    """A model's run through one entry: its calls per turn and step, and their score."""

    entry_id: str
    target: str
    steps: list[list[list[str]]]
    """Per turn, per model step, the calls made (BFCL's decoded form)."""
    replies: list[Reply] = Field(default_factory=list)
    """Every model reply, in order."""
    score: MultiTurnScore


# -- calls and the world ---------------------------------------------------------------------------


def parse_call(text: str) -> tuple[str, list[Any], dict[str, Any]]:
    """`mv(source='a', destination='b')` -> (name, positional args, keyword args); literals only."""
    node = ast.parse(text.strip(), mode="eval").body
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        raise ValueError(f"not a function call: {text!r}")
    args = [ast.literal_eval(a) for a in node.args]
    kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg is not None}
    return node.func.id, args, kwargs


def _call_text(name: str, arguments: dict[str, Any]) -> str:
    # how BFCL's FC decoder writes a tool call (convert_to_function_call)
    return f"{name}({','.join(f'{k}={v!r}' for k, v in arguments.items())})"


class BFCLWorld:
    """The entry's bfcl-eval class instances, loaded with its initial state; calls run as method calls."""

    def __init__(self, entry: MultiTurnEntry):
        self.instances: dict[str, Any] = {}
        self.methods: dict[str, Any] = {}
        for class_name in entry.involved_classes:
            if class_name not in _FUNC_DOCS:
                raise BFCLError([ScenarioProblem(file=entry.source or entry.id, message=f"unknown BFCL class {class_name!r}")])
            module = importlib.import_module(f"{_BACKENDS}.{_FUNC_DOCS[class_name]}")
            instance = getattr(module, class_name)()
            if class_name not in _STATELESS:
                instance._load_scenario(copy.deepcopy(entry.initial_config.get(class_name, {})), long_context=entry.long_context)
            self.instances[class_name] = instance
            for name, method in inspect.getmembers(instance, predicate=inspect.ismethod):
                if not name.startswith("_"):
                    self.methods[name] = method

    def execute(self, name: str, args: list[Any] | None = None, kwargs: dict[str, Any] | None = None) -> str:
        """Run one call; the result as BFCL's executor renders it (errors included, as text)."""
        try:
            if name in _REFUSED:
                raise Exception(f"Function call {name} is not allowed.")
            method = self.methods.get(name)
            if method is None:
                raise NameError(f"name '{name}' is not defined")
            result = method(*(args or []), **(kwargs or {}))
        except Exception as exc:  # the model's call failed: that is its result
            return f"Error during execution: {exc}"
        if isinstance(result, str):
            return result
        if isinstance(result, dict):
            try:
                return json.dumps(result)
            except (TypeError, ValueError):
                return str(result)
        return str(result)

    def execute_text(self, call: str) -> str:
        try:
            name, args, kwargs = parse_call(call)
        except (ValueError, SyntaxError) as exc:
            return f"Error during execution: {exc}"
        return self.execute(name, args, kwargs)

    def differences(self, other: "BFCLWorld") -> list[str]:
        """Public attributes whose values differ from `other`'s (BFCL's state check), as `Class.attr`."""
        out = []
        for class_name, expected in other.instances.items():
            actual = self.instances[class_name]
            for attr in vars(expected):
                if not attr.startswith("_") and getattr(actual, attr) != getattr(expected, attr):
                    out.append(f"{class_name}.{attr}")
        return out


# -- grading ---------------------------------------------------------------------------------------


def _unordered_missing(expected: list[str], actual: list[str]) -> list[int]:
    pool = list(actual)
    missing = []
    for i, item in enumerate(expected):
        if item in pool:
            pool.remove(item)
        else:
            missing.append(i)
    return missing


def _error_of(result: str) -> str | None:
    # a call fails by raising (the executor's text) or, in most BFCL classes, by returning {"error": ...}
    if result.startswith("Error during execution: "):
        return result.removeprefix("Error during execution: ")
    if result.startswith("{"):
        try:
            parsed = json.loads(result)
        except ValueError:
            return None
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
            return parsed["error"]
    return None


def grade_multi_turn(entry: MultiTurnEntry, steps: list[list[list[str]]]) -> MultiTurnScore:
    """Grade a conversation: `steps` holds, per turn, per model step, the calls made (`name(k=v)` text).

    Each turn's calls run on the model's world, the ground truth's on its own. A turn with ground
    truth passes when the model called something, the classes end in the ground truth's state, and
    every ground-truth result is among the model's results so far (BFCL's checks, in its order). A
    turn without ground truth passes when the model made no call. BFCL's verdict is all-or-nothing
    over the turns with ground truth; the turns are graded on regardless, to show where it went wrong.
    """
    model_world, truth_world = BFCLWorld(entry), BFCLWorld(entry)
    model_results: list[str] = []
    model_names: set[str] = set()
    grades: list[TurnGrade] = []
    bfcl_error: str | None = None
    for index, expected in enumerate(entry.ground_truth):
        turn_steps = [s for s in (steps[index] if index < len(steps) else []) if s]
        calls = [c for s in turn_steps for c in s]
        errors = []
        for call in calls:
            result = model_world.execute_text(call)
            model_results.append(result)
            if (why := _error_of(result)) is not None:
                errors.append(f"{call}: {why}")
            try:
                model_names.add(parse_call(call)[0])
            except (ValueError, SyntaxError):
                pass
        truth_results = [truth_world.execute_text(c) for c in expected]
        grade = TurnGrade(turn=index + 1, expected=expected, calls=calls, outcome=Outcome.OK, call_errors=errors)
        if not expected:
            if calls:
                grade.outcome, grade.reason = Outcome.UNEXPECTED_CALL, "called tools in a turn where it should not act (ask, or say it cannot)"
        elif not calls:
            grade.outcome, grade.reason = Outcome.MISSING_CALL, "no call in a turn that needs some"
            grade.bfcl_error = "multi_turn:empty_turn_model_response"
        elif differs := model_world.differences(truth_world):
            grade.outcome, grade.reason = Outcome.END_STATE_MISMATCH, "state differs from the ground truth's: " + ", ".join(differs)
            grade.bfcl_error = "multi_turn:instance_state_mismatch"
        elif missing := _unordered_missing(truth_results, model_results):
            never = [expected[i] for i in missing if parse_call(expected[i])[0] not in model_names]
            grade.outcome = Outcome.MISSING_CALL if never else Outcome.VALUE_ERROR
            grade.reason = ("never called: " + ", ".join(never)) if never else (
                "called, but with other results: " + ", ".join(expected[i] for i in missing))
            grade.bfcl_error = "multi_turn:execution_response_mismatch"
        if bfcl_error is None and grade.bfcl_error is not None:
            bfcl_error = grade.bfcl_error
        grades.append(grade)
    if len(steps) != len(entry.ground_truth):
        bfcl_error = "multi_turn:force_terminated"  # BFCL checks this before anything else
    return MultiTurnScore(entry_id=entry.id, category=entry.category, turns=grades, bfcl_valid=bfcl_error is None, bfcl_error=bfcl_error)


# -- loading ---------------------------------------------------------------------------------------


def _func_docs(data_dir: Path, class_name: str) -> list[dict[str, Any]]:
    path = data_dir / "multi_turn_func_doc" / f"{_FUNC_DOCS[class_name]}.json"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


def load_multi_turn(question_path: str | Path, *, data_dir: str | Path | None = None) -> list[MultiTurnEntry]:
    """Read a BFCL `multi_turn_*` question file, its `possible_answer/` twin, and the function docs in
    `multi_turn_func_doc/` (under `data_dir`, by default the question file's folder)."""
    path = Path(question_path)
    data = Path(data_dir) if data_dir is not None else path.parent
    problems: list[ScenarioProblem] = []
    answer_path = path.parent / "possible_answer" / path.name
    if not answer_path.is_file():
        raise BFCLError([ScenarioProblem(file=str(path), message=f"no possible-answer file: expected {answer_path}")])
    # JSON Lines end at "\n" only (str.splitlines() also breaks at a raw U+2028 inside a string)
    answers = {a["id"]: a for a in (json.loads(t) for t in answer_path.read_text(encoding="utf-8").split("\n") if t.strip())}
    entries = []
    for line, text in enumerate(path.read_text(encoding="utf-8").split("\n"), start=1):
        if not text.strip():
            continue
        raw = json.loads(text)
        category = raw["id"].rsplit("_", 1)[0]
        if category not in MULTI_TURN_CATEGORIES:
            problems.append(ScenarioProblem(file=str(path), line=line, field="id", message=f"category {category!r} is not a multi-turn category that imports"))
            continue
        unknown = [c for c in raw["involved_classes"] if c not in _FUNC_DOCS]
        if unknown or raw["id"] not in answers:
            why = f"unknown classes {unknown}" if unknown else f"no ground truth for id {raw['id']!r}"
            problems.append(ScenarioProblem(file=str(path), line=line, message=why))
            continue
        functions = [doc for c in raw["involved_classes"] for doc in _func_docs(data, c)]
        added: dict[int, list[dict[str, Any]]] = {}
        for turn, names in (raw.get("missed_function") or {}).items():
            added[int(turn)] = [f for f in functions if f["name"] in names]
            functions = [f for f in functions if f["name"] not in names]
        # BFCL adds its Python hint after holding functions out, so only the ones offered from the start get it
        functions = [{**f, "description": f.get("description", "") + _PYTHON_HINT} for f in functions]
        turns = [list(t) if t or int_turn not in added else [{"role": "user", "content": _ADDED_FUNCTIONS_PROMPT}]
                 for int_turn, t in enumerate(raw["question"])]
        entries.append(MultiTurnEntry(
            id=raw["id"], category=category, turns=turns, ground_truth=answers[raw["id"]]["ground_truth"],
            initial_config=raw.get("initial_config") or {}, involved_classes=raw["involved_classes"],
            functions=functions, added_functions=added, source=f"{path}:{line}",
        ))
    if problems and not entries:
        raise BFCLError(problems)
    return entries


# -- running a model -------------------------------------------------------------------------------


def _tools(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # converted as for single-turn entries (dict -> object, float -> number with BFCL's hint, ...)
    return [{"type": "function", "function": {"name": d["name"], "description": d.get("description", ""),
                                              "parameters": bfcl_schema(d.get("parameters") or {"type": "dict", "properties": {}})}}
            for d in docs]


async def run_multi_turn(entry: MultiTurnEntry, client: Any, *, target: str, sampling: Sampling | None = None) -> MultiTurnRun:
    """Drive a model (any `ChatClientLike`) through the entry's turns on a fresh `BFCLWorld`, as
    BFCL's FC inference does: each turn, call and execute until the model answers in text (at most
    20 steps), then the next user turn. Returns the calls per turn and step, graded."""
    sampling = sampling or Sampling()
    world = BFCLWorld(entry)
    docs = list(entry.functions)
    messages: list[dict[str, Any]] = []
    steps: list[list[list[str]]] = []
    replies: list[Reply] = []
    for index, turn in enumerate(entry.turns):
        docs += entry.added_functions.get(index, [])
        tools = _tools(docs)
        messages += turn
        turn_steps: list[list[str]] = []
        for _ in range(_STEP_LIMIT):
            reply: Reply = await client.chat(messages, tools, sampling)
            replies.append(reply)
            calls = [c for c in reply.tool_calls if c.source == "tool_calls" and c.arguments is not None]
            if reply.outcome in (Outcome.INFRA_ERROR, Outcome.SERVER_PARSE_ERROR) or not calls:
                messages.append({"role": "assistant", "content": reply.content or ""})
                break
            texts = [_call_text(c.name, c.arguments or {}) for c in calls]
            turn_steps.append(texts)
            messages.append({"role": "assistant", "content": reply.content or "", "tool_calls": [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": json.dumps(c.arguments)}} for c in calls]})
            for call in calls:
                result = world.execute(call.name, [], call.arguments or {})
                messages.append({"role": "tool", "tool_call_id": call.id, "name": call.name, "content": result})
        steps.append(turn_steps)
    return MultiTurnRun(entry_id=entry.id, target=target, steps=steps, replies=replies, score=grade_multi_turn(entry, steps))


# -- figures ---------------------------------------------------------------------------------------


class CategoryFigures(_Model):
    """One category's figures: BFCL's all-or-nothing accuracy next to the per-turn ones."""

    entries: int
    bfcl_accuracy: float
    """Share of conversations BFCL's checker passes (all turns with ground truth right)."""
    turns_passed: float
    """Share of all turns graded `ok` (turns without ground truth included)."""
    first_failure: dict[int, int] = Field(default_factory=dict)
    """1-based turn -> conversations whose first failing turn it is."""
    outcomes: dict[str, int] = Field(default_factory=dict)
    """Outcome of each conversation's first failing turn -> count."""


class MultiTurnSummary(_Model):
    """Figures per category, and over everything."""

    categories: dict[str, CategoryFigures]
    overall: CategoryFigures


def _figures(scores: list[MultiTurnScore]) -> CategoryFigures:
    turns = [t for s in scores for t in s.turns]
    first: dict[int, int] = {}
    outcomes: dict[str, int] = {}
    for score in scores:
        turn = score.first_failed_turn
        if turn is not None:
            first[turn] = first.get(turn, 0) + 1
            outcome = str(score.turns[turn - 1].outcome)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return CategoryFigures(
        entries=len(scores),
        bfcl_accuracy=sum(s.bfcl_valid for s in scores) / len(scores) if scores else 0.0,
        turns_passed=sum(t.outcome is Outcome.OK for t in turns) / len(turns) if turns else 0.0,
        first_failure=dict(sorted(first.items())), outcomes=dict(sorted(outcomes.items(), key=lambda kv: -kv[1])),
    )


def summarize_multi_turn(scores: list[MultiTurnScore]) -> MultiTurnSummary:
    """BFCL's accuracy per category next to the turn pass rate and where conversations first fail."""
    by_category: dict[str, list[MultiTurnScore]] = {}
    for score in scores:
        by_category.setdefault(score.category, []).append(score)
    return MultiTurnSummary(categories={c: _figures(s) for c, s in sorted(by_category.items())}, overall=_figures(scores))
