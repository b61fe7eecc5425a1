"""Calendar and people directory: events keyed by id, the people you can invite.

World keys: `events` (id -> event with title, start, duration_minutes, organizer, attendees, calendar),
`people` (list of name, email, team), `me` (the user's own email).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field

from ._iso import parse_date, parse_datetime
from .base import ToolError, World, mock_tool


class Reminder(BaseModel):
    """When and how to be reminded of an event."""

    minutes_before: int = Field(ge=0, le=10080, description="Minutes before the start, 0 to 10080.")
    method: Literal["popup", "email"] = Field(description="How the reminder is delivered.")


def _event(world: World, event_id: str) -> dict:
    event = world.get("events", {}).get(event_id)
    if event is None:
        raise ToolError(f"no event {event_id!r}; list_events shows the ids for a date")
    return event


def _me(world: World) -> str:
    return world.get("me", "me@example.com")


def _public(event_id: str, event: dict) -> dict:
    return {"id": event_id, **event}


@mock_tool
def list_events(world: World, date: str, calendar: Literal["work", "personal", "all"] = "all") -> dict:
    """List the events on one day, ordered by start time.

    Args:
        date: The day, as an ISO date (YYYY-MM-DD).
        calendar: Which calendar to list.
    """
    day = parse_date(date, "date")
    found = [
        _public(i, e)
        for i, e in world.get("events", {}).items()
        if parse_datetime(e["start"], "start").date() == day and calendar in ("all", e.get("calendar", "work"))
    ]
    return {"date": day.isoformat(), "events": sorted(found, key=lambda e: e["start"])}


@mock_tool
def create_event(
    world: World,
    title: str,
    start: str,
    duration_minutes: int,
    attendees: list[str] = [],  # noqa: B006 (pydantic copies defaults)
    calendar: Literal["work", "personal"] = "work",
    reminder: Reminder | None = None,
) -> dict:
    """Create a calendar event organised by the user and invite attendees.

    Args:
        title: Short title of the event.
        start: Start as an ISO date-time in local time (YYYY-MM-DDTHH:MM).
        duration_minutes: Length in minutes, 5 to 720.
        attendees: Email addresses of the people to invite (not names).
        calendar: Which calendar the event goes in.
        reminder: Optional reminder.
    """
    when = parse_datetime(start, "start")
    if not 5 <= duration_minutes <= 720:
        raise ToolError(f"duration_minutes must be between 5 and 720, got {duration_minutes}")
    bad = [a for a in attendees if "@" not in a]
    if bad:
        raise ToolError(f"attendees must be email addresses; use lookup_person to find them (got {bad})")
    events = world.setdefault("events", {})
    event_id = f"EV-{len(events) + 101}"
    events[event_id] = {
        "title": title,
        "start": when.isoformat(timespec="minutes"),
        "duration_minutes": duration_minutes,
        "organizer": _me(world),
        "attendees": list(attendees),
        "calendar": calendar,
        "reminder": reminder.model_dump() if reminder else None,
        "status": "confirmed",
    }
    return {"status": "created", "event": _public(event_id, events[event_id])}


@mock_tool
def reschedule_event(world: World, event_id: str, new_start: str, duration_minutes: int | None = None) -> dict:
    """Move an event the user organises to a new start time; attendees are notified.

    Args:
        event_id: The event id, e.g. "EV-12".
        new_start: New start as an ISO date-time (YYYY-MM-DDTHH:MM).
        duration_minutes: New length in minutes; leave out to keep the current one.
    """
    event = _event(world, event_id)
    if event["organizer"] != _me(world):
        raise ToolError(f"{event_id} is organised by {event['organizer']}; only the organiser can reschedule it")
    event["start"] = parse_datetime(new_start, "new_start").isoformat(timespec="minutes")
    if duration_minutes is not None:
        event["duration_minutes"] = duration_minutes
    return {"status": "rescheduled", "event": _public(event_id, event)}


@mock_tool
def cancel_event(world: World, event_id: str, notify_attendees: bool = True) -> dict:
    """Cancel an event the user organises (for everyone). To leave someone else's event, use decline_event.

    Args:
        event_id: The event id, e.g. "EV-12".
        notify_attendees: Send a cancellation notice to the attendees.
    """
    event = _event(world, event_id)
    if event["organizer"] != _me(world):
        raise ToolError(f"{event_id} is organised by {event['organizer']}; you can only decline it (decline_event)")
    event["status"] = "cancelled"
    return {"status": "cancelled", "event_id": event_id, "notified": list(event["attendees"]) if notify_attendees else []}


@mock_tool
def decline_event(world: World, event_id: str, comment: str = "") -> dict:
    """Decline an invitation to an event someone else organises.

    Args:
        event_id: The event id, e.g. "EV-12".
        comment: Optional note to the organiser.
    """
    event = _event(world, event_id)
    if event["organizer"] == _me(world):
        raise ToolError(f"you organise {event_id}; to call it off for everyone use cancel_event")
    event["my_response"] = "declined"
    event["my_comment"] = comment
    return {"status": "declined", "event_id": event_id}


@mock_tool
def find_free_slots(world: World, date: str, duration_minutes: int, attendees: list[str]) -> dict:
    """Find start times on a day, between 09:00 and 17:00, when all attendees are free.

    Args:
        date: The day, as an ISO date (YYYY-MM-DD).
        duration_minutes: Length of the meeting in minutes.
        attendees: Email addresses of everyone who must attend.
    """
    day = parse_date(date, "date")
    if not 5 <= duration_minutes <= 480:
        raise ToolError(f"duration_minutes must be between 5 and 480, got {duration_minutes}")
    busy = []
    for e in world.get("events", {}).values():
        start = parse_datetime(e["start"], "start")
        people = {e["organizer"], *e["attendees"]}
        if start.date() == day and e.get("status") != "cancelled" and people & set(attendees):
            busy.append((start, start + timedelta(minutes=e["duration_minutes"])))
    slots = []
    t = datetime.combine(day, datetime.min.time()).replace(hour=9)
    end_of_day = t.replace(hour=17)
    while t + timedelta(minutes=duration_minutes) <= end_of_day:
        end = t + timedelta(minutes=duration_minutes)
        if all(end <= b0 or t >= b1 for b0, b1 in busy):
            slots.append(t.isoformat(timespec="minutes"))
        t += timedelta(minutes=30)
    return {"date": day.isoformat(), "duration_minutes": duration_minutes, "free_starts": slots}


@mock_tool
def lookup_person(world: World, query: str) -> dict:
    """Search the company directory by name or team; returns names, emails and teams.

    Args:
        query: A name, part of a name, or a team name.
    """
    q = query.strip().casefold().removesuffix(" team").removeprefix("the ")
    found = [p for p in world.get("people", []) if q in p["name"].casefold() or q == p.get("team", "").casefold()]
    if not found:
        raise ToolError(f"nobody in the directory matches {query!r}")
    return {"people": found}
