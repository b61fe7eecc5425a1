"""BFCL import: files become the right scenarios, and those scenarios accept what BFCL's checker accepts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from jsonschema import Draft202012Validator

from harness.bfcl import BFCLError, bfcl_matcher, bfcl_schema, import_bfcl, load_bfcl, read_bfcl
from harness.loop import run_scenario
from harness.matchers import standardize_string
from harness.outcomes import Outcome, Stratum
from harness.scenario import SCHEMA_FILENAME, AnswerStep, AnyOrderStep, CallStep, Matcher, load_scenarios
from harness.scoring import score_arguments, score_scenario
from harness.trajectory import ToolCall
from tests.bfcl_agreement import Case, bfcl_accepts, replies_for
from tests.bfcl_agreement import harness_accepts as harness_grades
from tests.bfcl_eval_pkg import bfcl_data, bfcl_module
from tests.scripted import ScriptedClient, broken, call, calls, leaked, text

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
    assert sc.turns[0].expect == [AnswerStep(answer=Matcher(any=True, normalize="bfcl"))]
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
INTS = {"type": "array", "items": {"type": "integer"}}
ENUM_STRS = {"type": "array", "items": {"type": "string"}, "enum": ["buzz", "trust", "view"]}
ENUM_S = {"type": "string", "enum": ["celsius", "fahrenheit"]}
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
    # items are type-checked one level deep: BFCL widens an int to a float only at the top level
    ([[1.0, 3.0]], FLOATS, [1, 3], False),
    ([[1.0, 3.0]], FLOATS, [1.0, 3.0], True),
    ([[5, 6]], INTS, [5.0, 6.0], False),
    ([[5, 6], ""], INTS, [5.0, 6.0], True),  # an optional array skips the item check (a quirk of BFCL's)
    ([[1, 3]], FLOATS, [1, 3], True),  # ints in the answer make ints the items' type
    # the answer's type wins over the schema's (BFCL's "variable"): null, a bool for a string, text for an int
    (["", None], S, None, True),
    (["", None], S, MISSING, True),
    (["x"], S, None, False),
    ([True], S, True, True),
    ([True], S, "True", False),
    (["", "dontcare"], I, "dontcare", True),
    (["", "dontcare"], I, "DontCare", False),  # a variable is compared exactly, not standardised
    (["", "dontcare"], I, 3, False),
    # BFCL does not check `enum`: not on arrays, not against ""
    ([["view"]], ENUM_STRS, ["view"], True),
    ([["view"]], ENUM_STRS, ["buzz"], False),
    (["fahrenheit", ""], ENUM_S, "", True),
    (["fahrenheit", ""], ENUM_S, "Fahrenheit", True),
    (["fahrenheit", ""], ENUM_S, "kelvin", False),
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
    """The imported expectation, graded as the scorer grades an argument: schema, then the matcher."""
    spec = bfcl_matcher(accepted, param)
    schema = bfcl_schema({"type": "dict", "properties": {"p": param}})
    sent = ToolCall(id="1", name="f", arguments={} if value is MISSING else {"p": value})
    return all(c.passed for c in score_arguments(CallStep(call="f", args={"p": spec}, allow_extra_args=False), sent, schema, {}))


@pytest.fixture(scope="module")
def bfcl_checker():
    """bfcl-eval's own AST checker (downloaded for the test run; see tests/bfcl_eval_pkg.py)."""
    return bfcl_module("eval_checker.ast_eval.ast_checker"), bfcl_module("constants.enums").Language.PYTHON


def bfcl_says(bfcl_checker, accepted, param, value) -> bool:
    checker, python = bfcl_checker
    function = {"name": "f", "parameters": {"type": "dict", "properties": {"p": param}, "required": []}}
    output = {"f": {} if value is MISSING else {"p": value}}
    return checker.simple_function_checker(function, output, {"f": {"p": accepted}}, python, "m")["valid"]


@pytest.mark.parametrize("accepted, param, value, bfcl", CASES)
def test_imported_expectations_accept_what_bfcl_accepts(accepted, param, value, bfcl):
    assert harness_accepts(accepted, param, value) is bfcl


@pytest.mark.parametrize("accepted, param, value, bfcl", CASES)
def test_the_table_is_bfcls_own_verdict(bfcl_checker, accepted, param, value, bfcl):
    assert bfcl_says(bfcl_checker, accepted, param, value) is bfcl


def test_an_integer_param_given_a_float_is_a_type_error():
    # JSON Schema counts 5.0 as an integer; BFCL's type check does not
    assert harness_accepts([5], I, 5.0) is False
    assert harness_accepts([5.0], F, 5) is True


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
    # BFCL decodes no call from text or from broken JSON, and passes an empty reply
    assert (await grade(sc, leaked("geometry_circle_area", radius=1.0))).passed
    assert (await grade(sc, broken("geometry_circle_area", '{"radius": '), text("."))).passed


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
    written = import_bfcl(DATA, out).written
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
    for file in import_bfcl(DATA, tmp_path).written:
        errors = list(Draft202012Validator(schema).iter_errors(yaml.safe_load(file.read_text())))
        assert not errors, f"{file.name}: {errors[0].message}"


def test_the_import_command(tmp_path):
    from harness.cli import main

    result = CliRunner().invoke(main, ["import", "bfcl", str(DATA), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "wrote 6 scenario file(s)" in result.output and "8 scenarios" in result.output
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


def skipped_of(path, *args) -> list[str]:
    return [str(p) for p in read_bfcl(path, *args).skipped]


def test_bad_entries_are_skipped_with_file_and_line_and_the_rest_imports(tmp_path):
    second = dict(GOOD_Q, id="simple_1")
    third = dict(GOOD_Q, id="simple_2")
    answers = [GOOD_A, {"id": "simple_2", "ground_truth": [{"math.fact": {"number": [7]}}]}]
    path = write_pair(tmp_path, "BFCL_v3_simple.json", [GOOD_Q, second, third], answers)
    result = read_bfcl(path)
    assert [sc.id for sc in result.scenarios] == ["bfcl-simple_0"]
    found = [str(p) for p in result.skipped]
    assert any(p.startswith(f"{path}:2") and "no ground truth for id 'simple_1'" in p for p in found)
    answer_file = tmp_path / "possible_answer" / "BFCL_v3_simple.json"
    assert any(p.startswith(f"{answer_file}:2") and "'math.fact'" in p and "ground_truth.0" in p for p in found)
    assert len(found) == 2


def test_unknown_type_and_multi_turn_questions(tmp_path):
    odd = json.loads(json.dumps(GOOD_Q))
    odd["function"][0]["parameters"]["properties"]["number"]["type"] = "HashMap"
    multi = dict(GOOD_Q, id="simple_1", question=GOOD_Q["question"] * 2)
    answers = [GOOD_A, dict(GOOD_A, id="simple_1")]
    path = write_pair(tmp_path, "BFCL_v3_simple.json", [odd, multi], answers)
    first, second = problems_of(path)  # nothing imports, so the skips are the error
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


def test_nothing_is_written_when_a_file_is_broken(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    write_pair(src, "BFCL_v3_simple.json", [GOOD_Q], [GOOD_A])
    write_pair(src, "BFCL_v3_multiple.json", [dict(GOOD_Q, id="multiple_0"), "{not json"], [])
    with pytest.raises(BFCLError, match="not valid JSON"):
        import_bfcl(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# -- BFCL v4, the real data (bfcl-eval fetched from PyPI for the test run) -------------------------

class V4:
    """BFCL v4 as BFCL ships it, and what the importer made of it."""

    def __init__(self, root: Path):
        self.root = root
        self.result = read_bfcl(root)
        self.scenarios = {sc.id: sc for sc in self.result.scenarios}
        self.entries: dict[str, tuple[str, dict, dict | None]] = {}
        for question in sorted(root.glob("BFCL_v4_*.json")):
            category = question.stem.removeprefix("BFCL_v4_")
            if category not in ("simple_python", "multiple", "parallel", "parallel_multiple", "irrelevance") and not (
                category.startswith("live_") and category != "live_relevance"
            ):
                continue
            answer_file = root / "possible_answer" / question.name
            answers = {}
            if answer_file.exists():
                answers = {a["id"]: a for a in map(json.loads, answer_file.read_text().splitlines())}
            for entry in map(json.loads, question.read_text().splitlines()):
                self.entries[entry["id"]] = (category, entry, answers.get(entry["id"]))

    def scenario(self, entry_id: str):
        return self.scenarios["bfcl-" + entry_id]

    def bfcl(self, entry_id: str, reply) -> bool:
        """BFCL's own verdict on this first reply."""
        category, entry, answer = self.entries[entry_id]
        return bfcl_accepts(Case(entry_id=entry_id, category=category, label="", reply=reply), entry, answer)[0]


@pytest.fixture(scope="module")
def v4() -> V4:
    return V4(bfcl_data())


async def both(v4: V4, entry_id: str, reply):
    """This harness's score for the reply (through the real loop, then a closing answer), and BFCL's verdict."""
    score = await grade(v4.scenario(entry_id), reply, text("Done."), text("Done."))
    return score, v4.bfcl(entry_id, reply)


def test_v4_folder_imports_every_entry_but_the_ones_bfcl_cannot_pass(v4, tmp_path):
    # 1: live_simple and live_irrelevance used to refuse the whole folder for 6 entries
    skipped = {(Path(p.file).name, p.line): p.message for p in v4.result.skipped}
    assert len(v4.scenarios) + len(skipped) == len(v4.entries) == 3475
    assert sum(sc.tags[1] == "live_simple" for sc in v4.scenarios.values()) == 256
    assert sum(sc.tags[1] == "live_irrelevance" for sc in v4.scenarios.values()) == 880
    assert [m for (f, _), m in skipped.items() if f == "BFCL_v4_live_irrelevance.json"] == ["no functions: a scenario must offer at least one tool"] * 4
    assert "accepted values is empty" in skipped[("BFCL_v4_live_simple.json", 107)]
    assert len(skipped) == 9 and all("BFCL's checker fails every reply" in m for (f, _), m in skipped.items() if "irrelevance" not in f)


def test_v4_import_command_writes_the_rest_and_lists_the_skips(v4, tmp_path):
    from harness.cli import main

    result = CliRunner().invoke(main, ["import", "bfcl", str(v4.root), "--out", str(tmp_path), "--category", "live_simple"])
    assert result.exit_code == 0, result.output
    assert "wrote 1 scenario file(s)" in result.output and "256 scenarios" in result.output
    assert "skipped 2 BFCL entries" in result.output and "BFCL_v4_live_simple.json:107" in result.output
    assert len(load_scenarios(tmp_path)) == 256


async def test_v4_null_in_the_ground_truth_is_accepted(v4):
    # 2: live_multiple_139-53-1 accepts `date: ["", null]`; schema validation used to refuse null
    reply = calls(call("stock_price_get", ticker="AAPL", exchange="NASDAQ", date=None))
    score, bfcl = await both(v4, "live_multiple_139-53-1", reply)
    assert score.passed and bfcl, score.reason


async def test_v4_numbers_inside_arrays_are_type_checked(v4):
    # 3: floats for integer items, ints for float items: BFCL's type_error:nested
    reply = calls(call("uber_eat_order", restaurant="uber pitada", items=["burgers", "chicken wings"], quantities=[5.0, 6.0]))
    score, bfcl = await both(v4, "live_simple_27-7-0", reply)
    assert score.outcome is Outcome.TYPE_ERROR and "quantities" in score.reason and not bfcl
    exact = calls(call("uber_eat_order", restaurant="uber pitada", items=["burgers", "chicken wings"], quantities=[5, 6]))
    score, bfcl = await both(v4, "live_simple_27-7-0", exact)
    assert score.passed and bfcl
    numbers = [[23, 45, 67, 89], [12, 34, 56, 78], [98, 76, 54, 32], [87, 65, 43, 21]]
    as_floats = calls(*(call("calculate_average", f"c{i}", numbers=[float(n) for n in ns]) for i, ns in enumerate(numbers)))
    score, bfcl = await both(v4, "parallel_132", as_floats)
    assert score.outcome is Outcome.TYPE_ERROR and not bfcl


async def test_v4_irrelevance_passes_what_bfcl_cannot_decode(v4):
    # 4: a call written as text, or with arguments that are not JSON, is no call to BFCL
    entry = "live_irrelevance_0-0-0"
    name = v4.scenario(entry).inline_tools[0].name
    for reply in (leaked(name, url="https://example.com"), broken(name, '{"url": '), text("I can't do that.")):
        score, bfcl = await both(v4, entry, reply)
        assert score.passed and bfcl, (reply, score.reason)
    score, bfcl = await both(v4, entry, calls(call(name, url="https://example.com")))
    assert score.outcome is Outcome.UNEXPECTED_CALL and not bfcl


@pytest.mark.parametrize("entry, reply", [
    # 5: the answer's type wins over the schema's: a bool and an int for string enums, "dontcare" for an integer
    ("live_multiple_552-153-1", call("Services_1_FindProvider", city="Walnut Creek", is_unisex=True)),
    ("live_multiple_595-158-1", None),
    ("live_multiple_338-133-2", None),
])
async def test_v4_ground_truth_of_another_type_than_the_schema_is_passable(v4, entry, reply):
    if reply is None:
        [case] = [c for c in replies_for(*v4.entries[entry]) if c.label == "gt"]
        reply = case.reply
    else:
        reply = calls(reply)
    score, bfcl = await both(v4, entry, reply)
    assert score.passed and bfcl, score.reason


async def test_v4_an_enum_on_an_array_constrains_its_items(v4):
    # 6: live_simple_71-35-0 failed with its exact ground truth, `metrics: ["view"]`
    sc = v4.scenario("live_simple_71-35-0")
    metrics = sc.inline_tools[0].parameters["properties"]["metrics"]
    assert "enum" not in metrics and "view" in metrics["items"]["enum"]
    reply = calls(call("extract_parameters_v1", demographics=["millennials"], targets=["brand:Apple"], metrics=["view"],
                       min_date="2022-07-01"))
    score, bfcl = await both(v4, "live_simple_71-35-0", reply)
    assert score.passed and bfcl, score.reason


async def test_v4_an_empty_string_is_accepted_for_an_optional_enum(v4):
    # 7: live_simple_4-3-0 accepts `unit: ["fahrenheit", ""]`; the enum used to refuse ""
    [case] = [c for c in replies_for(*v4.entries["live_simple_4-3-0"]) if c.label == "gt"]
    gt = case.reply.tool_calls[0]
    for unit, ok in (("", True), ("Fahrenheit", True), ("celsius", False)):
        reply = calls(call(gt.name, **{**gt.arguments, "unit": unit}))
        score, bfcl = await both(v4, "live_simple_4-3-0", reply)
        assert (score.passed, bfcl) == (ok, ok), (unit, score.reason)


async def test_v4_ground_truth_parameters_the_function_lacks_are_unexpected(v4):
    # 8: parallel_multiple_12 lists `permeability: ["", 0.1]` for a function without that parameter
    step = next(c for c in v4.scenario("parallel_multiple_12").turns[0].expect[0].any_order if c.call == "calculate_voltage_difference")
    assert step.args["permeability"].absent
    magnetic = call("calculate_magnetic_field", "a", current=4.0, distance=2.0)
    with_it = calls(magnetic, call("calculate_voltage_difference", "b", electric_field=5.0, distance=3.0, permeability=0.1))
    score, bfcl = await both(v4, "parallel_multiple_12", with_it)
    assert score.outcome is Outcome.UNEXPECTED_PARAM and not bfcl
    without = calls(magnetic, call("calculate_voltage_difference", "b", electric_field=5.0, distance=3.0))
    score, bfcl = await both(v4, "parallel_multiple_12", without)
    assert score.passed and bfcl, score.reason
    # live_multiple_862-181-3 needs `journey_start_time`, which its function lacks: no reply passes BFCL, so it is skipped
    assert "bfcl-live_multiple_862-181-3" not in v4.scenarios
    assert any("journey_start_time" in str(p) and "fails every reply" in p.message for p in v4.result.skipped)


def test_v4_agreement_with_bfcls_checker_on_scripted_replies(v4):
    """Every imported entry, the ground-truth reply and its perturbations: the same verdict as BFCL's checker."""
    total, disagree = 0, []
    for entry_id, (category, entry, answer) in v4.entries.items():
        scenario = v4.scenarios.get("bfcl-" + entry_id)
        if scenario is None:
            continue
        for case in replies_for(category, entry, answer):
            total += 1
            ours, why = harness_grades(scenario, case)
            theirs, error = bfcl_accepts(case, entry, answer)
            if ours != theirs:
                disagree.append(f"{entry_id} {case.label}: harness {why}, BFCL {error or 'valid'}")
    assert total > 30_000
    assert not disagree, f"{len(disagree)} of {total} replies graded differently:\n" + "\n".join(disagree[:30])
