"""`--shard k/n`: split a suite deterministically across CI jobs or machines.

Scenarios are ordered by id and dealt round-robin, so shards differ in size by at most one and
the same suite gives the same split on every machine. Every epoch of a scenario stays in its
shard. Each shard's results file records the whole suite's set hash and its shard;
`harness report shard1.jsonl shard2.jsonl ...` merges them into one comparison.
"""

from __future__ import annotations

import re
from typing import TypeVar

from pydantic import BaseModel, ConfigDict

__all__ = ["Shard", "ShardError", "parse_shard", "select_shard"]

T = TypeVar("T")


class ShardError(ValueError):
    """A `--shard` value that is not `k/n` with 1 <= k <= n."""


class Shard(BaseModel):
    """One of `count` parts of a suite."""

    model_config = ConfigDict(frozen=True)

    index: int
    """1-based: which part."""
    count: int
    """How many parts the suite is split into."""

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(spec: str) -> Shard:
    """`"2/4"` -> Shard(index=2, count=4); raises `ShardError` with what was expected."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", spec or "")
    if not match:
        raise ShardError(f"{spec!r}: expected k/n, e.g. 1/4 for the first of four shards")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or not 1 <= index <= count:
        raise ShardError(f"{spec!r}: k must be between 1 and n (got k={index}, n={count})")
    return Shard(index=index, count=count)


def select_shard(scenarios: list[T], shard: Shard, *, key: str = "id") -> list[T]:
    """The scenarios of `shard`, in their original order: sorted by `key`, dealt round-robin."""
    ordered = sorted(scenarios, key=lambda s: getattr(s, key))
    mine = {id(s) for s in ordered[shard.index - 1 :: shard.count]}
    return [s for s in scenarios if id(s) in mine]
