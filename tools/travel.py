"""Travel booking: flights, trains and hotels, with bookings kept in the world.

World keys: `flights` and `trains` (lists of id, origin, destination, date, depart, arrive, price,
currency, plus cabin/stops for flights), `hotels` (list of id, name, city, price_per_night, rating),
`bookings` (id -> booking).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from ._iso import parse_date
from .base import ToolError, World, mock_tool


class Passenger(BaseModel):
    """A traveller, as on their passport."""

    first_name: str
    last_name: str
    date_of_birth: str = Field(description="ISO date (YYYY-MM-DD).")


def _same(a: str, b: str) -> bool:
    return a.strip().casefold() == b.strip().casefold()


@mock_tool
def search_flights(
    world: World,
    origin: str,
    destination: str,
    date: str,
    cabin: Literal["economy", "premium", "business"] = "economy",
    max_stops: int | None = None,
) -> dict:
    """Search flights between two airports on a date, cheapest first.

    Args:
        origin: Departure airport, three-letter IATA code (e.g. "LHR").
        destination: Arrival airport, three-letter IATA code (e.g. "CDG").
        date: Departure date, ISO (YYYY-MM-DD).
        cabin: Cabin class.
        max_stops: Only flights with at most this many stops.
    """
    day = parse_date(date, "date").isoformat()
    for code, field in ((origin, "origin"), (destination, "destination")):
        if len(code.strip()) != 3 or not code.strip().isalpha():
            raise ToolError(f"{field} must be a three-letter IATA airport code, got {code!r}")
    found = [
        f for f in world.get("flights", [])
        if _same(f["origin"], origin) and _same(f["destination"], destination) and f["date"] == day
        and f.get("cabin", "economy") == cabin and (max_stops is None or f.get("stops", 0) <= max_stops)
    ]
    return {"flights": sorted(found, key=lambda f: f["price"])}


@mock_tool
def search_trains(world: World, origin: str, destination: str, date: str) -> dict:
    """Search train connections between two cities on a date, earliest first.

    Args:
        origin: Departure city, e.g. "Paris".
        destination: Arrival city, e.g. "Brussels".
        date: Travel date, ISO (YYYY-MM-DD).
    """
    day = parse_date(date, "date").isoformat()
    found = [
        t for t in world.get("trains", [])
        if _same(t["origin"], origin) and _same(t["destination"], destination) and t["date"] == day
    ]
    return {"trains": sorted(found, key=lambda t: t["depart"])}


@mock_tool
def search_hotels(world: World, city: str, check_in: str, check_out: str, guests: int = 1,
                  max_price_per_night: float | None = None) -> dict:
    """Search hotels with rooms free in a city, best rated first.

    Args:
        city: City name.
        check_in: Check-in date, ISO (YYYY-MM-DD).
        check_out: Check-out date, ISO (YYYY-MM-DD), after check_in.
        guests: Number of guests, 1 to 6.
        max_price_per_night: Upper limit on the nightly price, in the hotel's currency.
    """
    nights = (parse_date(check_out, "check_out") - parse_date(check_in, "check_in")).days
    if nights < 1:
        raise ToolError("check_out must be after check_in")
    if not 1 <= guests <= 6:
        raise ToolError(f"guests must be between 1 and 6, got {guests}")
    found = [
        {**h, "nights": nights, "total_price": round(h["price_per_night"] * nights, 2)}
        for h in world.get("hotels", [])
        if _same(h["city"], city) and h.get("max_guests", 4) >= guests
        and (max_price_per_night is None or h["price_per_night"] <= max_price_per_night)
    ]
    return {"hotels": sorted(found, key=lambda h: -h.get("rating", 0))}


def _new_booking(world: World, prefix: str, record: dict) -> dict:
    bookings = world.setdefault("bookings", {})
    booking_id = f"{prefix}-{len(bookings) + 301}"
    bookings[booking_id] = {**record, "status": "confirmed"}
    return {"booking_id": booking_id, **bookings[booking_id]}


@mock_tool
def book_flight(world: World, flight_id: str, passengers: list[Passenger]) -> dict:
    """Book seats on a flight found with search_flights.

    Args:
        flight_id: The flight id from search_flights, e.g. "FL-204".
        passengers: Everyone travelling, as on their passports.
    """
    flight = next((f for f in world.get("flights", []) if f["id"] == flight_id), None)
    if flight is None:
        raise ToolError(f"no flight {flight_id!r}; use an id from search_flights")
    if not passengers:
        raise ToolError("at least one passenger is needed")
    for p in passengers:
        parse_date(p.date_of_birth, "date_of_birth")
    return _new_booking(world, "BK", {
        "kind": "flight", "flight_id": flight_id, "passengers": [p.model_dump() for p in passengers],
        "price": round(flight["price"] * len(passengers), 2), "currency": flight.get("currency", "EUR"),
    })


@mock_tool
def book_hotel(world: World, hotel_id: str, check_in: str, check_out: str, guests: int = 1) -> dict:
    """Book a hotel room found with search_hotels.

    Args:
        hotel_id: The hotel id from search_hotels, e.g. "HT-3".
        check_in: Check-in date, ISO (YYYY-MM-DD).
        check_out: Check-out date, ISO (YYYY-MM-DD).
        guests: Number of guests.
    """
    hotel = next((h for h in world.get("hotels", []) if h["id"] == hotel_id), None)
    if hotel is None:
        raise ToolError(f"no hotel {hotel_id!r}; use an id from search_hotels")
    nights = (parse_date(check_out, "check_out") - parse_date(check_in, "check_in")).days
    if nights < 1:
        raise ToolError("check_out must be after check_in")
    return _new_booking(world, "BK", {
        "kind": "hotel", "hotel_id": hotel_id, "check_in": check_in, "check_out": check_out, "guests": guests,
        "price": round(hotel["price_per_night"] * nights, 2), "currency": hotel.get("currency", "EUR"),
    })


@mock_tool
def get_booking(world: World, booking_id: str) -> dict:
    """Get a booking by its id.

    Args:
        booking_id: The booking id, e.g. "BK-301".
    """
    booking = world.get("bookings", {}).get(booking_id)
    if booking is None:
        raise ToolError(f"no booking {booking_id!r}")
    return {"booking_id": booking_id, **booking}


@mock_tool
def cancel_booking(world: World, booking_id: str) -> dict:
    """Cancel a flight or hotel booking.

    Args:
        booking_id: The booking id, e.g. "BK-301".
    """
    booking = world.get("bookings", {}).get(booking_id)
    if booking is None:
        raise ToolError(f"no booking {booking_id!r}")
    if booking["status"] == "cancelled":
        raise ToolError(f"booking {booking_id} is already cancelled")
    booking["status"] = "cancelled"
    return {"booking_id": booking_id, "status": "cancelled"}
