"""Reports that lose or pool records silently (issue 21, kind 7)."""

import json
import subprocess
import sys

import pytest
from helpers import record

from bench.explain.goal import Goal
from bench.records.pooling import pool
from bench.records.results import ResultsError, append_record, read_records, study_id
from bench.render.summary import summarize
from mgpu_core.config import TrainConfig


def host(rec, name, timestamp):
    return rec | {"provenance": rec["provenance"] | {"host": name, "timestamp": timestamp}}


def two_hosts(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    for path, name, times in ((a, "h1", [10.0]), (b, "h2", [12.0])):
        for rec in (record("single", 1, times), record("ddp", 2, [t / 2 for t in times])):
            append_record(path, host(rec, name, f"2026-11-30T0{1 + (name == 'h2')}:00:00+00:00"))
    return a, b


def test_the_same_study_from_two_hosts_is_pooled_and_said(tmp_path):
    a, b = two_hosts(tmp_path)
    notices = []
    records = pool([(a, read_records(a)), (b, read_records(b))], warn=notices.append)
    assert len(records) == 4 and "pooled 4 records from 2 files" in notices[0]
    rows = {(r.mode, r.devices): r for r in summarize(records, Goal()).rows}
    assert rows["single", 1].trials == 2 and rows["single", 1].epoch_time_s == (11.0, 10.0, 12.0)


def test_a_file_given_twice_counts_once(tmp_path):
    a, _ = two_hosts(tmp_path)
    notices = []
    records = pool([(a, read_records(a)), (a, read_records(a))], warn=notices.append)
    assert len(records) == 2 and "2 duplicate records counted once" in notices[0]


@pytest.mark.slow
def test_report_cli_pools_and_says_so(tmp_path):
    a, b = two_hosts(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "bench.report", str(a), str(b), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "pooled 4 records from 2 files" in proc.stdout
    folder = tmp_path / "study"
    folder.mkdir()
    a.rename(folder / "results.jsonl")  # a study folder, as bench.compare and bench.predict take it
    proc = subprocess.run([sys.executable, "-m", "bench.report", str(folder), "--out", str(tmp_path / "out2")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and (tmp_path / "out2" / "summary.md").exists(), proc.stderr


@pytest.mark.parametrize("edit", [
    lambda r: r | {"val_accs": r["val_accs"] + [0.5]},            # the case: val_accs longer
    lambda r: r | {"samples_per_s": []},                           # another list cut short
    lambda r: r | {"epoch_times_s": ["fast"]},                     # not a number
    lambda r: r | {"val_accs": None},
])
def test_a_hand_edited_record_is_one_line(tmp_path, edit):
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps(edit(record("single", 1, [1.0]))) + "\n")
    with pytest.raises(ResultsError, match=r"results.jsonl:1: .*edited") as info:
        read_records(path)
    assert "\n" not in str(info.value)


@pytest.mark.slow
def test_report_cli_refuses_a_hand_edited_record_in_one_line(tmp_path):
    path = tmp_path / "results.jsonl"
    rec = record("single", 1, [1.0])
    path.write_text(json.dumps(rec | {"val_accs": rec["val_accs"] * 2}) + "\n")
    proc = subprocess.run([sys.executable, "-m", "bench.report", str(path), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


@pytest.mark.parametrize("field, a, b", [("threads", None, 4), ("threads", 2, 4), ("precision", "fp32", "bf16")])
def test_every_setting_that_changes_timing_is_in_the_study_identity(field, a, b):
    assert study_id(TrainConfig(**{field: a}), 1, "weak", "cpu") != study_id(TrainConfig(**{field: b}), 1, "weak",
                                                                              "cpu")
