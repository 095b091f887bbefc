"""Two studies in one --out: a study's report draws and explains only its own collective records (or ones that
name no study), never another study's comm.jsonl lines (its model's gradient size, its device counts)."""

import json

from helpers import record
from test_replay import comm_with_profile

from bench.records.results import append_record
from bench.report import main as report_main


def _comm(study: str, grad_bytes: int) -> dict:
    return comm_with_profile() | {"kind": "comm", "backend": "gloo", "device_type": "cuda", "precision": "fp32",
                                  "batch_per_device": 128, "model": "simplecnn", "study": study,
                                  "grad_bytes": grad_bytes}


def test_a_study_without_collectives_shows_none_of_another_studys(tmp_path):
    first = [record("single", 1, [10.0], timestamp="2026-11-30T10:00:00", train_samples=2000),
             record("ddp", 2, [6.0], timestamp="2026-11-30T10:01:00", train_samples=2000)]
    second = [record("single", 1, [3.0], timestamp="2026-11-30T11:00:00", train_samples=512)]
    assert first[0]["study"] != second[0]["study"]
    for r in first + second:
        append_record(tmp_path / "results.jsonl", r)
    (tmp_path / "comm.jsonl").write_text(json.dumps(_comm(first[0]["study"], 42 << 20)) + "\n")
    assert report_main([str(tmp_path), "--out", str(tmp_path / "second")]) == 0  # the newest: the second study
    assert not (tmp_path / "second" / "comm.png").exists()
    assert "comm.png" not in (tmp_path / "second" / "summary.md").read_text()
    assert report_main([str(tmp_path), "--out", str(tmp_path / "first"), "--study", first[0]["study"]]) == 0
    assert (tmp_path / "first" / "comm.png").exists()  # its own collectives are drawn
