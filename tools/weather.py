"""Weather lookups over a fixed table of cities: the simplest domain, used by the smoke scenarios."""

from __future__ import annotations

from typing import Literal

from .base import ToolError, World, mock_tool


def _city(world: World, city: str) -> dict:
    table = world.get("weather", {})
    for name, record in table.items():
        if name.casefold() == city.strip().casefold():
            return {"city": name, **record}
    raise ToolError(f"no weather data for {city!r}; known cities: {', '.join(sorted(table))}")


@mock_tool
def get_weather(world: World, city: str, unit: Literal["celsius", "fahrenheit"] = "celsius") -> dict:
    """Get the current weather for a city.

    Args:
        city: City name, e.g. "Paris".
        unit: Temperature unit.
    """
    record = _city(world, city)
    temp = record["temp_c"] if unit == "celsius" else round(record["temp_c"] * 9 / 5 + 32, 1)
    return {"city": record["city"], "temperature": temp, "unit": unit, "conditions": record["conditions"]}


@mock_tool
def get_forecast(world: World, city: str, days: int = 3) -> dict:
    """Get the weather forecast for the next days in a city.

    Args:
        city: City name, e.g. "Paris".
        days: Number of days, 1 to 7.
    """
    if not 1 <= days <= 7:
        raise ToolError(f"days must be between 1 and 7, got {days}")
    record = _city(world, city)
    forecast = record.get("forecast") or [record["conditions"]] * 7
    return {"city": record["city"], "days": [{"day": i + 1, "conditions": c} for i, c in enumerate(forecast[:days])]}
