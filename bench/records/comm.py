"""comm.jsonl: the collective benchmark's records, one per device count."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bench.records.results import read_jsonl


def read_comm(path: Path, warn: Callable[[str], None] = print) -> list[dict]:
    """The collective records of a comm.jsonl (none if it is absent)."""
    return [r for r in read_jsonl(path, warn) if r.get("kind") == "comm"]
