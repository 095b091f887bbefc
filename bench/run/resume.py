"""--resume goes on with the study its results file holds; settings that make another study are refused before
anything runs or is written, naming the settings that differ."""

from __future__ import annotations

from pathlib import Path

from bench.records.results import read_records
from bench.records.study import study_identity


class ResumeError(RuntimeError):
    """--resume asks for another study than the results file holds; the message is one line."""


def differing_settings(held: dict, asked: dict) -> dict[str, tuple]:
    """{name: (held value, asked value)} for every study setting (bench.records.study.study_identity) whose values
    differ, sorted by name; a setting one side lacks has the value None there."""
    return {k: (held.get(k), asked.get(k)) for k in sorted(set(held) | set(asked)) if held.get(k) != asked.get(k)}


def refusal(path: Path, differing: dict[str, tuple]) -> str:
    """The one line that refuses the resume: which study settings the file holds and which this run asks."""
    if not differing:  # the same settings under another study id: recorded by a harness that digested them otherwise
        held = asked = "settings recorded by another version of the harness"
    else:
        held = ", ".join(f"{k}={a}" for k, (a, _) in differing.items())
        asked = ", ".join(f"{k}={b}" for k, (_, b) in differing.items())
    return (f"--resume: {path} holds a study with {held}; this run asks {asked} (use another --out, or drop "
            "--resume to start a new study)")


def check_resume(path: Path, asked_study: str, asked: dict) -> str | None:
    """Raise ResumeError when the results file at `path` holds records but none of the study `asked_study` (whose
    study_identity is `asked`): a resume would start another study in the same file. The file is only read. Where
    it holds several studies, the settings named are those of the newest record (by timestamp, as the report picks
    its study). Returns a notice where there is nothing to resume (no file, or no record in it), else None."""
    records = read_records(path, warn=lambda _: None)  # the sweep itself reports torn lines
    if not records:
        return f"notice: --resume: nothing to resume in {path} (no records yet): the whole study runs"
    if any(r["study"] == asked_study for r in records):
        return None
    newest = max(records, key=lambda r: r["provenance"].get("timestamp") or "")
    config = newest.get("train_config")
    held = (study_identity(config, newest["devices"], newest.get("scaling", "weak"), newest.get("device_type"))
            if config else {})
    raise ResumeError(refusal(path, differing_settings(held, asked) if held else {}))
