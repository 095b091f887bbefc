"""Several results files read as one (bench.report a.jsonl b.jsonl), and the checks that make a hand-edited record
one line instead of a traceback. Torch-free.

Pooling: within one file, records of the same configuration-trial key are attempts of one run (--resume, retries:
the newest success counts). Across files they are independent runs of the same study (two hosts, two days): each
file's records keep their own identity, so every file's trials count, and the report says it pooled them. The same
record found in two files (a file given twice, or a copy) counts once."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from bench.records.results import ResultsError
from bench.records.units import plural

PER_EPOCH = ("epoch_times_s", "samples_per_s", "samples_per_s_per_device", "val_accs")
"""The per-epoch lists of an ok record: one number per timed epoch each."""


def check_record(record: dict, where: str) -> None:
    """ResultsError (one line, naming `where`) for an ok record whose per-epoch lists are not lists of numbers (null
    stands for a non-finite one) of one length (e.g. val_accs edited to be longer than epoch_times_s)."""
    if record.get("status") != "ok":
        return
    lengths = {}
    for name in PER_EPOCH:
        values = record.get(name)
        if not isinstance(values, list) or not all(v is None or isinstance(v, int | float) and not isinstance(v, bool)
                                                    and math.isfinite(v) for v in values):  # None: a non-finite value
            raise ResultsError(f"{where}: {name} is not a list of numbers; was the record edited? Move the file "
                               "aside or fix the record")
        lengths[name] = len(values)
    if len(set(lengths.values())) > 1 or not lengths["epoch_times_s"]:
        counts = ", ".join(f"{n} {k}" for k, n in lengths.items())
        raise ResultsError(f"{where}: per-epoch lists of unequal or zero length ({counts}); was the record edited? "
                           "Move the file aside or fix the record")


def pool(files: list[tuple[Path, list[dict]]], warn: Callable[[str], None] = print) -> list[dict]:
    """The records of every file as one list. Keys that recur in other files are made file-specific (independent
    runs: each counts as its own trial) and the pooling is announced; duplicate records count once."""
    if len(files) < 2:
        return [r for _, records in files for r in records]
    seen: set[tuple] = set()
    owner: dict[str, int] = {}
    pooled, duplicates, renamed = [], 0, 0
    for index, (path, records) in enumerate(files):
        for record in records:
            identity = (record["key"], record["status"], record["provenance"].get("host"),
                        record["provenance"].get("timestamp"), record.get("wall_s"))
            if identity in seen:
                duplicates += 1
                continue
            seen.add(identity)
            first = owner.setdefault(record["key"], index)
            if first != index:  # the same configuration-trial from another run: a trial of its own
                record = record | {"key": f"{record['key']}@{path}"}
                renamed += 1
            pooled.append(record)
    studies = {r["study"] for r in pooled}
    warn(f"notice: pooled {plural(len(pooled), 'record')} from {plural(len(files), 'file')}"
         + (f" ({plural(renamed, 'configuration-trial')} run again in another file count as further trials)"
            if renamed else "")
         + (f"; {plural(duplicates, 'duplicate record')} counted once" if duplicates else "")
         + (f"; {plural(len(studies), 'study', 'studies')} among them (the table shows one)"
            if len(studies) > 1 else ""))
    return pooled
