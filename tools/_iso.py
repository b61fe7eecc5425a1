"""ISO date parsing shared by the domain tools: a bad date is an error the model sees, not a crash."""

from __future__ import annotations

from datetime import date, datetime

from .base import ToolError


def parse_date(value: str, field: str) -> date:
    """`2026-03-14` -> date; anything else raises `ToolError` naming the field."""
    try:
        return date.fromisoformat(value.strip())
    except (ValueError, AttributeError):
        raise ToolError(f"{field} must be an ISO date like 2026-03-14, got {value!r}") from None


def parse_datetime(value: str, field: str) -> datetime:
    """`2026-03-14T09:30` -> datetime; anything else raises `ToolError` naming the field."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except (ValueError, AttributeError):
        raise ToolError(f"{field} must be an ISO date-time like 2026-03-14T09:30, got {value!r}") from None
    return parsed.replace(tzinfo=None, second=0, microsecond=0)
