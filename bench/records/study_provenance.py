"""A study's provenance in one block: what all its records share, what differs between them and in how many
records each value appears, and whether they were measured by different software. Each record carries its own
provenance (bench.run.provenance.collect); a study may span resumes, nodes and code versions."""

from __future__ import annotations

import json

from bench.records.units import plural

SOFTWARE_KEYS = ("git_commit", "torch", "torchvision", "python", "driver", "cuda", "cudnn", "nccl")
"""Provenance keys naming the software that measured: records of one study that differ in any of them were not
measured alike, and the study says so."""


def _text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _counts(records: list[dict], key: str) -> dict[str, int]:
    """Each distinct value of provenance[key] (as text) -> how many records hold it, most frequent first."""
    counts: dict[str, int] = {}
    for record in records:
        value = _text(record.get("provenance", {}).get(key))
        counts[value] = counts.get(value, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def study_provenance(records: list[dict]) -> dict:
    """The provenance block of a study's records (any status): `records` (how many), `measured` (first and last
    timestamp, ISO 8601), `shared` (key -> the value every record holds) and `differs` (key -> {value as text:
    number of records}). Per-record seeds (the study's seed + trial) and timestamps are expected to differ.

    Raises ValueError on no records."""
    if not records:
        raise ValueError("no records: a study's provenance needs at least one")
    keys = sorted({k for r in records for k in r.get("provenance", {})} - {"timestamp"})
    shared, differs = {}, {}
    for key in keys:
        counts = _counts(records, key)
        if len(counts) == 1:
            shared[key] = records[0]["provenance"].get(key)
        else:
            differs[key] = counts
    stamps = sorted(t for r in records if (t := r.get("provenance", {}).get("timestamp")))
    return {"records": len(records), "measured": {"first": stamps[0] if stamps else None,
                                                  "last": stamps[-1] if stamps else None},
            "shared": shared, "differs": differs}


def mixed_software(records: list[dict]) -> str | None:
    """'mixed software: ...' when the records of one study were measured by different software (SOFTWARE_KEYS),
    naming each key's values and how many records hold each; None when they agree."""
    parts = []
    for key in SOFTWARE_KEYS:
        counts = _counts(records, key)
        if len(counts) > 1:
            parts.append(f"{key} " + ", ".join(f"{value} ({plural(n, 'record')})" for value, n in counts.items()))
    if not parts:
        return None
    return ("mixed software: the records of this study were not all measured by the same software (" + "; ".join(parts)
            + "): compare its rows with care")
