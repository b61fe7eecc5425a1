"""Mock tools: every schema is valid and described, and each domain changes its world as a user expects."""

from __future__ import annotations

import pytest
from jsonschema import Draft202012Validator

from harness.tools import ToolError, World, registry, run_tool

TOOLS = registry.all()


def call(name: str, world: World, **arguments):
    """Validate against the published schema (as the loop does), then run."""
    tool = registry[name]
    errors = list(Draft202012Validator(tool.parameters()).iter_errors(arguments))
    assert not errors, [e.message for e in errors]
    return run_tool(tool, world, arguments)


# -- every tool ----------------------------------------------------------------------------------


def test_registry_has_the_domains_the_suite_uses():
    domains = registry.by_domain()
    assert {"calendar", "files", "orders", "travel", "units"} <= set(domains)
    for name in ("calendar", "files", "orders", "travel", "units"):
        assert 4 <= len(domains[name]) <= 10, (name, len(domains[name]))


@pytest.mark.parametrize("tool", TOOLS, ids=lambda t: t.name)
def test_schema_is_valid_json_schema_and_every_argument_is_described(tool):
    schema = tool.parameters()
    Draft202012Validator.check_schema(schema)
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    assert tool.description and not tool.description.endswith("Args:")
    for name, prop in schema["properties"].items():
        assert prop.get("description"), f"{tool.name}.{name} has no description"
    stripped = tool.parameters(strip_descriptions=True)
    assert all("description" not in p for p in stripped["properties"].values())
    assert tool.openai_schema()["function"]["name"] == tool.name


def test_a_property_named_title_survives_schema_cleanup():
    params = registry["create_event"].parameters()
    assert "title" in params["properties"] and "title" in params["required"]


def test_nested_models_arrive_as_models_and_bad_nested_values_are_tool_errors():
    world = World({"payments": {"P1": {"amount": 50.0, "currency": "EUR", "refunded": 0}}})
    assert call("refund_payment", world, payment_id="P1", amount={"amount": 10, "currency": "EUR"})["status"] == "partially refunded"
    with pytest.raises(ToolError, match="amount"):
        run_tool(registry["refund_payment"], world, {"payment_id": "P1", "amount": {"amount": "lots", "currency": "EUR"}})


# -- orders --------------------------------------------------------------------------------------


def shop() -> World:
    return World({
        "orders": {
            "A1": {"status": "pending", "customer_email": "s@x.com", "placed": "2026-02-01", "total": 20.0, "currency": "EUR",
                   "payment_id": "P1", "items": [{"sku": "M", "name": "Mug", "quantity": 2, "unit_price": 10.0}]},
            "B2": {"status": "delivered", "customer_email": "s@x.com", "placed": "2026-01-01", "total": 30.0, "currency": "EUR",
                   "payment_id": "P2", "items": [{"sku": "L", "name": "Lamp", "quantity": 1, "unit_price": 30.0}]},
        },
        "payments": {"P1": {"amount": 20.0, "currency": "EUR", "refunded": 0}, "P2": {"amount": 30.0, "currency": "EUR", "refunded": 0}},
    })


def test_cancel_refunds_a_pending_order_but_a_delivered_one_must_be_returned():
    world = shop()
    assert call("cancel_order", world, order_id="A1", reason="ordered by mistake")["status"] == "cancelled"
    assert world.orders["A1"]["status"] == "cancelled" and world.payments["P1"]["status"] == "refunded"
    with pytest.raises(ToolError, match="return_order"):
        call("cancel_order", world, order_id="B2", reason="no longer needed")
    with pytest.raises(ToolError, match="cancelled"):
        call("return_order", world, order_id="A1", items=[{"sku": "M", "quantity": 1}], reason="damaged")


def test_return_checks_skus_and_quantities_and_records_the_return():
    world = shop()
    with pytest.raises(ToolError, match="SKUs are"):
        call("return_order", world, order_id="B2", items=[{"sku": "NOPE", "quantity": 1}], reason="damaged")
    with pytest.raises(ToolError, match="only 1"):
        call("return_order", world, order_id="B2", items=[{"sku": "L", "quantity": 3}], reason="damaged")
    out = call("return_order", world, order_id="B2", items=[{"sku": "L", "quantity": 1}], reason="damaged")
    assert out["return_id"] == "RMA-501" and world.returns[0]["items"] == [{"sku": "L", "quantity": 1}]


def test_refunds_cannot_exceed_the_payment_or_switch_currency():
    world = shop()
    with pytest.raises(ToolError, match="GBP"):
        call("refund_payment", world, payment_id="P2", amount={"amount": 5, "currency": "GBP"})
    call("refund_payment", world, payment_id="P2", amount={"amount": 25, "currency": "EUR"})
    with pytest.raises(ToolError, match="only 5.0"):
        call("refund_payment", world, payment_id="P2", amount={"amount": 10, "currency": "EUR"})
    with pytest.raises(ToolError, match="get_order"):
        call("refund_payment", world, payment_id="A1", amount={"amount": 1, "currency": "EUR"})


def test_search_orders_filters_by_status_newest_first_and_address_changes_only_before_shipping():
    world = shop()
    assert [o["order_id"] for o in call("search_orders", world, customer_email="S@X.com")["orders"]] == ["A1", "B2"]
    assert [o["order_id"] for o in call("search_orders", world, customer_email="s@x.com", status="delivered")["orders"]] == ["B2"]
    address = {"street": "Main St 1", "city": "Berlin", "postal_code": "10115", "country": "DE"}
    call("update_shipping_address", world, order_id="A1", address=address)
    assert world.orders["A1"]["shipping_address"] == address
    with pytest.raises(ToolError, match="before shipping"):
        call("update_shipping_address", world, order_id="B2", address=address)
    assert Draft202012Validator(registry["update_shipping_address"].parameters()).is_valid(
        {"order_id": "A1", "address": {**address, "country": "Germany"}}) is False


# -- calendar ------------------------------------------------------------------------------------


def office() -> World:
    return World({
        "me": "me@a.io",
        "people": [{"name": "Omar Haddad", "email": "omar@a.io", "team": "design"}],
        "events": {
            "EV-1": {"title": "Mine", "start": "2026-03-04T09:00", "duration_minutes": 60, "organizer": "me@a.io", "attendees": ["omar@a.io"], "calendar": "work"},
            "EV-2": {"title": "Theirs", "start": "2026-03-04T11:00", "duration_minutes": 30, "organizer": "k@v.com", "attendees": ["me@a.io"], "calendar": "work"},
        },
    })


def test_cancel_is_for_own_events_and_decline_for_others():
    world = office()
    with pytest.raises(ToolError, match="decline_event"):
        call("cancel_event", world, event_id="EV-2")
    with pytest.raises(ToolError, match="cancel_event"):
        call("decline_event", world, event_id="EV-1")
    call("decline_event", world, event_id="EV-2", comment="sorry")
    assert world.events["EV-2"]["my_response"] == "declined"
    assert call("cancel_event", world, event_id="EV-1")["notified"] == ["omar@a.io"]
    assert world.events["EV-1"]["status"] == "cancelled"


def test_create_event_validates_iso_times_and_email_attendees():
    world = office()
    with pytest.raises(ToolError, match="ISO date-time"):
        call("create_event", world, title="x", start="next Tuesday 3pm", duration_minutes=30)
    with pytest.raises(ToolError, match="lookup_person"):
        call("create_event", world, title="x", start="2026-03-05T15:00", duration_minutes=30, attendees=["Omar"])
    out = call("create_event", world, title="Sync", start="2026-03-05T15:00:00", duration_minutes=30,
               attendees=["omar@a.io"], reminder={"minutes_before": 10, "method": "email"})
    assert out["event"]["id"] == "EV-103" and world.events["EV-103"]["start"] == "2026-03-05T15:00"
    assert world.events["EV-103"]["reminder"] == {"minutes_before": 10, "method": "email"}


def test_free_slots_avoid_busy_attendees_and_listing_is_by_day():
    world = office()
    slots = call("find_free_slots", world, date="2026-03-04", duration_minutes=60, attendees=["omar@a.io"])["free_starts"]
    assert "2026-03-04T09:00" not in slots and slots[0] == "2026-03-04T10:00" and slots[-1] == "2026-03-04T16:00"
    assert [e["id"] for e in call("list_events", world, date="2026-03-04")["events"]] == ["EV-1", "EV-2"]
    assert call("list_events", world, date="2026-03-05")["events"] == []
    with pytest.raises(ToolError, match="nobody"):
        call("lookup_person", world, query="Zed")


# -- files ---------------------------------------------------------------------------------------


def store() -> World:
    return World({"files": {"/r/a.md": {"content": "budget 10"}, "/r/b.csv": {"content": "x,y"}, "/c/k.pdf": {"content": "terms"}}})


def test_move_and_copy_differ_in_whether_the_original_stays():
    world = store()
    call("copy_file", world, path="/r/a.md", destination_folder="/s")
    assert {"/r/a.md", "/s/a.md"} <= set(world.files)
    call("move_file", world, path="/r/b.csv", destination_folder="/s/")
    assert "/r/b.csv" not in world.files and "/s/b.csv" in world.files
    with pytest.raises(ToolError, match="already exists"):
        call("copy_file", world, path="/r/a.md", destination_folder="/s")


def test_archive_keeps_a_restorable_copy_and_delete_does_not():
    world = store()
    call("archive_file", world, path="/r/a.md")
    call("delete_file", world, path="/r/b.csv")
    assert world.archive[0]["path"] == "/r/a.md" and world.archive[0]["content"] == "budget 10"
    assert world.trash == ["/r/b.csv"] and not {"/r/a.md", "/r/b.csv"} & set(world.files)


def test_read_search_rename_share():
    world = store()
    assert call("read_file", world, path="/r/a.md")["content"] == "budget 10"
    with pytest.raises(ToolError, match="PDF"):
        call("read_file", world, path="/c/k.pdf")
    assert [f["path"] for f in call("search_files", world, query="R Budget")["files"]] == ["/r/a.md"]
    assert call("search_files", world, query="terms", file_type="md")["files"] == []
    assert [f["path"] for f in call("list_files", world, folder="/r/", pattern="*.csv")["files"]] == ["/r/b.csv"]
    with pytest.raises(ToolError, match="move_file"):
        call("rename_file", world, path="/r/a.md", new_name="/r/z.md")
    call("rename_file", world, path="/r/a.md", new_name="z.md")
    call("share_file", world, path="/r/z.md", email="k@x.io", permission="comment")
    assert world.files["/r/z.md"]["shared_with"] == {"k@x.io": "comment"}


# -- travel --------------------------------------------------------------------------------------


def agency() -> World:
    return World({
        "flights": [
            {"id": "F1", "origin": "AMS", "destination": "BCN", "date": "2026-05-02", "depart": "07:00", "price": 120.0, "cabin": "economy", "stops": 0},
            {"id": "F2", "origin": "AMS", "destination": "BCN", "date": "2026-05-02", "depart": "12:00", "price": 90.0, "cabin": "economy", "stops": 1},
        ],
        "trains": [{"id": "T1", "origin": "Paris", "destination": "Lyon", "date": "2026-05-02", "depart": "08:00", "price": 40.0}],
        "hotels": [{"id": "H1", "city": "Rome", "price_per_night": 100.0, "rating": 4.0}, {"id": "H2", "city": "Rome", "price_per_night": 200.0, "rating": 4.9}],
    })


def test_flight_search_wants_iata_codes_and_filters_by_stops():
    world = agency()
    with pytest.raises(ToolError, match="IATA"):
        call("search_flights", world, origin="Amsterdam", destination="BCN", date="2026-05-02")
    assert [f["id"] for f in call("search_flights", world, origin="ams", destination="BCN", date="2026-05-02")["flights"]] == ["F2", "F1"]
    assert [f["id"] for f in call("search_flights", world, origin="AMS", destination="BCN", date="2026-05-02", max_stops=0)["flights"]] == ["F1"]
    assert call("search_trains", world, origin="paris", destination="lyon", date="2026-05-02")["trains"][0]["id"] == "T1"
    with pytest.raises(ToolError, match="ISO date"):
        call("search_trains", world, origin="Paris", destination="Lyon", date="02/05/2026")


def test_hotel_search_prices_the_stay_and_booking_then_cancelling_updates_the_world():
    world = agency()
    hotels = call("search_hotels", world, city="Rome", check_in="2026-06-10", check_out="2026-06-13", max_price_per_night=150)["hotels"]
    assert [(h["id"], h["total_price"]) for h in hotels] == [("H1", 300.0)]
    with pytest.raises(ToolError, match="after check_in"):
        call("search_hotels", world, city="Rome", check_in="2026-06-13", check_out="2026-06-10")
    booking = call("book_hotel", world, hotel_id="H1", check_in="2026-06-10", check_out="2026-06-13", guests=2)
    assert booking["booking_id"] == "BK-301" and booking["price"] == 300.0
    flight = call("book_flight", world, flight_id="F2", passengers=[
        {"first_name": "A", "last_name": "R", "date_of_birth": "1990-07-14"}, {"first_name": "L", "last_name": "R", "date_of_birth": "1988-11-02"}])
    assert flight["booking_id"] == "BK-302" and flight["price"] == 180.0
    call("cancel_booking", world, booking_id="BK-301")
    assert world.bookings["BK-301"]["status"] == "cancelled"
    with pytest.raises(ToolError, match="already cancelled"):
        call("cancel_booking", world, booking_id="BK-301")
    with pytest.raises(ToolError, match="search_flights"):
        call("book_flight", world, flight_id="F9", passengers=[{"first_name": "A", "last_name": "B", "date_of_birth": "1990-01-01"}])


# -- units ---------------------------------------------------------------------------------------


def test_conversions_are_exact_and_refuse_mixed_dimensions():
    world = World({})
    assert call("convert_units", world, value=26.2, from_unit="mi", to_unit="km")["result"] == pytest.approx(42.1648, abs=1e-3)
    assert call("convert_units", world, value=100, from_unit="f", to_unit="c")["result"] == pytest.approx(37.7778, abs=1e-3)
    with pytest.raises(ToolError, match="volume"):
        call("convert_units", world, value=3, from_unit="l", to_unit="kg")
    assert call("convert_currency", world, amount=250, from_currency="CHF", to_currency="EUR")["result"] == 262.5
    assert call("convert_currency", World({"fx_rates": {"USD": 1.0}}), amount=10, from_currency="USD", to_currency="EUR")["result"] == 10.0


def test_calculator_is_safe_arithmetic_only():
    world = World({})
    assert call("calculate", world, expression="37.5 * 48 + 112")["result"] == 1912
    assert call("calculate", world, expression="2^10")["result"] == 1024
    for bad, why in (("__import__('os')", "only numbers"), ("1/0", "division by zero"), ("2 +", "cannot parse"), ("9**999", "too large")):
        with pytest.raises(ToolError, match=why):
            call("calculate", world, expression=bad)


def test_statistics_and_dates():
    world = World({})
    stats = call("compute_statistics", world, values=[5.2, 6.8, 4.9, 7.1, 6.0], measures=["mean", "max"])
    assert stats == {"count": 5, "mean": 6.0, "max": 7.1}
    with pytest.raises(ToolError, match="empty"):
        call("compute_statistics", world, values=[], measures=["sum"])
    assert call("add_days", world, date="2026-01-15", days=90)["result"] == "2026-04-15"
    assert call("date_difference", world, start_date="2026-03-02", end_date="2026-04-15")["difference"] == 44
    assert call("date_difference", world, start_date="2026-03-02", end_date="2026-03-16", unit="weeks")["difference"] == 2
    with pytest.raises(ToolError, match="end_date"):
        call("date_difference", world, start_date="2026-03-02", end_date="2026-02-30")


# -- robustness ----------------------------------------------------------------------------------


def _odd_values(schema: dict, depth: int = 0) -> list:
    """Schema-valid but awkward values: empty, huge, negative, unicode, look-alike ids."""
    if "enum" in schema:
        return list(schema["enum"])
    kind = schema.get("type")
    if kind == "string":
        return ["", " ", "A1001", "EV-1", "/reports/q3-summary.md", "2026-03-04", "2026-03-04T10:00", "ünïcødé", "x" * 300,
                "me@acme.io", "1e309", "9**9**9"]
    if kind == "integer":
        return [v for v in (0, -1, 1, 10**12, -(10**12)) if schema.get("minimum", -(10**13)) <= v <= schema.get("maximum", 10**13)]
    if kind == "number":
        return [v for v in (0.0, -1.5, 1e308, 12.5) if v > schema.get("exclusiveMinimum", -1e309)]
    if kind == "boolean":
        return [True, False]
    if kind == "array":
        return [[], [_odd_values(schema.get("items", {}), depth + 1)[0]] * 2] if depth < 2 else [[]]
    if kind == "object":
        props = schema.get("properties", {})
        return [{k: _odd_values(v, depth + 1)[0] for k, v in props.items() if k in schema.get("required", [])}]
    return ["x"]


def test_no_tool_crashes_on_any_schema_valid_arguments_in_any_suite_world():
    from harness.scenario import load_scenarios

    worlds = {}
    for sc in load_scenarios("scenarios"):
        worlds.setdefault(tuple(sorted(sc.world)), sc.world)
    crashes = []
    for tool in TOOLS:
        schema = tool.parameters()
        props = schema["properties"]
        base = {k: _odd_values(props[k])[0] for k in schema["required"]}
        variants = [base] + [{**base, k: v} for k in props for v in _odd_values(props[k])]
        validator = Draft202012Validator(schema)
        for state in worlds.values():
            for args in variants:
                if not validator.is_valid(args):
                    continue
                try:
                    run_tool(tool, World(state), args)
                except ToolError:
                    pass
                except Exception as exc:  # noqa: BLE001 (the point: anything but ToolError is a bug)
                    crashes.append(f"{tool.name}({args}): {type(exc).__name__}: {exc}")
    assert not crashes, "\n".join(crashes[:10])


def test_directory_lookup_accepts_a_team_named_the_way_people_say_it():
    world = office()
    for query in ("design", "Design team", "the design team", "omar"):
        assert call("lookup_person", world, query=query)["people"][0]["email"] == "omar@a.io"


# -- a user's own tools --------------------------------------------------------------------------

USER_TOOLS = '''
"""Inventory tools of my own shop."""
from harness.tools import ToolError, World, mock_tool


@mock_tool
def check_stock(world: World, sku: str) -> dict:
    """How many of an item are in the warehouse.

    Args:
        sku: The item's SKU, e.g. "MUG-12".
    """
    if sku not in world.stock:
        raise ToolError(f"no item {sku!r}")
    return {"sku": sku, "in_stock": world.stock[sku]}
'''

USER_SCENARIO = """\
id: my-stock
description: stock lookup with my own tool
strata: [tool_selection]
tags: [inventory]
tool_modules: [mytools/inventory.py]
tools: [check_stock]
world: {stock: {MUG-12: 4}}
turns:
  - user: "How many MUG-12 do we have?"
    expect:
      - call: check_stock
        args: {sku: MUG-12}
      - answer: {contains: "4"}
"""


@pytest.fixture
def clean_registry():
    from harness.tools import base

    tools_before, loaded_before = dict(base.registry._tools), dict(base._LOADED)
    yield
    base.registry._tools.clear()
    base.registry._tools.update(tools_before)
    base._LOADED.clear()
    base._LOADED.update(loaded_before)


async def test_a_scenario_brings_its_own_typed_tools_from_a_file_next_to_it(tmp_path, clean_registry):
    from harness.scenario import load_scenarios
    from harness.selfcheck import selfcheck

    (tmp_path / "mytools").mkdir()
    (tmp_path / "mytools" / "inventory.py").write_text(USER_TOOLS)
    (tmp_path / "s.yaml").write_text(USER_SCENARIO)
    [sc] = load_scenarios(tmp_path)
    tool = registry["check_stock"]
    assert tool.domain == "inventory"
    assert tool.parameters()["properties"]["sku"]["description"].startswith("The item's SKU")
    [check] = await selfcheck([sc])
    assert check.status == "ok", check.reason


def test_tools_module_flag_and_a_broken_module_named_at_its_line(tmp_path, clean_registry):
    from click.testing import CliRunner

    from harness.cli import main

    (tmp_path / "inventory.py").write_text(USER_TOOLS)
    scenario = tmp_path / "suite"
    scenario.mkdir()
    (scenario / "s.yaml").write_text(USER_SCENARIO.replace("tool_modules: [mytools/inventory.py]\n", ""))
    result = CliRunner().invoke(main, ["validate", str(scenario)])
    assert result.exit_code == 2 and "unknown tool 'check_stock'" in result.output
    result = CliRunner().invoke(main, ["validate", str(scenario), "--tools-module", str(tmp_path / "inventory.py")])
    assert result.exit_code == 0, result.output
    # a tool without a docstring is refused, naming the module and where the file names it
    (tmp_path / "bad.py").write_text("from harness.tools import mock_tool\n\n@mock_tool\ndef nodoc(world, x: int) -> int:\n    return x\n")
    (scenario / "s.yaml").write_text(USER_SCENARIO.replace("mytools/inventory.py", "../bad.py"))
    result = CliRunner().invoke(main, ["validate", str(scenario)])
    flat = " ".join(result.output.split())
    assert result.exit_code == 2
    assert f"{scenario / 's.yaml'}:5 at tool_modules.0: tool module '../bad.py': mock tool 'nodoc' needs a docstring" in flat


def test_a_tool_whose_types_pydantic_cannot_build_is_refused_when_its_module_loads(tmp_path, clean_registry):
    from harness.tools import ToolModuleError, load_tool_module

    # the argument model is built on first use for the built-ins; a user's module builds its own on load,
    # so an unusable annotation is reported there and then, not at the first call mid-run
    (tmp_path / "odd.py").write_text(
        "import threading\nfrom harness.tools import mock_tool\n\n"
        "@mock_tool\ndef takes_a_lock(world, lock: threading.Lock) -> str:\n    '''Holds a lock.'''\n    return 'x'\n")
    with pytest.raises(ToolModuleError, match=r"tool module .*odd\.py.*: mock tool 'takes_a_lock' has arguments pydantic cannot validate: Unable to generate"):
        load_tool_module(str(tmp_path / "odd.py"))
