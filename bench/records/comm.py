"""comm.jsonl: the collective benchmark's records, one per device count."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bench.records.results import ResultsError, read_jsonl

COMM_SCHEMA_VERSION = 1
"""1: op rows (bytes, time_s, algbw and busbw in bytes/s), grad_bytes, compute_step_s, threads, nodes, study,
wall_s, provenance. Records written before versions were recorded carry none: they read as version 1."""


def comm_record(measurement: dict, **fields) -> dict:
    """A comm.jsonl record of one device count: the ranks' measurement (mgpu_core.collectives.measure) and the
    parent's fields (study, wall_s, provenance), with its kind and schema version."""
    return {"kind": "comm", "schema_version": COMM_SCHEMA_VERSION, **measurement, **fields}


def read_comm(path: Path, warn: Callable[[str], None] = print) -> list[dict]:
    """The collective records of a comm.jsonl (none if it is absent), each with its schema_version (1 where the
    record carries none). A record of a version this harness does not know is refused with ResultsError."""
    records = []
    for number, record in read_jsonl(path, warn, numbered=True):
        if not isinstance(record, dict) or record.get("kind") != "comm":
            continue
        version = record.get("schema_version", 1)
        if version != COMM_SCHEMA_VERSION:
            raise ResultsError(f"{path}:{number}: comm schema version {version}, this harness reads "
                               f"{COMM_SCHEMA_VERSION}; move the file aside or use another --out")
        records.append(record | {"schema_version": version})
    return records
