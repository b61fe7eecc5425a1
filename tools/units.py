"""Units, currencies, dates and arithmetic: exact answers the model should not guess.

World keys (all optional): `fx_rates` (currency -> value of one unit in EUR).
"""

from __future__ import annotations

import ast
import math
import operator
import statistics
from datetime import timedelta
from typing import Literal

from ._iso import parse_date
from .base import ToolError, World, mock_tool

Unit = Literal["m", "km", "mi", "ft", "in", "cm", "kg", "g", "lb", "oz", "l", "ml", "gal", "c", "f", "k"]

# unit -> (dimension, factor to the base unit); temperatures are handled apart
_UNITS: dict[str, tuple[str, float]] = {
    "m": ("length", 1.0), "km": ("length", 1000.0), "mi": ("length", 1609.344), "ft": ("length", 0.3048),
    "in": ("length", 0.0254), "cm": ("length", 0.01),
    "kg": ("mass", 1.0), "g": ("mass", 0.001), "lb": ("mass", 0.45359237), "oz": ("mass", 0.028349523125),
    "l": ("volume", 1.0), "ml": ("volume", 0.001), "gal": ("volume", 3.785411784),
    "c": ("temperature", 1.0), "f": ("temperature", 1.0), "k": ("temperature", 1.0),
}
_DEFAULT_FX = {"EUR": 1.0, "USD": 0.92, "GBP": 1.17, "JPY": 0.0062, "CHF": 1.05}


def _to_celsius(v: float, unit: str) -> float:
    return {"c": v, "f": (v - 32) * 5 / 9, "k": v - 273.15}[unit]


def _from_celsius(v: float, unit: str) -> float:
    return {"c": v, "f": v * 9 / 5 + 32, "k": v + 273.15}[unit]


@mock_tool
def convert_units(world: World, value: float, from_unit: Unit, to_unit: Unit) -> dict:
    """Convert a measurement between units of length, mass, volume or temperature.

    Args:
        value: The number to convert.
        from_unit: Unit of the value (c/f/k are degrees Celsius/Fahrenheit/Kelvin).
        to_unit: Unit to convert to, of the same kind.
    """
    dim_a, fa = _UNITS[from_unit]
    dim_b, fb = _UNITS[to_unit]
    if dim_a != dim_b:
        raise ToolError(f"cannot convert {dim_a} ({from_unit}) to {dim_b} ({to_unit})")
    result = _from_celsius(_to_celsius(value, from_unit), to_unit) if dim_a == "temperature" else value * fa / fb
    return {"value": value, "from_unit": from_unit, "result": round(result, 4), "to_unit": to_unit}


@mock_tool
def convert_currency(world: World, amount: float, from_currency: Literal["EUR", "USD", "GBP", "JPY", "CHF"],
                     to_currency: Literal["EUR", "USD", "GBP", "JPY", "CHF"]) -> dict:
    """Convert money between currencies at today's rate.

    Args:
        amount: The amount of money.
        from_currency: ISO code of the amount's currency.
        to_currency: ISO code to convert to.
    """
    rates = {**_DEFAULT_FX, **world.get("fx_rates", {})}
    result = amount * rates[from_currency] / rates[to_currency]
    return {"amount": amount, "from_currency": from_currency, "result": round(result, 2), "to_currency": to_currency,
            "rate": round(rates[from_currency] / rates[to_currency], 6)}


_OPS = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.Pow: operator.pow, ast.Mod: operator.mod, ast.FloorDiv: operator.floordiv,
    ast.USub: operator.neg, ast.UAdd: operator.pos,
}


def _eval(node: ast.AST) -> float:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and (abs(right) > 100 or abs(left) > 1e100):
            raise ToolError("exponent too large")
        try:
            value = _OPS[type(node.op)](left, right)
        except OverflowError:
            raise ToolError("the result is too large") from None
        if isinstance(value, complex):
            raise ToolError("the result is not a real number")
        if abs(value) > 1e300:
            raise ToolError("the result is too large")
        return value
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_eval(node.operand))
    raise ToolError("only numbers, + - * / // % ** and parentheses are allowed")


@mock_tool
def calculate(world: World, expression: str) -> dict:
    """Evaluate an arithmetic expression exactly (numbers, + - * / // % ** and parentheses).

    Args:
        expression: The expression, e.g. "(12.5 + 7) * 3".
    """
    try:
        tree = ast.parse(expression.replace("^", "**"), mode="eval")
    except SyntaxError:
        raise ToolError(f"cannot parse {expression!r} as arithmetic") from None
    try:
        value = _eval(tree)
    except ZeroDivisionError:
        raise ToolError("division by zero") from None
    return {"expression": expression, "result": round(value, 10)}


@mock_tool
def compute_statistics(world: World, values: list[float],
                       measures: list[Literal["mean", "median", "min", "max", "sum", "stdev"]]) -> dict:
    """Summary statistics of a list of numbers.

    Args:
        values: The numbers.
        measures: Which statistics to compute.
    """
    if not values:
        raise ToolError("values is empty")
    if "stdev" in measures and len(values) < 2:
        raise ToolError("stdev needs at least two values")
    if not all(math.isfinite(v) for v in values):
        raise ToolError("values must be finite numbers")
    fns = {"mean": statistics.fmean, "median": statistics.median, "min": min, "max": max, "sum": sum,
           "stdev": statistics.stdev}
    return {"count": len(values), **{m: round(fns[m](values), 4) for m in measures}}


@mock_tool
def date_difference(world: World, start_date: str, end_date: str, unit: Literal["days", "weeks"] = "days") -> dict:
    """How long from one date to another.

    Args:
        start_date: ISO date (YYYY-MM-DD).
        end_date: ISO date (YYYY-MM-DD).
        unit: Unit of the answer.
    """
    days = (parse_date(end_date, "end_date") - parse_date(start_date, "start_date")).days
    return {"start_date": start_date, "end_date": end_date, "difference": days if unit == "days" else round(days / 7, 2),
            "unit": unit}


@mock_tool
def add_days(world: World, date: str, days: int) -> dict:
    """The date a number of days after (or, if negative, before) a date.

    Args:
        date: ISO date (YYYY-MM-DD).
        days: Days to add; negative to go back.
    """
    try:
        result = parse_date(date, "date") + timedelta(days=days)
    except OverflowError:
        raise ToolError(f"{days} days from {date} is outside the calendar") from None
    return {"date": date, "days": days, "result": result.isoformat(), "weekday": result.strftime("%A")}
