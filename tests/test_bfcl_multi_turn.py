"""BFCL multi-turn on BFCL's own classes: the import, the per-turn grades, and agreement with BFCL's checker."""

from __future__ import annotations

import copy
import itertools

import pytest

from harness.bfcl_multi_turn import BFCLWorld, MultiTurnEntry, grade_multi_turn, load_multi_turn, parse_call, run_multi_turn
from harness.outcomes import Outcome
from tests.bfcl_eval_pkg import bfcl_data, bfcl_module
from tests.scripted import ScriptedClient, call, calls, text

CATEGORIES = ("base", "miss_func", "miss_param", "long_context")


@pytest.fixture(scope="module")
def entries() -> dict[str, MultiTurnEntry]:
    bfcl_module("constants.executable_backend_config")  # puts the unpacked bfcl-eval on sys.path
    data = bfcl_data()
    out = {}
    for category in CATEGORIES:
        for entry in load_multi_turn(data / f"BFCL_v4_multi_turn_{category}.json"):
            out[entry.id] = entry
    return out


def ground_truth_steps(entry: MultiTurnEntry) -> list[list[list[str]]]:
    return [[list(turn)] if turn else [] for turn in entry.ground_truth]


def test_every_multi_turn_entry_imports(entries):
    assert len(entries) == 800
    assert {e.category for e in entries.values()} == {f"multi_turn_{c}" for c in CATEGORIES}
    base = entries["multi_turn_base_0"]
    assert base.involved_classes == ["TwitterAPI", "GorillaFileSystem"] and len(base.turns) == 4
    assert {"cd", "mkdir", "mv", "post_tweet"} <= {f["name"] for f in base.functions}


def test_miss_func_holds_functions_back_until_their_turn(entries):
    entry = entries["multi_turn_miss_func_0"]
    [(turn, added)] = entry.added_functions.items()
    assert turn == 3 and [f["name"] for f in added] == ["sort"]
    assert "sort" not in {f["name"] for f in entry.functions}
    # BFCL's Python hint goes on the functions offered from the start, not on the held-out one
    assert all(f["description"].endswith("Note that the provided function is in Python 3 syntax.") for f in entry.functions)
    assert not added[0]["description"].endswith("Python 3 syntax.")
    assert entry.turns[3] == [{"role": "user", "content": "I have updated some more functions you can choose from. What about now?"}]
    assert entry.ground_truth[2] == []  # the turn where the model must say it cannot


def test_parse_call_reads_bfcl_call_text():
    assert parse_call("mv(source='a.txt', destination='temp')") == ("mv", [], {"source": "a.txt", "destination": "temp"})
    assert parse_call("sort('final_report.pdf')") == ("sort", ["final_report.pdf"], {})
    with pytest.raises(ValueError):
        parse_call("os.system('rm -rf /')")


def test_the_world_runs_bfcls_classes(entries):
    world = BFCLWorld(entries["multi_turn_base_0"])
    assert world.execute("cd", [], {"folder": "document"}) == '{"current_working_directory": "document"}'
    assert "final_report.pdf" in world.execute("ls")
    assert world.execute("no_such_tool").startswith("Error during execution")
    assert world.execute("kill").startswith("Error during execution")


def test_ground_truth_passes_every_turn(entries):
    entry = entries["multi_turn_base_0"]
    score = grade_multi_turn(entry, ground_truth_steps(entry))
    assert score.bfcl_valid and score.turns_passed == 4 and score.first_failed_turn is None


def test_a_wrong_turn_is_named_and_the_later_turns_still_graded(entries):
    entry = entries["multi_turn_base_0"]
    steps = ground_truth_steps(entry)
    steps[1] = [["cd(folder='temp')"]]  # the grep is never made
    score = grade_multi_turn(entry, steps)
    assert not score.bfcl_valid and score.bfcl_error == "multi_turn:execution_response_mismatch"
    assert score.first_failed_turn == 2 and score.turns[1].outcome is Outcome.MISSING_CALL and "grep" in score.turns[1].reason
    assert [t.outcome for t in score.turns] == [Outcome.OK, Outcome.MISSING_CALL, Outcome.OK, Outcome.OK]
    steps[1] = []
    assert grade_multi_turn(entry, steps).turns[1].outcome is Outcome.MISSING_CALL
    steps = ground_truth_steps(entry)
    steps[0] = [["cd(folder='document')", "mkdir(dir_name='tmp')", "mv(source='final_report.pdf', destination='tmp')"]]
    wrong = grade_multi_turn(entry, steps)
    assert wrong.turns[0].outcome is Outcome.END_STATE_MISMATCH and "GorillaFileSystem" in wrong.turns[0].reason
    # the calls that failed on the classes are named with their error
    steps[0] = [["cd(folder='documents')", "mkdir(dir_name='temp')"]]
    failed = grade_multi_turn(entry, steps).turns[0]
    assert failed.call_errors and failed.call_errors[0].startswith("cd(folder='documents'): ")
    assert grade_multi_turn(entry, ground_truth_steps(entry)).turns[0].call_errors == []


def test_acting_where_the_model_should_not_is_an_unexpected_call(entries):
    entry = entries["multi_turn_miss_func_0"]
    steps = ground_truth_steps(entry)
    steps[2] = [["ls()"]]
    score = grade_multi_turn(entry, steps)
    assert score.turns[2].outcome is Outcome.UNEXPECTED_CALL
    assert score.bfcl_valid  # BFCL's accuracy does not check those turns (its irrelevance check is separate)


# -- agreement with BFCL's own multi_turn_checker ---------------------------------------------------


def _perturb(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    return value


def _wrong_argument(call_text: str) -> str | None:
    name, args, kwargs = parse_call(call_text)
    if kwargs:
        key = next(iter(kwargs))
        kwargs = {**kwargs, key: _perturb(kwargs[key])}
    elif args:
        args = [_perturb(args[0]), *args[1:]]
    else:
        return None
    rendered = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    return f"{name}({','.join(rendered)})"


def trajectories(entry: MultiTurnEntry):
    """The ground truth and perturbations of it, as BFCL's decoded model results (turn -> step -> calls)."""
    gt = ground_truth_steps(entry)
    yield "gt", gt
    yield "one_call_per_step", [[[c] for c in turn] for turn in entry.ground_truth]
    acting = [i for i, turn in enumerate(entry.ground_truth) if turn]
    first, last = acting[0], acting[-1]
    skipped = copy.deepcopy(gt)
    skipped[first] = []
    yield "skip_a_turn", skipped
    dropped = copy.deepcopy(gt)
    dropped[last] = [entry.ground_truth[last][:-1]] if len(entry.ground_truth[last]) > 1 else []
    yield "drop_last_call", dropped
    for i, call_text in enumerate(entry.ground_truth[first]):
        changed = _wrong_argument(call_text)
        if changed is not None:
            wrong = copy.deepcopy(gt)
            wrong[first] = [[*entry.ground_truth[first][:i], changed, *entry.ground_truth[first][i + 1:]]]
            yield "wrong_argument", wrong
            break
    if len(entry.ground_truth[first]) > 1:
        reordered = copy.deepcopy(gt)
        reordered[first] = [entry.ground_truth[first][::-1]]
        yield "reversed_turn", reordered
    repeated = copy.deepcopy(gt)
    repeated[first] = [entry.ground_truth[first] + entry.ground_truth[first][:1]]
    yield "repeated_call", repeated
    empty = [i for i, turn in enumerate(entry.ground_truth) if not turn and i + 1 < len(entry.ground_truth)]
    if empty:
        early = copy.deepcopy(gt)
        early[empty[0]] = [list(entry.ground_truth[empty[0] + 1])] if entry.ground_truth[empty[0] + 1] else []
        yield "acts_early", early
    yield "stops_early", gt[:-1]


_names = itertools.count()


def bfcl_multi_turn_verdict(entry: MultiTurnEntry, decoded) -> tuple[bool, str | None]:
    checker = bfcl_module("eval_checker.multi_turn_eval.multi_turn_checker")
    utils = bfcl_module("eval_checker.multi_turn_eval.multi_turn_utils")
    if len(decoded) != len(entry.ground_truth):
        return False, "multi_turn:force_terminated"  # the eval runner's check before the checker
    name = f"agreement{next(_names)}"
    test_entry = {"id": entry.id, "initial_config": entry.initial_config, "involved_classes": entry.involved_classes}
    try:
        result = checker.multi_turn_checker(decoded, entry.ground_truth, test_entry, entry.category, name)
    finally:
        # BFCL keeps each run's instances as module globals, by model name: drop this run's
        for key in [k for k in vars(utils) if k.startswith(name)]:
            del vars(utils)[key]
    return result["valid"], result.get("error_type")


def test_agreement_with_bfcls_multi_turn_checker(entries):
    total, failing, disagree = 0, 0, []
    for entry in entries.values():
        for label, decoded in trajectories(entry):
            total += 1
            theirs, their_error = bfcl_multi_turn_verdict(entry, decoded)
            failing += not theirs
            ours = grade_multi_turn(entry, decoded)
            if (ours.bfcl_valid, ours.bfcl_error) != (theirs, their_error):
                disagree.append(f"{entry.id} {label}: harness {ours.bfcl_error or 'valid'}, BFCL {their_error or 'valid'}")
    assert total > 5000 and 0.3 < failing / total < 0.9  # the perturbations do break most conversations
    assert not disagree, f"{len(disagree)} of {total} trajectories graded differently:\n" + "\n".join(disagree[:30])


# -- running a model through an entry ---------------------------------------------------------------


async def test_a_scripted_model_runs_through_the_turns(entries):
    entry = entries["multi_turn_base_1"]
    script = []
    for turn in entry.ground_truth:
        tool_calls = []
        for i, call_text in enumerate(turn):
            name, args, kwargs = parse_call(call_text)
            assert not args
            tool_calls.append(call(name, f"c{len(script)}_{i}", **kwargs))
        script += [calls(*tool_calls), text("Done.")]
    client = ScriptedClient(script)
    run = await run_multi_turn(entry, client, target="scripted")
    assert run.score.bfcl_valid and run.score.turns_passed == len(entry.ground_truth), run.score
    # the model saw BFCL's tools, and each call's real result came back
    assert {"ls", "cd", "mv"} <= {t["function"]["name"] for t in client.requests[0]["tools"]}
    second = client.requests[1]["messages"]
    assert second[-1] == {"role": "tool", "tool_call_id": "c0_0", "name": "ls", "content": '{"current_directory_content": ["workspace"]}'}


def test_the_command_reports_bfcls_accuracy_next_to_the_turns(entries, tmp_path):
    import json

    from click.testing import CliRunner

    from harness.cli import main
    from tests.fakeserver import FakeServer, text_reply, tool_call_reply

    source = bfcl_data() / "BFCL_v4_multi_turn_base.json"
    entry = entries["multi_turn_base_1"]  # ls(a=True) first: right at turn 1, then it only talks
    with FakeServer(models=["m"]) as server:
        first_ask = entry.turns[0][-1]["content"]

        def respond(request):
            last = request["messages"][-1]
            if last["role"] == "user" and last["content"] == first_ask:
                return tool_call_reply("ls", {"a": True})
            return text_reply("I would rather not.")

        server.responder = respond
        out = tmp_path / "runs.jsonl"
        result = CliRunner().invoke(main, ["bfcl-multi-turn", str(source), "--base-url", server.base_url, "--model", "m",
                                           "--limit", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "multi_turn_base: 2 entries, BFCL accuracy 0.0%" in result.output
    assert "first failing turn: turn 1: 1, turn 2: 1" in result.output
    runs = [json.loads(line) for line in out.read_text().splitlines()]
    by_id = {r["entry_id"]: r for r in runs}
    assert [t["outcome"] for t in by_id[entry.id]["score"]["turns"]] == ["ok", "missing_call", "missing_call", "missing_call"]
