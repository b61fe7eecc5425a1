"""BFCL import: files become the right scenarios, and those scenarios accept what BFCL's checker accepts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from jsonschema import Draft202012Validator

from harness.bfcl import (
    BFCLError,
    bfcl_matcher,
    bfcl_schema,
    bfcl_value_matches,
    import_bfcl,
    load_bfcl,
    standardize_string,
)
from harness.loop import run_scenario
from harness.outcomes import Outcome, Stratum
from harness.scenario import AnswerStep, AnyOrderStep, CallStep, SCHEMA_FILENAME, load_scenarios
from harness.scoring import match_value, score_scenario
from tests.scripted import ScriptedClient, call, calls, text

DATA = Path(__file__).resolve().parent / "data" / "bfcl"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def suite() -> dict[str, object]:
    return {sc.id: sc for sc in load_bfcl(DATA)}


def only_call(scenario) -> CallStep:
    [step] = scenario.turns[0].expect
    assert isinstance(step, CallStep)
    return step


# -- loading -------------------------------------------------------------------------------------


def test_every_supported_category_in_the_folder_loads(suite):
    assert sorted(suite) == [
        "bfcl-irrelevance_0", "bfcl-live_simple_0-0-0", "bfcl-multiple_0", "bfcl-parallel_0",
        "bfcl-parallel_multiple_0", "bfcl-simple_0", "bfcl-simple_1", "bfcl-simple_2",
    ]
    assert suite["bfcl-simple_0"].source.endswith("BFCL_v3_simple.json:1")


def test_simple_maps_dotted_names_and_grades_like_bfcl(suite):
    sc = suite["bfcl-simple_0"]
    [tool] = sc.inline_tools
    assert (tool.name, tool.original_name) == ("math_factorial", "math.factorial")
    assert tool.parameters == {
        "type": "object", "properties": {"number": {"type": "integer", "description": "The integer."}}, "required": ["number"],
    }
    step = only_call(sc)
    assert step.call == "math_factorial" and step.allow_extra_args is False
    assert step.args["number"].equals == 7 and step.args["number"].normalize == "bfcl"
    assert sc.strata == [Stratum.TOOL_SELECTION, Stratum.ARGUMENT_VALIDITY]
    assert sc.tags == ["bfcl", "simple"]
    assert sc.turns[0].user == "What is 7 factorial?" and sc.system == ""


def test_bfcl_types_become_json_schema(suite):
    props = suite["bfcl-simple_2"].inline_tools[0].parameters["properties"]
    assert props["filters"]["type"] == "object" and props["filters"]["properties"]["school"] == {"type": "string", "description": "School name."}
    assert props["bounds"]["type"] == "array" and props["bounds"]["items"] == {"type": "number"}  # tuple of float
    assert "type" not in props["extra"]  # any
    height = suite["bfcl-simple_1"].inline_tools[0].parameters["properties"]["height"]
    # what BFCL's FC mode shows the model for a float
    assert height == {"type": "number", "description": "Height in metres. This is a float type value.", "format": "float"}


def test_optional_params_and_a_nested_dict(suite):
    args = only_call(suite["bfcl-simple_1"]).args
    assert args["gravity"].equals == 9.8 and args["gravity"].optional
    assert args["unit"].one_of == ["s", "seconds", ""] and args["unit"].optional  # BFCL also takes "" for a string
    args = only_call(suite["bfcl-simple_2"]).args
    assert args["filters"].one_of == [
        {"department": "Science", "school": "Hillcrest High"},
        {"department": "Science", "school": "Hillcrest High School"},
    ]
    assert args["columns"].absent and args["extra"].equals == "" and args["extra"].optional


def test_multiple_offers_every_function_and_expects_one(suite):
    sc = suite["bfcl-multiple_0"]
    assert [t.name for t in sc.inline_tools] == ["currency_convert", "currency_exchange_rate", "stock_price"]
    assert only_call(sc).call == "currency_convert"
    assert sc.strata == [Stratum.TOOL_SELECTION]


@pytest.mark.parametrize("sid, names", [
    ("bfcl-parallel_0", ["get_weather", "get_weather"]),
    ("bfcl-parallel_multiple_0", ["restaurant_book", "taxi_order"]),
])
def test_parallel_categories_expect_calls_in_any_order(suite, sid, names):
    [step] = suite[sid].turns[0].expect
    assert isinstance(step, AnyOrderStep) and [c.call for c in step.any_order] == names
    assert suite[sid].strata == [Stratum.MULTI_CALL]


def test_irrelevance_expects_a_text_answer_and_needs_no_answer_file(suite):
    sc = suite["bfcl-irrelevance_0"]
    assert sc.turns[0].expect == [AnswerStep(answer=True)]
    assert sc.strata == [Stratum.IRRELEVANCE]
    assert not (DATA / "possible_answer" / "BFCL_v3_irrelevance.json").exists()


def test_live_entries_keep_the_system_prompt_and_earlier_exchange(suite):
    sc = suite["bfcl-live_simple_0-0-0"]
    assert sc.system == "You are the help desk bot of Acme Parcels."
    assert [(m.role, m.content) for m in sc.few_shot] == [
        ("user", "Hi, can you help with a parcel?"), ("assistant", "Of course. What is the tracking number?"),
    ]
    assert sc.turns[0].user == "It's AC-1234, please include its history."
    assert sc.tags == ["bfcl", "live_simple"]
    assert sc.inline_tools[0].parameters["properties"]["lang"]["enum"] == ["en", "fr"]


def test_category_filter_and_explicit_answer_file(tmp_path):
    assert [s.id for s in load_bfcl(DATA, category="parallel")] == ["bfcl-parallel_0"]
    assert {s.id for s in load_bfcl(DATA, category="simple")} == {"bfcl-simple_0", "bfcl-simple_1", "bfcl-simple_2"}
    question = tmp_path / "mine.json"
    shutil.copy(DATA / "BFCL_v3_multiple.json", question)
    [sc] = load_bfcl(question, DATA / "possible_answer" / "BFCL_v3_multiple.json")
    assert sc.id == "bfcl-multiple_0"


# -- semantics: what BFCL's checker accepts ------------------------------------------------------

MISSING = object()
S, I, F, B = {"type": "string"}, {"type": "integer"}, {"type": "float"}, {"type": "boolean"}
ANY = {"type": "any"}
STRS = {"type": "array", "items": {"type": "string"}}
FLOATS = {"type": "array", "items": {"type": "float"}}
DICT = {"type": "dict", "properties": {"department": S, "school": S, "year": I}}
DICTS = {"type": "array", "items": {"type": "dict", "properties": {"field": S, "op": S}}}
SCHOOL = {"department": ["Science"], "school": ["Hillcrest High", "Hillcrest HS"]}
CONDS = [[{"field": ["age"], "op": [">"]}, {"field": ["job"], "op": ["="]}]]

# (accepted values in the ground truth, the parameter's BFCL schema, the model's value, BFCL's verdict)
CASES = [
    # strings: standardize_string on both sides
    (["San Francisco, CA"], S, "san francisco ca", True),
    (["April 1, 2024"], S, "April 1,2024", True),  # the example in BFCL's docstring
    (["x**2"], S, "x^2", True),  # `*` and `^` are dropped, so these read the same
    (["it's"], S, 'it"s', True),  # single quotes read as double
    (["New York"], S, "NYC", False),
    (["New York", "NYC"], S, "nyc", True),
    # numbers: an int is fine for a float, a string is a type error, a bool is not a number
    ([5], I, 5, True),
    ([5], I, 6, False),
    ([5], I, "5", False),
    ([9.8], F, 9.8, True),
    ([5.0], F, 5, True),
    ([2.0, 3.0], F, 3, True),
    ([9.8], F, 10, False),
    ([True], B, True, True),
    ([True], B, 1, False),
    # "" in the list: the parameter may be left out
    (["units", ""], S, MISSING, True),
    (["units", ""], S, "", True),
    (["units", ""], S, "cm", False),
    ([0, ""], I, MISSING, True),
    ([0, ""], I, 0, True),
    ([0, ""], I, 1, False),
    ([0, ""], I, "", False),
    ([""], S, MISSING, True),
    ([""], S, "x", False),
    ([""], I, MISSING, True),
    ([""], I, 3, False),
    ([5], I, MISSING, False),
    # lists: element by element, in order, strings standardised
    ([["Santa Barbara", "Monterey"], ["Monterey", "Santa Barbara"]], STRS, ["monterey", "santa barbara"], True),
    ([["a", "b"]], STRS, ["b", "a"], False),
    ([["a", "b"]], STRS, ["a"], False),
    ([[1.0, 3.0]], FLOATS, [1, 3], True),
    # dicts: every key must be expected, every expected key present unless it accepts ""
    ([SCHOOL], DICT, {"department": "science", "school": "hillcrest hs"}, True),
    ([SCHOOL], DICT, {"department": "Science"}, False),
    ([SCHOOL], DICT, {"department": "Science", "school": "Hillcrest HS", "year": 2024}, False),
    ([{"department": ["Science"], "year": [2024, ""]}], DICT, {"department": "Science"}, True),
    ([{"department": ["Science"], "year": [2024, ""]}], DICT, {"department": "Science", "year": 2024}, True),
    ([{"department": ["Science"], "year": [2024, ""]}], DICT, {"department": "Science", "year": 2023}, False),
    # lists of dicts: each dict checked against its counterpart, in order
    (CONDS, DICTS, [{"field": "age", "op": ">"}, {"field": "Job", "op": "="}], True),
    (CONDS, DICTS, [{"field": "job", "op": "="}, {"field": "age", "op": ">"}], False),
    (CONDS, DICTS, [{"field": "age", "op": ">"}], False),
    # any: BFCL checks it as a string unless the answer is of another type
    ([5], ANY, 5, True),
    ([5], ANY, "5", False),
]


def harness_accepts(accepted, param, value) -> bool:
    """The imported expectation, graded as the scorer grades it: schema first, then the matcher."""
    spec = bfcl_matcher(accepted, param)
    if value is MISSING:
        return match_value(spec)[0] is Outcome.OK
    schema = bfcl_schema({"type": "dict", "properties": {"p": param}})["properties"]["p"]
    return Draft202012Validator(schema).is_valid(value) and match_value(spec, value)[0] is Outcome.OK


def reference_accepts(accepted, param, value) -> bool:
    """The same expectation through `bfcl_value_matches` (the scorer's optional exact hook)."""
    spec = bfcl_matcher(accepted, param)
    if value is MISSING:
        return spec.optional or spec.absent
    if spec.absent:
        return False
    schema = bfcl_schema({"type": "dict", "properties": {"p": param}})["properties"]["p"]
    values = spec.one_of if spec.one_of is not None else [spec.equals]
    return Draft202012Validator(schema).is_valid(value) and bfcl_value_matches(values, value, param_type=schema.get("type"))


@pytest.mark.parametrize("accepted, param, value, bfcl", CASES)
def test_imported_expectations_accept_what_bfcl_accepts(accepted, param, value, bfcl):
    assert harness_accepts(accepted, param, value) is bfcl
    assert reference_accepts(accepted, param, value) is bfcl


def test_an_integer_param_given_a_float_is_where_the_hook_matters():
    # BFCL's type check rejects 5.0 for an integer; JSON Schema and the bare matcher accept it, so the
    # scorer calls bfcl_value_matches in bfcl mode (tests/test_scoring.py checks the scorer end)
    assert harness_accepts([5], I, 5.0) is True
    assert bfcl_value_matches([5], 5.0, param_type="integer") is False
    assert bfcl_value_matches([5.0], 5, param_type="number") is True


def test_standardize_string_matches_bfcl():
    assert standardize_string("Los Angeles, CA") == "losangelesca"
    assert standardize_string("It's 3.5 m/s^2 - *fast*") == 'it"s35ms2fast'


def test_dict_answers_that_explode_are_refused():
    wide = {f"k{i}": ["a", "b", ""] for i in range(8)}  # 4**8 alternatives
    with pytest.raises(Exception, match="more than"):
        bfcl_matcher([wide], {"type": "dict"})


# -- grading whole scenarios through the loop ----------------------------------------------------


async def grade(scenario, *replies):
    trajectory = await run_scenario(scenario, ScriptedClient(list(replies)), target="t")
    return score_scenario(scenario, trajectory)


async def test_simple_passes_with_an_int_for_a_float_and_omitted_optionals(suite):
    score = await grade(suite["bfcl-simple_1"], calls(call("physics_fall_time", height=20)), text("About 2 s."))
    assert score.passed, score.reason


async def test_simple_fails_on_an_unexpected_argument(suite):
    sc = suite["bfcl-simple_2"]
    reply = calls(call("school_db_query", table="Students", filters={"department": "science", "school": "hillcrest high"},
                       limit=10, columns=["name"]))
    score = await grade(sc, reply, text("Done."))
    assert score.outcome is Outcome.UNEXPECTED_PARAM and "columns" in score.reason


async def test_simple_fails_on_an_argument_bfcl_does_not_know(suite):
    score = await grade(suite["bfcl-simple_0"], calls(call("math_factorial", number=7, exact=True)), text("5040"))
    assert score.outcome is Outcome.UNEXPECTED_PARAM and "exact" in score.reason
    assert (await grade(suite["bfcl-simple_0"], calls(call("math_factorial", number=7)), text("5040"))).passed


async def test_multiple_fails_on_the_wrong_function(suite):
    score = await grade(suite["bfcl-multiple_0"], calls(call("currency_exchange_rate", base="USD", target="EUR")), text("0.9"))
    assert score.outcome is Outcome.WRONG_TOOL


async def test_parallel_passes_in_any_order_and_fails_on_an_extra_call(suite):
    sc = suite["bfcl-parallel_0"]
    ok = await grade(sc, calls(call("get_weather", "a", city="lima"), call("get_weather", "b", city="Oslo", unit="celsius")), text("."))
    assert ok.passed, ok.reason
    extra = await grade(sc, calls(call("get_weather", "a", city="Lima"), call("get_weather", "b", city="Oslo"),
                                  call("get_weather", "c", city="Bergen")), text("."))
    assert extra.outcome is Outcome.SPURIOUS_CALL
    short = await grade(sc, calls(call("get_weather", "a", city="Lima")), text("."))
    assert not short.passed


async def test_irrelevance_passes_only_without_a_call(suite):
    sc = suite["bfcl-irrelevance_0"]
    assert (await grade(sc, text("Michelangelo."))).passed
    called = await grade(sc, calls(call("geometry_circle_area", radius=1.0)), text("."))
    assert called.outcome is Outcome.UNEXPECTED_CALL


async def test_the_model_sees_the_bfcl_conversation(suite):
    client = ScriptedClient([calls(call("parcel_status", tracking_id="ac 1234", history=True)), text("On its way.")])
    sc = suite["bfcl-live_simple_0-0-0"]
    score = score_scenario(sc, await run_scenario(sc, client, target="t"))
    assert score.passed, score.reason
    first = client.requests[0]
    assert [m["role"] for m in first["messages"]] == ["system", "user", "assistant", "user"]
    assert first["tools"][0]["function"]["name"] == "parcel_status"


# -- import: YAML round trip and the command -----------------------------------------------------


def test_import_writes_yaml_that_loads_back_the_same(tmp_path, suite):
    out = tmp_path / "bfcl"
    written = import_bfcl(DATA, out)
    assert sorted(p.name for p in written) == sorted(p.with_suffix(".yaml").name for p in DATA.glob("*.json"))
    reloaded = {sc.id: sc for sc in load_scenarios(out)}
    assert reloaded.keys() == suite.keys()
    for sid, sc in suite.items():
        assert reloaded[sid].model_dump(mode="json") == sc.model_dump(mode="json"), sid
    head = (out / "BFCL_v3_simple.yaml").read_text().splitlines()[0]
    assert head.startswith("# yaml-language-server: $schema=") and head.endswith(SCHEMA_FILENAME)


def test_imported_yaml_validates_against_the_committed_schema(tmp_path):
    import yaml

    schema = json.loads((ROOT / "scenarios" / SCHEMA_FILENAME).read_text())
    for file in import_bfcl(DATA, tmp_path):
        errors = list(Draft202012Validator(schema).iter_errors(yaml.safe_load(file.read_text())))
        assert not errors, f"{file.name}: {errors[0].message}"


def test_the_import_command(tmp_path):
    from harness.cli import main

    result = CliRunner().invoke(main, ["import", "bfcl", str(DATA), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "wrote 6 scenario file(s)" in result.output
    bad = CliRunner().invoke(main, ["import", "bfcl", str(DATA), "--out", str(tmp_path), "--category", "java"])
    assert bad.exit_code == 2


# -- bad files -----------------------------------------------------------------------------------


def write_pair(folder: Path, name: str, questions: list[object], answers: list[object] | None = None) -> Path:
    question = folder / name
    question.write_text("\n".join(q if isinstance(q, str) else json.dumps(q) for q in questions) + "\n")
    if answers is not None:
        (folder / "possible_answer").mkdir(exist_ok=True)
        (folder / "possible_answer" / name).write_text("\n".join(json.dumps(a) for a in answers) + "\n")
    return question


GOOD_Q = json.loads((DATA / "BFCL_v3_simple.json").read_text().splitlines()[0])
GOOD_A = json.loads((DATA / "possible_answer" / "BFCL_v3_simple.json").read_text().splitlines()[0])


def problems_of(path, *args) -> list[str]:
    with pytest.raises(BFCLError) as info:
        load_bfcl(path, *args)
    return [str(p) for p in info.value.problems]


def test_broken_json_names_file_and_line(tmp_path):
    path = write_pair(tmp_path, "BFCL_v3_simple.json", [GOOD_Q, '{"id": "simple_1", "question": [[', GOOD_Q], [GOOD_A])
    [problem] = problems_of(path)
    assert problem.startswith(f"{path}:2") and "not valid JSON" in problem


def test_missing_ground_truth_and_unknown_function_name_the_line(tmp_path):
    second = dict(GOOD_Q, id="simple_1")
    third = dict(GOOD_Q, id="simple_2")
    answers = [GOOD_A, {"id": "simple_2", "ground_truth": [{"math.fact": {"number": [7]}}]}]
    path = write_pair(tmp_path, "BFCL_v3_simple.json", [GOOD_Q, second, third], answers)
    found = problems_of(path)
    assert any(p.startswith(f"{path}:2") and "no ground truth for id 'simple_1'" in p for p in found)
    answer_file = tmp_path / "possible_answer" / "BFCL_v3_simple.json"
    assert any(p.startswith(f"{answer_file}:2") and "'math.fact'" in p and "ground_truth.0" in p for p in found)


def test_unknown_type_and_multi_turn_questions(tmp_path):
    odd = json.loads(json.dumps(GOOD_Q))
    odd["function"][0]["parameters"]["properties"]["number"]["type"] = "HashMap"
    multi = dict(GOOD_Q, id="simple_1", question=GOOD_Q["question"] * 2)
    answers = [GOOD_A, dict(GOOD_A, id="simple_1")]
    path = write_pair(tmp_path, "BFCL_v3_simple.json", [odd, multi], answers)
    first, second = problems_of(path)
    assert f"{path}:1" in first and "HashMap" in first and "function.0.parameters.number" in first
    assert f"{path}:2" in second and "multi-turn" in second


def test_a_schema_json_schema_would_reject(tmp_path):
    odd = json.loads(json.dumps(GOOD_Q))
    odd["function"][0]["parameters"]["properties"]["number"]["enum"] = "7"
    [problem] = problems_of(write_pair(tmp_path, "BFCL_v3_simple.json", [odd], [GOOD_A]))
    assert "function.0.parameters.properties.number.enum" in problem and "not of type 'array'" in problem


def test_no_answer_file(tmp_path):
    path = write_pair(tmp_path, "BFCL_v3_simple.json", [GOOD_Q])
    [problem] = problems_of(path)
    assert "possible_answer" in problem and str(path) in problem


def test_unsupported_categories(tmp_path):
    path = write_pair(tmp_path, "BFCL_v3_java.json", [dict(GOOD_Q, id="java_0")])
    [problem] = problems_of(path)
    assert "'java' is not supported" in problem
    # a folder skips them, and says so when nothing is left
    with pytest.raises(BFCLError, match="no supported BFCL question files.*BFCL_v3_java.json"):
        load_bfcl(tmp_path)
    write_pair(tmp_path, "BFCL_v3_simple.json", [GOOD_Q], [GOOD_A])
    assert [s.id for s in load_bfcl(tmp_path)] == ["bfcl-simple_0"]


def test_nothing_is_written_when_an_entry_fails(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    write_pair(src, "BFCL_v3_simple.json", [GOOD_Q], [GOOD_A])
    write_pair(src, "BFCL_v3_multiple.json", [dict(GOOD_Q, id="multiple_0")], [])
    with pytest.raises(BFCLError, match="no ground truth"):
        import_bfcl(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()
