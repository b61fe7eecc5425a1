"""Scripted replies to BFCL v4 entries, graded by this harness and by BFCL's own checker.

`replies_for` makes, for one entry, the ground-truth reply and perturbations of it (an alternative
answer, optionals left out or null, ints and floats swapped, restyled strings, a wrong value, an extra
or missing argument, the wrong function, a call too many or too few, a text answer, broken JSON, an
empty reply, a call written as text). `bfcl_accepts` feeds a reply to BFCL's checker the way its
OpenAI FC handler and eval runner do; `harness_accepts` grades it with `score_scenario`.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from harness.outcomes import Outcome
from harness.scenario import Scenario
from harness.scoring import score_scenario
from harness.trajectory import Reply, Step, ToolCall, Trajectory
from tests.bfcl_eval_pkg import bfcl_module

__all__ = ["Case", "bfcl_accepts", "harness_accepts", "replies_for", "tool_name"]

_MISSING = object()


@dataclass
class Case:
    """One scripted reply to one entry."""

    entry_id: str
    category: str
    label: str
    reply: Reply


def tool_name(name: str) -> str:
    """The name the model calls (BFCL's FC handlers send `.` as `_`)."""
    return name.replace(".", "_")


def _structured(calls: list[tuple[str, Any]], *, raw: str | None = None) -> Reply:
    tool_calls = []
    for i, (name, args) in enumerate(calls):
        text = raw if raw is not None else json.dumps(args)
        tool_calls.append(ToolCall(id=f"call_{i}", name=tool_name(name), raw_arguments=text,
                                   arguments=args if raw is None else None, parse_error=None if raw is None else "bad JSON"))
    return Reply(outcome=Outcome.OK if raw is None else Outcome.MALFORMED_ARGUMENTS, tool_calls=tool_calls, finish_reason="tool_calls")


def _text(content: str | None) -> Reply:
    return Reply(outcome=Outcome.OK if content else Outcome.EMPTY_REPLY, content=content, finish_reason="stop")


def _same(a: Any, b: Any) -> bool:
    # `[5.0] == [5]` in Python: a retyped value must count as a change
    return json.dumps(a) == json.dumps(b)


def _leaked(name: str, args: dict[str, Any]) -> Reply:
    body = json.dumps({"name": tool_name(name), "arguments": args})
    return Reply(outcome=Outcome.LEAKED_TEXT_CALL, content=f"<tool_call>{body}</tool_call>", finish_reason="stop", tool_calls=[
        ToolCall(id="call_0", name=tool_name(name), raw_arguments=json.dumps(args), arguments=args, source="text")])


# -- values to script ----------------------------------------------------------------------------


def _blank(v: Any) -> bool:
    return isinstance(v, str) and v == ""


def _pick(accepted: Any, schema: dict[str, Any] | None, last: bool = False) -> Any:
    accepted = accepted if isinstance(accepted, list) else [accepted]
    values = [v for v in accepted if not _blank(v)]
    if not values:
        return _MISSING
    value = values[-1] if last else values[0]
    btype = (schema or {}).get("type")
    if btype == "dict" and isinstance(value, dict):
        return _concrete(value, last)
    items = (schema or {}).get("items") or {}
    if btype in ("array", "tuple") and items.get("type") == "dict" and isinstance(value, list):
        return [_concrete(v, last) if isinstance(v, dict) else v for v in value]
    return copy.deepcopy(value)


def _concrete(spec: dict[str, Any], last: bool) -> dict[str, Any]:
    out = {}
    for key, accepted in spec.items():
        accepted = accepted if isinstance(accepted, list) else [accepted]
        values = [v for v in accepted if not _blank(v)]
        if values:
            out[key] = copy.deepcopy(values[-1] if last else values[0])
    return out


def _retype(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return float(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_retype(v) for v in value]
    return value


def _restyle(value: Any) -> Any:
    if isinstance(value, str):
        return value.upper().replace(" ", "_")
    if isinstance(value, list):
        return [_restyle(v) for v in value]
    return value


def _wrong(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 7
    if isinstance(value, str):
        return value + " zz"
    if isinstance(value, list):
        return value + value[:1] if value else ["zz"]
    if isinstance(value, dict):
        return {k: _wrong(v) for k, v in value.items()} if value else {"zz": 1}
    return "zz"


# -- replies -------------------------------------------------------------------------------------


def _functions(entry: dict[str, Any]) -> dict[str, dict[str, Any]]:
    functions = entry["function"] if isinstance(entry["function"], list) else [entry["function"]]
    return {f["name"]: f for f in functions}


def _gt_calls(entry: dict[str, Any], answer: dict[str, Any], last: bool = False) -> list[tuple[str, dict[str, Any]]]:
    functions = _functions(entry)
    calls = []
    for gt in answer["ground_truth"]:
        [(name, params)] = gt.items()
        props = functions.get(name, {}).get("parameters", {}).get("properties", {})
        args = {}
        for param, accepted in params.items():
            value = _pick(accepted, props.get(param), last)
            if value is not _MISSING:
                args[param] = value
        calls.append((name, args))
    return calls


def _edit_first(calls, pick, change) -> list[tuple[str, dict[str, Any]]] | None:
    """Change the first argument (in call order) that `pick(value)` selects; None if there is none."""
    for i, (name, args) in enumerate(calls):
        for param, value in args.items():
            if pick(value):
                edited = copy.deepcopy(calls)
                edited[i][1][param] = change(value)
                return edited
    return None


def replies_for(category: str, entry: dict[str, Any], answer: dict[str, Any] | None) -> list[Case]:
    """The scripted replies for one entry, each labelled with what it does."""
    functions = _functions(entry)
    first_name, first = next(iter(functions.items()))
    out: list[tuple[str, Reply]] = []
    if "irrelevance" in category:
        props = first.get("parameters", {}).get("properties", {})
        args = {p: "x" for p in first.get("parameters", {}).get("required", []) if p in props}
        out += [
            ("text", _text("I cannot help with that using these tools.")),
            ("empty", _text(None)),
            ("call", _structured([(first_name, args)])),
            ("bad_json", _structured([(first_name, {})], raw='{"x": ')),
            ("leaked", _leaked(first_name, args)),
        ]
    else:
        assert answer is not None
        gt = _gt_calls(entry, answer)
        out.append(("gt", _structured(gt)))
        alt = _gt_calls(entry, answer, last=True)
        if not _same(alt, gt):
            out.append(("alt", _structured(alt)))
        optional = [
            [(name, {p: v for p, v in args.items() if "" not in _accepted(answer, i, p)}) for i, (name, args) in enumerate(gt)],
            [(name, {p: (None if "" in _accepted(answer, i, p) else v) for p, v in args.items()}) for i, (name, args) in enumerate(gt)],
        ]
        for label, calls in zip(("minimal", "null_optional"), optional):
            if not _same(calls, gt):
                out.append((label, _structured(calls)))
        is_number = lambda v: (isinstance(v, (int, float)) and not isinstance(v, bool)) or (
            isinstance(v, list) and v and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v))
        for label, pick, change in (
            ("retyped", is_number, _retype),
            ("restyled", lambda v: isinstance(v, str) and v.upper().replace(" ", "_") != v or (
                isinstance(v, list) and any(isinstance(x, str) for x in v)), _restyle),
            ("wrong_value", lambda v: True, _wrong),
            ("stringified", lambda v: not isinstance(v, str), lambda v: json.dumps(v) if not isinstance(v, (int, float)) else str(v)),
        ):
            edited = _edit_first(gt, pick, change)
            if edited is not None and not _same(edited, gt):
                out.append((label, _structured(edited)))
        name, args = gt[0]
        schema = functions.get(name, {}).get("parameters", {})
        extra = next((p for p in schema.get("properties", {}) if p not in args and p not in answer["ground_truth"][0][name]), "zz_extra")
        out.append(("extra_param", _structured([(name, {**args, extra: 1}), *gt[1:]])))
        required = [p for p in schema.get("required", []) if p in args]
        if required:
            out.append(("missing_required", _structured([(name, {k: v for k, v in args.items() if k != required[0]}), *gt[1:]])))
        other = next((n for n in functions if n != name), None)
        if other is not None:
            out.append(("wrong_func", _structured([(other, args), *gt[1:]])))
        if len(gt) > 1:
            out.append(("drop_call", _structured(gt[:-1])))
            out.append(("reversed", _structured(gt[::-1])))
        out.append(("dup_call", _structured(gt + gt[:1])))
        out.append(("text", _text("Here is what I would do.")))
        out.append(("bad_json", _structured(gt[:1], raw='{"' + next(iter(args), "x") + '": ')))
        out.append(("empty", _text(None)))
    return [Case(entry_id=entry["id"], category=category, label=label, reply=reply) for label, reply in out]


def _accepted(answer: dict[str, Any], index: int, param: str) -> list[Any]:
    [(_, params)] = answer["ground_truth"][index].items()
    accepted = params.get(param, [])
    return accepted if isinstance(accepted, list) else [accepted]


# -- the two graders -----------------------------------------------------------------------------


def _bfcl_result_item(reply: Reply) -> Any:
    # what BFCL's OpenAI FC handler stores: the tool calls as {name: arguments string}, else the content
    structured = [c for c in reply.tool_calls if c.source == "tool_calls"]
    if structured:
        return [{c.name: c.raw_arguments if isinstance(c.raw_arguments, str) else json.dumps(c.raw_arguments)} for c in structured]
    return reply.content


def _decode_fc(result: Any) -> list[dict[str, Any]]:
    # OpenAICompletionsHandler.decode_ast in FC mode (its module needs tree_sitter, so it is not imported)
    decoded = []
    for invoked in result:
        name = list(invoked.keys())[0]
        decoded.append({name: json.loads(invoked[name])})
    return decoded


def bfcl_accepts(case: Case, entry: dict[str, Any], answer: dict[str, Any] | None) -> tuple[bool, str]:
    """BFCL's verdict and error type, as its eval runner reaches them for an FC model."""
    utils = bfcl_module("utils")
    result = _bfcl_result_item(case.reply)
    if "irrelevance" in case.category:
        try:
            decoded = _decode_fc(result)
            has_call = not utils.is_empty_output(decoded)
        except Exception:
            has_call = False
        return (not has_call, "" if not has_call else "irrelevance_error:decoder_success")
    try:
        decoded = _decode_fc(result)
    except Exception:
        return False, "ast_decoder:decoder_failed"
    if not utils.is_function_calling_format_output(decoded):
        return False, "ast_decoder:decoder_wrong_output_format"
    checker = bfcl_module("eval_checker.ast_eval.ast_checker")
    enums = bfcl_module("constants.enums")
    verdict = checker.ast_checker(entry["function"], decoded, answer["ground_truth"], enums.Language.PYTHON,
                                  case.category, "gpt-4o-2024-11-20-FC")
    return bool(verdict["valid"]), verdict.get("error_type", "")


def harness_accepts(scenario: Scenario, case: Case) -> tuple[bool, str]:
    """This harness's verdict: the reply, then a closing text answer if it called tools, scored."""
    steps = [Step(index=0, turn=1, reply=case.reply)]
    if case.reply.tool_calls:
        steps.append(Step(index=1, turn=1, reply=_text("Done.")))
    trajectory = Trajectory(
        scenario_id=scenario.id, target="scripted", steps=steps,
        offered_tools=[t.name for t in scenario.inline_tools],
        final_answer=steps[-1].reply.content if not steps[-1].reply.tool_calls else None,
    )
    score = score_scenario(scenario, trajectory)
    return score.passed, str(score.outcome)
