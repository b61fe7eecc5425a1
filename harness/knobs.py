"""Difficulty knobs: make a scenario harder without rewriting it.

`harden` is one Scenario -> Scenario transform applied before the loop: distractor tools from other
domains join `tools`, unrelated finished exchanges join the front of `few_shot`, and the knobs that
act on what the model sees (stripped argument descriptions, padded list results, via `pad_result`)
stay in the hardened scenario's `difficulty` for the tool set to read.
Everything is deterministic given the scenario id, so two runs of a target see the same prompt.
"""

from __future__ import annotations

import copy
import hashlib
import random
import re
from typing import Any

from harness.scenario import Difficulty, FewShotMessage, Scenario
from harness.tools import MockTool, registry

__all__ = [
    "KNOB_NAMES",
    "KnobError",
    "parse_knobs",
    "merge_difficulty",
    "harden",
    "distractor_names",
    "offered_tools",
    "tool_schemas",
    "history_prefix",
    "pad_result",
]

KNOB_NAMES = tuple(Difficulty.model_fields)
"""The knob names, as written in YAML `difficulty:` and on the command line (`--knob NAME=VALUE`)."""

_PADDED_PREFIXES = ("search_", "list_", "find_", "lookup_")
"""Only collection lookups are padded: padding a single record (an order's items) would change the facts."""


class KnobError(ValueError):
    """A knob given on the command line that does not exist or has a bad value."""


def _n(value: int | Difficulty, field: str) -> int:
    return int(getattr(value, field)) if isinstance(value, Difficulty) else int(value)


def _rng(scenario_id: str, salt: str) -> random.Random:
    seed = int.from_bytes(hashlib.sha256(f"{salt}:{scenario_id}".encode()).digest()[:8], "big")
    return random.Random(seed)


# -- parsing and merging -------------------------------------------------------------------------


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def parse_knobs(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """`["distractor_tools=3", "strip_descriptions=true"]` -> `{"distractor_tools": 3, "strip_descriptions": True}`.

    Raises `KnobError` naming the item, the known knobs, and what value was expected.
    """
    out: dict[str, Any] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        name = name.strip().replace("-", "_")
        raw = raw.strip()
        if not sep or not name:
            raise KnobError(f"knob {item!r}: expected NAME=VALUE, e.g. distractor_tools=3")
        if name not in KNOB_NAMES:
            raise KnobError(f"knob {item!r}: unknown knob {name!r}; known knobs: {', '.join(KNOB_NAMES)}")
        if Difficulty.model_fields[name].annotation is bool:
            if raw.lower() not in _TRUE | _FALSE:
                raise KnobError(f"knob {item!r}: {name} takes true or false, got {raw!r}")
            out[name] = raw.lower() in _TRUE
            continue
        try:
            value = int(raw)
        except ValueError:
            raise KnobError(f"knob {item!r}: {name} takes a whole number, got {raw!r}") from None
        if value < 0:
            raise KnobError(f"knob {item!r}: {name} must be 0 or more, got {value}")
        out[name] = value
    return out


def merge_difficulty(base: Difficulty | None, overrides: dict[str, Any] | Difficulty | None = None) -> Difficulty:
    """The scenario's own difficulty with command-line overrides on top (an override wins, knob by knob)."""
    merged = (base or Difficulty()).model_dump()
    if isinstance(overrides, Difficulty):
        overrides = overrides.model_dump(exclude_unset=True)
    merged.update(overrides or {})
    return Difficulty.model_validate(merged)


# -- the transform -------------------------------------------------------------------------------


def harden(scenario: Scenario, difficulty: Difficulty | dict[str, Any] | None = None) -> Scenario:
    """The scenario with its knobs (and `difficulty` overrides on top, knob by knob) applied.

    A new scenario comes back (the given one is not changed): distractors appended to `tools`, the
    history prepended to `few_shot`, and a `difficulty` holding only what is left for the tool set
    (`strip_descriptions`, `long_outputs`), so hardening twice changes nothing more.
    """
    if isinstance(difficulty, Difficulty) or difficulty is None:
        merged = difficulty if difficulty is not None else scenario.difficulty
    else:
        merged = merge_difficulty(scenario.difficulty, difficulty)
    if merged == Difficulty() and scenario.difficulty == Difficulty():
        return scenario
    history = [FewShotMessage(role=m["role"], content=m["content"]) for m in history_prefix(scenario, merged)]
    return scenario.model_copy(update={
        "tools": [*scenario.tools, *distractor_names(scenario, merged)],
        "few_shot": [*history, *scenario.few_shot],
        "difficulty": Difficulty(strip_descriptions=merged.strip_descriptions, long_outputs=merged.long_outputs),
        "source": scenario.source,
        "source_line": scenario.source_line,
    })


# -- tools ---------------------------------------------------------------------------------------


def distractor_names(scenario: Scenario, n: int | Difficulty) -> list[str]:
    """`n` registry tools from domains the scenario does not use, chosen by scenario id.

    When the other domains run out, tools of the scenario's own domains that it does not offer
    fill in (look-alikes are the hardest distractors).
    """
    n = _n(n, "distractor_tools")
    if n <= 0:
        return []
    offered = set(scenario.offered_tool_names)
    domains = {registry[t].domain for t in scenario.tools if registry.get(t) is not None}
    rng = _rng(scenario.id, "distractors")
    foreign = [t.name for t in registry.all() if t.domain not in domains and t.name not in offered]
    rng.shuffle(foreign)
    picked = foreign[:n]
    if len(picked) < n:
        own = [t.name for t in registry.all() if t.domain in domains and t.name not in offered]
        rng.shuffle(own)
        picked += own[: n - len(picked)]
    return picked


def offered_tools(scenario: Scenario, difficulty: Difficulty | None = None) -> list[MockTool]:
    """The registry tools a run offers: the scenario's own, then the distractors."""
    difficulty = difficulty or scenario.difficulty
    return [registry[name] for name in [*scenario.tools, *distractor_names(scenario, difficulty)]]


def tool_schemas(scenario: Scenario, difficulty: Difficulty | None = None) -> list[dict[str, Any]]:
    """OpenAI `tools` entries for the offered registry tools, argument descriptions stripped if the knob says so."""
    difficulty = difficulty or scenario.difficulty
    return [t.openai_schema(strip_descriptions=difficulty.strip_descriptions) for t in offered_tools(scenario, difficulty)]


# -- history -------------------------------------------------------------------------------------


_HISTORY: list[tuple[str, str]] = [
    ("Can you suggest a name for a grey kitten?", "How about Pebble, Smoke or Ash? Pebble suits a small grey cat well."),
    ("What's a good way to remember the order of the planets?",
     "Try the sentence 'My Very Educated Mother Just Served Us Nachos': Mercury, Venus, Earth, Mars, Jupiter, Saturn, Uranus, Neptune."),
    ("How long should I boil an egg for a runny yolk?", "About six minutes in boiling water, then straight into cold water."),
    ("Give me a synonym for 'quick'.", "Rapid, swift, or brisk, depending on the tone you want."),
    ("What's the difference between affect and effect?",
     "'Affect' is usually the verb (the rain affected the match); 'effect' is usually the noun (the rain had an effect)."),
    ("Recommend a short classic novel.", "'The Old Man and the Sea' by Hemingway: about 130 pages and very readable."),
    ("How do I politely decline a meeting?",
     "Something like: 'Thanks for the invite. I can't make it this time, but please share the notes and I'll follow up.'"),
    ("What does HTTP 404 mean?", "The server was reached, but the page or resource you asked for does not exist there."),
    ("Is a tomato a fruit or a vegetable?", "Botanically a fruit (it holds seeds); in the kitchen it is treated as a vegetable."),
    ("Write a one-line birthday wish for a colleague.", "Happy birthday! Wishing you a year as great as the coffee you bring to the office."),
    ("How many minutes are in a day?", "1,440 minutes: 24 hours times 60 minutes."),
    ("What's a good stretch after sitting all day?",
     "A standing hip-flexor stretch: step one foot back, tuck your pelvis, hold 30 seconds per side."),
]


def history_prefix(scenario: Scenario, n: int | Difficulty) -> list[dict[str, Any]]:
    """`n` unrelated, finished user/assistant exchanges (no tool calls) to put before the conversation."""
    n = _n(n, "history_turns")
    if n <= 0:
        return []
    order = list(range(len(_HISTORY)))
    _rng(scenario.id, "history").shuffle(order)
    messages: list[dict[str, Any]] = []
    for i in range(n):
        question, answer = _HISTORY[order[i % len(order)]]
        if i >= len(order):
            question = f"Another one: {question[0].lower()}{question[1:]}"
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return messages


# -- long outputs --------------------------------------------------------------------------------


_ID_LIKE = re.compile(r"^([A-Za-z]+[-_]?)(\d+)$")
_TIME = re.compile(r"^(\d{2}):(\d{2})$")
_FILLER_NAMES = ["Harbor View", "Maple Court", "Northgate", "Riverside", "Elm Street", "Sunset Plaza", "Cedar Point",
                 "Lakeside", "Old Mill", "Granite Hill", "Willow Bend", "Bayfront"]
_FILLER_PEOPLE = ["Jordan Reyes", "Noor Saleh", "Tomasz Kowal", "Greta Holm", "Ravi Menon", "Mei Lin", "Kofi Mensah",
                  "Sara Lindqvist", "Diego Alvarez", "Hana Sato", "Ivan Petrov", "Amara Obi"]


def _is_id_key(key: str) -> bool:
    return key == "id" or key.endswith("_id")


def _taken(records: list[dict[str, Any]]) -> set[str]:
    return {str(v) for r in records for v in r.values() if isinstance(v, (str, int)) and not isinstance(v, bool)}


def _fake_value(key: str, value: Any, i: int, taken: set[str]) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, str):
        if _is_id_key(key):
            match = _ID_LIKE.match(value)
            prefix, width = (match.group(1), len(match.group(2))) if match else (f"{value}-", 1)
            n = (int(match.group(2)) if match else 0) + 7001 + i
            while (candidate := f"{prefix}{n:0{width}d}") in taken:
                n += 1
            return candidate
        if key == "path" and "/" in value:
            head, _, tail = value.rpartition("/")
            candidate = f"{head}/old-{i + 1}-{tail}"
            return candidate if candidate not in taken else f"{head}/old-{i + 1}-{i}-{tail}"
        if key == "email" and "@" in value:
            local, _, domain = value.partition("@")
            return f"{_FILLER_PEOPLE[i % len(_FILLER_PEOPLE)].split()[0].lower()}.{i + 1}@{domain}"
        if key == "name" and "@" not in value:
            pool = _FILLER_PEOPLE if len(value.split()) == 2 and value.istitle() else _FILLER_NAMES
            return pool[i % len(pool)] + ("" if i < len(pool) else f" {i // len(pool) + 1}")
        if key == "title":
            return f"{_FILLER_NAMES[i % len(_FILLER_NAMES)]} sync"
        return value
    if isinstance(value, (int, float)):
        if any(word in key for word in ("price", "amount", "total", "cost")):
            # dearer than the real ones: "cheapest" questions keep their answer
            bumped = value * (1.35 + 0.1 * i)
            return round(bumped, 2) if isinstance(value, float) else int(round(bumped))
        if key == "rating":
            return round(max(1.0, float(value) - 1.2 - 0.1 * (i % 5)), 1)
        return value
    if isinstance(value, dict):
        return {k: _fake_value(k, v, i, taken) for k, v in value.items()}
    return copy.deepcopy(value)


def _minutes(value: Any) -> int | None:
    match = _TIME.match(value) if isinstance(value, str) else None
    return int(match.group(1)) * 60 + int(match.group(2)) if match else None


def _later(record: dict[str, Any], after: int, i: int) -> dict[str, Any]:
    """Shift every HH:MM of a record by one offset (durations kept) so its first time falls after `after`."""
    times = [m for m in map(_minutes, record.values()) if m is not None]
    if not times:
        return record
    delta = after + 13 * (i + 1) - times[0]
    return {k: (f"{(m + delta) % 1440 // 60:02d}:{(m + delta) % 60:02d}" if (m := _minutes(v)) is not None else v)
            for k, v in record.items()}


def _pad_records(records: list[Any], n: int) -> list[Any]:
    if not records or not all(isinstance(r, dict) for r in records):
        return records
    taken = _taken(records)
    # later in the day than every real record: "earliest" questions keep their answer
    latest = max((m for r in records for m in map(_minutes, r.values()) if m is not None), default=0)
    extra = []
    for i in range(n):
        template = records[i % len(records)]
        fake = _later({k: _fake_value(k, v, i, taken) for k, v in template.items()}, latest, i)
        taken |= _taken([fake])
        extra.append(fake)
    return [*records, *extra]


def pad_result(result: Any, n: int | Difficulty, tool_name: str) -> Any:
    """A collection lookup's result with `n` plausible extra records appended to each list of records.

    Extra records copy the shape of the real ones, with ids that do not collide with them, higher
    prices, lower ratings and later clock times (durations kept), so the right answer stays right
    but is harder to find.
    Results of other tools, and lists that are empty or not of records, come back unchanged.
    """
    n = _n(n, "long_outputs")
    if n <= 0 or not tool_name.startswith(_PADDED_PREFIXES):
        return result
    if isinstance(result, list):
        return _pad_records(result, n)
    if isinstance(result, dict):
        return {k: _pad_records(v, n) if isinstance(v, list) else v for k, v in result.items()}
    return result
