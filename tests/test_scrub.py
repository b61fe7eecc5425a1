"""Capping and redaction: what may be written or printed."""

from __future__ import annotations

import hashlib
import json
from urllib.parse import quote

import pytest

from harness import scrub


@pytest.fixture(autouse=True)
def _no_secrets():
    scrub.clear_secrets()
    yield
    scrub.clear_secrets()


def test_a_long_body_keeps_head_tail_size_and_hash():
    body = "HEAD" + "x" * 1_000_000 + "TAIL"
    capped = scrub.cap_text(body, 2_000)
    assert len(capped) < 2_300
    assert capped.startswith("HEAD") and capped.endswith("TAIL")
    assert "1,000,008 bytes" in capped and hashlib.sha256(body.encode()).hexdigest() in capped
    assert scrub.cap_text("short", 2_000) == "short"


def test_cap_value_bounds_every_string_and_deep_nesting():
    deep: object = "leaf"
    for _ in range(200):
        deep = [deep]
    value = scrub.cap_value({"a": ["y" * 100_000], "deep": deep}, 1_000)
    assert len(json.dumps(value)) < 3_000
    assert "nested deeper than 64 levels" in json.dumps(value)


def test_a_registered_key_is_redacted_in_every_form_it_is_written():
    key = 'sk-live-abc/123+"quoted"'
    scrub.add_secret(key)
    forms = [key, json.dumps(key)[1:-1], quote(key, safe="")]
    out = scrub.redact(" | ".join(f"form {f}" for f in forms))
    assert all(f not in out for f in forms), out
    assert out.count(scrub.REDACTED) == 3


def test_url_passwords_and_userinfo_are_redacted_even_unregistered():
    assert scrub.redact("GET http://bob:hunter2x@proxy:3128/v1 failed") == "GET http://[REDACTED]@proxy:3128/v1 failed"
    scrub.add_url_secrets("http://bob:hunter2x@proxy:3128/v1")
    assert "hunter2x" not in scrub.redact("the password hunter2x was rejected")


def test_placeholders_and_short_values_are_not_secrets():
    for value in ("sk-none", "ollama", "abc", "", None):
        scrub.add_secret(value)
    assert scrub.secrets() == frozenset()
    assert scrub.redact("ollama said sk-none") == "ollama said sk-none"
