"""Contacts and an outbox: sending mail is the side effect scenarios check at the end."""

from __future__ import annotations

from .base import ToolError, World, mock_tool


@mock_tool
def send_email(world: World, to: str, subject: str, body: str) -> dict:
    """Send an email.

    Args:
        to: Recipient email address.
        subject: Subject line.
        body: Message text.
    """
    if "@" not in to:
        raise ToolError(f"{to!r} is not an email address")
    outbox = world.setdefault("outbox", [])
    message = {"id": f"msg-{len(outbox) + 1}", "to": to, "subject": subject, "body": body}
    outbox.append(message)
    return {"status": "sent", "id": message["id"]}


@mock_tool
def find_contact(world: World, name: str) -> dict:
    """Look up a contact's email address by name.

    Args:
        name: The person's name, or part of it.
    """
    matches = [c for c in world.get("contacts", []) if name.casefold() in c["name"].casefold()]
    if not matches:
        raise ToolError(f"no contact matching {name!r}")
    return {"contacts": matches}
